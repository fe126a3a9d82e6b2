"""Google Cloud Speech-to-Text and Text-to-Speech, by service account.

Pure data; capabilities arrive with the speech callers issue.
"""

from callers.google_service_account import FIELD, check_service_account
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="google_speech",
    display_name="Google Cloud Speech",
    secret_fields=(
        CredentialField(FIELD, required=True, kind="json", description="Service-account key file (JSON)"),
    ),
    hint_field=FIELD,
    option_fields=(
        CredentialField("project", description="Google Cloud project ID; default: the key file's project_id"),
        CredentialField(
            "location", default="global", description="Speech-to-Text v2 location, e.g. us or eu"
        ),
        CredentialField(
            "endpoint", kind="url", description="API endpoint override, e.g. https://eu-speech.googleapis.com"
        ),
    ),
    extra_validation=check_service_account,
)
