"""Google Vertex AI, authenticated by a service account, through the `google-genai` SDK.

The wire code is shared with the gemini provider (callers.gemini); this package adds
the service-account token exchange. Pure data here: no SDK import (see callers.registry).
"""

from callers.base import Capability
from callers.google_service_account import FIELD, check_service_account
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="vertex_ai",
    display_name="Google Vertex AI",
    secret_fields=(
        CredentialField(FIELD, required=True, kind="json", description="Service-account key file (JSON)"),
    ),
    hint_field=FIELD,
    option_fields=(
        CredentialField("project", required=True, description="Google Cloud project ID"),
        CredentialField("location", default="us-central1", description="Vertex AI region, or 'global'"),
        CredentialField(
            "base_url",
            kind="url",
            description="API root override; by default derived from location "
            "(https://{location}-aiplatform.googleapis.com)",
        ),
    ),
    extra_validation=check_service_account,
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED}),
    sdk_modules=("google.genai", "google.auth"),
)

# The Vertex AI API version the callers speak: /v1/projects/{p}/locations/{l}/publishers/google/models/...
API_VERSION = "v1"
