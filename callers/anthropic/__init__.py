"""Anthropic (Claude) through the official `anthropic` SDK: Messages API chat and streaming.

Pure data: importing this package must not import the SDK (see callers.registry).
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="anthropic",
    display_name="Anthropic",
    secret_fields=(CredentialField("api_key", required=True, description="Anthropic API key (sk-ant-...)"),),
    hint_field="api_key",
    option_fields=(
        CredentialField("base_url", kind="url", default="https://api.anthropic.com", description="API root"),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT}),
    sdk_modules=("anthropic",),
)

# The API version the SDK (2.x) speaks and sends by default. It rejects temperature,
# top_p and top_k outright ("Extra inputs are not permitted"), even at default values.
API_VERSION = "2026-10-21"
# The previous version, which still takes sampling parameters. A request opts in to it
# with provider_options {"anthropic_version": "2023-06-01"} (see convert.py).
LEGACY_API_VERSION = "2023-06-01"
