"""A real HTTP server on 127.0.0.1 that speaks Vonage's Voice API, calls back signed as
Vonage does, and plays Vonage's side of a call's audio websocket.

REST (Voice API v1, https://developer.vonage.com/en/api/voice, and vonage_voice 1.5):
- every request needs ``Authorization: Bearer <application JWT>``, RS256 over {application_id,
  iat, jti, exp} with the application's private key; the fake verifies it with the public
  key it holds for its application (as Vonage does) and answers anything else with
  Vonage's 401 problem {type: .../api-errors#unauthorized, title: Unauthorized, detail:
  "You did not provide correct credentials.", instance};
- POST /v1/calls: to [{type: phone, number}], from {type: phone, number}, ncco | answer_url
  (exactly one), event_url [url], event_method, ringing_timer (1..120), length_timer
  (1..86400), machine_detection (continue | hangup), advanced_machine_detection {behavior,
  mode, beep_timeout}; the NCCO's connect / talk actions are checked as the NCCO reference
  says (websocket uri, content-type audio/l16;rate=8000|16000|24000, headers <= 512 bytes;
  talk text <= 1500 characters). 201 {uuid, status: started, direction: outbound,
  conversation_uuid}. Validation errors are RFC 7807 problems with invalid_parameters
  [{name, reason}] (Vonage's format; the exact `type` URI the Voice API uses for them is
  this fake's assumption);
- GET /v1/calls/{uuid}: the call as the fake keeps it {uuid, conversation_uuid, to, from,
  status, direction, rate, price, duration, start_time, end_time, network, _links}; 404
  for an unknown one;
- PUT /v1/calls/{uuid} {"action": "hangup"}: 204 for a live call (it becomes completed);
  a call that has ended answers 404, as Vonage does;
- GET /v1/calls?page_size=N[&date_start&date_end][&order=desc]: {count, page_size,
  record_index, _embedded: {calls}, _links}, the window's calls (by creation here).

Callbacks (`send_status`): JSON POSTed to the call's event_url, with ``Authorization:
Bearer <JWT>`` HS256-signed with the signature secret, claims {iat, jti, iss: Vonage,
payload_hash: SHA-256 hex of the body, api_key, application_id}; each sent callback is
kept in `callbacks`, so that `replay_of=i` resends one byte for byte.

Media (`answer_media`): connects to the websocket of the call's NCCO (fetched from
answer_url first, signed GET with to/from/uuid/conversation_uuid, when the call was
placed with one), sends websocket:connected with the endpoint's headers at the top level,
then the audio as linear16 20 ms binary frames, optionally DTMF, then closes (Vonage sends
no stop message). It plays back what the hub sends at real time (20 ms a frame) and
echoes a notify command ({"action": "notify", "payload"}) as websocket:notify when the
audio queued before it has played; a clear empties the playback queue (the notifies in it
are dropped: this fake's reading of Vonage's behaviour) and is answered websocket:cleared.

Knobs: `fail_next(kind, count)` with kind in unauthorized, forbidden, rate_limited (429 with
Retry-After), down (503), bad_number (400 on to[0].number), reset (TCP reset); `delay`
holds every answer. What arrived: `requests`, `calls`, `hung_up`, `callbacks`,
`answer_fetches`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import socket
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiohttp
import jwt
from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from callers import audio as hub_audio
from callers.types import AudioContainer, AudioEncoding, AudioFormat, CallStatus

JsonDict = dict[str, Any]
FRAME_SECONDS = 0.02
MAX_BUFFERED_FRAMES = 1024  # Vonage buffers at most 1024 audio messages (about 20 s)
WEBSOCKET_TYPES = ("audio/l16;rate=8000", "audio/l16;rate=16000", "audio/l16;rate=24000")
NUMBER = re.compile(r"[1-9]\d{6,14}")
LIVE = frozenset({"started", "ringing", "answered", "machine"})
VONAGE_WORD = {
    CallStatus.QUEUED: "started",
    CallStatus.RINGING: "ringing",
    CallStatus.IN_PROGRESS: "answered",
    CallStatus.COMPLETED: "completed",
    CallStatus.BUSY: "busy",
    CallStatus.NO_ANSWER: "unanswered",
    CallStatus.FAILED: "failed",
    CallStatus.CANCELED: "cancelled",
}
CALL_FIELDS = frozenset(
    {
        "to",
        "from",
        "ncco",
        "answer_url",
        "answer_method",
        "event_url",
        "event_method",
        "machine_detection",
        "advanced_machine_detection",
        "length_timer",
        "ringing_timer",
        "random_from_number",
    }
)
NCCO_ACTIONS = frozenset(
    {"record", "conversation", "connect", "talk", "stream", "input", "notify", "wait", "transfer"}
)
FAIL_KINDS = ("unauthorized", "forbidden", "rate_limited", "down", "bad_number", "reset")


_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(index: int = 0) -> rsa.RSAPrivateKey:
    """An RSA key per index, made once per test process (2048-bit keys take a moment)."""
    if index not in _KEYS:
        _KEYS[index] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[index]


def pkcs8_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pkcs1_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    invalid: list[JsonDict] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: JsonDict = {
        "type": f"https://developer.nexmo.com/api-errors#{code}",
        "title": title,
        "detail": detail,
        "instance": uuid.uuid4().hex,
    }
    if invalid:
        body["invalid_parameters"] = invalid
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/problem+json", headers=headers
    )


def unauthorized() -> web.Response:
    return problem(401, "unauthorized", "Unauthorized", "You did not provide correct credentials.")


def invalid(name: str, reason: str) -> web.Response:
    return problem(
        400,
        "validation",
        "Bad Request",
        "The request failed due to validation errors",
        invalid=[{"name": name, "reason": reason}],
    )


def sign_callback(
    signature_secret: str, body: bytes, *, api_key: str, application_id: str, issued_at: float | None = None
) -> str:
    """The Bearer JWT of a signed Vonage callback over `body`."""
    claims = {
        "iat": int(time.time() if issued_at is None else issued_at),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": api_key,
        "application_id": application_id,
    }
    return jwt.encode(claims, signature_secret, algorithm="HS256")


@dataclass
class FakeCall:
    uuid: str
    conversation_uuid: str
    to: str
    from_: str
    ncco: list[JsonDict] | None
    answer_url: list[str] | None
    event_url: list[str]
    event_method: str
    ringing_timer: int | None
    length_timer: int | None
    machine_detection: str | None
    advanced_machine_detection: JsonDict | None
    raw: JsonDict
    status: str = "started"
    start_time: str | None = None
    end_time: str | None = None
    duration: int | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def status_callback_url(self) -> str:
        return self.event_url[0] if self.event_url else ""

    def websocket(self, ncco: list[JsonDict] | None = None) -> JsonDict | None:
        """The websocket endpoint of the NCCO's connect action, if it has one."""
        for action in ncco if ncco is not None else self.ncco or []:
            if action.get("action") == "connect":
                for endpoint in action.get("endpoint", []):
                    if endpoint.get("type") == "websocket":
                        found: JsonDict = endpoint
                        return found
        return None

    @property
    def media_url(self) -> str:
        endpoint = self.websocket()
        return str(endpoint["uri"]) if endpoint else ""

    @property
    def stream_parameters(self) -> dict[str, str]:
        endpoint = self.websocket()
        return dict(endpoint.get("headers", {})) if endpoint else {}

    def record(self) -> JsonDict:
        data: JsonDict = {
            "_links": {"self": {"href": f"/v1/calls/{self.uuid}"}},
            "uuid": self.uuid,
            "conversation_uuid": self.conversation_uuid,
            "to": {"type": "phone", "number": self.to},
            "from": {"type": "phone", "number": self.from_},
            "status": self.status,
            "direction": "outbound",
            "network": "65512",
        }
        if self.start_time:
            data["start_time"] = self.start_time
            data["rate"] = "0.00450000"
        if self.end_time:
            data["end_time"] = self.end_time
        if self.duration is not None:
            data["duration"] = str(self.duration)
            data["price"] = f"{0.0045 * self.duration / 60:.8f}"
        return data


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
    content_type: str = ""
    connected_at: float = 0.0
    frames: list[ReceivedFrame] = field(default_factory=list)
    marks: list[tuple[str, float]] = field(default_factory=list)  # notify commands received
    marks_played: list[tuple[str, float]] = field(default_factory=list)  # echoed as websocket:notify
    clears: list[float] = field(default_factory=list)
    messages: list[JsonDict] = field(default_factory=list)  # every text message from the hub
    errors: list[str] = field(default_factory=list)  # what Vonage would refuse or drop
    sent_frames: int = 0
    sent_bytes: int = 0
    closed_at: float = 0.0
    hub_closed: bool = False

    @property
    def audio(self) -> bytes:
        return b"".join(frame.data for frame in self.frames)


@dataclass
class _Mark:
    payload: JsonDict


@dataclass
class FakeVonage:
    application_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    api_key: str = "a1b2c3d4"
    signature_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    key_index: int = 0
    delay: float = 0.0
    retry_after: str = "2"
    late_answer: float = 0.0  # create the call, then hold the answer to its create
    calls: dict[str, FakeCall] = field(default_factory=dict)
    hung_up: set[str] = field(default_factory=set)
    requests: list[JsonDict] = field(default_factory=list)
    callbacks: list[SentCallback] = field(default_factory=list)
    answer_fetches: list[JsonDict] = field(default_factory=list)
    base_url: str = ""
    _failures: deque[str] = field(default_factory=deque)

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> FakeVonage:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/v1/calls", self._create)
        app.router.add_get("/v1/calls", self._list)
        app.router.add_get("/v1/calls/{uuid}", self._get)
        app.router.add_put("/v1/calls/{uuid}", self._update)
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
    def private_key(self) -> str:
        return pkcs8_pem(rsa_key(self.key_index))

    @property
    def secret(self) -> dict[str, str]:
        return {"private_key": self.private_key, "signature_secret": self.signature_secret}

    @property
    def options(self) -> dict[str, str]:
        return {"application_id": self.application_id, "api_key": self.api_key, "api_base_url": self.base_url}

    def fail_next(self, kind: str, count: int = 1) -> None:
        if kind not in FAIL_KINDS:
            raise ValueError(f"unknown failure {kind!r}; one of {FAIL_KINDS}")
        self._failures.extend([kind] * count)

    # --- the gate: recording, delay, failures, auth -----------------------------------

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
        if self._failures:
            failed = self._failure(request, self._failures.popleft())
            if failed is not None:
                return failed
        if not self._authorized(request.headers.get("Authorization", "")):
            return unauthorized()
        result: web.StreamResponse = await handler(request)
        return result

    def _failure(self, request: web.Request, kind: str) -> web.StreamResponse | None:
        if kind == "unauthorized":
            return unauthorized()
        if kind == "forbidden":
            return problem(
                403, "forbidden", "Forbidden", "Your account does not have permission to perform this action"
            )
        if kind == "rate_limited":
            return problem(
                429,
                "throttled",
                "Rate Limit Hit",
                "Please wait, then retry your request",
                headers={"Retry-After": self.retry_after},
            )
        if kind == "down":
            return problem(
                503, "internal-error", "Service Unavailable", "The service is temporarily unavailable"
            )
        if kind == "bad_number":
            return invalid("to[0].number", "must be a valid E.164 phone number without a leading +")
        # reset: abort the connection with an RST (SO_LINGER 0), as a crashing peer does
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return web.Response(status=499)

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return False
        public = rsa_key(self.key_index).public_key()
        try:
            claims = jwt.decode(
                token,
                public,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "jti", "application_id"]},
            )
        except jwt.InvalidTokenError:
            return False
        return bool(claims.get("application_id") == self.application_id)

    # --- REST ------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return problem(400, "validation", "Bad Request", "The request body did not contain valid JSON")
        if not isinstance(body, dict):
            return invalid("body", "must be an object")
        refused = self._check_call(body)
        if refused is not None:
            return refused
        call = FakeCall(
            uuid=str(uuid.uuid4()),
            conversation_uuid=f"CON-{uuid.uuid4()}",
            to=body["to"][0]["number"],
            from_=body["from"]["number"],
            ncco=body.get("ncco"),
            answer_url=body.get("answer_url"),
            event_url=list(body.get("event_url", [])),
            event_method=body.get("event_method", "POST"),
            ringing_timer=body.get("ringing_timer"),
            length_timer=body.get("length_timer"),
            machine_detection=body.get("machine_detection"),
            advanced_machine_detection=body.get("advanced_machine_detection"),
            raw=body,
        )
        self.calls[call.uuid] = call
        if self.late_answer:
            # Accepted (the call exists and goes on), but its answer comes too late.
            await asyncio.sleep(self.late_answer)
        answer = {
            "uuid": call.uuid,
            "status": "started",
            "direction": "outbound",
            "conversation_uuid": call.conversation_uuid,
        }
        return web.json_response(answer, status=201)

    def _check_call(self, body: JsonDict) -> web.Response | None:
        unknown = sorted(set(body) - CALL_FIELDS)
        if unknown:
            return invalid(unknown[0], "is not a parameter of a call")
        to = body.get("to")
        if not isinstance(to, list) or not to or not isinstance(to[0], dict):
            return invalid("to", "must be a list of endpoints")
        if to[0].get("type") != "phone" or not NUMBER.fullmatch(str(to[0].get("number", ""))):
            return invalid("to[0].number", "must be a valid E.164 phone number without a leading +")
        sender = body.get("from")
        if not isinstance(sender, dict) or not NUMBER.fullmatch(str(sender.get("number", ""))):
            return invalid("from.number", "must be a valid E.164 phone number without a leading +")
        has_ncco, has_url = "ncco" in body, "answer_url" in body
        if has_ncco == has_url:
            return invalid("ncco", "exactly one of ncco and answer_url is required")
        if has_url and (not isinstance(body["answer_url"], list) or len(body["answer_url"]) != 1):
            return invalid("answer_url", "must be a list of one URL")
        if has_ncco:
            refused = self._check_ncco(body["ncco"])
            if refused is not None:
                return refused
        event_url = body.get("event_url", [])
        if not isinstance(event_url, list) or not all(
            isinstance(u, str) and u.startswith(("http://", "https://")) for u in event_url
        ):
            return invalid("event_url", "must be a list of http(s) URLs")
        if body.get("event_method", "POST") not in ("POST", "GET"):
            return invalid("event_method", "must be POST or GET")
        for name, top in (("ringing_timer", 120), ("length_timer", 86400)):
            value = body.get(name)
            if value is not None and (not isinstance(value, int) or not 1 <= value <= top):
                return invalid(name, f"must be between 1 and {top}")
        if body.get("machine_detection") not in (None, "continue", "hangup"):
            return invalid("machine_detection", "must be continue or hangup")
        amd = body.get("advanced_machine_detection")
        if amd is not None and (
            not isinstance(amd, dict)
            or amd.get("behavior", "continue") not in ("continue", "hangup")
            or amd.get("mode", "detect") not in ("default", "detect", "detect_beep")
        ):
            return invalid(
                "advanced_machine_detection", "behavior: continue|hangup, mode: default|detect|detect_beep"
            )
        return None

    def _check_ncco(self, ncco: object) -> web.Response | None:
        if not isinstance(ncco, list) or not ncco:
            return invalid("ncco", "must be a non-empty list of actions")
        for index, action in enumerate(ncco):
            where = f"ncco[{index}]"
            if not isinstance(action, dict) or action.get("action") not in NCCO_ACTIONS:
                return invalid(f"{where}.action", "is not an NCCO action")
            if action["action"] == "talk":
                text = action.get("text")
                if not isinstance(text, str) or not 1 <= len(text) <= 1500:
                    return invalid(f"{where}.text", "must be 1 to 1500 characters")
                if "style" in action and not isinstance(action["style"], int):
                    return invalid(f"{where}.style", "must be an integer")
            if action["action"] == "connect":
                endpoints = action.get("endpoint")
                if not isinstance(endpoints, list) or len(endpoints) != 1:
                    return invalid(f"{where}.endpoint", "must be a list of one endpoint")
                endpoint = endpoints[0]
                if endpoint.get("type") == "websocket":
                    uri = endpoint.get("uri")
                    if not isinstance(uri, str) or not uri.startswith(("ws://", "wss://")):
                        return invalid(f"{where}.endpoint[0].uri", "must be a ws:// or wss:// URI")
                    if endpoint.get("content-type") not in WEBSOCKET_TYPES:
                        return invalid(
                            f"{where}.endpoint[0].content-type", f"must be one of {WEBSOCKET_TYPES}"
                        )
                    headers = endpoint.get("headers", {})
                    if not isinstance(headers, dict) or len(json.dumps(headers, separators=(",", ":"))) > 512:
                        return invalid(
                            f"{where}.endpoint[0].headers", "must be an object of at most 512 bytes"
                        )
        return None

    async def _list(self, request: web.Request) -> web.StreamResponse:
        try:
            page_size = int(request.query.get("page_size", "10"))
        except ValueError:
            return invalid("page_size", "must be an integer")
        if not 1 <= page_size <= 100:
            return invalid("page_size", "must be between 1 and 100")
        # date_start / date_end: the records that occurred in the window (here: created in
        # it); order=desc lists the newest first.
        try:
            start, end = (
                datetime.fromisoformat(request.query[name].replace("Z", "+00:00"))
                if name in request.query
                else None
                for name in ("date_start", "date_end")
            )
        except ValueError:
            return invalid("date_start", "must be an ISO 8601 date and time")
        kept = [
            c
            for c in self.calls.values()
            if (start is None or c.created >= start) and (end is None or c.created <= end)
        ]
        if request.query.get("order") == "desc":
            kept.reverse()
        calls = [call.record() for call in kept][:page_size]
        return web.json_response(
            {
                "count": len(self.calls),
                "page_size": page_size,
                "record_index": 0,
                "_links": {"self": {"href": f"/v1/calls?page_size={page_size}&record_index=0"}},
                "_embedded": {"calls": calls},
            }
        )

    def _not_found(self, call_id: str) -> web.Response:
        return problem(404, "not-found", "Not Found", f"Call {call_id} doesn't exist")

    async def _get(self, request: web.Request) -> web.StreamResponse:
        call = self.calls.get(request.match_info["uuid"])
        if call is None:
            return self._not_found(request.match_info["uuid"])
        return web.json_response(call.record())

    async def _update(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info["uuid"]
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return problem(400, "validation", "Bad Request", "The request body did not contain valid JSON")
        action = body.get("action") if isinstance(body, dict) else None
        if action not in ("hangup", "mute", "unmute", "earmuff", "unearmuff", "transfer"):
            return invalid("action", "must be hangup, mute, unmute, earmuff, unearmuff or transfer")
        call = self.calls.get(call_id)
        if call is None or call.status not in LIVE:
            return self._not_found(call_id)  # Vonage: an ended call is not there to modify
        if action == "hangup":
            self.hung_up.add(call_id)
            self._progress(call, "completed")
        return web.Response(status=204)

    # --- progression and callbacks ---------------------------------------------------

    def _progress(self, call: FakeCall, word: str) -> None:
        if word in ("human", "machine"):
            if word == "machine":
                call.status = "machine"
            return
        if call.status not in LIVE:
            return  # an ended call stays ended (late callbacks do not revive it)
        if word == "answered" and call.start_time is None:
            call.start_time = now_iso()
        call.status = word
        if word not in LIVE:
            call.end_time = now_iso()
            if call.start_time is not None:
                started = datetime.fromisoformat(call.start_time)
                call.duration = max(0, int((datetime.now(UTC) - started).total_seconds()))
            else:
                call.duration = 0

    def settle(self, provider_call_id: str, status: CallStatus) -> None:
        """The call moves on at Vonage and every event of it is lost: only GET /v1/calls
        says so."""
        self._progress(self.calls[provider_call_id], VONAGE_WORD[status])

    def _event_body(self, call: FakeCall, word: str, extra: JsonDict) -> JsonDict:
        body: JsonDict = {"from": call.from_, "to": call.to}
        body["call_uuid" if word in ("human", "machine") else "uuid"] = call.uuid
        body.update(
            {
                "conversation_uuid": call.conversation_uuid,
                "status": word,
                "direction": "outbound",
                "timestamp": now_iso(),
            }
        )
        if word == "answered":
            body.update({"start_time": None, "rate": None, "network": None})
        if word == "completed":
            body.update(
                {
                    "end_time": call.end_time,
                    "network": "65512",
                    "duration": str(call.duration or 0),
                    "start_time": call.start_time,
                    "rate": "0.00450000",
                    "price": f"{0.0045 * (call.duration or 0) / 60:.8f}",
                    "disconnected_by": "user",
                }
            )
        if word in ("failed", "rejected", "unanswered", "busy", "timeout", "cancelled"):
            body["detail"] = {"failed": "cannot_route", "rejected": "restricted"}.get(word, word)
        body.update(extra)
        return body

    async def send_status(
        self,
        provider_call_id: str,
        status: CallStatus,
        *,
        replay_of: int | None = None,
        forged: bool = False,
        unsigned: bool = False,
        signed_at: float | None = None,
        vonage_status: str | None = None,
        **extra: Any,
    ) -> int:
        """Post a status callback as Vonage does; the HTTP status the hub answered.

        `vonage_status` sends another Vonage word than `status`'s (timeout, rejected, human,
        machine); `extra` adds or overrides body fields; `signed_at` back-dates the JWT.
        """
        if replay_of is not None:
            sent = self.callbacks[replay_of]
            return await self._post(sent.url, sent.method, dict(sent.headers), sent.body)
        call = self.calls[provider_call_id]
        word = vonage_status or VONAGE_WORD[status]
        self._progress(call, word)
        body = json.dumps(self._event_body(call, word, extra), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if not unsigned:
            secret = "not-the-signature-secret-" + "x" * 16 if forged else self.signature_secret
            token = sign_callback(
                secret, body, api_key=self.api_key, application_id=self.application_id, issued_at=signed_at
            )
            headers["Authorization"] = f"Bearer {token}"
        return await self._post(call.status_callback_url, call.event_method, headers, body)

    async def _post(self, url: str, method: str, headers: dict[str, str], body: bytes) -> int:
        async with self._client.request(method, url, data=body, headers=headers) as response:
            await response.read()
            self.callbacks.append(SentCallback(url, method, headers, body, response.status))
            return response.status

    # --- media -----------------------------------------------------------------------

    async def _answer_ncco(self, call: FakeCall) -> list[JsonDict]:
        if call.ncco is not None:
            return call.ncco
        assert call.answer_url, "the call has neither an NCCO nor an answer_url"
        params = {
            "to": call.to,
            "from": call.from_,
            "uuid": call.uuid,
            "conversation_uuid": call.conversation_uuid,
        }
        hashed = json.dumps(params, separators=(",", ":")).encode()
        token = sign_callback(
            self.signature_secret, hashed, api_key=self.api_key, application_id=self.application_id
        )
        async with self._client.get(
            call.answer_url[0], params=params, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            body = await response.read()
            self.answer_fetches.append({"url": str(response.url), "status": response.status, "body": body})
            assert response.status == 200, f"answer_url answered {response.status}"
        ncco = json.loads(body)
        assert isinstance(ncco, list)
        return ncco

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
        """Play Vonage's side of the call's websocket: connected, audio, DTMF, then close."""
        call = self.calls[provider_call_id]
        ncco = await self._answer_ncco(call)
        endpoint = call.websocket(ncco)
        assert endpoint is not None, "the call's NCCO connects no websocket"
        content_type = str(endpoint.get("content-type", "audio/l16;rate=16000"))
        rate = int(content_type.rsplit("=", 1)[-1])
        native = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, rate, 1)
        pcm = audio if audio_format == native else hub_audio.convert(audio, audio_format, native)
        frame = int(rate * FRAME_SECONDS) * 2
        result = MediaResult(content_type=content_type)
        queue: deque[bytes | _Mark] = deque()
        queued = asyncio.Event()
        ws = await self._client.ws_connect(str(endpoint["uri"]), autoping=True)
        started = time.monotonic()
        result.connected_at = started
        connected = {
            "event": "websocket:connected",
            "content-type": content_type,
            **endpoint.get("headers", {}),
        }
        await ws.send_str(json.dumps(connected))

        async def send_audio() -> None:
            for index, at in enumerate(range(0, len(pcm), frame)):
                chunk = pcm[at : at + frame]
                chunk += bytes(frame - len(chunk))
                if realtime:
                    await asyncio.sleep(max(0.0, started + index * FRAME_SECONDS - time.monotonic()))
                await ws.send_bytes(chunk)
                result.sent_frames += 1
                result.sent_bytes += len(chunk)
            for digit in dtmf:
                await ws.send_str(json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": 260}))
                await asyncio.sleep(0.1)

        async def receive() -> None:
            async for message in ws:
                at = time.monotonic()
                if message.type is WSMsgType.BINARY:
                    result.frames.append(ReceivedFrame(bytes(message.data), at))
                    if len(message.data) != frame:
                        result.errors.append(
                            f"a {len(message.data)}-byte audio message (Vonage takes {frame})"
                        )
                        continue
                    if sum(1 for item in queue if isinstance(item, bytes)) >= MAX_BUFFERED_FRAMES:
                        result.errors.append("audio beyond Vonage's 1024 buffered messages was dropped")
                        continue
                    queue.append(bytes(message.data))
                    queued.set()
                elif message.type is WSMsgType.TEXT:
                    try:
                        command = json.loads(message.data)
                    except json.JSONDecodeError:
                        result.errors.append("a text message that is not JSON")
                        continue
                    if not isinstance(command, dict):
                        result.errors.append("a text message that is not a JSON object")
                        continue
                    result.messages.append(command)
                    if command.get("action") not in ("notify", "clear"):
                        result.errors.append(f"an unknown command {command.get('action')!r}")
                    elif command.get("action") == "notify":
                        payload = command.get("payload", {})
                        result.marks.append((str(payload.get("name", "")), at))
                        queue.append(_Mark(payload))
                        queued.set()
                    elif command.get("action") == "clear":
                        result.clears.append(at)
                        queue.clear()
                        await ws.send_str(json.dumps({"event": "websocket:cleared"}))
            result.hub_closed = True

        async def play() -> None:
            while True:
                if not queue:
                    queued.clear()
                    await queued.wait()
                    continue
                item = queue.popleft()
                if isinstance(item, _Mark):
                    if echo_marks:
                        await ws.send_str(json.dumps({"event": "websocket:notify", "payload": item.payload}))
                        result.marks_played.append((str(item.payload.get("name", "")), time.monotonic()))
                else:
                    await asyncio.sleep(FRAME_SECONDS)  # one frame of playback

        tasks = [asyncio.create_task(receive()), asyncio.create_task(play())]
        try:
            await send_audio()
            remaining = started + receive_seconds - time.monotonic()
            if remaining > 0 and not tasks[0].done():
                await asyncio.wait([tasks[0]], timeout=remaining)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                    await task
            await ws.close()
            result.closed_at = time.monotonic()
        return result
