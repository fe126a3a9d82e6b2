"""Sarvam AI (Indic speech to text, text to speech). Pure data; capabilities later."""

from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="sarvam",
    display_name="Sarvam AI",
    secret_fields=(
        CredentialField(
            "api_key", required=True, description="API subscription key, sent as api-subscription-key"
        ),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField("base_url", kind="url", default="https://api.sarvam.ai", description="API root"),
    ),
)
