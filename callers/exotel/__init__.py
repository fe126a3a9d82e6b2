"""Exotel voice (India, South-East Asia). Pure data; capabilities arrive later.

Exotel uses HTTP Basic auth: the API key is the user name and is not secret, the
API token is the password.
"""

from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="exotel",
    display_name="Exotel",
    secret_fields=(
        CredentialField("api_token", required=True, description="API token (the Basic-auth password)"),
    ),
    hint_field="api_token",
    option_fields=(
        CredentialField("account_sid", required=True, description="Account SID, from the API settings page"),
        CredentialField("api_key", required=True, description="API key (the Basic-auth user name)"),
        CredentialField(
            "subdomain",
            default="api.exotel.com",
            choices=("api.exotel.com", "api.in.exotel.com"),
            description="API cluster: api.exotel.com (Singapore) or api.in.exotel.com (Mumbai)",
        ),
    ),
)
