"""Vonage Voice API (applications with a private key): place, hang up and read calls,
Vonage's signed event webhooks, its answer-time NCCO, and the websocket audio of a call.

The Voice REST API is spoken over the hub's pooled aiohttp session (wire.py says why not
the vonage SDK's requests client); the SDK's `vonage_jwt` mints the application JWT
(RS256, per call) and PyJWT, which it is built on, checks the HS256 signatures of
Vonage's webhooks. Pure data: importing this package imports neither aiohttp nor the SDK.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec

DEFAULT_API_BASE_URL = "https://api.nexmo.com"
MEDIA_SAMPLE_RATES = ("8000", "16000", "24000")
# The secret field that signs Vonage's webhooks (HS256), which place_call also requires.
WEBHOOK_KEY_FIELD = "signature_secret"

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
        CredentialField(
            "signature_secret",
            description=(
                "The account's signature secret, to verify signed webhooks (HS256 JWTs); needed to "
                "place calls, whose status callbacks are checked with it"
            ),
        ),
    ),
    hint_field="private_key",
    option_fields=(
        CredentialField("application_id", required=True, description="Vonage application ID (a UUID)"),
        CredentialField("api_key", description="Account API key (an identifier, not a secret)"),
        CredentialField(
            "api_base_url",
            kind="url",
            default=DEFAULT_API_BASE_URL,
            description=(
                "Voice API root: https://api.nexmo.com, or a region (https://api-us.vonage.com, "
                "https://api-eu.vonage.com, https://api-ap.vonage.com)"
            ),
        ),
        CredentialField(
            "media_sample_rate",
            default="16000",
            choices=MEDIA_SAMPLE_RATES,
            description="Sample rate (Hz) of the call audio websocket: linear16 at 8, 16 or 24 kHz",
        ),
        CredentialField(
            "machine_detection",
            default="basic",
            choices=("basic", "advanced"),
            description=(
                "How answering machines are detected when a call asks for it: Vonage's machine_detection "
                "(basic), or advanced_machine_detection (a paid add-on)"
            ),
        ),
    ),
    capabilities=frozenset(
        {Capability.VERIFY, Capability.TELEPHONY, Capability.CALL_EVENTS, Capability.CALL_MEDIA}
    ),
    # vonage_jwt (JwtClient) mints the application JWT; jwt (PyJWT, its dependency) checks
    # the webhooks' HS256 signatures.
    sdk_modules=("vonage_jwt", "jwt"),
)
