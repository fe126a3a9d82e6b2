"""Exotel voice (India, South-East Asia): calls, their status callbacks, and live call
audio over AgentStream (the Voicebot applet's websocket). Pure data: importing this
package imports neither aiohttp nor anything else of the wire.

Exotel uses HTTP Basic auth: the API key is the user name and is not secret, the
API token is the password. Exotel has no maintained Python SDK: every capability speaks
its REST API over the pooled aiohttp session (callers/exotel/wire.py).

How a call reaches the hub's media websocket (callers/exotel/telephony.py):
- without `voicebot_app_id`: Exotel's "Connect Voice AI" (Calls/connect with StreamUrl
  and StreamType=bidirectional) opens the websocket to the call's media URL directly;
- with `voicebot_app_id`: the call runs that App Bazaar flow, whose Voicebot applet URL
  is the hub's fixed answer URL (``{HUB_PUBLIC_URL}/telephony/v1/exotel/answer``, set
  once in the Exotel console); Exotel asks it for the websocket URL when the applet runs.
`greeting_app_id` is the flow used to speak text (SAY): a Greeting applet whose "read
text like a robot" is the same answer URL, then a Hangup applet.
"""

from callers.base import Capability
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
        CredentialField(
            "api_base_url",
            kind="url",
            description="API root overriding https://<subdomain> (a proxy, or a test double)",
        ),
        CredentialField(
            "voicebot_app_id",
            description=(
                "App Bazaar id of a flow whose Voicebot applet URL is the hub's "
                "/telephony/v1/exotel/answer: media streams then go through that flow "
                "(unset: Connect Voice AI streams straight to the hub)"
            ),
        ),
        CredentialField(
            "greeting_app_id",
            description=(
                "App Bazaar id of a flow whose Greeting applet reads its text from the hub's "
                "/telephony/v1/exotel/answer, then hangs up: needed to speak text (say)"
            ),
        ),
        CredentialField(
            "stream_sample_rate",
            default="8000",
            choices=("8000", "16000", "24000"),
            description="Sample rate of the call audio on the media websocket (16-bit PCM)",
        ),
    ),
    capabilities=frozenset(
        {Capability.VERIFY, Capability.TELEPHONY, Capability.CALL_EVENTS, Capability.CALL_MEDIA}
    ),
    sdk_modules=(),
)
