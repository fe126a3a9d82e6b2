"""TELEPHONY: place a call (Calls/connect), read it (Call details), find calls (Bulk Call
Details); Exotel cannot hang up a live call (below).

Everything goes over the REST wire in wire.py (no SDK exists). Placing a call is
POST /v1/Accounts/<sid>/Calls/connect.json, form-encoded:

- ``From`` is the number Exotel dials (the request's `to`: Connect dials From first),
  ``CallerId`` the ExoPhone shown (the request's `from_`);
- MEDIA_STREAM, without options.voicebot_app_id: Exotel's Connect Voice AI,
  ``StreamUrl`` = the hub's media URL (custom parameters and ``sample-rate`` in its
  query) and ``StreamType=bidirectional``: Exotel opens the websocket when the call is
  answered. With options.voicebot_app_id: ``Url`` = that flow
  (http://my.exotel.com/<sid>/exoml/start_voice/<app_id>), whose Voicebot applet fetches
  the websocket URL from the hub's fixed answer URL, which finds the call through
  ``CustomField`` (webhooks.call_reference, webhooks.answer);
- SAY: ``Url`` = options.greeting_app_id's flow, whose Greeting applet fetches the text
  from the same answer URL and speaks it with Exotel's TTS, in the voice and language set
  in the applet (Exotel takes neither per call, so a request naming one is refused);
- PROVIDER_INSTRUCTIONS: an App Bazaar flow (its URL, or its app id) passed as ``Url``;
- ``CustomField`` = ``<hub_call_id>.<call_token>`` (at most 128 characters): what the
  answer URL needs to find the call, and Exotel's own metadata field, echoed in callbacks;
- ``StatusCallback`` with ``StatusCallbackEvents[]`` ringing, answered, terminal and
  ``StatusCallbackContentType=application/json`` (webhooks.py reads them);
- ``TimeOut`` (ring timeout) and ``TimeLimit`` (at most 14400 s). Exotel has no
  answering-machine detection on this API (machine_detection=detect is refused) and no
  idempotency key: hub_call_id travels in CustomField only, so a retried place may dial
  twice (the hub must not retry a place whose outcome is unknown).

Metadata goes into the media stream's custom parameters (at most 3 with the action's
stream parameters): Exotel hands them back in the websocket's start message. A call
that opens no stream (say, a flow of your own) has nowhere to carry them, and is refused
with metadata rather than dropping it.

find_calls is the Bulk Call Details API: GET /v1/Accounts/<sid>/Calls.json with
``From`` (the number dialled first: the request's `to`) and ``DateCreated=gte:<t>;lte:<t>``
(Exotel's time, IST), one page of FIND_PAGE; the CallerId is checked here too.

Exotel's API cannot end a live call: the Calls API the hub places calls with (v1
Calls/connect, Call details) has no operation that ends or updates a call, and the leg
hangup action Exotel documents (POST /v2/accounts/<sid>/legs/<leg_sid>/actions/hangup)
belongs to its separate Legs / Programmable Voice API, for legs created there (its
calls are placed and driven over gRPC events, not this API). A Voicebot stream ends
when the bot closes its websocket, but the hub's CallMedia has no message for an agent
to ask that. So hangup reads the call, returns when it has ended, and raises
NotSupported while it is live, saying what bounds it instead: the call's time limit
(TimeLimit, which Exotel enforces) and its flow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from yarl import URL

from callers.base import InvalidRequest, NotSupported, ProviderUnavailable, SecretFields
from callers.exotel import wire
from callers.types import (
    CallAction,
    CallActionKind,
    CallState,
    CallStatus,
    FindCallsRequest,
    HangupRequest,
    MachineDetection,
    PlaceCallRequest,
    PlaceCallResponse,
)

MAX_TIME_LIMIT_SECONDS = 14400
FIND_PAGE = 100  # the Bulk Call Details API's largest page
MAX_CUSTOM_FIELD_CHARS = 128
# Exotel sends ringing, answered and terminal callbacks (developer.exotel.com AgentStream
# guide, Connect Voice AI API); the flow pages document answered and terminal.
STATUS_EVENTS = ("ringing", "answered", "terminal")
_APP_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_FLOW_PATH = re.compile(r"^/[^/]+/exoml/start_voice/[^/]+/?$")


def custom_field(request: PlaceCallRequest) -> str:
    """``<hub_call_id>.<call_token>``: what webhooks.call_reference reads back."""
    if not request.hub_call_id:
        raise InvalidRequest("hub_call_id is required")
    if "." in request.call_token:
        raise InvalidRequest("call_token must not contain '.' (it is sent as <hub_call_id>.<call_token>)")
    value = f"{request.hub_call_id}.{request.call_token}" if request.call_token else request.hub_call_id
    if len(value) > MAX_CUSTOM_FIELD_CHARS:
        raise InvalidRequest(
            f"hub_call_id and call_token make a CustomField of {len(value)} characters; "
            f"Exotel takes at most {MAX_CUSTOM_FIELD_CHARS}"
        )
    return value


def _require_token(request: PlaceCallRequest) -> None:
    if not request.call_token:
        raise InvalidRequest(
            "call_token is required: Exotel's flow asks the hub's answer URL for this call "
            "through CustomField <hub_call_id>.<call_token>"
        )


def _app_flow(options: Mapping[str, str], name: str, purpose: str) -> str:
    app_id = wire.option(options, name)
    if not app_id:
        raise InvalidRequest(f"options.{name} is required to {purpose}")
    if not _APP_ID.match(app_id):
        raise InvalidRequest(f"options.{name} must be an App Bazaar app id (letters, digits, - and _)")
    return wire.flow_url(options, app_id)


def _provider_flow(options: Mapping[str, str], instructions: str) -> str:
    """PROVIDER_INSTRUCTIONS: an App Bazaar app id, or a flow URL (checked for its kind only)."""
    given = instructions.strip()
    if _APP_ID.match(given):
        return wire.flow_url(options, given)
    try:
        url = URL(given)
    except ValueError:
        url = URL()
    if url.scheme in ("http", "https") and url.host and _FLOW_PATH.match(url.path):
        return given
    raise InvalidRequest(
        "exotel instructions must be an App Bazaar flow: its app id, or its URL "
        "(http://my.exotel.com/<account_sid>/exoml/start_voice/<app_id>)"
    )


def _action_fields(options: Mapping[str, str], request: PlaceCallRequest) -> list[tuple[str, str]]:
    action: CallAction = request.action
    if action.kind is CallActionKind.MEDIA_STREAM:
        parameters = wire.custom_parameters(action.stream_parameters, request.metadata)
        if wire.option(options, "voicebot_app_id"):
            # The flow's Voicebot applet asks the hub for the URL (webhooks.answer), which
            # is handed the action but not the call's metadata: nothing could carry it.
            if request.metadata:
                raise InvalidRequest(
                    "with options.voicebot_app_id the stream's parameters come from the action "
                    "alone (Exotel's flow asks for them later): put them in action.stream_parameters"
                )
            _require_token(request)
            # Checked now, so that a bad URL fails here rather than when the call is answered.
            wire.stream_url(options, action.media_url, parameters)
            flow = _app_flow(options, "voicebot_app_id", "stream through a flow")
            return [("Url", flow), ("CallType", "trans")]
        stream = wire.stream_url(options, action.media_url, parameters)
        if len(stream) > wire.MAX_STREAM_URL_CHARS:
            raise InvalidRequest(
                f"the media URL with its parameters is {len(stream)} characters; Exotel's StreamUrl "
                f"takes at most {wire.MAX_STREAM_URL_CHARS}"
            )
        return [("StreamUrl", stream), ("StreamType", "bidirectional")]
    if request.metadata:
        raise InvalidRequest(
            "exotel carries metadata only as a media stream's custom parameters; "
            f"a {action.kind.value} call has none: send it without metadata"
        )
    if action.kind is CallActionKind.SAY:
        if not action.text.strip():
            raise InvalidRequest("action.text is required to say something")
        if action.voice or action.language:
            raise InvalidRequest(
                "exotel speaks with the voice and language set in the greeting flow's applet; "
                "leave action.voice and action.language empty"
            )
        _require_token(request)
        return [("Url", _app_flow(options, "greeting_app_id", "speak text")), ("CallType", "trans")]
    if action.kind is CallActionKind.PROVIDER_INSTRUCTIONS:
        return [("Url", _provider_flow(options, action.instructions)), ("CallType", "trans")]
    raise InvalidRequest(f"unknown call action {action.kind!r}")


def connect_form(options: Mapping[str, str], request: PlaceCallRequest) -> list[tuple[str, str]]:
    """The Calls/connect form for a request (validated before anything is sent)."""
    if request.machine_detection is MachineDetection.DETECT:
        raise InvalidRequest(
            "exotel has no answering-machine detection on its call API: machine_detection must be off"
        )
    form = [("From", request.to), ("CallerId", request.from_)]
    form += _action_fields(options, request)
    form.append(("CustomField", custom_field(request)))
    if request.status_callback_url:
        form.append(("StatusCallback", request.status_callback_url))
        form.append(("StatusCallbackContentType", "application/json"))
        form += [(f"StatusCallbackEvents[{i}]", event) for i, event in enumerate(STATUS_EVENTS)]
    if request.ring_timeout_seconds is not None:
        if request.ring_timeout_seconds <= 0:
            raise InvalidRequest("ring_timeout_seconds must be positive")
        form.append(("TimeOut", str(request.ring_timeout_seconds)))
    if request.time_limit_seconds is not None:
        if not 0 < request.time_limit_seconds <= MAX_TIME_LIMIT_SECONDS:
            raise InvalidRequest(f"time_limit_seconds must be 1 to {MAX_TIME_LIMIT_SECONDS} (Exotel's limit)")
        form.append(("TimeLimit", str(request.time_limit_seconds)))
    return form


def _call_id(provider_call_id: str) -> str:
    if not provider_call_id or "/" in provider_call_id or provider_call_id.strip() != provider_call_id:
        raise InvalidRequest("provider_call_id must be an Exotel CallSid")
    return provider_call_id


def _answered_by(value: object) -> str | None:
    said = wire.text(value).strip().lower()
    return said if said in ("human", "machine") else None


def _exotel_time(moment: datetime) -> str:
    return moment.astimezone(wire.EXOTEL_TIME).strftime("%Y-%m-%d %H:%M:%S")


def _state(call: Mapping[str, object]) -> CallState:
    """A Call object (call details, or a row of the bulk list) as the hub's CallState."""
    raw = wire.text(wire.field(call, "Status"))
    status = wire.status_of(raw)
    if status is None:
        raise ProviderUnavailable(f"Exotel reported call status {raw!r}, which the hub does not know")
    return CallState(
        provider_call_id=wire.text(wire.field(call, "Sid")),
        status=status,
        raw_status=raw,
        duration_seconds=wire.seconds(wire.field(call, "Duration")),
        answered_by=_answered_by(wire.field(call, "AnsweredBy")),
        created_at=wire.parse_time(wire.field(call, "DateCreated")),
    )


class ExotelTelephony:
    async def place_call(
        self, secret: SecretFields, options: Mapping[str, str], request: PlaceCallRequest, *, timeout: float
    ) -> PlaceCallResponse:
        where = wire.target(options)
        form = connect_form(options, request)
        data = await wire.request(
            "POST", where, where.url("Calls", "connect.json"), secret, options, timeout=timeout, form=form
        )
        call = wire.call_object(data, where.host)
        raw = wire.text(wire.field(call, "Status"))
        status = wire.status_of(raw)
        if status is CallStatus.IN_PROGRESS:
            # Connect answers "in-progress" at once, while the call is still being set up
            # ("Returns a Call object immediately while setup continues"): it has not been
            # answered; the answered callback says when it is.
            status = CallStatus.QUEUED
        sid = wire.text(wire.field(call, "Sid"))
        return PlaceCallResponse(provider_call_id=sid, raw_status=raw, status=status)

    async def get_call(
        self, secret: SecretFields, options: Mapping[str, str], provider_call_id: str, *, timeout: float
    ) -> CallState:
        where = wire.target(options)
        url = where.url("Calls", f"{_call_id(provider_call_id)}.json", query={"details": "true"})
        data = await wire.request("GET", where, url, secret, options, timeout=timeout)
        return _state(wire.call_object(data, where.host))

    async def find_calls(
        self, secret: SecretFields, options: Mapping[str, str], request: FindCallsRequest, *, timeout: float
    ) -> list[CallState]:
        where = wire.target(options)
        window = f"gte:{_exotel_time(request.created_after)};lte:{_exotel_time(request.created_before)}"
        query = {"From": request.to, "DateCreated": window, "PageSize": str(FIND_PAGE)}
        data = await wire.request(
            "GET", where, where.url("Calls.json", query=query), secret, options, timeout=timeout
        )
        calls = data.get("Calls") if isinstance(data, dict) else None
        if not isinstance(calls, list):
            raise ProviderUnavailable(f"unexpected answer from {where.host}: the call list has no Calls")
        found = []
        for call in calls:
            if not isinstance(call, dict):
                continue
            if wire.text(wire.field(call, "From")) != request.to or wire.text(
                wire.field(call, "PhoneNumberSid")
            ) not in (
                "",
                request.from_,
            ):
                continue
            found.append(_state(call))
        return found

    async def hangup(
        self, secret: SecretFields, options: Mapping[str, str], request: HangupRequest, *, timeout: float
    ) -> None:
        state = await self.get_call(secret, options, request.provider_call_id, timeout=timeout)
        if state.status.terminal:
            return
        raise NotSupported(
            "exotel",
            f"hangup of a live call (this one is {state.raw_status}): Exotel's API cannot end a call "
            "(its Calls API, which places the hub's calls, has no operation to end or update one; "
            "the leg hangup of Exotel's Legs API applies only to legs created through that API). "
            "Bound a call's length with time_limit when placing it (Exotel cuts the call then), "
            "or end it within its flow (a Hangup applet); it ends when the other party hangs up",
        )


CALLER = ExotelTelephony()
