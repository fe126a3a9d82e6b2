"""A real HTTP server on 127.0.0.1 that speaks Twilio's Voice REST API, calls back signed as
Twilio does, and plays Twilio's side of a call's Media Stream.

REST (API 2010-04-01, https://www.twilio.com/docs/voice/api/call-resource; the wire the
twilio-python 9.13 SDK sends):
- HTTP Basic auth: Account SID + Auth Token, or an API key SID + its secret (a Standard
  key may not read /Accounts/{sid}.json, as on Twilio). Anything else is answered as
  Twilio does: 401 {"code": 20003, "message": "Authenticate", "more_info":
  "https://www.twilio.com/docs/errors/20003", "status": 401} with
  WWW-Authenticate: Basic realm="Twilio API";
- POST /2010-04-01/Accounts/{AccountSid}/Calls.json, form fields To, From, exactly one
  of Url / Twiml / ApplicationSid, StatusCallback, StatusCallbackEvent (repeated:
  initiated ringing answered completed), StatusCallbackMethod, Timeout, TimeLimit,
  MachineDetection (Enable | DetectMessageEnd), AsyncAmd, AsyncAmdStatusCallback(Method):
  201 with the Call resource (status queued). Errors as Twilio's: 21201 / 21213 (To /
  From missing), 21211 (invalid To, checked with phonenumbers), 21210 (a From the account
  does not own), 21205 (no instructions); a bad Timeout, StatusCallbackEvent or
  MachineDetection is a 400 too (their codes here, 21218 / 21626 / 21628, are this fake's
  assumption). The inline TwiML is parsed (<Connect><Stream url><Parameter/>, <Say>) into
  the FakeCall;
- GET  .../Calls/{CallSid}.json: the call as the fake keeps it; 404 20404 when unknown;
- POST .../Calls/{CallSid}.json Status=completed|canceled: completed ends a live call
  (an answered one becomes completed, a queued or ringing one canceled), canceled only a
  queued or ringing one; an ended call answers 200 unchanged, or, with
  `ended_update_error`, 400 21220 (what Twilio answers a change to an ended call);
- GET  .../Calls.json?PageSize=N[&To=..][&From=..]: a page of calls (newest first);
  GET /2010-04-01/Accounts/{sid}.json: the
  account (with its auth_token, as Twilio's resource has it: a caller must not leak it).

Callbacks (`send_status`, `send_amd`): form POSTs to the call's StatusCallback /
AsyncAmdStatusCallback with Twilio's fields, ``X-Twilio-Signature`` computed here (not with
the SDK) exactly as Twilio documents: base64(HMAC-SHA1(AuthToken, URL + each parameter
name and value, sorted by name)), and I-Twilio-Idempotency-Token. Each sent callback is
kept in `callbacks`, so `replay_of=i` resends one byte for byte. A status event the call
did not subscribe to (StatusCallbackEvent) is refused with ValueError: Twilio would not
send it.

Media (`answer_media`): connects to the <Stream url> of the call's TwiML (Twilio fetches
nothing at answer time: the TwiML is inline), the handshake signed like a webhook over
the ws(s):// URL as given and no parameters (`stream_headers`); sends
connected, start (streamSid, callSid, customParameters, mediaFormat audio/x-mulaw 8000 1),
the audio as 160-byte mulaw media messages every 20 ms (or at once with realtime=False),
optionally DTMF, then stop. It plays back what the hub sends at real time (8000 bytes a
second), echoes each mark when the audio queued before it has played, and on clear empties
its buffer and echoes the marks it discarded at once (Twilio's behaviour: it has no
"cleared" message).

Knobs: `fail_next(kind, count)` with kind in unauthorized, rate_limited (429 20429 with
Retry-After), down (503), bad_number (400 21211), reset (TCP reset); `delay` holds every
answer; `late_answer` creates the call, then holds the answer to its create (the call
placed, its answer lost to a client that gave up); `settle` moves a call on without a
callback (all lost); `ended_update_error`. What arrived: `requests`, `calls`, `hung_up`, `callbacks`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import secrets
import socket
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import aiohttp
import phonenumbers
from aiohttp import WSMsgType, web
from multidict import MultiDict

from callers import audio as hub_audio
from callers.types import AudioContainer, AudioEncoding, AudioFormat, CallStatus

JsonDict = dict[str, Any]
API = "/2010-04-01"
FRAME_SECONDS = 0.02
FRAME_BYTES = 160
MULAW_8K = AudioFormat(AudioEncoding.MULAW, AudioContainer.RAW, 8000, 1)
LIVE = frozenset({"queued", "ringing", "in-progress"})
EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
TWILIO_WORD = {
    CallStatus.QUEUED: "initiated",
    CallStatus.RINGING: "ringing",
    CallStatus.IN_PROGRESS: "in-progress",
    CallStatus.COMPLETED: "completed",
    CallStatus.BUSY: "busy",
    CallStatus.NO_ANSWER: "no-answer",
    CallStatus.FAILED: "failed",
    CallStatus.CANCELED: "canceled",
}
# The progress event (StatusCallbackEvent) each CallStatus word is sent for.
EVENT_OF = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}
SIP_CODE = {"ringing": "180", "in-progress": "200", "completed": "200", "busy": "486", "no-answer": "487"}
FAIL_KINDS = ("unauthorized", "rate_limited", "down", "bad_number", "reset")
WHO = web.RequestKey("who", str)


def hex_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(when: datetime | None = None) -> str:
    return format_datetime(when or datetime.now(UTC), usegmt=False).replace("-0000", "+0000")


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's webhook signature, computed from its documentation (not the SDK's code)."""
    data = url + "".join(f"{name}{value}" for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def unauthorized() -> web.Response:
    return twilio_error(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})


@dataclass
class FakeCall:
    sid: str
    account_sid: str
    to: str
    from_: str
    twiml: str | None
    url: str | None
    status_callback_url: str
    status_callback_events: tuple[str, ...]
    status_callback_method: str
    timeout: int | None
    time_limit: int | None
    machine_detection: str | None
    async_amd: bool
    async_amd_callback: str
    raw: dict[str, list[str]]
    stream_url: str = ""
    stream_parameters: dict[str, str] = field(default_factory=dict)
    say: JsonDict | None = None
    answer_url: str = ""  # Twilio fetches nothing at answer time when the TwiML is inline
    status: str = "queued"
    answered_by: str | None = None
    sequence: int = 0
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None

    @property
    def media_url(self) -> str:
        return self.stream_url

    def resource(self) -> JsonDict:
        base = f"{API}/Accounts/{self.account_sid}/Calls/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": self.answered_by,
            "api_version": "2010-04-01",
            "caller_name": None,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(),
            "direction": "outbound-api",
            "duration": None if self.duration is None else str(self.duration),
            "end_time": rfc2822(self.end_time) if self.end_time else None,
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": hex_sid("PN"),
            "price": None if self.duration is None else "-0.01300",
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": rfc2822(self.start_time) if self.start_time else None,
            "status": self.status,
            "subresource_uris": {
                "notifications": f"{base}/Notifications.json",
                "recordings": f"{base}/Recordings.json",
                "payments": f"{base}/Payments.json",
                "events": f"{base}/Events.json",
                "siprec": f"{base}/Siprec.json",
                "streams": f"{base}/Streams.json",
                "transcriptions": f"{base}/Transcriptions.json",
                "user_defined_message_subscriptions": f"{base}/UserDefinedMessageSubscriptions.json",
                "user_defined_messages": f"{base}/UserDefinedMessages.json",
            },
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": f"{base}.json",
        }


@dataclass
class SentCallback:
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class ReceivedFrame:
    data: bytes
    at: float  # time.monotonic() when it arrived


@dataclass
class MediaResult:
    stream_sid: str = ""
    connected_at: float = 0.0
    frames: list[ReceivedFrame] = field(default_factory=list)
    marks: list[tuple[str, float]] = field(default_factory=list)  # mark messages received
    marks_played: list[tuple[str, float]] = field(default_factory=list)  # echoed back
    clears: list[float] = field(default_factory=list)
    messages: list[JsonDict] = field(default_factory=list)  # every message from the hub
    errors: list[str] = field(default_factory=list)  # what Twilio would refuse
    sent_frames: int = 0
    sent_bytes: int = 0
    closed_at: float = 0.0
    hub_closed: bool = False

    @property
    def audio(self) -> bytes:
        return b"".join(frame.data for frame in self.frames)


@dataclass
class _Mark:
    name: str


def _parse_twiml(call: FakeCall) -> None:
    """What Twilio would run: the <Stream> of a <Connect>, or a <Say>."""
    if not call.twiml:
        return
    try:
        root = ET.fromstring(call.twiml)  # noqa: S314 - the fake parses what the test sent
    except ET.ParseError:
        return
    stream = root.find("./Connect/Stream")
    if stream is not None:
        call.stream_url = stream.get("url", "")
        call.stream_parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    spoken = root.find("./Say")
    if spoken is not None:
        call.say = {
            "text": spoken.text or "",
            "voice": spoken.get("voice"),
            "language": spoken.get("language"),
        }


@dataclass
class FakeTwilio:
    account_sid: str = field(default_factory=lambda: hex_sid("AC"))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    api_key_sid: str = field(default_factory=lambda: hex_sid("SK"))
    api_key_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    owned_numbers: tuple[str, ...] = ("+14155550100",)
    account_status: str = "active"
    delay: float = 0.0
    late_answer: float = 0.0
    retry_after: str = "3"
    ended_update_error: bool = False
    calls: dict[str, FakeCall] = field(default_factory=dict)
    hung_up: set[str] = field(default_factory=set)
    requests: list[JsonDict] = field(default_factory=list)
    callbacks: list[SentCallback] = field(default_factory=list)
    base_url: str = ""
    _failures: deque[str] = field(default_factory=deque)

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> FakeTwilio:
        app = web.Application(middlewares=[self._gate])
        account = API + "/Accounts/{account}"
        app.router.add_get(account + ".json", self._account)
        app.router.add_post(account + "/Calls.json", self._create)
        app.router.add_get(account + "/Calls.json", self._list)
        app.router.add_get(account + "/Calls/{sid}.json", self._fetch)
        app.router.add_post(account + "/Calls/{sid}.json", self._update)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.close()
        await self._runner.cleanup()

    @property
    def secret(self) -> dict[str, str]:
        """A credential's secret with the Auth Token (REST and webhook signatures)."""
        return {"auth_token": self.auth_token}

    @property
    def options(self) -> dict[str, str]:
        return {"account_sid": self.account_sid, "api_base_url": self.base_url}

    @property
    def key_secret(self) -> dict[str, str]:
        """A credential's secret with the API key only (no Auth Token)."""
        return {"api_key_secret": self.api_key_secret}

    @property
    def key_options(self) -> dict[str, str]:
        return {**self.options, "api_key_sid": self.api_key_sid}

    def fail_next(self, kind: str, count: int = 1) -> None:
        if kind not in FAIL_KINDS:
            raise ValueError(f"unknown failure {kind!r}; one of {FAIL_KINDS}")
        self._failures.extend([kind] * count)

    # --- the gate: recording, delay, failures, auth -----------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        form = await request.post() if request.method == "POST" else MultiDict[str]()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "form": [(k, str(v)) for k, v in form.items()],
            }
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._failures:
            kind = self._failures.popleft()
            if kind == "reset":
                return self._reset(request)
            if kind == "unauthorized":
                return unauthorized()
            if kind == "rate_limited":
                return twilio_error(429, 20429, "Too Many Requests", {"Retry-After": self.retry_after})
            if kind == "down":
                return twilio_error(503, 20503, "Service Unavailable")
            if kind == "bad_number":
                return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {form.get('To', '')}")
        who = self._who(request)
        if who is None or request.match_info.get("account") != self.account_sid:
            return unauthorized()
        request[WHO] = who
        response: web.StreamResponse = await handler(request)
        return response

    def _who(self, request: web.Request) -> str | None:
        """Who the Basic credentials are ("auth_token" or "api_key"); None when they are wrong."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if user == self.account_sid and hmac.compare_digest(password, self.auth_token):
            return "auth_token"
        if user == self.api_key_sid and hmac.compare_digest(password, self.api_key_secret):
            return "api_key"
        return None

    def _reset(self, request: web.Request) -> web.StreamResponse:
        """Abort the connection with an RST (SO_LINGER 0), as a crashing peer does."""
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return web.Response(status=499)

    # --- REST ------------------------------------------------------------------------

    async def _account(self, request: web.Request) -> web.Response:
        if request[WHO] != "auth_token":
            return unauthorized()  # a Standard API key may not read the Account resource
        return web.json_response(
            {
                "auth_token": self.auth_token,
                "date_created": rfc2822(),
                "date_updated": rfc2822(),
                "friendly_name": "Hub test account",
                "owner_account_sid": self.account_sid,
                "sid": self.account_sid,
                "status": self.account_status,
                "subresource_uris": {"calls": f"{API}/Accounts/{self.account_sid}/Calls.json"},
                "type": "Full",
                "uri": f"{API}/Accounts/{self.account_sid}.json",
            }
        )

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields: dict[str, list[str]] = {}
        for name, value in form.items():
            fields.setdefault(name, []).append(str(value))

        def one(name: str) -> str:
            return fields.get(name, [""])[-1]

        to, from_ = one("To"), one("From")
        if not to:
            return twilio_error(400, 21201, "No 'To' number is specified")
        if not from_:
            return twilio_error(400, 21213, "No 'From' number is specified")
        if not _valid_number(to):
            return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if from_ not in self.owned_numbers:
            return twilio_error(
                400,
                21210,
                f"The source phone number provided, {from_}, is not yet verified for your account. "
                "You may only make calls from phone numbers that you've verified or purchased from Twilio.",
            )
        given = [name for name in ("Url", "Twiml", "ApplicationSid") if one(name)]
        if len(given) != 1:
            return twilio_error(400, 21205, "Url parameter is required")
        timeout = one("Timeout")
        if timeout and not (timeout.isdigit() and 1 <= int(timeout) <= 600):
            return twilio_error(400, 21218, f"Timeout must be between 1 and 600 seconds, not {timeout}")
        events = tuple(e for value in fields.get("StatusCallbackEvent", []) for e in value.split())
        if any(e not in EVENTS for e in events):
            return twilio_error(400, 21626, f"Invalid StatusCallbackEvent: {' '.join(events)}")
        detection = one("MachineDetection")
        if detection and detection not in ("Enable", "DetectMessageEnd"):
            return twilio_error(400, 21628, f"Invalid MachineDetection: {detection}")
        call = FakeCall(
            sid=hex_sid("CA"),
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            twiml=one("Twiml") or None,
            url=one("Url") or None,
            status_callback_url=one("StatusCallback"),
            status_callback_events=events,
            status_callback_method=(one("StatusCallbackMethod") or "POST").upper(),
            timeout=int(timeout) if timeout else None,
            time_limit=int(one("TimeLimit")) if one("TimeLimit").isdigit() else None,
            machine_detection=detection or None,
            async_amd=one("AsyncAmd") == "true",
            async_amd_callback=one("AsyncAmdStatusCallback"),
            raw=fields,
        )
        _parse_twiml(call)
        self.calls[call.sid] = call
        if self.late_answer:
            # Accepted (the call exists and goes on), but its answer comes too late.
            await asyncio.sleep(self.late_answer)
        return web.json_response(call.resource(), status=201)

    def _call(self, request: web.Request) -> FakeCall | web.Response:
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return call

    async def _fetch(self, request: web.Request) -> web.Response:
        call = self._call(request)
        if isinstance(call, web.Response):
            return call
        return web.json_response(call.resource())

    async def _update(self, request: web.Request) -> web.Response:
        call = self._call(request)
        if isinstance(call, web.Response):
            return call
        form = await request.post()
        status = str(form.get("Status", ""))
        if status not in ("", "completed", "canceled"):
            return twilio_error(400, 21218, f"Invalid Status: {status}")
        if call.status not in LIVE:
            if self.ended_update_error:
                return twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
            return web.json_response(call.resource())
        if status == "completed" or (status == "canceled" and call.status != "in-progress"):
            self._end(call, "completed" if call.status == "in-progress" else "canceled")
            self.hung_up.add(call.sid)
        if form.get("Twiml"):
            call.twiml = str(form["Twiml"])
            _parse_twiml(call)
        return web.json_response(call.resource())

    async def _list(self, request: web.Request) -> web.Response:
        size = int(request.query.get("PageSize", "50"))
        # Twilio's filters by number; newest first, as Twilio lists them.
        to, from_ = request.query.get("To"), request.query.get("From")
        newest_first = reversed(self.calls.values())
        calls = [c for c in newest_first if to in (None, c.to) and from_ in (None, c.from_)][:size]
        uri = f"{API}/Accounts/{self.account_sid}/Calls.json?PageSize={size}&Page=0"
        return web.json_response(
            {
                "calls": [c.resource() for c in calls],
                "end": max(len(calls) - 1, 0),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )

    # --- progression -----------------------------------------------------------------

    def _end(self, call: FakeCall, word: str) -> None:
        now = datetime.now(UTC)
        if call.start_time is None and word == "completed":
            call.start_time = now
        call.status = word
        call.end_time = now
        call.duration = int((now - call.start_time).total_seconds()) if call.start_time else 0

    def _progress(self, call: FakeCall, word: str) -> None:
        if word == "initiated":
            call.status = "queued"
        elif word == "ringing":
            call.status = "ringing"
        elif word == "in-progress":
            call.status = "in-progress"
            call.start_time = call.start_time or datetime.now(UTC)
        else:
            self._end(call, word)

    def settle(self, provider_call_id: str, status: CallStatus) -> None:
        """The call moves on at Twilio and every callback of it is lost: only its
        resource (GET .../Calls/{CallSid}.json) says so."""
        self._progress(self.calls[provider_call_id], TWILIO_WORD[status])

    # --- callbacks -------------------------------------------------------------------

    def _callback_fields(self, call: FakeCall, word: str) -> list[tuple[str, str]]:
        fields = [
            ("Called", call.to),
            ("ToState", "CA"),
            ("CallerCountry", "US"),
            ("Direction", "outbound-api"),
            ("Timestamp", rfc2822()),
            ("CallbackSource", "call-progress-events"),
            ("CallStatus", word),
            ("From", call.from_),
            ("CallSid", call.sid),
            ("To", call.to),
            ("SequenceNumber", str(call.sequence)),
            ("AccountSid", call.account_sid),
            ("Caller", call.from_),
            ("ApiVersion", "2010-04-01"),
        ]
        if word in SIP_CODE:
            fields.append(("SipResponseCode", SIP_CODE[word]))
        if word in ("completed", "busy", "no-answer", "failed", "canceled"):
            seconds = call.duration or 0
            fields += [("CallDuration", str(seconds)), ("Duration", str((seconds + 59) // 60))]
        if call.answered_by and call.machine_detection and not call.async_amd:
            fields.append(("AnsweredBy", call.answered_by))
        return fields

    async def send_status(
        self,
        provider_call_id: str,
        status: CallStatus,
        *,
        replay_of: int | None = None,
        forged: bool = False,
        unsigned: bool = False,
        twilio_status: str | None = None,
        **extra: str,
    ) -> int:
        """Post a status callback as Twilio does; the HTTP status the hub answered.

        `twilio_status` sends another CallStatus word than `status`'s; `extra` adds or
        overrides fields; `forged` signs with a wrong token; `unsigned` sends no signature.
        """
        if replay_of is not None:
            sent = self.callbacks[replay_of]
            return await self._post(sent.url, sent.method, dict(sent.headers), sent.body)
        call = self.calls[provider_call_id]
        word = twilio_status or TWILIO_WORD[status]
        event = EVENT_OF.get(word, "completed")
        if not call.status_callback_url:
            raise ValueError(f"call {call.sid} has no StatusCallback")
        if event != "completed" and event not in call.status_callback_events:
            raise ValueError(
                f"call {call.sid} did not subscribe to the {event!r} event: Twilio would not send it"
            )
        self._progress(call, word)
        fields = self._callback_fields(call, word)
        call.sequence += 1
        overrides = dict(extra)
        fields = [(k, overrides.pop(k, v)) for k, v in fields] + list(overrides.items())
        return await self._signed_post(
            call.status_callback_url, call.status_callback_method, fields, forged=forged, unsigned=unsigned
        )

    async def send_amd(
        self,
        provider_call_id: str,
        answered_by: str = "human",
        *,
        forged: bool = False,
        unsigned: bool = False,
    ) -> int:
        """Post the async AMD result (AsyncAmdStatusCallback) as Twilio does."""
        call = self.calls[provider_call_id]
        if not (call.machine_detection and call.async_amd and call.async_amd_callback):
            raise ValueError(f"call {call.sid} did not ask for async answering machine detection")
        call.answered_by = answered_by
        fields = [
            ("AccountSid", call.account_sid),
            ("AnsweredBy", answered_by),
            ("CallSid", call.sid),
            ("MachineDetectionDuration", "2310"),
        ]
        return await self._signed_post(
            call.async_amd_callback, "POST", fields, forged=forged, unsigned=unsigned
        )

    async def _signed_post(
        self, url: str, method: str, fields: list[tuple[str, str]], *, forged: bool, unsigned: bool
    ) -> int:
        body = urlencode(fields).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        if not unsigned:
            token = secrets.token_hex(16) if forged else self.auth_token
            headers["X-Twilio-Signature"] = twilio_signature(token, url, fields)
        return await self._post(url, method, headers, body)

    async def _post(self, url: str, method: str, headers: dict[str, str], body: bytes) -> int:
        async with self._client.request(method, url, data=body, headers=headers) as response:
            await response.read()
            self.callbacks.append(SentCallback(url, method, headers, body, response.status))
            return response.status

    # --- media -----------------------------------------------------------------------

    def stream_headers(self, provider_call_id: str, *, forged: bool = False) -> dict[str, str]:
        """The headers of Twilio's Media Streams handshake to the call's <Stream url>: signed
        as a webhook is (Twilio's security docs), over that URL exactly as given, wss://
        (here ws://) scheme included, with no parameters; `forged` signs with a wrong token."""
        call = self.calls[provider_call_id]
        token = secrets.token_hex(16) if forged else self.auth_token
        return {"X-Twilio-Signature": twilio_signature(token, call.stream_url, [])}

    async def answer_media(
        self,
        provider_call_id: str,
        audio: bytes,
        *,
        audio_format: AudioFormat,
        realtime: bool = True,
        receive_seconds: float,
        dtmf: str = "",
        echo_marks: bool = True,
    ) -> MediaResult:
        """Play Twilio's side of the call's Media Stream: connected, start, audio, DTMF, stop."""
        call = self.calls[provider_call_id]
        assert call.stream_url, "the call's TwiML connects no <Stream>"
        mulaw = audio if audio_format == MULAW_8K else hub_audio.convert(audio, audio_format, MULAW_8K)
        stream_sid = hex_sid("MZ")
        result = MediaResult(stream_sid=stream_sid)
        queue: deque[bytes | _Mark] = deque()
        queued = asyncio.Event()
        self._progress(call, "in-progress")
        ws = await self._client.ws_connect(
            call.stream_url, headers=self.stream_headers(call.sid), autoping=True
        )
        started = time.monotonic()
        result.connected_at = started
        sequence = 0

        async def send(message: JsonDict) -> None:
            nonlocal sequence
            sequence += 1
            if message["event"] != "connected":
                message = {**message, "sequenceNumber": str(sequence), "streamSid": stream_sid}
            await ws.send_str(json.dumps(message))

        await send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        sequence = 0
        await send(
            {
                "event": "start",
                "start": {
                    "accountSid": call.account_sid,
                    "streamSid": stream_sid,
                    "callSid": call.sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": dict(call.stream_parameters),
                },
            }
        )

        async def send_audio() -> None:
            for index, at in enumerate(range(0, len(mulaw), FRAME_BYTES)):
                chunk = mulaw[at : at + FRAME_BYTES]
                if realtime:
                    await asyncio.sleep(max(0.0, started + index * FRAME_SECONDS - time.monotonic()))
                media = {
                    "track": "inbound",
                    "chunk": str(index + 1),
                    "timestamp": str(index * 20),
                    "payload": base64.b64encode(chunk).decode(),
                }
                await send({"event": "media", "media": media})
                result.sent_frames += 1
                result.sent_bytes += len(chunk)
            for digit in dtmf:
                await send({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}})
                await asyncio.sleep(0.05)

        async def echo(name: str) -> None:
            if echo_marks and not ws.closed:
                await send({"event": "mark", "mark": {"name": name}})
                result.marks_played.append((name, time.monotonic()))

        async def receive() -> None:
            async for message in ws:
                at = time.monotonic()
                if message.type is not WSMsgType.TEXT:
                    result.errors.append(f"a {message.type.name} frame: Media Streams take JSON text only")
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    result.errors.append("a message that is not JSON")
                    continue
                result.messages.append(data)
                if data.get("streamSid") != stream_sid:
                    result.errors.append(
                        f"a {data.get('event')} message for stream {data.get('streamSid')!r}"
                    )
                    continue
                event = data.get("event")
                if event == "media":
                    try:
                        chunk = base64.b64decode(data["media"]["payload"], validate=True)
                    except (KeyError, TypeError, binascii.Error, ValueError):
                        result.errors.append("a media message without a base64 media.payload")
                        continue
                    result.frames.append(ReceivedFrame(chunk, at))
                    queue.append(chunk)
                    queued.set()
                elif event == "mark":
                    name = str(data.get("mark", {}).get("name", ""))
                    result.marks.append((name, at))
                    queue.append(_Mark(name))
                    queued.set()
                elif event == "clear":
                    result.clears.append(at)
                    dropped = [item.name for item in queue if isinstance(item, _Mark)]
                    queue.clear()
                    for name in dropped:
                        await echo(name)
                else:
                    result.errors.append(f"an unknown event {event!r}")
            result.hub_closed = not closing

        async def play() -> None:
            while True:
                if not queue:
                    queued.clear()
                    await queued.wait()
                    continue
                item = queue.popleft()
                if isinstance(item, _Mark):
                    await echo(item.name)
                else:
                    await asyncio.sleep(len(item) / 8000)  # real-time playback of mulaw 8 kHz

        closing = False
        tasks = [asyncio.create_task(receive()), asyncio.create_task(play())]
        try:
            await send_audio()
            remaining = started + receive_seconds - time.monotonic()
            if remaining > 0 and not tasks[0].done():
                await asyncio.wait([tasks[0]], timeout=remaining)
            if not ws.closed:
                await send({"event": "stop", "stop": {"accountSid": call.account_sid, "callSid": call.sid}})
        finally:
            tasks[1].cancel()
            closing = True
            # Closed while the reader still runs: close() waits for the hub's close reply, which
            # the hub sends once it has read everything before it (the stop message included).
            with contextlib.suppress(aiohttp.ClientError, ConnectionResetError):
                await ws.close()
            result.closed_at = time.monotonic()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, ConnectionResetError):
                    await task
        return result


def _valid_number(number: str) -> bool:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return number.startswith("+") and phonenumbers.is_possible_number(parsed)
