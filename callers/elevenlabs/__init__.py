"""ElevenLabs (text to speech, speech to text). Pure data; capabilities arrive later."""

from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="elevenlabs",
    display_name="ElevenLabs",
    secret_fields=(
        CredentialField("api_key", required=True, description="ElevenLabs API key, sent as xi-api-key"),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.elevenlabs.io",
            description="API root; a data-residency root such as https://api.eu.residency.elevenlabs.io",
        ),
    ),
)
