"""Google Gemini API (AI Studio keys) through the `google-genai` SDK.

This package also holds the Google wire code (conversions, errors, the shared callers)
that vertex_ai uses with service-account credentials. Pure data here: importing this
package must not import the SDK (see callers.registry).
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="gemini",
    display_name="Google Gemini",
    secret_fields=(CredentialField("api_key", required=True, description="Gemini API key (AIza...)"),),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://generativelanguage.googleapis.com",
            description="API root",
        ),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED}),
    sdk_modules=("google.genai",),
)

# The Generative Language API version the callers speak (its v1beta paths carry every
# feature used here: systemInstruction, tools, responseJsonSchema, batchEmbedContents).
API_VERSION = "v1beta"
