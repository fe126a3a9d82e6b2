"""Vonage Voice API (applications with a private key). Pure data; capabilities later."""

from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="vonage",
    display_name="Vonage",
    secret_fields=(
        CredentialField(
            "private_key",
            required=True,
            kind="pem",
            description="The application's private key (PEM), signs JWTs",
        ),
        CredentialField("signature_secret", description="Signature secret, to verify signed webhooks"),
    ),
    hint_field="private_key",
    option_fields=(
        CredentialField("application_id", required=True, description="Vonage application ID (a UUID)"),
        CredentialField("api_key", description="Account API key (an identifier, not a secret)"),
    ),
)
