"""A real HTTP + websocket server on 127.0.0.1 that speaks ElevenLabs's API (api.elevenlabs.io).

Tests point the callers (the `elevenlabs` SDK for REST, aiohttp for the websocket) at
`fake.base_url`. Every request needs `xi-api-key` (the websocket takes it in the
handshake header, or in its first message as "xi-api-key"). Routes:

- POST /v1/text-to-speech/{voice_id}?output_format=..  JSON {text, model_id,
  language_code, voice_settings{stability, similarity_boost, style, use_speaker_boost,
  speed}, seed, ...}: real audio (a 440 Hz tone, `seconds_per_char` per character of
  text, divided by voice_settings.speed) in the asked output_format (mp3_<rate>_<kbps>,
  pcm_<rate>, wav_<rate>, ulaw_8000, alaw_8000, opus_48000_<kbps>), with a `request-id`
  header; POST .../stream: the same, written chunked in pieces of `chunk_bytes`,
  `chunk_delay` apart (the stream endpoint has no wav_*, as ElevenLabs's has not).
- GET /v1/text-to-speech/{voice_id}/stream-input?model_id=..&output_format=..
  &inactivity_timeout=..: the input-streaming websocket. The first message is
  {"text": " ", voice_settings?, generation_config?}; text messages are buffered and
  generated once the buffer reaches the chunk schedule (generation_config.
  chunk_length_schedule[0], default 120 characters), on {"flush": true}, and at the end
  ({"text": ""}); each generation is sent as {"audio": <base64>, "isFinal": null,
  "normalizedAlignment": .., "alignment": ..} messages, then {"isFinal": true} and a
  normal close. Errors are {"message", "error", "code": 1008} then close 1008, as
  ElevenLabs sends them (invalid key, unknown voice, input_timeout_exceeded).
- GET /v1/voices: `voices` (premade voices with labels and verified_languages).
- GET /v1/user: the user and subscription; a key in `restricted_keys` gets ElevenLabs's
  401 missing_permissions here (a key without the user_read scope).
Errors are ElevenLabs's JSON {"detail": {"status": "<code>", "message": "..."}}, or
FastAPI's 422 list {"detail": [{"loc", "msg", "type"}]} for malformed fields.

Knobs: `force_status` (+ `force_code`, `force_message`, `retry_after`) answers every
HTTP request with that error; `delay` holds every HTTP answer back; `ws_error` is sent
(then close 1008) instead of the first generation; `ws_reject_status` refuses the
websocket handshake with that HTTP status; `ws_silent` makes the websocket never answer.

Watching: `fake.requests`, `fake.ws_sessions` (query, headers, parsed messages, the
texts generated, `closed_at`: the time.monotonic() at which the client's close frame or
disconnect arrived), and `await fake.wait_for_close(peer)` for HTTP connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from callers import audio as hub_audio
from callers.audio.pcm import Pcm
from callers.types import AudioContainer, AudioEncoding, AudioFormat

C, E = AudioContainer, AudioEncoding
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MODELS = ("eleven_multilingual_v2", "eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_v3")
DEFAULT_SCHEDULE = (120, 160, 250, 290)
SECONDS_PER_CHAR = 0.06
TONE_RATE = 48_000

VOICES: list[dict[str, Any]] = [
    {
        "voice_id": "21m00Tcm4TlvDq8ikWAM",
        "name": "Rachel",
        "category": "premade",
        "labels": {"accent": "american", "age": "young", "gender": "female", "use_case": "narration"},
        "description": "Matter-of-fact, personable woman.",
        "verified_languages": [
            {"language": "en", "model_id": "eleven_multilingual_v2", "accent": "american", "locale": "en-US"},
        ],
        "high_quality_base_model_ids": ["eleven_turbo_v2_5", "eleven_multilingual_v2", "eleven_flash_v2_5"],
        "is_owner": False,
    },
    {
        "voice_id": "JBFqnCBsd6RMkjVDRZzb",
        "name": "George",
        "category": "premade",
        "labels": {
            "accent": "british",
            "age": "middle_aged",
            "gender": "male",
            "use_case": "narrative_story",
        },
        "verified_languages": [
            {"language": "en", "model_id": "eleven_multilingual_v2", "accent": "british", "locale": "en-GB"},
            {"language": "fr", "model_id": "eleven_flash_v2_5", "locale": "fr-FR"},
        ],
        "high_quality_base_model_ids": ["eleven_multilingual_v2"],
        "is_owner": False,
    },
    {
        "voice_id": "XrExE9yKIg1WjnnlVkGX",
        "name": "Matilda",
        "category": "premade",
        "labels": {"accent": "castilian", "gender": "female", "language": "es"},
        "verified_languages": [],
        "high_quality_base_model_ids": [],
        "is_owner": False,
    },
    {
        "voice_id": "cl0n3dV01ce000000001",
        "name": "My clone",
        "category": "cloned",
        "labels": {},
        "verified_languages": [],
        "high_quality_base_model_ids": [],
        "is_owner": True,
    },
]

# output_format -> (the AudioFormat written, Content-Type)
_STREAMABLE: dict[str, tuple[AudioFormat, str]] = {
    **{
        f"pcm_{r}": (AudioFormat(E.PCM_S16LE, C.RAW, r), "audio/pcm")
        for r in (8000, 16000, 22050, 24000, 32000, 44100, 48000)
    },
    "ulaw_8000": (AudioFormat(E.MULAW, C.RAW, 8000), "audio/basic"),
    "alaw_8000": (AudioFormat(E.ALAW, C.RAW, 8000), "audio/alaw"),
    **{
        name: (AudioFormat(E.MP3, C.MP3, int(name.split("_")[1])), "audio/mpeg")
        for name in (
            "mp3_22050_32",
            "mp3_24000_48",
            "mp3_44100_32",
            "mp3_44100_64",
            "mp3_44100_96",
            "mp3_44100_128",
            "mp3_44100_192",
        )
    },
    **{f"opus_48000_{b}": (AudioFormat(E.OPUS, C.OGG, 48000), "audio/ogg") for b in (32, 64, 96, 128, 192)},
}
_WHOLE: dict[str, tuple[AudioFormat, str]] = {
    **_STREAMABLE,
    **{
        f"wav_{r}": (AudioFormat(E.PCM_S16LE, C.WAV, r), "audio/wav")
        for r in (8000, 16000, 22050, 24000, 32000, 44100, 48000)
    },
}


def tone(seconds: float) -> Pcm:
    t = np.arange(max(1, int(seconds * TONE_RATE))) / TONE_RATE
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    return Pcm(samples.tobytes(), TONE_RATE)


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": code, "message": message}}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(status, code, message), status=status, headers=headers)


def validation_error(loc: list[str | int], msg: str, value: Any) -> web.Response:
    body = {"detail": [{"type": "value_error", "loc": loc, "msg": msg, "input": value}]}
    return web.json_response(body, status=422)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    peer: tuple[str, int] | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WsSession:
    voice_id: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    messages: list[dict[str, Any]] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)  # the text of each generation
    audio_messages: int = 0
    finished: bool = False  # the end of input arrived
    speed: float = 1.0
    closed_at: float | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FakeElevenLabs:
    valid_keys: Collection[str]
    restricted_keys: Collection[str] = ()
    seconds_per_char: float = SECONDS_PER_CHAR
    chunk_bytes: int = 4096
    chunk_delay: float = 0.0
    force_status: int | None = None
    force_code: str | None = None
    force_message: str = "forced error"
    retry_after: str | None = None
    delay: float = 0.0
    ws_error: dict[str, Any] | None = None
    ws_reject_status: int | None = None
    ws_silent: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    ws_sessions: list[WsSession] = field(default_factory=list)
    closed_at: dict[tuple[str, int], float] = field(default_factory=dict)
    _peers: dict[int, tuple[str, int]] = field(default_factory=dict)
    _changed: asyncio.Event | None = None
    _closing: asyncio.Event | None = None
    _runner: web.AppRunner | None = None
    _port: int = 0
    _ids: int = 0

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeElevenLabs is not running; use `async with FakeElevenLabs(...)`")
        return f"http://127.0.0.1:{self._port}"

    # --- watching ---------------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                assert self._changed is not None, "the fake is not running"
                await self._changed.wait()

    async def wait_for_close(self, peer: tuple[str, int] | None, timeout: float = 5.0) -> float:
        """The time.monotonic() at which the HTTP connection from `peer` ended."""
        assert peer is not None, "the request has no recorded peer"
        await self._until(lambda: peer in self.closed_at, timeout)
        return self.closed_at[peer]

    async def wait_for_ws_close(self, session: WsSession, timeout: float = 5.0) -> float:
        async with asyncio.timeout(timeout):
            await session.closed.wait()
        assert session.closed_at is not None
        return session.closed_at

    async def wait_for_ws_session(self, count: int = 1, timeout: float = 5.0) -> WsSession:
        await self._until(lambda: len(self.ws_sessions) >= count, timeout)
        return self.ws_sessions[count - 1]

    async def wait_for_audio(self, session: WsSession, timeout: float = 5.0) -> None:
        await self._until(lambda: session.audio_messages > 0, timeout)

    def _watch_connections(self, server: web.Server) -> None:
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            peer = transport.get_extra_info("peername")
            if peer is not None:
                self._peers[id(handler)] = (str(peer[0]), int(peer[1]))
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            peer = self._peers.pop(id(handler), None)
            if peer is not None:
                self.closed_at[peer] = time.monotonic()
                self._notify()
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> FakeElevenLabs:
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._guard])
        app.router.add_post("/v1/text-to-speech/{voice_id}", self._tts)
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._tts_stream)
        app.router.add_get("/v1/text-to-speech/{voice_id}/stream-input", self._stream_input)
        app.router.add_get("/v1/voices", self._voices)
        app.router.add_get("/v1/user", self._user)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        assert self._runner.server is not None
        self._watch_connections(self._runner.server)
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- HTTP -------------------------------------------------------------------------

    def _auth(self, key: str | None) -> web.Response | None:
        if not key:
            return error(
                401,
                "needs_authorization",
                "Neither authorization header nor xi-api-key received, please provide one.",
            )
        if key not in self.valid_keys and key not in self.restricted_keys:
            return error(401, "invalid_api_key", "Invalid API key")
        return None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=CIMultiDict(request.headers),
                body=await request.read(),
                peer=request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        self._notify()
        if request.path.endswith("/stream-input"):
            return await handler(request)
        if self.delay > 0 and self._closing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.delay)
        if self.force_status is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            code = self.force_code or {401: "invalid_api_key", 404: "voice_not_found"}.get(
                self.force_status, "error"
            )
            return error(self.force_status, code, self.force_message, headers)
        refused = self._auth(request.headers.get("xi-api-key"))
        if refused is not None:
            return refused
        return await handler(request)

    def _next_id(self) -> str:
        self._ids += 1
        return f"req_el_{self._ids}"

    async def _audio_for(self, request: web.Request, table: dict[str, tuple[AudioFormat, str]]) -> Any:
        """(audio bytes, content type) for the request, or the error response."""
        voice = request.match_info["voice_id"]
        if voice not in {v["voice_id"] for v in VOICES}:
            return error(404, "voice_not_found", f"A voice with the voice_id {voice} was not found.")
        name = request.query.get("output_format", "mp3_44100_128")
        if name not in table:
            return validation_error(
                ["query", "output_format"], f"Input should be one of {sorted(table)}", name
            )
        try:
            body = json.loads(await request.read())
        except ValueError:
            return validation_error(["body"], "JSON decode error", None)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return validation_error(["body", "text"], "Field required", text)
        model = body.get("model_id") or "eleven_multilingual_v2"
        if model not in MODELS:
            return error(400, "model_not_found", f"A model with model ID {model} does not exist")
        if body.get("language_code") is not None and model == "eleven_multilingual_v2":
            return error(
                400,
                "unsupported_language",
                "Model 'eleven_multilingual_v2' does not support the language_code parameter.",
            )
        settings = body.get("voice_settings") or {}
        speed = settings.get("speed")
        if speed is not None and not 0.7 <= float(speed) <= 1.2:
            return validation_error(
                ["body", "voice_settings", "speed"], "Input should be between 0.7 and 1.2", speed
            )
        target, content_type = table[name]
        seconds = len(text.strip()) * self.seconds_per_char / float(speed or 1.0)
        return hub_audio.encode(tone(seconds), target), content_type

    async def _tts(self, request: web.Request) -> web.StreamResponse:
        found = await self._audio_for(request, _WHOLE)
        if isinstance(found, web.Response):
            return found
        data, content_type = found
        return web.Response(body=data, content_type=content_type, headers={"request-id": self._next_id()})

    async def _tts_stream(self, request: web.Request) -> web.StreamResponse:
        found = await self._audio_for(request, _STREAMABLE)
        if isinstance(found, web.Response):
            return found
        data, content_type = found
        response = web.StreamResponse(headers={"Content-Type": content_type, "request-id": self._next_id()})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            for start in range(0, len(data), self.chunk_bytes):
                await response.write(data[start : start + self.chunk_bytes])
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
            await response.write_eof()
        return response

    async def _voices(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"voices": VOICES, "has_more": False})

    async def _user(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("xi-api-key") in self.restricted_keys:
            return error(
                401,
                "missing_permissions",
                "The API key you used is missing the permission user_read to execute this operation.",
            )
        return web.json_response(
            {
                "user_id": "u_0123456789",
                "subscription": {
                    "tier": "creator",
                    "character_count": 1200,
                    "character_limit": 100000,
                    "status": "active",
                    "can_extend_character_limit": True,
                    "voice_limit": 30,
                },
                "is_new_user": False,
                "xi_api_key_preview": "sk_t****cdef",
                "can_use_delayed_payment_methods": False,
                "is_onboarding_completed": True,
                "is_onboarding_checklist_completed": True,
                "first_name": "Test",
                "created_at": 1_700_000_000,
            }
        )

    # --- websocket --------------------------------------------------------------------

    async def _stream_input(self, request: web.Request) -> web.StreamResponse:
        if self.ws_reject_status is not None:
            return error(self.ws_reject_status, "error", "refused", {"Retry-After": self.retry_after or "1"})
        ws = web.WebSocketResponse(autoclose=True, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        session = WsSession(
            voice_id=request.match_info["voice_id"],
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
        )
        self.ws_sessions.append(session)
        self._notify()
        try:
            await self._converse(ws, session)
        finally:
            if not ws.closed:
                await ws.close()
        return ws

    async def _converse(self, ws: web.WebSocketResponse, session: WsSession) -> None:
        """Reads the client's messages; a writer task sends the audio, so that a close
        frame from the client is seen at once even while audio is being sent."""
        outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        writer = asyncio.create_task(self._write(ws, session, outbox))
        try:
            await self._read(ws, session, outbox)
        finally:
            if session.closed_at is None:
                session.closed_at = time.monotonic()
            session.closed.set()
            self._notify()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await writer

    async def _read(
        self, ws: web.WebSocketResponse, session: WsSession, outbox: asyncio.Queue[tuple[str, Any]]
    ) -> None:
        name = session.query.get("output_format", "mp3_44100_128")
        model = session.query.get("model_id", "eleven_multilingual_v2")
        inactivity = float(session.query.get("inactivity_timeout", "20"))
        buffer = ""
        schedule: list[float] = list(DEFAULT_SCHEDULE)
        key = session.headers.get("xi-api-key")
        first = True
        failed = False

        def fail(code: str, message: str) -> None:
            nonlocal failed
            failed = True
            outbox.put_nowait(("fail", {"message": message, "error": code, "code": 1008}))

        while True:
            try:
                message = await ws.receive(timeout=None if failed else inactivity)
            except TimeoutError:
                fail(
                    "input_timeout_exceeded",
                    f"Have not received a new text input within the timeout of {inactivity} seconds. "
                    "Streaming input terminated. Please make sure to either feed the input in the timely "
                    'manner, or to send the end of input text (empty string "") when done.',
                )
                continue
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                session.closed_at = time.monotonic()
                return
            if failed or session.finished:
                continue
            if message.type is not WSMsgType.TEXT:
                fail("invalid_message", "Expected a JSON text message")
                continue
            data = json.loads(message.data)
            session.messages.append(data)
            self._notify()
            if first:
                first = False
                key = key or data.get("xi-api-key")
                if key not in self.valid_keys:
                    fail("invalid_api_key", "Invalid API key")
                elif session.voice_id not in {v["voice_id"] for v in VOICES}:
                    fail("voice_not_found", f"A voice with voice_id {session.voice_id} does not exist.")
                elif model not in MODELS:
                    fail("model_not_found", f"Model {model} does not exist.")
                elif name not in _STREAMABLE:
                    fail("invalid_output_format", f"Invalid output format {name}.")
                elif data.get("text") != " ":
                    fail("invalid_first_message", 'The first message must have the text " ".')
                else:
                    config = data.get("generation_config") or {}
                    schedule = list(config.get("chunk_length_schedule") or schedule)
                    session.speed = float((data.get("voice_settings") or {}).get("speed") or 1.0)
                continue
            text = data.get("text")
            if not isinstance(text, str):
                fail("invalid_message", "text is required")
                continue
            if self.ws_error is not None and text.strip():
                failed = True
                outbox.put_nowait(("fail", self.ws_error))
                continue
            if text == "":  # end of input: the rest, isFinal, close
                outbox.put_nowait(("text", buffer))
                outbox.put_nowait(("final", None))
                session.finished = True
                continue
            buffer += text
            if data.get("flush") or len(buffer.strip()) >= schedule[0]:
                outbox.put_nowait(("text", buffer))
                buffer = ""
                if len(schedule) > 1 and not data.get("flush"):
                    schedule = schedule[1:]

    async def _write(
        self, ws: web.WebSocketResponse, session: WsSession, outbox: asyncio.Queue[tuple[str, Any]]
    ) -> None:
        name = session.query.get("output_format", "mp3_44100_128")
        while True:
            kind, value = await outbox.get()
            if kind == "fail":
                await ws.send_json(value)
                await ws.close(code=1008, message=str(value.get("message", ""))[:120].encode())
                return
            if kind == "final":
                await ws.send_json({"isFinal": True})
                await ws.close()
                return
            await self._generate(ws, session, value, name)

    async def _generate(self, ws: web.WebSocketResponse, session: WsSession, text: str, name: str) -> None:
        text = " ".join(text.split())
        if not text or self.ws_silent:
            return
        session.generated.append(text)
        speed = session.speed
        target, _ = _STREAMABLE[name]
        data = hub_audio.encode(tone(len(text) * self.seconds_per_char / speed), target)
        starts = [round(i * self.seconds_per_char * 1000 / speed) for i in range(len(text))]
        alignment = {
            "chars": list(text),
            "charStartTimesMs": starts,
            "charDurationsMs": [round(self.seconds_per_char * 1000 / speed)] * len(text),
        }
        for index, start in enumerate(range(0, len(data), self.chunk_bytes)):
            piece = data[start : start + self.chunk_bytes]
            await ws.send_json(
                {
                    "audio": base64.b64encode(piece).decode(),
                    "isFinal": None,
                    "normalizedAlignment": alignment if index == 0 else None,
                    "alignment": alignment if index == 0 else None,
                }
            )
            session.audio_messages += 1
            self._notify()
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
