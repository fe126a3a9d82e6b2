"""Deepgram (speech to text, text to speech). Pure data; capabilities arrive later."""

from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="deepgram",
    display_name="Deepgram",
    secret_fields=(
        CredentialField("api_key", required=True, description="Deepgram API key, sent as 'Token <key>'"),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.deepgram.com",
            description="API root (or self-hosted)",
        ),
    ),
)
