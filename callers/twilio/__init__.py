"""Twilio Programmable Voice: place, hang up and read calls, the signed status callbacks,
the Media Streams websocket, verify. Pure data: importing this package imports no SDK.

Twilio authenticates with the account's Auth Token, or with an API key: a key SID
(not secret, so an option) and its secret. Either is accepted; the rule spans both
sections, hence `extra_validation`. With both, REST calls use the API key (revocable on
its own) and the Auth Token is kept for what only it can do: Twilio signs every webhook
(X-Twilio-Signature) with the account's Auth Token, so a credential without it can place
calls only without a status callback (see telephony.py), and cannot check callbacks.

The capabilities: telephony.py (the Calls resource through the `twilio` SDK's async
path, over the pooled aiohttp session: client.py), webhooks.py (RequestValidator),
media.py (Media Streams JSON frames, no SDK), verify.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from callers.base import Capability
from callers.spec import CredentialField, InvalidCredentialField, ProviderSpec

# Twilio SIDs: a two-letter type prefix and 32 hex digits (AC = account, SK = API key).
_SID = re.compile(r"[0-9a-fA-F]{32}")


def _check_sid(where: str, value: str | None, prefix: str) -> None:
    if value is not None and not (value.startswith(prefix) and _SID.fullmatch(value[2:])):
        raise InvalidCredentialField(where, f"must be a Twilio SID: {prefix} followed by 32 hex digits")


def check_auth_choice(secret: Mapping[str, str], options: Mapping[str, str]) -> None:
    """Require the Auth Token, or the API key pair (options.api_key_sid + secret.api_key_secret)."""
    _check_sid("options.account_sid", options.get("account_sid"), "AC")
    _check_sid("options.api_key_sid", options.get("api_key_sid"), "SK")
    has_key_sid = bool(options.get("api_key_sid"))
    has_key_secret = bool(secret.get("api_key_secret"))
    if has_key_secret and not has_key_sid:
        raise InvalidCredentialField("options.api_key_sid", "required with secret.api_key_secret")
    if has_key_sid and not has_key_secret and not secret.get("auth_token"):
        raise InvalidCredentialField("secret.api_key_secret", "required with options.api_key_sid")
    if not secret.get("auth_token") and not has_key_secret:
        raise InvalidCredentialField(
            "secret.auth_token", "required (or secret.api_key_secret with options.api_key_sid)"
        )


SPEC = ProviderSpec(
    name="twilio",
    display_name="Twilio",
    secret_fields=(
        CredentialField("auth_token", description="Account Auth Token (or use an API key instead)"),
        CredentialField("api_key_secret", description="Secret of the API key named by options.api_key_sid"),
    ),
    hint_field="auth_token",
    option_fields=(
        CredentialField("account_sid", required=True, description="Account SID (AC...)"),
        CredentialField(
            "api_key_sid", description="API key SID (SK...), when authenticating with an API key"
        ),
        CredentialField(
            "api_base_url",
            kind="url",
            default="https://api.twilio.com",
            description="REST API root (scheme://host[:port]); the default unless testing",
        ),
    ),
    capabilities=frozenset(
        {
            Capability.TELEPHONY,
            Capability.CALL_EVENTS,
            Capability.CALL_MEDIA,
            Capability.VERIFY,
        }
    ),
    extra_validation=check_auth_choice,
    sdk_modules=("twilio",),
)
