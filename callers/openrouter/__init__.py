"""OpenRouter: one key for many model vendors, over OpenAI's wire API.

Pure data: importing this package must not import the `openai` SDK.
"""

from callers.base import Capability
from callers.openai.vendor import OpenAIWireVendor
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="openrouter",
    display_name="OpenRouter",
    secret_fields=(CredentialField("api_key", required=True, description="OpenRouter API key (sk-or-...)"),),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url", kind="url", default="https://openrouter.ai/api/v1", description="API root"
        ),
        CredentialField(
            "http_referer", kind="url", description="Your app's URL, sent as HTTP-Referer for attribution"
        ),
        CredentialField("app_title", description="Your app's name, sent as X-Title for attribution"),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED}),
    sdk_modules=("openai",),
)

WIRE = OpenAIWireVendor(spec=SPEC, option_headers={"http_referer": "HTTP-Referer", "app_title": "X-Title"})
