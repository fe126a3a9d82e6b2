"""AssemblyAI (speech to text). Pure data; capabilities arrive later."""

from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="assemblyai",
    display_name="AssemblyAI",
    secret_fields=(CredentialField("api_key", required=True, description="AssemblyAI API key"),),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.assemblyai.com",
            description="API root; https://api.eu.assemblyai.com for EU data residency",
        ),
    ),
)
