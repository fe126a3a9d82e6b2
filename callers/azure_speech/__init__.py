"""Azure AI Speech (speech to text, text to speech). Pure data; capabilities later."""

from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="azure_speech",
    display_name="Azure AI Speech",
    secret_fields=(
        CredentialField(
            "api_key", required=True, description="Speech resource key, sent as Ocp-Apim-Subscription-Key"
        ),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField("region", required=True, description="Region of the Speech resource, e.g. eastus"),
        CredentialField(
            "endpoint",
            kind="url",
            description="Custom-domain or private endpoint; default derived from region",
        ),
    ),
)
