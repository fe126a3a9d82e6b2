"""Cartesia (text to speech, speech to text). Pure data; capabilities arrive later."""

from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="cartesia",
    display_name="Cartesia",
    secret_fields=(CredentialField("api_key", required=True, description="Cartesia API key (sk_car_...)"),),
    hint_field="api_key",
    option_fields=(
        CredentialField("base_url", kind="url", default="https://api.cartesia.ai", description="API root"),
        CredentialField(
            "api_version", default="2025-04-16", description="Sent as the Cartesia-Version header"
        ),
    ),
)
