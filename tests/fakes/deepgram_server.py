"""A real HTTP + websocket server on 127.0.0.1 that speaks Deepgram's wire protocol.

Tests point the deepgram callers (the deepgram-sdk client for REST, aiohttp for the
live websocket) at it instead of mocking. Usage:

    async with FakeDeepgram(valid_keys={"dg-good"}) as fake:
        options = {"base_url": fake.base_url}
        fake.force_status, fake.retry_after = 429, "7"   # every later request answers that
        fake.delay = 2.0                                 # answer (or upgrade) after 2 s
        fake.requests[-1].query / .headers / .body       # what the client sent

Routes (every one needs `Authorization: Token <key>`; errors are Deepgram's JSON
`{"err_code", "err_msg", "request_id"}`, and a refused websocket upgrade also carries
it in the `dg-error` header, with `dg-request-id`):
- POST /v1/listen: the body is the audio (decoded with soundfile / PyAV to learn its
  length; a 400 answers bytes that are not audio) or JSON `{"url": ...}`. The answer is
  Deepgram's prerecorded JSON: metadata (request_id, duration, ...) and
  results.channels[0].alternatives[0] with transcript, confidence and words spread over
  the real duration (punctuated_word; speaker when diarize=true; detected_language
  when detect_language=true).
- GET /v1/listen (websocket): takes binary audio, KeepAlive, Finalize and CloseStream.
  Audio time is counted from the bytes (encoding, sample_rate, channels of the query);
  one word of `WORDS` per `WORD_SECONDS` from `SPEECH_AT`. It sends SpeechStarted
  (vad_events=true) once speech begins, an interim Results every `interim_every` seconds
  of audio (interim_results=true), a final Results every `final_every` seconds
  (speech_final=true unless `speech_final=False`, then an UtteranceEnd message ends
  the utterance), and at CloseStream the last final Results, UtteranceEnd, Metadata and
  a close frame (1000). Knobs: `hang` (read, never answer), `close_with` (close with
  that code and reason after the first audio), `ignore_close_stream`.
  `fake.live_closed_at` holds the time.monotonic() at which each connection ended.
- POST /v1/speak: JSON `{"text"}`, query model / encoding / container / sample_rate /
  speed, checked against Deepgram's table of format combinations. The answer is real
  audio (a 440 Hz tone, `SECONDS_PER_CHAR` per character) in the asked format, sent in
  pieces of `chunk_bytes`, `chunk_delay` apart; `fake.speak_closed_at` is set when the
  client went away before the end.
- GET /v1/models: {"stt": [...], "tts": [...]} with the voices of `TTS_MODELS`.
- GET /v1/projects: the key's projects.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import soundfile as sf  # type: ignore[import-untyped]
from aiohttp import WSMsgType, web
from multidict import MultiMapping

WORDS = ("hello", "from", "the", "hub")
PUNCTUATED = ("Hello", "from", "the", "hub.")
SPEECH_AT = 0.1
WORD_SECONDS = 0.3
SECONDS_PER_CHAR = 0.05
TTS_MODELS: list[dict[str, Any]] = [
    {
        "name": "thalia",
        "canonical_name": "aura-2-thalia-en",
        "architecture": "aura-2",
        "languages": ["en", "en-US"],
        "version": "2025-04-07.0",
        "uuid": "ecb76e9d-f2db-4127-8060-79b05590d22f",
        "metadata": {
            "accent": "American",
            "age": "Adult",
            "color": "#9BF2EC",
            "image": "https://static.deepgram.com/examples/avatars/thalia.jpg",
            "sample": "https://static.deepgram.com/examples/Aura-2-thalia.wav",
            "tags": ["feminine", "clear", "confident", "energetic", "enthusiastic"],
            "use_cases": ["casual chat", "customer service", "ivr"],
        },
    },
    {
        "name": "zeus",
        "canonical_name": "aura-2-zeus-en",
        "architecture": "aura-2",
        "languages": ["en", "en-US"],
        "version": "2025-04-07.0",
        "uuid": "4aea3bd3-0d1a-4e1e-8d35-c4e5ad8a6e53",
        "metadata": {"accent": "American", "tags": ["masculine", "deep", "trustworthy"]},
    },
    {
        "name": "celeste",
        "canonical_name": "aura-2-celeste-es",
        "architecture": "aura-2",
        "languages": ["es", "es-CO"],
        "version": "2025-04-07.0",
        "uuid": "7b1a3c07-2b1b-4d1f-9a28-1f5f3b2a7f61",
        "metadata": {"accent": "Colombian", "tags": ["feminine", "energetic"]},
    },
    {
        "name": "asteria",
        "canonical_name": "aura-asteria-en",
        "architecture": "aura",
        "languages": ["en", "en-US"],
        "version": "2023-10-23.0",
        "uuid": "8c6f8c7c-4c8b-4d0b-a2a3-3fb9cf2c9a21",
        "metadata": {"accent": "American", "tags": ["clear", "energetic"]},
    },
]
STT_MODELS: list[dict[str, Any]] = [
    {
        "name": "general",
        "canonical_name": "nova-3",
        "architecture": "nova-3",
        "languages": ["en", "en-US"],
        "version": "2024-12-20.0",
        "uuid": "2c2c0e5e-2b4f-4d5c-9d55-1b3b9d0f5d2e",
        "batch": True,
        "streaming": True,
        "formatted_output": True,
    },
    {
        "name": "general",
        "canonical_name": "nova-2",
        "architecture": "nova-2",
        "languages": ["en", "es", "fr"],
        "version": "2024-01-09.29447",
        "uuid": "30089e05-99d1-4376-b32e-c263170674af",
        "batch": True,
        "streaming": True,
        "formatted_output": True,
    },
]
# Deepgram's table of Aura output combinations: encoding -> (containers, sample rates).
# A fixed-rate encoding (mp3, opus, aac) takes no sample_rate at all.
SPEAK_FORMATS: dict[str, tuple[tuple[str, ...], tuple[int, ...] | None, int]] = {
    "linear16": (("wav", "none"), (8000, 16000, 24000, 32000, 48000), 24000),
    "mulaw": (("wav", "none"), (8000, 16000), 8000),
    "alaw": (("wav", "none"), (8000, 16000), 8000),
    "mp3": ((), None, 22050),
    "opus": (("ogg",), None, 48000),
    "flac": ((), (8000, 16000, 22050, 32000, 48000), 48000),
}
_LIVE_WIDTH = {"linear16": 2, "mulaw": 1, "alaw": 1}
REQUEST_ID = web.RequestKey("request_id", str)


@dataclass
class Recorded:
    method: str
    path: str
    query: MultiMapping[str]
    headers: dict[str, str]
    body: bytes


@dataclass
class LiveSession:
    query: MultiMapping[str]
    audio_bytes: int = 0
    texts: list[str] = field(default_factory=list)  # the client's JSON messages, in order
    frames: list[int] = field(default_factory=list)  # the size of each binary frame


def deepgram_error(status: int, code: str, message: str, request_id: str, **headers: str) -> web.Response:
    body = json.dumps({"err_code": code, "err_msg": message, "request_id": request_id})
    return web.Response(
        status=status,
        text=body,
        content_type="application/json",
        headers={"dg-request-id": request_id, **headers},
    )


_STATUS_CODES = {
    400: ("Bad Request", "Bad Request: the request could not be processed"),
    401: ("INVALID_AUTH", "Invalid credentials."),
    402: ("ASR_PAYMENT_REQUIRED", "Project does not have enough credits for an ASR request"),
    403: ("INSUFFICIENT_PERMISSIONS", "User does not have sufficient permissions."),
    404: ("NOT_FOUND", "The requested resource was not found"),
    422: ("UNPROCESSABLE_ENTITY", "The request could not be processed"),
    429: ("TOO_MANY_REQUESTS", "Too many requests. Please try again later"),
    500: ("INTERNAL_SERVER_ERROR", "Internal server error"),
    502: ("BAD_GATEWAY", "Bad gateway"),
    503: ("SERVICE_UNAVAILABLE", "Service unavailable"),
}


@dataclass
class FakeDeepgram:
    valid_keys: Collection[str] = ("dg-test-key",)
    force_status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    # live
    interim_every: float = 0.5
    final_every: float = 2.0
    speech_final: bool = True
    hang: bool = False
    close_with: tuple[int, str] | None = None
    ignore_close_stream: bool = False
    # speak
    chunk_bytes: int = 4096
    chunk_delay: float = 0.0

    requests: list[Recorded] = field(default_factory=list)
    live: list[LiveSession] = field(default_factory=list)
    live_closed_at: list[float] = field(default_factory=list)
    speak_closed_at: float | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> FakeDeepgram:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/v1/listen", self._listen)
        app.router.add_get("/v1/listen", self._live)
        app.router.add_post("/v1/speak", self._speak)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/projects", self._projects)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def request_id(self) -> str:
        return f"f1e2d3c4-0000-4000-8000-{next(self._ids):012d}"

    async def wait_for_live_close(self, count: int = 1, timeout: float = 2.0) -> float:
        async with asyncio.timeout(timeout):
            while len(self.live_closed_at) < count:
                await asyncio.sleep(0.002)
        return self.live_closed_at[count - 1]

    # --- the gate every request passes: recording, delay, forced status, auth ---------

    @web.middleware
    async def _gate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
        body = b"" if is_ws else await request.read()
        self.requests.append(
            Recorded(request.method, request.path, request.query, dict(request.headers), body)
        )
        rid = self.request_id()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.force_status
        auth = request.headers.get("Authorization", "")
        if status is None and (not auth.startswith("Token ") or auth[6:] not in self.valid_keys):
            status = 401
        if status is not None:
            code, message = _STATUS_CODES.get(status, ("ERROR", f"HTTP {status}"))
            extra: dict[str, str] = {}
            if self.retry_after is not None:
                extra["Retry-After"] = self.retry_after
            if is_ws:  # Deepgram repeats the body of a refused upgrade in dg-error
                extra["dg-error"] = json.dumps({"err_code": code, "err_msg": message, "request_id": rid})
            return deepgram_error(status, code, message, rid, **extra)
        request[REQUEST_ID] = rid
        return await handler(request)

    # --- prerecorded ----------------------------------------------------------------

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        rid = request[REQUEST_ID]
        recorded = self.requests[-1]
        if request.content_type == "application/json":
            url = json.loads(recorded.body).get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                return deepgram_error(400, "Bad Request", "Bad Request: url must be an http(s) URL", rid)
            duration = 2.5
        else:
            try:
                duration = audio_duration(recorded.body)
            except Exception:
                return deepgram_error(
                    400,
                    "Bad Request",
                    "Bad Request: failed to process audio: corrupt or unsupported data",
                    rid,
                )
        query = request.query
        punctuate = query.get("punctuate") == "true" or query.get("smart_format") == "true"
        count = len(WORDS)
        step = duration / count
        words = []
        for i, word in enumerate(WORDS):
            item: dict[str, Any] = {
                "word": word,
                "start": round(i * step + 0.05, 3),
                "end": round(duration if i == count - 1 else (i + 1) * step - 0.02, 3),
                "confidence": 0.98,
                "punctuated_word": PUNCTUATED[i],
            }
            if query.get("diarize") == "true":
                item["speaker"] = i % 2
                item["speaker_confidence"] = 0.9
            words.append(item)
        transcript = " ".join(PUNCTUATED if punctuate else WORDS)
        channel: dict[str, Any] = {
            "alternatives": [{"transcript": transcript, "confidence": 0.9931, "words": words}]
        }
        if query.get("detect_language") == "true":
            channel["detected_language"] = "en"
            channel["language_confidence"] = 0.97
        model = query.get("model", "base")
        answer = {
            "metadata": {
                "transaction_key": "deprecated",
                "request_id": rid,
                "sha256": "0" * 64,
                "created": "2025-06-01T12:00:00.000Z",
                "duration": duration,
                "channels": 1,
                "models": [STT_MODELS[0]["uuid"]],
                "model_info": {
                    STT_MODELS[0]["uuid"]: {"name": f"general-{model}", "version": "1", "arch": model}
                },
            },
            "results": {"channels": [channel]},
        }
        return web.json_response(answer, headers={"dg-request-id": rid})

    # --- live -----------------------------------------------------------------------

    async def _live(self, request: web.Request) -> web.StreamResponse:
        rid = request[REQUEST_ID]
        query = request.query
        encoding = query.get("encoding")
        if encoding is not None and encoding not in _LIVE_WIDTH and encoding not in ("flac", "opus"):
            message = f"Bad Request: unknown encoding {encoding!r}"
            return deepgram_error(
                400, "Bad Request", message, rid, **{"dg-error": json.dumps({"err_msg": message})}
            )
        if encoding is not None and "sample_rate" not in query:
            message = "Bad Request: sample_rate is required with encoding"
            return deepgram_error(
                400, "Bad Request", message, rid, **{"dg-error": json.dumps({"err_msg": message})}
            )
        ws = web.WebSocketResponse()
        ws.headers["dg-request-id"] = rid
        await ws.prepare(request)
        session = LiveSession(query)
        self.live.append(session)
        try:
            await self._converse(ws, session, rid)
        finally:
            self.live_closed_at.append(time.monotonic())
        return ws

    async def _converse(self, ws: web.WebSocketResponse, session: LiveSession, rid: str) -> None:
        query = session.query
        rate = int(query.get("sample_rate", "16000"))
        channels = int(query.get("channels", "1"))
        width = _LIVE_WIDTH.get(query.get("encoding", ""), 2)
        bytes_per_second = rate * channels * width
        stream = _LiveScript(
            punctuate=query.get("punctuate") == "true",
            interim=query.get("interim_results") == "true",
            vad=query.get("vad_events") == "true",
            utterance_end=query.get("utterance_end_ms") is not None,
            speech_final=self.speech_final,
            interim_every=self.interim_every,
            final_every=self.final_every,
        )
        async for message in ws:
            if message.type is WSMsgType.BINARY:
                session.audio_bytes += len(message.data)
                session.frames.append(len(message.data))
                if self.hang:
                    continue
                if self.close_with is not None:
                    await ws.close(code=self.close_with[0], message=self.close_with[1].encode())
                    return
                for out in stream.advance(session.audio_bytes / bytes_per_second):
                    await ws.send_str(json.dumps(out))
            elif message.type is WSMsgType.TEXT:
                session.texts.append(message.data)
                kind = json.loads(message.data).get("type")
                if self.hang or kind == "KeepAlive":
                    continue
                if kind == "Finalize":
                    for out in stream.flush(from_finalize=True):
                        await ws.send_str(json.dumps(out))
                elif kind == "CloseStream" and not self.ignore_close_stream:
                    for out in stream.flush(from_finalize=False):
                        await ws.send_str(json.dumps(out))
                    metadata = {
                        "type": "Metadata",
                        "transaction_key": "deprecated",
                        "request_id": rid,
                        "sha256": "0" * 64,
                        "created": "2025-06-01T12:00:00.000Z",
                        "duration": round(session.audio_bytes / bytes_per_second, 3),
                        "channels": channels,
                        "models": [STT_MODELS[0]["uuid"]],
                        "model_info": {},
                    }
                    await ws.send_str(json.dumps(metadata))
                    await ws.close(code=1000)
                    return

    # --- speak ----------------------------------------------------------------------

    async def _speak(self, request: web.Request) -> web.StreamResponse:
        rid = request[REQUEST_ID]
        query = request.query
        try:
            text = json.loads(self.requests[-1].body)["text"]
        except (ValueError, KeyError, TypeError):
            return deepgram_error(400, "INVALID_BODY", "The body must be JSON with a text field", rid)
        model = query.get("model", "aura-asteria-en")
        if model not in {m["canonical_name"] for m in TTS_MODELS}:
            return deepgram_error(400, "INVALID_QUERY_PARAMETER", f"No such model: {model}", rid)
        encoding = query.get("encoding", "mp3")
        if encoding not in SPEAK_FORMATS:
            return deepgram_error(400, "INVALID_QUERY_PARAMETER", f"Unsupported encoding: {encoding}", rid)
        containers, rates, default_rate = SPEAK_FORMATS[encoding]
        container = query.get("container", containers[0] if containers else "none")
        if (containers and container not in containers) or (not containers and "container" in query):
            message = f"Unsupported container {container!r} for encoding {encoding}"
            return deepgram_error(400, "INVALID_QUERY_PARAMETER", message, rid)
        if "sample_rate" in query and rates is None:
            message = f"sample_rate is not configurable for encoding {encoding}"
            return deepgram_error(400, "INVALID_QUERY_PARAMETER", message, rid)
        rate = int(query.get("sample_rate", default_rate))
        if rates is not None and rate not in rates:
            message = f"Unsupported sample_rate {rate} for encoding {encoding}"
            return deepgram_error(400, "INVALID_QUERY_PARAMETER", message, rid)
        speed = float(query.get("speed", "1.0"))
        data = speak_audio(len(text) * SECONDS_PER_CHAR / speed, encoding, container, rate)
        response = web.StreamResponse(
            headers={
                "Content-Type": _SPEAK_TYPES[encoding if container != "wav" else "wav"],
                "dg-request-id": rid,
                "dg-model-name": model,
                "dg-char-count": str(len(text)),
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for start in range(0, len(data), self.chunk_bytes):
                transport = request.transport
                if transport is None or transport.is_closing():
                    raise ConnectionResetError
                await response.write(data[start : start + self.chunk_bytes])
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.speak_closed_at = time.monotonic()
            raise
        return response

    # --- manage ---------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"stt": STT_MODELS, "tts": TTS_MODELS})

    async def _projects(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"projects": [{"project_id": "3a6d2f1e-5b8c-4e9f-a0b1-c2d3e4f5a6b7", "name": "Hub test project"}]}
        )


_SPEAK_TYPES = {
    "wav": "audio/wav",
    "linear16": "application/octet-stream",
    "mulaw": "application/octet-stream",
    "alaw": "application/octet-stream",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
}
_SNDFILE: dict[tuple[str, str], tuple[str, str]] = {
    ("linear16", "wav"): ("WAV", "PCM_16"),
    ("linear16", "none"): ("RAW", "PCM_16"),
    ("mulaw", "wav"): ("WAV", "ULAW"),
    ("mulaw", "none"): ("RAW", "ULAW"),
    ("alaw", "wav"): ("WAV", "ALAW"),
    ("alaw", "none"): ("RAW", "ALAW"),
    ("mp3", "none"): ("MP3", "MPEG_LAYER_III"),
    ("opus", "ogg"): ("OGG", "OPUS"),
    ("flac", "none"): ("FLAC", "PCM_16"),
}


def speak_audio(seconds: float, encoding: str, container: str, rate: int) -> bytes:
    """A 440 Hz tone of `seconds`, written by libsndfile as Deepgram would write it."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    file_format, subtype = _SNDFILE[(encoding, container)]
    out = io.BytesIO()
    sf.write(
        out,
        samples,
        rate,
        format=file_format,
        subtype=subtype,
        endian="LITTLE" if file_format == "RAW" else None,
    )
    return out.getvalue()


def audio_duration(data: bytes) -> float:
    """Seconds of audio in a file of any container, as Deepgram would decode it."""
    try:
        info = sf.info(io.BytesIO(data))
        return float(info.frames) / float(info.samplerate)
    except RuntimeError:
        pass
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        frames = 0
        rate = 0
        for frame in container.decode(stream):
            frames += frame.samples
            rate = frame.sample_rate
        if not rate:
            raise ValueError("no audio")
        return frames / rate


@dataclass
class _LiveScript:
    """What Deepgram says as the audio advances: words at a fixed pace from SPEECH_AT."""

    punctuate: bool
    interim: bool
    vad: bool
    utterance_end: bool
    speech_final: bool
    interim_every: float
    final_every: float
    heard: float = 0.0  # seconds of audio received
    segment_start: float = 0.0  # start of the words not yet final
    next_interim: float = 0.0
    next_final: float = 0.0
    started: bool = False

    def __post_init__(self) -> None:
        self.next_interim = self.interim_every
        self.next_final = self.final_every

    def _words(self, start: float, end: float) -> list[dict[str, Any]]:
        out = []
        i = 0
        while True:
            w_start = SPEECH_AT + i * WORD_SECONDS
            w_end = w_start + WORD_SECONDS - 0.05
            if w_end > end:
                break
            if w_start >= start:
                n = i % len(WORDS)
                out.append(
                    {
                        "word": WORDS[n],
                        "start": round(w_start, 3),
                        "end": round(w_end, 3),
                        "confidence": 0.97,
                        "punctuated_word": PUNCTUATED[n],
                    }
                )
            i += 1
        return out

    def _results(self, end: float, *, final: bool, speech_final: bool, from_finalize: bool) -> dict[str, Any]:
        words = self._words(self.segment_start, end)
        key = "punctuated_word" if self.punctuate else "word"
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - self.segment_start, 3),
            "start": round(self.segment_start, 3),
            "is_final": final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(str(w[key]) for w in words),
                        "confidence": 0.95 if words else 0.0,
                        "words": words,
                    }
                ]
            },
            "metadata": {
                "request_id": "live",
                "model_info": {"name": "general-nova-3", "version": "1", "arch": "nova-3"},
                "model_uuid": STT_MODELS[0]["uuid"],
            },
        }

    def _final(self, end: float, *, from_finalize: bool, last: bool) -> list[dict[str, Any]]:
        words = self._words(self.segment_start, end)
        speech_final = (self.speech_final or last) and bool(words)
        out = [self._results(end, final=True, speech_final=speech_final, from_finalize=from_finalize)]
        if words and self.utterance_end and (not self.speech_final or last):
            out.append({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": words[-1]["end"]})
        self.segment_start = words[-1]["end"] if words else end
        return out

    def advance(self, heard: float) -> list[dict[str, Any]]:
        self.heard = heard
        out: list[dict[str, Any]] = []
        if self.vad and not self.started and heard >= SPEECH_AT:
            self.started = True
            out.append({"type": "SpeechStarted", "channel": [0], "timestamp": SPEECH_AT})
        while heard >= self.next_final:
            out += self._final(self.next_final, from_finalize=False, last=False)
            self.next_final += self.final_every
            self.next_interim = max(self.next_interim, self.segment_start + self.interim_every)
        while self.interim and heard >= self.next_interim:
            if self._words(self.segment_start, self.next_interim):
                out.append(
                    self._results(self.next_interim, final=False, speech_final=False, from_finalize=False)
                )
            self.next_interim += self.interim_every
        return out

    def flush(self, *, from_finalize: bool) -> list[dict[str, Any]]:
        if self.heard <= self.segment_start:
            return []
        return self._final(self.heard, from_finalize=from_finalize, last=True)
