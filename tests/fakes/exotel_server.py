"""A real HTTP server on 127.0.0.1 that speaks Exotel's Voice v1 REST API, calls back as
Exotel does, and plays Exotel's side of the AgentStream (Voicebot) media websocket.

The wire is Exotel's (sources in callers/exotel/wire.py, webhooks.py, media.py):

- every request needs HTTP Basic ``<api_key>:<api_token>``; a wrong pair is answered 401
  ``{"RestException": {"Status": 401, "Message": "Authentication failed. Invalid API Key
  or Token.", "Code": "UNAUTHORIZED"}}``, an account SID in the path that is not the
  credential's 401 ``INVALID_ACCOUNT_SID``; paths take ``.json`` (else 404 here: Exotel
  would answer XML);
- POST /v1/Accounts/<sid>/Calls/connect.json, form fields as Exotel takes them: ``From``
  (the number dialled: must look like a phone number, else Exotel's 400 invalid number),
  ``CallerId`` (the ExoPhone), exactly one of ``Url`` (an App Bazaar flow,
  http(s)://my[.in].exotel.com/<sid>/exoml/start_voice/<app_id>, of a flow in `flows`) or
  ``StreamUrl`` (ws:// or wss://, at most 600 characters) with
  ``StreamType=bidirectional``, ``CallType``, ``TimeLimit`` (1..14400), ``TimeOut``,
  ``CustomField`` (at most 128), ``StatusCallback``, ``StatusCallbackEvents[i]`` (ringing,
  answered, terminal), ``StatusCallbackContentType`` (application/json, or form). The
  answer is ``{"Call": {"Sid", "Status": "in-progress", ...}}`` (what Connect answers at
  once, while the call is set up); the call's own state starts at ``queued``;
- GET /v1/Accounts/<sid>/Calls/<CallSid>.json[?details=true]: the call as the fake keeps it
  (Status, Duration, StartTime, EndTime, Details.ConversationDuration...), 404 for an
  unknown CallSid; GET /v1/Accounts/<sid>/Calls.json?PageSize=n[&From=..][&DateCreated=
  gte:<t>;lte:<t>] (Bulk Call Details, its From and DateCreated filters): ``{"Metadata",
  "Calls"}``. Times are Exotel's (IST, the fake's wall clock, a second on per update).

Calling back (`send_status`): the POST Exotel makes to the call's StatusCallback for the
event the status belongs to (RINGING: ringing, IN_PROGRESS: answered, the terminal ones:
terminal), only if the call subscribed to it (a terminal event is always sent, with the
four default fields only when no event was subscribed), as JSON or form per
StatusCallbackContentType; Exotel posts nothing for QUEUED. Exotel signs nothing: its
callbacks are authenticated only by the hub's per-call token in the URL path, so
``forged=True`` posts to the URL with a wrong token in place of the call's (the token is
the part of CustomField after its last "."), and ``unsigned=True`` without that path
segment: what someone without the token can send. ``replay_of=i`` re-sends callback i
of `callbacks` byte for byte.

Media (`answer_media`): the fake answers the call as Exotel's AgentStream does. A
StreamUrl call connects to it; a Voicebot flow call first GETs the flow's applet URL
(`flows[app_id].url`, the hub's answer URL: set `answer_url`) with the call's parameters
(CallSid, CallFrom, CallTo, From, To, Direction, DialWhomNumber, CustomField) and
connects to the ``{"url"}`` it answers. Then ``connected``, ``start`` (the URL's query
minus ``sample-rate`` as ``custom_parameters``, at most 3, ``media_format`` raw at the
asked rate), the audio converted to 16-bit PCM at that rate (callers.audio) in
`chunk_ms` chunks (Exotel streams ~100 ms) at real-time pace or as fast as possible, an
optional ``dtmf``, then, after `receive_seconds`, ``stop`` (reason callended) and a close.
What the hub sends meanwhile is collected (audio with arrival times, marks, clears);
playback is simulated at real time, so a mark is echoed when the audio sent before it has
played, a clear drops what has not played and echoes the marks still pending (Exotel
documents no clear confirmation; Twilio's protocol, which Exotel's mirrors, does this).
Frames Exotel would refuse (not JSON, a wrong stream_sid, a payload that is not a whole
20 ms multiple or over 100 kB) are listed in `violations`. A hub that closes the
websocket ends the call (Exotel has no hang-up API: closing the bot's socket is how a
Voicebot call ends), and the call is added to `hung_up`.
`fetch_greeting` plays a Greeting flow's dynamic text: HEAD then GET of the applet URL,
both of which must answer Content-Type exactly ``text/plain``.

Knobs: ``fail_next(kind, count=1)`` with kind unauthorized, rate_limited (429 with
Retry-After `retry_after`), down (503), bad_number (400) or reset (the connection is
dropped with an RST); `delay` holds every answer. `requests` records what arrived.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import socket
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp import WSMsgType, web

from callers import audio as hub_audio
from callers.types import AudioContainer, AudioEncoding, AudioFormat, CallStatus

ACCOUNT_SID = "hubtest1"
API_KEY = "exo-key-4f1c2a"
API_TOKEN = "exo-token-9d7e5b3a1c"
VOICEBOT_APP_ID = "3101"
GREETING_APP_ID = "3102"
EXOPHONE = "+918047091234"
FAIL_KINDS = ("unauthorized", "rate_limited", "down", "bad_number", "reset")
EVENT_OF = {
    CallStatus.RINGING: "ringing",
    CallStatus.IN_PROGRESS: "answered",
    CallStatus.COMPLETED: "terminal",
    CallStatus.BUSY: "terminal",
    CallStatus.NO_ANSWER: "terminal",
    CallStatus.FAILED: "terminal",
    CallStatus.CANCELED: "terminal",
}
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_FLOW = re.compile(r"^https?://my(\.in)?\.exotel\.com/(?P<sid>[^/]+)/exoml/start_voice/(?P<app>[^/?#]+)/?$")
EXOTEL_ZONE = timezone(timedelta(hours=5, minutes=30), "IST")  # Exotel's clock (no zone on the wire)
MAX_CHUNK_BYTES = 100 * 1024


def rest_exception(status: int, message: str, code: str | int | None = None) -> web.Response:
    body: dict[str, Any] = {"Status": status, "Message": message}
    if code is not None:
        body["Code"] = code
    return web.json_response({"RestException": body}, status=status)


def _created_window(value: str) -> tuple[str, str]:
    """DateCreated=gte:<t>;lte:<t> as (first, last) texts, which order as times."""
    bounds = {"gte": "0000", "lte": "9999"}
    for part in filter(None, value.split(";")):
        operator, _, moment = part.partition(":")
        if operator not in bounds:
            raise ValueError(part)
        datetime.strptime(moment, "%Y-%m-%d %H:%M:%S")
        bounds[operator] = moment
    return bounds["gte"], bounds["lte"]


def _now_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class FakeFlow:
    kind: str  # "voicebot" (its applet asks `url` for the websocket URL) or "greeting"
    url: str = ""  # the applet's dynamic URL: the hub's answer URL


@dataclass
class FakeCall:
    sid: str
    params: list[tuple[str, str]]  # the form as it arrived
    to: str  # Exotel's From: the number dialled
    from_: str  # Exotel's CallerId: the ExoPhone shown
    flow_url: str  # Url ("" for a StreamUrl call)
    app_id: str
    stream_url: str
    custom_field: str
    status_callback_url: str
    status_callback_events: list[str]
    status_callback_content_type: str
    time_limit: int | None
    ring_timeout: int | None
    call_type: str
    created: str
    status: str = "queued"
    updated: str = ""
    start_time: str | None = None
    end_time: str | None = None
    duration: int | None = None
    conversation_duration: int | None = None
    answered_at: float | None = None
    answer_fetches: list[dict[str, str]] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)

    @property
    def media_url(self) -> str:
        """The StreamUrl without its query (the hub's media URL)."""
        parts = urlsplit(self.stream_url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    @property
    def stream_parameters(self) -> dict[str, str]:
        return {k: v for k, v in parse_qsl(urlsplit(self.stream_url).query) if k != "sample-rate"}

    @property
    def answer_url(self) -> str:
        return self.flow_url

    @property
    def token(self) -> str:
        return self.custom_field.rpartition(".")[2] if "." in self.custom_field else ""


@dataclass
class SentCallback:
    url: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class ReceivedAudio:
    data: bytes
    at: float  # time.monotonic()


@dataclass
class MediaResult:
    url: str
    stream_sid: str
    native_format: AudioFormat
    custom_parameters: dict[str, str]
    audio: list[ReceivedAudio] = field(default_factory=list)
    marks_received: list[tuple[str, float]] = field(default_factory=list)
    marks_echoed: list[tuple[str, float]] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    sent_chunks: int = 0
    started_at: float = 0.0  # when start was sent
    audio_done_at: float = 0.0  # when the last audio chunk was sent
    closed_by_hub: bool = False

    @property
    def received(self) -> bytes:
        return b"".join(piece.data for piece in self.audio)


@dataclass
class FakeExotel:
    account_sid: str = ACCOUNT_SID
    api_key: str = API_KEY
    api_token: str = API_TOKEN
    retry_after: str = "7"
    delay: float = 0.0
    late_answer: float = 0.0  # create the call, then hold the answer to its create
    calls: dict[str, FakeCall] = field(default_factory=dict)
    flows: dict[str, FakeFlow] = field(
        default_factory=lambda: {VOICEBOT_APP_ID: FakeFlow("voicebot"), GREETING_APP_ID: FakeFlow("greeting")}
    )
    hung_up: set[str] = field(default_factory=set)
    callbacks: list[SentCallback] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""

    def __post_init__(self) -> None:
        self._failures: list[str] = []
        self._clock = datetime.now(EXOTEL_ZONE).replace(tzinfo=None)

    async def __aenter__(self) -> FakeExotel:
        app = web.Application(middlewares=[self._gate])
        app.router.add_route("*", "/v1/Accounts/{sid}/{tail:.*}", self._route)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.close()
        await self._runner.cleanup()

    # --- what a credential for this fake holds ---------------------------------------

    @property
    def secret(self) -> dict[str, str]:
        return {"api_token": self.api_token}

    @property
    def options(self) -> dict[str, str]:
        """Connect Voice AI for media streams; the greeting flow for say."""
        return {
            "account_sid": self.account_sid,
            "api_key": self.api_key,
            "api_base_url": self.base_url,
            "greeting_app_id": GREETING_APP_ID,
        }

    @property
    def flow_options(self) -> dict[str, str]:
        """Media streams through the Voicebot flow (its applet asks the hub's answer URL)."""
        return {**self.options, "voicebot_app_id": VOICEBOT_APP_ID}

    @property
    def answer_url(self) -> str:
        return self.flows[VOICEBOT_APP_ID].url

    @answer_url.setter
    def answer_url(self, url: str) -> None:
        """The hub's answer URL, as configured in both flows' applets in the console."""
        for flow in self.flows.values():
            flow.url = url

    def fail_next(self, kind: str, count: int = 1) -> None:
        if kind not in FAIL_KINDS:
            raise ValueError(f"unknown failure {kind!r}; one of {FAIL_KINDS}")
        self._failures += [kind] * count

    def _tick(self) -> str:
        # Exotel's wall clock (IST), a second on at least per tick so that updates order.
        now = datetime.now(EXOTEL_ZONE).replace(tzinfo=None)
        self._clock = max(self._clock + timedelta(seconds=1), now)
        return _now_text(self._clock)

    # --- the gate: recording, delay, forced failures, auth ----------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": body,
            }
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        connect = request.method == "POST" and request.path.endswith("/Calls/connect.json")
        if self._failures and (self._failures[0] != "bad_number" or connect):
            kind = self._failures.pop(0)
            if kind == "reset":
                return self._reset(request)
            if kind == "unauthorized":
                return self._unauthorized()
            if kind == "rate_limited":
                throttled = rest_exception(
                    429,
                    f"Rate limit exceeded. Try again in {self.retry_after} seconds.",
                    "RATE_LIMIT_EXCEEDED",
                )
                throttled.headers["Retry-After"] = self.retry_after
                return throttled
            if kind == "down":
                return rest_exception(503, "Service Unavailable. Please try again later.")
            if kind == "bad_number":
                return self._bad_number(dict(parse_qsl(body.decode())).get("From", ""))
        if not self._authorized(request.headers.get("Authorization", "")):
            return self._unauthorized()
        if request.match_info.get("sid") != self.account_sid:
            return rest_exception(
                401, "Account SID is invalid or does not match credentials.", "INVALID_ACCOUNT_SID"
            )
        response: web.StreamResponse = await handler(request)
        return response

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (user, password) == (self.api_key, self.api_token)

    def _unauthorized(self) -> web.Response:
        return rest_exception(401, "Authentication failed. Invalid API Key or Token.", "UNAUTHORIZED")

    def _bad_number(self, number: str) -> web.Response:
        return rest_exception(400, f"From number {number} is not a valid phone number", 34001)

    def _reset(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return web.Response(status=499)

    # --- the API ----------------------------------------------------------------------

    async def _route(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if request.method == "POST" and tail == "Calls/connect.json":
            return await self._connect(request)
        if request.method == "GET" and tail == "Calls.json":
            return self._list(request)
        if request.method == "GET" and tail.startswith("Calls/") and tail.endswith(".json"):
            sid = tail.removeprefix("Calls/").removesuffix(".json")
            call = self.calls.get(sid)
            if call is None or "/" in sid:
                return rest_exception(404, f"Call {sid} not found", 20404)
            return web.json_response(
                {"Call": self._call_json(call, details=request.query.get("details") == "true")}
            )
        return rest_exception(404, "The requested resource was not found")

    async def _connect(self, request: web.Request) -> web.Response:
        form = list(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        single = dict(form)
        number = single.get("From", "")
        if not _PHONE.match(number):
            return self._bad_number(number)
        caller_id = single.get("CallerId", "")
        if not _PHONE.match(caller_id):
            return rest_exception(400, "CallerId is mandatory and must be one of your ExoPhones", 34002)
        flow, stream = single.get("Url", ""), single.get("StreamUrl", "")
        if bool(flow) == bool(stream):
            return rest_exception(400, "Exactly one of Url and StreamUrl is required", 34003)
        app_id = ""
        if flow:
            matched = _FLOW.match(flow)
            if matched is None or matched["sid"] != self.account_sid or matched["app"] not in self.flows:
                return rest_exception(400, f"Url {flow} is not a flow of this account", 34004)
            app_id = matched["app"]
            if "StreamType" in single:
                return rest_exception(400, "StreamType is only taken with StreamUrl", 34005)
        else:
            if not stream.startswith(("ws://", "wss://")) or len(stream) > 600:
                return rest_exception(
                    400, "StreamUrl must be a ws:// or wss:// URL of at most 600 characters"
                )
            if single.get("StreamType") != "bidirectional":
                return rest_exception(400, "StreamType must be bidirectional", 34006)
        limits: dict[str, int | None] = {}
        for name, top in (("TimeLimit", 14400), ("TimeOut", 3600)):
            given = single.get(name)
            if given is None:
                limits[name] = None
                continue
            if not given.isdigit() or not 1 <= int(given) <= top:
                return rest_exception(400, f"{name} must be an integer from 1 to {top}", 34007)
            limits[name] = int(given)
        custom = single.get("CustomField", "")
        if len(custom) > 128:
            return rest_exception(400, "CustomField must be at most 128 characters", 34008)
        events = [v for k, v in form if k.startswith("StatusCallbackEvents")]
        events = [e.strip() for value in events for e in value.split(",") if e.strip()]
        if any(e not in ("ringing", "answered", "terminal") for e in events):
            return rest_exception(
                400, f"StatusCallbackEvents must be ringing, answered or terminal: {events}"
            )
        content_type = single.get("StatusCallbackContentType", "")
        if content_type not in ("", "application/json", "multipart/form-data"):
            return rest_exception(
                400, "StatusCallbackContentType must be application/json or multipart/form-data"
            )
        callback = single.get("StatusCallback", "")
        if callback and not callback.startswith(("http://", "https://")):
            return rest_exception(400, "StatusCallback must be an http(s) URL")
        sid = uuid.uuid4().hex
        created = self._tick()
        call = FakeCall(
            sid=sid,
            params=form,
            to=number,
            from_=caller_id,
            flow_url=flow,
            app_id=app_id,
            stream_url=stream,
            custom_field=custom,
            status_callback_url=callback,
            status_callback_events=events,
            status_callback_content_type=content_type,
            time_limit=limits["TimeLimit"],
            ring_timeout=limits["TimeOut"],
            call_type=single.get("CallType", ""),
            created=created,
            updated=created,
        )
        self.calls[sid] = call
        if self.late_answer:
            # Accepted (the call exists and goes on), but its answer comes too late.
            await asyncio.sleep(self.late_answer)
        answer = self._call_json(call, details=False)
        answer["Status"] = "in-progress"  # Connect answers at once, while the call is set up
        return web.json_response({"Call": answer})

    def _call_json(self, call: FakeCall, *, details: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Sid": call.sid,
            "ParentCallSid": None,
            "DateCreated": call.created,
            "DateUpdated": call.updated,
            "AccountSid": self.account_sid,
            "To": call.from_ if call.flow_url else None,
            "From": call.to,
            "PhoneNumberSid": call.from_,
            "Status": call.status,
            "StartTime": call.start_time or call.created,
            "EndTime": call.end_time,
            "Duration": None if call.duration is None else str(call.duration),
            "Price": None if call.duration is None else "0.500",
            "Direction": "outbound-api",
            "AnsweredBy": None,
            "ForwardedFrom": None,
            "CallerName": None,
            "Uri": f"/v1/Accounts/{self.account_sid}/Calls/{call.sid}.json",
            "RecordingUrl": None,
        }
        if details:
            body["Details"] = {
                "ConversationDuration": call.conversation_duration or 0,
                "Leg1Status": call.status,
                "Leg2Status": call.status,
                "Legs": [{"Leg": {"Id": 1, "OnCallDuration": call.duration or 0}}],
            }
        return body

    def _list(self, request: web.Request) -> web.Response:
        size = request.query.get("PageSize", "50")
        if not size.isdigit() or not 1 <= int(size) <= 100:
            return rest_exception(400, "PageSize must be from 1 to 100")
        # The Bulk Call Details filters the hub uses: From (the number dialled first), and
        # DateCreated=gte:<t>;lte:<t> in Exotel's time.
        try:
            window = _created_window(request.query.get("DateCreated", ""))
        except ValueError:
            return rest_exception(400, "DateCreated must be gte:YYYY-MM-DD HH:mm:ss;lte:YYYY-MM-DD HH:mm:ss")
        number = request.query.get("From")
        calls = [
            c
            for c in self.calls.values()
            if (number is None or c.to == number) and window[0] <= c.created <= window[1]
        ][-int(size) :]
        base = f"/v1/Accounts/{self.account_sid}/Calls.json"
        metadata = {
            "Total": len(self.calls),
            "PageSize": int(size),
            "FirstPageUri": f"{base}?PageSize={size}",
            "PrevPageUri": None,
            "NextPageUri": None,
        }
        return web.json_response(
            {"Metadata": metadata, "Calls": [self._call_json(c, details=False) for c in calls]}
        )

    # --- status callbacks -------------------------------------------------------------

    def _advance(self, call: FakeCall, status: CallStatus, extra: Mapping[str, Any]) -> None:
        """The call's progression, as Exotel's call details then report it."""
        call.status = str(status)
        call.updated = self._tick()
        if status is CallStatus.IN_PROGRESS and call.answered_at is None:
            call.answered_at = time.monotonic()
            call.start_time = call.updated
        if status.terminal:
            call.end_time = call.updated
            talked = extra.get("ConversationDuration")
            if talked is None:
                talked = int(time.monotonic() - call.answered_at) if call.answered_at is not None else 0
            call.conversation_duration = int(talked)
            call.duration = int(extra.get("Duration", call.conversation_duration))

    def settle(self, provider_call_id: str, status: CallStatus) -> None:
        """The call moves on at Exotel and every callback of it is lost: only its call
        details say so."""
        self._advance(self.calls[provider_call_id], status, {})

    def _payload(self, call: FakeCall, event: str, extra: Mapping[str, Any]) -> dict[str, Any]:
        if not call.status_callback_events:
            # No event subscribed: the terminal callback with the four default fields.
            payload: dict[str, Any] = {
                "CallSid": call.sid,
                "DateUpdated": call.updated,
                "Status": call.status,
                "RecordingUrl": None,
            }
        else:
            terminal = event == "terminal"
            payload = {
                "CallSid": call.sid,
                "EventType": event,
                "DateCreated": call.created,
                "DateUpdated": call.updated,
                "To": call.from_ if call.flow_url else None,
                "From": call.to,
                "PhoneNumberSid": call.from_,
                "StartTime": call.start_time or call.created,
                "EndTime": call.end_time if terminal else None,
                "Status": call.status,
                "ConversationDuration": call.conversation_duration if terminal else 0,
                "Direction": "outbound-api",
                "CustomField": call.custom_field,
                "RecordingUrl": None,
                "Legs": [
                    {
                        "OnCallDuration": call.duration if terminal else 0,
                        "Status": call.status,
                        "AnsweredBy": "NA",
                    }
                ],
            }
        payload.update(extra)
        return payload

    def _target(self, call: FakeCall, *, forged: bool, unsigned: bool) -> str:
        url = call.status_callback_url
        if not (forged or unsigned):
            return url
        token = call.token
        parts = urlsplit(url)
        if not token or f"/{token}" not in parts.path:
            raise ValueError("the call's CustomField names no token that its StatusCallback path holds")
        replacement = (
            "" if unsigned else "/" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        )
        path = parts.path.replace(f"/{token}", replacement, 1)
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    async def send_status(
        self,
        provider_call_id: str,
        status: CallStatus,
        *,
        replay_of: int | None = None,
        forged: bool = False,
        unsigned: bool = False,
        **extra: Any,
    ) -> int:
        """POST the status callback Exotel sends for `status`; the HTTP status the hub answered.

        `extra` overrides or adds payload fields (e.g. ``ConversationDuration=42``,
        ``Legs=[{"AnsweredBy": "HUMAN", ...}]``)."""
        if replay_of is not None:
            sent = self.callbacks[replay_of]
            return await self._post(sent.url, sent.headers, sent.body)
        call = self.calls[provider_call_id]
        event = EVENT_OF.get(status)
        if event is None:
            raise ValueError(f"Exotel posts no status callback for {status}")
        if not call.status_callback_url:
            raise LookupError(f"call {provider_call_id} has no StatusCallback")
        if call.status_callback_events and event not in call.status_callback_events:
            raise LookupError(f"call {provider_call_id} did not subscribe to {event} events")
        if not call.status_callback_events and event != "terminal":
            raise LookupError(f"call {provider_call_id} subscribed to no events: only terminal is sent")
        self._advance(call, status, extra)
        payload = self._payload(call, event, extra)
        if call.status_callback_content_type == "application/json":
            headers = {"Content-Type": "application/json"}
            body = json.dumps(payload).encode()
        else:
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            flat = {
                k: (
                    ""
                    if v is None
                    else v
                    if isinstance(v, str)
                    else json.dumps(v)
                    if isinstance(v, list)
                    else str(v)
                )
                for k, v in payload.items()
            }
            body = urlencode(flat).encode()
        url = self._target(call, forged=forged, unsigned=unsigned)
        return await self._post(url, headers, body)

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> int:
        async with self._client.post(url, data=body, headers=headers, allow_redirects=False) as response:
            await response.read()
            self.callbacks.append(SentCallback(url, dict(headers), body, response.status))
            return response.status

    # --- the flows' dynamic URLs ------------------------------------------------------

    def _applet_query(self, call: FakeCall) -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "CallFrom": call.to,
            "CallTo": call.from_,
            "From": call.to,
            "To": call.from_,
            "Direction": "outbound-api",
            "DialWhomNumber": "",
            "CustomField": call.custom_field,
        }

    def _flow_of(self, call: FakeCall, kind: str) -> FakeFlow:
        flow = self.flows.get(call.app_id)
        if flow is None or flow.kind != kind:
            raise ValueError(f"call {call.sid} runs no {kind} flow")
        if not flow.url:
            raise ValueError(f"the {kind} flow's applet has no URL: set fake.answer_url")
        return flow

    async def fetch_greeting(self, provider_call_id: str) -> str:
        """The Greeting applet's dynamic text: HEAD, then GET, each must be text/plain."""
        call = self.calls[provider_call_id]
        flow = self._flow_of(call, "greeting")
        query = self._applet_query(call)
        async with self._client.head(flow.url, params=query, allow_redirects=False) as head:
            if head.status != 200 or head.headers.get("Content-Type") != "text/plain":
                raise AssertionError(f"HEAD answered {head.status} {head.headers.get('Content-Type')!r}")
        async with self._client.get(flow.url, params=query, allow_redirects=False) as response:
            text = await response.text()
            if response.status != 200 or response.headers.get("Content-Type") != "text/plain":
                raise AssertionError(
                    f"GET answered {response.status} {response.headers.get('Content-Type')!r}"
                )
        call.answer_fetches.append(query)
        call.spoken.append(text)
        return text

    async def _websocket_url(self, call: FakeCall) -> str:
        if call.stream_url:
            return call.stream_url
        flow = self._flow_of(call, "voicebot")
        query = self._applet_query(call)
        async with self._client.get(flow.url, params=query, allow_redirects=False) as response:
            body = await response.read()
            if response.status != 200:
                raise AssertionError(f"the Voicebot applet's URL answered {response.status}: {body[:200]!r}")
        call.answer_fetches.append(query)
        url = json.loads(body).get("url", "")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise AssertionError(f"the Voicebot applet's URL answered no ws(s) url: {body[:200]!r}")
        return url

    # --- media ------------------------------------------------------------------------

    async def answer_media(
        self,
        provider_call_id: str,
        audio: bytes,
        *,
        audio_format: AudioFormat,
        realtime: bool = True,
        receive_seconds: float = 1.0,
        dtmf: str | None = None,
        dtmf_after_seconds: float = 0.2,
        chunk_ms: int = 100,
        reason: str = "callended",
    ) -> MediaResult:
        call = self.calls[provider_call_id]
        url = await self._websocket_url(call)
        query = parse_qsl(urlsplit(url).query)
        rate = int(dict(query).get("sample-rate", "8000"))
        custom = [(k, v) for k, v in query if k != "sample-rate"]
        native = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, rate, 1)
        stream_sid = uuid.uuid4().hex
        result = MediaResult(url, stream_sid, native, dict(custom[:3]))
        if len(custom) > 3:
            result.violations.append(f"{len(custom)} custom parameters: Exotel passes the first 3")
        pcm = hub_audio.convert(audio, audio_format, native)
        step = rate * 2 * chunk_ms // 1000
        sequence = iter(range(1, 1_000_000))
        lock = asyncio.Lock()
        played_until = [time.monotonic()]
        pending: dict[asyncio.Task[None], str] = {}

        async with self._client.ws_connect(url, autoping=True, max_msg_size=0) as ws:

            async def send(message: dict[str, Any]) -> None:
                async with lock:
                    if not ws.closed:
                        await ws.send_str(json.dumps(message))

            async def echo(name: str, at: float) -> None:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                await send_mark(name)

            async def send_mark(name: str) -> None:
                message = {
                    "event": "mark",
                    "sequence_number": next(sequence),
                    "stream_sid": stream_sid,
                    "mark": {"name": name},
                }
                await send(message)
                result.marks_echoed.append((name, time.monotonic()))

            async def receive() -> None:
                step20 = rate * 2 * 20 // 1000
                async for message in ws:
                    now = time.monotonic()
                    if message.type is not WSMsgType.TEXT:
                        result.violations.append(f"a {message.type.name} frame (Exotel takes JSON text)")
                        continue
                    try:
                        data = json.loads(message.data)
                    except ValueError:
                        result.violations.append("a text frame that is not JSON")
                        continue
                    if not isinstance(data, dict):
                        result.violations.append("a JSON message that is not an object")
                        continue
                    event = data.get("event")
                    if data.get("stream_sid") != stream_sid:
                        result.violations.append(f"{event}: stream_sid {data.get('stream_sid')!r}")
                    if event == "media":
                        try:
                            chunk = base64.b64decode(data["media"]["payload"], validate=True)
                        except (KeyError, TypeError, binascii.Error, ValueError):
                            result.violations.append("media: no base64 payload")
                            continue
                        if len(chunk) % step20 or len(chunk) > MAX_CHUNK_BYTES:
                            result.violations.append(f"media: a {len(chunk)}-byte payload")
                        result.audio.append(ReceivedAudio(chunk, now))
                        begin = max(now, played_until[0])
                        played_until[0] = begin + len(chunk) / (rate * 2)
                    elif event == "mark":
                        name = str(data.get("mark", {}).get("name", ""))
                        result.marks_received.append((name, now))
                        task = asyncio.ensure_future(echo(name, played_until[0]))
                        pending[task] = name
                        task.add_done_callback(lambda t: pending.pop(t, None))
                    elif event == "clear":
                        result.clears.append(now)
                        played_until[0] = now
                        for task, name in list(pending.items()):
                            task.cancel()
                            pending.pop(task, None)
                            await send_mark(name)
                    else:
                        result.violations.append(f"an unknown event {event!r}")

            receiver = asyncio.ensure_future(receive())
            try:
                await send({"event": "connected"})
                start = {
                    "event": "start",
                    "sequence_number": next(sequence),
                    "stream_sid": stream_sid,
                    "start": {
                        "stream_sid": stream_sid,
                        "call_sid": call.sid,
                        "account_sid": self.account_sid,
                        "from": call.to,
                        "to": call.from_,
                        "custom_parameters": result.custom_parameters,
                        "media_format": {"encoding": "raw", "sample_rate": str(rate), "bit_rate": "128"},
                    },
                }
                await send(start)
                result.started_at = began = time.monotonic()
                sent_dtmf = dtmf is None
                for index, at in enumerate(range(0, len(pcm), step)):
                    if receiver.done():
                        break
                    if realtime:
                        await asyncio.sleep(max(0.0, began + index * chunk_ms / 1000 - time.monotonic()))
                    media = {
                        "event": "media",
                        "sequence_number": next(sequence),
                        "stream_sid": stream_sid,
                        "media": {
                            "chunk": index + 1,
                            "timestamp": str(index * chunk_ms),
                            "payload": base64.b64encode(pcm[at : at + step]).decode(),
                        },
                    }
                    await send(media)
                    result.sent_chunks += 1
                    if not sent_dtmf and (index + 1) * chunk_ms / 1000 >= dtmf_after_seconds:
                        sent_dtmf = True
                        dtmf_message = {
                            "event": "dtmf",
                            "sequence_number": next(sequence),
                            "stream_sid": stream_sid,
                            "dtmf": {"duration": "200", "digit": dtmf},
                        }
                        await send(dtmf_message)
                result.audio_done_at = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(receiver), timeout=receive_seconds)
                if receiver.done():
                    result.closed_by_hub = True
                    self.hung_up.add(call.sid)
                else:
                    stop = {
                        "event": "stop",
                        "sequence_number": next(sequence),
                        "stream_sid": stream_sid,
                        "stop": {"call_sid": call.sid, "account_sid": self.account_sid, "reason": reason},
                    }
                    await send(stop)
                    await ws.close()
            finally:
                for task in list(pending):
                    task.cancel()
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver
        if not call.status or CallStatus(call.status).rank < CallStatus.COMPLETED.rank:
            call.status = str(CallStatus.COMPLETED)
            call.updated = self._tick()
        return result
