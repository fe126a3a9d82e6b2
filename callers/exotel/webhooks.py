"""CALL_EVENTS: Exotel's status callbacks, and the answers its flows ask the hub for.

Authentication. Exotel signs nothing it sends: no signature header, no HMAC over the
body, no JWT (developer.exotel.com/docs/references/authentication, "Webhook Security":
HTTPS, Exotel's source IP ranges, payload validation). What authenticates a callback is
the unguessable per-call token in the path of the URL the hub gave Exotel, which the hub
checks before asking this module anything; so `authenticate` returns at once, and a
forged, replayed or tampered callback sent to the right URL cannot be told from a real
one here (replays are still applied once: see event_id). Restricting the hub's callback
routes to Exotel's IP ranges, at the ingress, is the only further defence Exotel offers.

Status callbacks (developer.exotel.com/docs/voice-v1/api-reference/status-callback,
/docs/references/webhooks): a POST per subscribed event. telephony.py asks for
``StatusCallbackContentType=application/json``, so the body is JSON; a form-encoded body
(Exotel's default content type) is read the same. Fields: ``CallSid``, ``Status``
(ringing, in-progress, completed, failed, busy, no-answer, canceled), ``EventType``
(ringing, answered, terminal; absent from the default terminal-only payload),
``DateUpdated``, ``DateCreated``, ``StartTime``, ``EndTime`` (``YYYY-MM-DD HH:mm:ss``,
IST), ``ConversationDuration`` (seconds both sides were connected), ``From``, ``To``,
``PhoneNumberSid``, ``Direction``, ``CustomField``, ``RecordingUrl`` and ``Legs``
([{OnCallDuration, Status, AnsweredBy}]). An event's identity is
``<CallSid>:<Status>:<EventType>:<DateUpdated>``: Exotel's retries (up to 2, after a
non-2xx answer or 15 s without one) and replays repeat it, a new event changes it.

Answers. Exotel fetches two things from the hub's one fixed answer URL,
``{HUB_PUBLIC_URL}/telephony/v1/exotel/answer`` (configured once in the flows' applets):
the Voicebot applet's websocket URL (answered ``{"url": "wss://..."}``, application/json)
and the Greeting applet's text (answered as the text, Content-Type exactly ``text/plain``;
Exotel first sends a HEAD, which must get the same headers). Both requests are GETs whose
query carries the call (``CallSid``, ``From``, ``To``, ``CustomField``, ...); the URL has
no call id in its path, so `call_reference` reads the call's ``<hub_call_id>.<token>``
from CustomField (telephony.py put it there) for the hub to check and look the call up.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import orjson

from callers.base import InvalidRequest, SecretFields, WebhookRejected
from callers.exotel import wire
from callers.types import CallAction, CallActionKind, CallEvent, Instructions, WebhookRequest

REFERENCE_FIELD = "CustomField"


def _query(url: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    except ValueError:
        return {}


def _is_json(request: WebhookRequest) -> bool:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or (not kind and request.body.lstrip().startswith(b"{"))


def _fields(request: WebhookRequest) -> dict[str, object]:
    """The request's fields: its JSON body, its form, or (a GET or HEAD) its query."""
    if request.body and _is_json(request):
        try:
            data = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise InvalidRequest("exotel callback: the JSON body does not parse") from None
        if not isinstance(data, dict):
            raise InvalidRequest("exotel callback: the JSON body is not an object")
        return data
    if request.form:
        return dict(request.form)
    return dict(_query(request.url))


def call_reference(request: WebhookRequest) -> tuple[str, str]:
    """(hub_call_id, token) of the call a request from Exotel is about, from its CustomField.

    For the fixed answer URL, whose path names no call. WebhookRejected when there is no
    reference of the form <hub_call_id>.<token>: the hub then answers 403.
    """
    value = wire.text(_fields(request).get(REFERENCE_FIELD)).strip()
    hub_call_id, dot, token = value.rpartition(".")
    if not dot or not hub_call_id or not token:
        raise WebhookRejected(
            "the request from Exotel carries no call reference (CustomField <hub_call_id>.<token>)"
        )
    return hub_call_id, token


def _raw(fields: Mapping[str, object]) -> dict[str, str]:
    """The fields as strings, the call token dropped from CustomField."""
    raw = {name: wire.text(value) for name, value in fields.items()}
    if REFERENCE_FIELD in raw:
        raw[REFERENCE_FIELD] = raw[REFERENCE_FIELD].rpartition(".")[0] or raw[REFERENCE_FIELD]
    return raw


def _answered_by(fields: Mapping[str, object]) -> str | None:
    """ "human" or "machine" when a leg says so (Exotel writes HUMAN, MACHINE or NA)."""
    legs = fields.get("Legs")
    if isinstance(legs, str) and legs.strip().startswith("["):
        try:
            legs = orjson.loads(legs)
        except orjson.JSONDecodeError:
            legs = None
    candidates: list[object] = [fields.get("AnsweredBy")]
    if isinstance(legs, list):
        candidates += [leg.get("AnsweredBy") for leg in legs if isinstance(leg, dict)]
    for candidate in candidates:
        said = wire.text(candidate).strip().lower()
        if said in ("human", "machine"):
            return said
    return None


class ExotelWebhooks:
    def authenticate(self, secret: SecretFields, options: Mapping[str, str], request: WebhookRequest) -> None:
        # Exotel signs nothing (see the module docstring): the per-call token in the URL
        # path, checked by the hub before this is called, is the whole authentication.
        return

    def authenticate_media(
        self, secret: SecretFields, options: Mapping[str, str], request: WebhookRequest
    ) -> None:
        # Exotel signs no websocket either (its only schemes are IP allow-listing and Basic
        # credentials in the URL): the per-call URL token is the authentication.
        return

    def parse_events(self, options: Mapping[str, str], request: WebhookRequest) -> list[CallEvent]:
        fields = _fields(request)
        call_sid = wire.text(fields.get("CallSid")).strip()
        if not call_sid:
            raise InvalidRequest("exotel callback: CallSid is missing")
        raw_status = wire.text(fields.get("Status")).strip()
        if not raw_status:
            raise InvalidRequest("exotel callback: Status is missing")
        event_type = wire.text(fields.get("EventType")).strip() or "terminal"
        updated = wire.text(fields.get("DateUpdated")).strip()
        occurred: datetime | None = wire.parse_time(updated)
        if updated and occurred is None:
            raise InvalidRequest(f"exotel callback: DateUpdated {updated!r} is not YYYY-MM-DD HH:mm:ss")
        status = wire.status_of(raw_status)
        duration = None
        if status is not None and status.terminal:
            duration = wire.seconds(fields.get("ConversationDuration"))
            if duration is None:
                duration = wire.seconds(fields.get("Duration"))
        event = CallEvent(
            provider_call_id=call_sid,
            status=status,
            raw_status=raw_status,
            event_id=f"{call_sid}:{raw_status}:{event_type}:{updated}",
            occurred_at=occurred,
            duration_seconds=duration,
            answered_by=_answered_by(fields),
            raw=_raw(fields),
        )
        return [event]

    def answer(self, options: Mapping[str, str], request: WebhookRequest, action: CallAction) -> Instructions:
        if action.kind is CallActionKind.MEDIA_STREAM:
            parameters = wire.custom_parameters(action.stream_parameters, {})
            url = wire.stream_url(options, action.media_url, parameters)
            return Instructions("application/json", orjson.dumps({"url": url}))
        if action.kind is CallActionKind.SAY:
            if not action.text.strip():
                raise InvalidRequest("action.text is required to say something")
            return Instructions("text/plain", action.text.encode("utf-8"))
        raise InvalidRequest(
            f"exotel asked the hub for instructions, but the call's action is {action.kind.value}: "
            "only media_stream (a Voicebot applet) and say (a Greeting applet) are answered"
        )


CALLER = ExotelWebhooks()
