"""CALL_EVENTS: Vonage's signed event webhooks, and the NCCO for its answer_url.

Signed webhooks (https://developer.vonage.com/en/getting-started/concepts/webhooks#
decoding-signed-webhooks, and the Voice guide "Signed webhooks"): with signed callbacks
enabled on the application, Vonage sends ``Authorization: Bearer <JWT>``, HS256-signed
with the account's signature secret, whose claims are {iat, jti, iss: "Vonage",
payload_hash, api_key, application_id}; payload_hash is the SHA-256 (hex) of the payload:
the JSON body of a POST (compact JSON of the query parameters, in order, for a GET).
`authenticate` checks, in order: a signature secret is configured, the header is a Bearer
JWT, its HS256 signature (PyJWT's decode: exactly what vonage_jwt.verify_signature
runs, which returns only a bool, while the claims are needed too), iat no older than
MAX_AGE_SECONDS (a replay of a captured callback is refused after that; within it the
hub applies an event once by its event_id), payload_hash against the body, and
api_key / application_id, when both the claims and the options name them. Rejections say
what failed, never an expected value.

Events (the Voice API webhook reference): JSON {uuid (call_uuid for human / machine),
conversation_uuid, status, direction, timestamp, from, to, duration, detail, ...}.
started -> queued, ringing, answered -> in-progress, completed, busy, cancelled ->
canceled, failed / rejected -> failed, timeout / unanswered -> no-answer; human / machine
(machine detection) set answered_by without a change of state; events without a status
(record, input, transfer, errors) get a derived raw_status and status None. The events
of a call's websocket leg (its `to` is the ws:// URI) are that leg's, not the call's:
status None. event_id is "<uuid>:<status>:<timestamp>" (the body's SHA-256 stands in for
a missing timestamp), so a retry or replay of one event has one id. In `raw`, the path of
a ws(s):// URI (it holds the hub's per-call token) is cut off.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jwt
import orjson

from callers.base import CallerError, InvalidRequest, SecretFields, WebhookRejected
from callers.types import CallAction, CallEvent, Instructions, WebhookRequest
from callers.vonage import WEBHOOK_KEY_FIELD, ncco, statuses

MAX_AGE_SECONDS = 300.0  # a signed callback older than this is stale
MAX_SKEW_SECONDS = 60.0  # clocks: an iat this far in the future is still accepted
NCCO_CONTENT_TYPE = "application/json"


# --- authenticate ----------------------------------------------------------------


def _claims(token: str, key: str) -> dict[str, Any]:
    failure: CallerError | None = None
    claims: dict[str, Any] = {}
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            options={"require": ["iat", "payload_hash"]},
            leeway=MAX_SKEW_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        failure = WebhookRejected("Vonage's signature has expired (exp)")
    except jwt.ImmatureSignatureError:
        failure = WebhookRejected("Vonage's signature is issued in the future (iat/nbf)")
    except jwt.MissingRequiredClaimError as exc:
        failure = WebhookRejected(f"Vonage's signature JWT has no {exc.claim} claim")
    except jwt.InvalidAlgorithmError:
        failure = WebhookRejected("the Authorization JWT is not signed with HS256")
    except jwt.InvalidSignatureError:
        failure = WebhookRejected(
            "the signature does not match: not signed with this credential's signature secret"
        )
    except jwt.InvalidTokenError:
        failure = WebhookRejected("the Authorization JWT is malformed or has invalid claims")
    if failure is not None:
        raise failure  # outside the except blocks: nothing chains back to the token
    return claims


def _payload_hashes(request: WebhookRequest) -> list[str]:
    """What Vonage may have hashed: the body as sent, or its compact JSON (GET: the query)."""
    if request.body:
        hashes = [hashlib.sha256(request.body).hexdigest()]
        try:
            parsed = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return hashes
        compact = orjson.dumps(parsed)
        if compact != request.body:
            hashes.append(hashlib.sha256(compact).hexdigest())
        return hashes
    return [hashlib.sha256(orjson.dumps(dict(request.form))).hexdigest()]


def _check_claims(claims: Mapping[str, Any], options: Mapping[str, str], request: WebhookRequest) -> None:
    issued = claims.get("iat")
    if not isinstance(issued, int | float) or isinstance(issued, bool):
        raise WebhookRejected("Vonage's signature JWT has no numeric iat claim")
    age = time.time() - float(issued)
    if age > MAX_AGE_SECONDS:
        raise WebhookRejected(
            f"the signature is stale: issued {age:.0f} s ago (at most {MAX_AGE_SECONDS:.0f})"
        )
    claimed = claims.get("payload_hash")
    if not isinstance(claimed, str) or not claimed:
        raise WebhookRejected("Vonage's signature JWT has no payload_hash claim")
    claimed_bytes = claimed.lower().encode()
    if not any(hmac.compare_digest(claimed_bytes, found.encode()) for found in _payload_hashes(request)):
        raise WebhookRejected("payload_hash does not match the body: it was changed after Vonage signed it")
    for claim, option in (("application_id", "application_id"), ("api_key", "api_key")):
        signed_for, configured = claims.get(claim), options.get(option)
        if isinstance(signed_for, str) and signed_for and configured and signed_for != configured:
            raise WebhookRejected(f"the signature is for another Vonage {option.replace('_id', '')}")


# --- parse ------------------------------------------------------------------------


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def _redacted(value: str) -> str:
    """A ws(s):// URI without its path and query (the hub's per-call token is in them)."""
    if value.startswith(("ws://", "wss://")):
        scheme, _, rest = value.partition("://")
        host = rest.split("/", 1)[0].split("?", 1)[0]
        return f"{scheme}://{host}/…"
    return value


def _event_body(request: WebhookRequest) -> dict[str, Any]:
    if request.body:
        try:
            data = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise InvalidRequest("the Vonage event body is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the Vonage event body is not a JSON object")
        return data
    if request.form:
        return dict(request.form)
    raise InvalidRequest("the Vonage event is empty (no JSON body, no query)")


def _kind(data: Mapping[str, Any]) -> str:
    """The provider's status word, or what an event without one is (record, input, ...)."""
    status = data.get("status")
    if isinstance(status, str) and status:
        return status
    if "recording_url" in data:
        return "record"
    if "dtmf" in data or "speech" in data:
        return "input"
    if "conversation_uuid_to" in data:
        return "transfer"
    if "reason" in data:
        return "error"
    return ""


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _seconds(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _event(data: Mapping[str, Any], request: WebhookRequest) -> CallEvent:
    call_id = _text(data.get("uuid") or data.get("call_uuid"))
    raw_status = _kind(data)
    status = statuses.call_status(raw_status)
    to = _text(data.get("to"))
    if to.startswith(("ws://", "wss://")):
        status = None  # the websocket leg's own progress, not the call's
    answered_by = raw_status if raw_status in statuses.ANSWERED_BY else None
    error = ""
    if raw_status == "error":
        error = _text(data.get("reason"))
    elif status is not None and status.terminal and raw_status != "completed":
        error = _text(data.get("detail") or data.get("reason"))
    timestamp = _text(data.get("timestamp"))
    stamp = timestamp or "sha256-" + hashlib.sha256(request.body or orjson.dumps(dict(data))).hexdigest()[:32]
    return CallEvent(
        provider_call_id=call_id,
        status=status,
        raw_status=raw_status,
        event_id=f"{call_id}:{raw_status}:{stamp}",
        occurred_at=_when(timestamp),
        duration_seconds=_seconds(data.get("duration")) if raw_status == "completed" else None,
        answered_by=answered_by,
        error=error,
        raw={str(name): _redacted(_text(value)) for name, value in data.items()},
    )


class VonageWebhooks:
    def authenticate(self, secret: SecretFields, options: Mapping[str, str], request: WebhookRequest) -> None:
        key = secret.get(WEBHOOK_KEY_FIELD)
        if not key:
            raise WebhookRejected(
                "secret.signature_secret is not set: Vonage's signed webhooks cannot be checked without it"
            )
        header = request.headers.get("authorization", "").strip()
        if not header:
            raise WebhookRejected(
                "no Authorization header: the request is not signed by Vonage "
                "(signed callbacks must be enabled on the application)"
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WebhookRejected("the Authorization header is not a Bearer JWT")
        _check_claims(_claims(token.strip(), key), options, request)

    def authenticate_media(
        self, secret: SecretFields, options: Mapping[str, str], request: WebhookRequest
    ) -> None:
        # The hub's NCCO asks Vonage for no signature on the websocket it opens (its
        # headers are the call's own parameters): the per-call URL token, checked by the
        # hub before this is called, is its authentication.
        return

    def parse_events(self, options: Mapping[str, str], request: WebhookRequest) -> list[CallEvent]:
        return [_event(_event_body(request), request)]

    def answer(self, options: Mapping[str, str], request: WebhookRequest, action: CallAction) -> Instructions:
        # The call's metadata is not known here (the hub's action only): the websocket
        # headers are then the action's stream_parameters alone.
        return Instructions(content_type=NCCO_CONTENT_TYPE, body=orjson.dumps(ncco.build(action, options)))


CALLER = VonageWebhooks()
