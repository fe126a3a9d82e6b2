"""A real HTTP + websocket server on 127.0.0.1 that speaks Cartesia's wire protocol.

    async with FakeCartesia(valid_keys={"sk_car_good"}) as fake:
        options = {"base_url": fake.base_url}
        fake.force_status = 429; fake.retry_after = "7"   # every later HTTP request / handshake
        fake.delay = 2.0                                  # answer (or accept a handshake) after 2 s
        fake.requests[-1]                                 # method, path, query, headers, json, form

Routes (what Cartesia's API reference and the cartesia SDK 4.2 put on the wire):
- every route wants `X-API-Key: <key>` (or `Authorization: Bearer <key>`) and a
  `Cartesia-Version` header (or `cartesia_version` in a websocket's query); a bad key is
  401, a missing version 400, errors are JSON {title, message, error_code, status_code,
  request_id, doc_url};
- POST /tts/bytes, JSON {model_id, transcript, voice:{mode:"id", id}, output_format:
  {container raw|wav|mp3, encoding pcm_s16le|pcm_f32le|pcm_mulaw|pcm_alaw, sample_rate
  8000|16000|22050|24000|44100|48000, bit_rate for mp3}, language, generation_config}:
  real audio (a 220 Hz tone, SECONDS_PER_CHAR per transcript character) written in that
  format, streamed in pieces of `chunk_bytes`, `chunk_delay` apart;
- GET /voices?limit&starting_after: {data, has_more, next_page} cursor pages of `voices`;
- POST /stt, multipart (file, model, language, timestamp_granularities[]): the file is
  decoded with PyAV (a 400 answers a file that is not audio) and answered {type:
  "transcript", text, language, duration, words, request_id}, words spread over the real
  duration;
- /tts/websocket: JSON generation requests per context_id; text is buffered per context
  until {"flush": true} or {"continue": false}, then its audio is sent as {"type":
  "chunk", "data": base64, "done": false, "status_code": 206, "step_time", "context_id"},
  then {"type": "flush_done", ...} or {"type": "done", "done": true, ...}; a bad request
  answers {"type": "error", ..., "done": true}; {"cancel": true} drops a context;
- /stt/websocket?model&encoding&sample_rate&language: binary audio frames; an interim
  transcript (is_final false) every `interim_every_seconds` of audio; "finalize" answers
  the final transcript of what was buffered and {"type": "flush_done"}; "done" (or
  "close") answers the rest and {"type": "done"} and closes.

What the server saw closing is kept: `closed_at` holds the time.monotonic() at which each
websocket, or a streaming HTTP answer, was found closed by the client.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf  # type: ignore[import-untyped]
from aiohttp import WSMsgType, web

SECONDS_PER_CHAR = 0.05
TONE_HZ = 220.0
RATES = (8000, 16000, 22050, 24000, 44100, 48000)
RAW_ENCODINGS = ("pcm_s16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw")
STT_ENCODINGS = {
    "pcm_s16le": 2,
    "pcm_s32le": 4,
    "pcm_f16le": 2,
    "pcm_f32le": 4,
    "pcm_mulaw": 1,
    "pcm_alaw": 1,
}
BIT_RATES = (32000, 64000, 96000, 128000, 192000)
DEFAULT_VOICES: tuple[dict[str, Any], ...] = (
    {
        "id": "a0e99841-438c-4a64-b679-ae501e7d6091",
        "name": "Barbershop Man",
        "language": "en",
        "gender": "masculine",
    },
    {"id": "694f9389-aac1-45b6-b726-9d9369183238", "name": "Sarah", "language": "en", "gender": "feminine"},
    {
        "id": "65b25c5d-ff07-4687-a04c-da2f43ef6fa9",
        "name": "Helpful French Lady",
        "language": "fr",
        "gender": "feminine",
    },
    {
        "id": "c2ac25f9-ecc4-4f56-9095-651354df60c0",
        "name": "Commercial Lady",
        "language": "en",
        "gender": None,
    },
    {
        "id": "f9836c6e-a0bd-460e-9d3c-f7299fa60f94",
        "name": "Southern Woman",
        "language": "en",
        "locales": [{"locale": "en-US", "is_native": True}, {"locale": "es-MX", "is_native": False}],
        "gender": "feminine",
    },
)
_SF_SUBTYPES = {"pcm_s16le": "PCM_16", "pcm_f32le": "FLOAT", "pcm_mulaw": "ULAW", "pcm_alaw": "ALAW"}


def tone(seconds: float, rate: int) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) * 20 + 0.05)
    return (0.3 * envelope * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def encode(samples: npt.NDArray[np.float32], output_format: dict[str, Any]) -> bytes:
    """The samples as Cartesia writes them in `output_format` (already validated)."""
    rate = int(output_format["sample_rate"])
    container = output_format["container"]
    out = io.BytesIO()
    if container == "mp3":
        sf.write(out, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
        return out.getvalue()
    encoding = output_format["encoding"]
    if container == "wav":
        sf.write(out, samples, rate, format="WAV", subtype=_SF_SUBTYPES[encoding])
        return out.getvalue()
    if encoding == "pcm_f32le":
        return samples.astype("<f4").tobytes()
    if encoding == "pcm_s16le":
        return (samples * 32767).astype("<i2").tobytes()
    sf.write(out, samples, rate, format="RAW", subtype=_SF_SUBTYPES[encoding])
    return out.getvalue()


def check_output_format(output_format: object, *, websocket: bool) -> str | None:
    """What is wrong with an output_format, as Cartesia would say it; None when it is fine."""
    if not isinstance(output_format, dict):
        return "output_format is required"
    container = output_format.get("container")
    allowed = ("raw",) if websocket else ("raw", "wav", "mp3")
    if container not in allowed:
        return f"output_format.container must be one of {', '.join(allowed)}"
    if output_format.get("sample_rate") not in RATES:
        return "output_format.sample_rate is not supported"
    if container == "mp3":
        if output_format.get("bit_rate") not in BIT_RATES:
            return "output_format.bit_rate is required for mp3"
    elif output_format.get("encoding") not in RAW_ENCODINGS:
        return "output_format.encoding is not supported"
    return None


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any = None
    form: dict[str, list[Any]] = field(default_factory=dict)
    messages: list[Any] = field(default_factory=list)  # websocket: what the client sent, in order


class FakeCartesia:
    def __init__(
        self,
        *,
        valid_keys: Collection[str] = ("sk_car_good",),
        voices: tuple[dict[str, Any], ...] = DEFAULT_VOICES,
        transcript: str = "the quick brown fox jumps over the lazy dog",
    ) -> None:
        self.valid_keys = set(valid_keys)
        self.voices = list(voices)
        self.transcript = transcript
        self.requests: list[Seen] = []
        # knobs
        self.force_status: int | None = None
        self.retry_after: str | None = None
        self.echo_key: bool = False  # quote the sent key in the 401 message (a leak test)
        self.delay: float = 0.0
        self.chunk_bytes = 4096
        self.chunk_delay = 0.0
        self.ws_error: dict[str, Any] | None = None  # sent on a websocket instead of answering
        self.stall_after_done = False  # the STT websocket goes silent after "done"
        self.interim_every_seconds = 0.5
        # what was seen
        self.closed_at: list[float] = []
        self.flushes: list[int] = []  # TTS flush_ids answered
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- life cycle -----------------------------------------------------------------

    async def __aenter__(self) -> FakeCartesia:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/tts/bytes", self._tts_bytes)
        app.router.add_get("/voices", self._voices)
        app.router.add_post("/stt", self._stt)
        app.router.add_get("/tts/websocket", self._tts_websocket)
        app.router.add_get("/stt/websocket", self._stt_websocket)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_close(self, count: int = 1, within: float = 2.0) -> float:
        deadline = time.monotonic() + within
        while len(self.closed_at) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        assert len(self.closed_at) >= count, "the client never closed"
        return self.closed_at[count - 1]

    # --- shared ---------------------------------------------------------------------

    def request_id(self) -> str:
        return f"req-{next(self._ids)}"

    def error_body(self, status: int, title: str, message: str, code: str) -> dict[str, Any]:
        return {
            "title": title,
            "message": message,
            "error_code": code,
            "status_code": status,
            "request_id": self.request_id(),
            "doc_url": "https://docs.cartesia.ai/api-reference",
        }

    def error(self, status: int, title: str, message: str, code: str) -> web.Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after and status in (429, 503) else {}
        return web.json_response(
            self.error_body(status, title, message, code), status=status, headers=headers
        )

    def _key(self, request: web.Request) -> str | None:
        key = request.headers.get("X-API-Key")
        if key is None and request.headers.get("Authorization", "").startswith("Bearer "):
            key = request.headers["Authorization"][len("Bearer ") :]
        return key

    async def _gate(self, request: web.Request, seen: Seen) -> web.Response | None:
        """Record, wait, then refuse what Cartesia refuses (auth, version, forced status)."""
        self.requests.append(seen)
        if self.delay:
            await asyncio.sleep(self.delay)
        key = self._key(request)
        if key not in self.valid_keys:
            said = f"Invalid API key: {key}" if self.echo_key else "Invalid API key"
            return self.error(401, "Unauthorized", said, "invalid_api_key")
        if not (request.headers.get("Cartesia-Version") or request.query.get("cartesia_version")):
            return self.error(400, "Bad request", "Cartesia-Version header is required", "missing_version")
        if self.force_status is not None:
            return self.error(self.force_status, "Forced", f"forced status {self.force_status}", "forced")
        return None

    def _seen(self, request: web.Request, **extra: Any) -> Seen:
        query: dict[str, list[str]] = {}
        for name, value in request.query.items():
            query.setdefault(name, []).append(value)
        return Seen(request.method, request.path, query, dict(request.headers), **extra)

    # --- TTS over HTTP --------------------------------------------------------------

    async def _tts_bytes(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        refused = await self._gate(request, self._seen(request, json=body))
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return self.error(400, "Bad request", "the body must be JSON", "invalid_json")
        problem = self._check_generation(body, websocket=False)
        if problem is not None:
            status, message = problem
            return self.error(status, "Invalid request", message, "invalid_request")
        data = encode(
            tone(len(body["transcript"]) * SECONDS_PER_CHAR, body["output_format"]["sample_rate"]),
            body["output_format"],
        )
        response = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "X-Request-Id": self.request_id()}
        )
        await response.prepare(request)
        try:
            for at in range(0, len(data), self.chunk_bytes):
                await response.write(data[at : at + self.chunk_bytes])
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            self.closed_at.append(time.monotonic())
            raise
        return response

    def _check_generation(self, body: dict[str, Any], *, websocket: bool) -> tuple[int, str] | None:
        for name in ("model_id", "voice", "output_format"):
            if name not in body:
                return 400, f"{name} is required"
        if not isinstance(body.get("transcript"), str):
            return 400, "transcript is required"
        voice = body["voice"]
        if not isinstance(voice, dict) or voice.get("mode") != "id" or not isinstance(voice.get("id"), str):
            return 400, "voice must be {mode: id, id: <voice id>}"
        if voice["id"] not in {v["id"] for v in self.voices}:
            return 404, f"Voice {voice['id']} not found"
        problem = check_output_format(body["output_format"], websocket=websocket)
        if problem is not None:
            return 400, problem
        return None

    # --- voices ---------------------------------------------------------------------

    async def _voices(self, request: web.Request) -> web.Response:
        refused = await self._gate(request, self._seen(request))
        if refused is not None:
            return refused
        limit = int(request.query.get("limit", "10"))
        if not 1 <= limit <= 100:
            return self.error(400, "Bad request", "limit must be between 1 and 100", "invalid_limit")
        start = 0
        after = request.query.get("starting_after")
        if after is not None:
            ids = [v["id"] for v in self.voices]
            if after not in ids:
                return self.error(400, "Bad request", "starting_after is not a voice id", "invalid_cursor")
            start = ids.index(after) + 1
        page = self.voices[start : start + limit]
        has_more = start + limit < len(self.voices)
        items = [{**v, "description": f"{v['name']}.", "is_public": True, "is_owner": False} for v in page]
        return web.json_response(
            {"data": items, "has_more": has_more, "next_page": page[-1]["id"] if has_more and page else None}
        )

    # --- STT over HTTP --------------------------------------------------------------

    async def _stt(self, request: web.Request) -> web.Response:
        form: dict[str, list[Any]] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.name is None or not hasattr(part, "read"):
                    continue
                value: Any = await part.read()  # type: ignore[union-attr]
                if part.name != "file":
                    value = value.decode()
                else:
                    form.setdefault("file.filename", []).append(part.filename)  # type: ignore[union-attr]
                form.setdefault(part.name, []).append(value)
        refused = await self._gate(request, self._seen(request, form=form))
        if refused is not None:
            return refused
        if "file" not in form or "model" not in form:
            return self.error(400, "Bad request", "file and model are required", "invalid_request")
        if form["model"][0] not in ("ink-whisper", "ink-whisper-2025-06-04"):
            return self.error(400, "Invalid model", "The model is not valid", "model_not_found")
        try:
            duration = _decoded_seconds(form["file"][0])
        except (av.FFmpegError, ValueError, IndexError):
            return self.error(400, "Bad request", "the file could not be decoded as audio", "invalid_audio")
        answer: dict[str, Any] = {
            "type": "transcript",
            "text": self.transcript,
            "language": form.get("language", ["en"])[0],
            "duration": round(duration, 3),
            "request_id": self.request_id(),
        }
        if "word" in form.get("timestamp_granularities[]", []):
            answer["words"] = self.words(self.transcript, 0.0, duration)
        return web.json_response(answer)

    @staticmethod
    def words(text: str, start: float, end: float) -> list[dict[str, Any]]:
        tokens = text.split()
        if not tokens:
            return []
        step = (end - start) / len(tokens)
        return [
            {"word": token, "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3)}
            for i, token in enumerate(tokens)
        ]

    # --- TTS websocket --------------------------------------------------------------

    async def _tts_websocket(self, request: web.Request) -> web.StreamResponse:
        seen = self._seen(request)
        refused = await self._gate(request, seen)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        contexts: dict[str, dict[str, Any]] = {}
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                seen.messages.append(data)
                await self._tts_message(ws, data, contexts)
        finally:
            self.closed_at.append(time.monotonic())
        return ws

    async def _tts_message(
        self, ws: web.WebSocketResponse, data: dict[str, Any], contexts: dict[str, dict[str, Any]]
    ) -> None:
        context_id = data.get("context_id")
        if not isinstance(context_id, str):
            await ws.send_json(
                {
                    "type": "error",
                    "done": True,
                    "status_code": 400,
                    "title": "Bad request",
                    "message": "context_id is required",
                }
            )
            return
        if data.get("cancel") is True:
            contexts.pop(context_id, None)
            return
        if self.ws_error is not None:
            await ws.send_json({"type": "error", "done": True, "context_id": context_id, **self.ws_error})
            return
        context = contexts.get(context_id)
        if context is None:
            problem = self._check_generation(data, websocket=True)
            if problem is not None:
                status, text = problem
                await ws.send_json(
                    {
                        "type": "error",
                        "done": True,
                        "status_code": status,
                        "context_id": context_id,
                        "title": "Invalid request",
                        "message": text,
                    }
                )
                return
            context = contexts[context_id] = {"request": data, "text": "", "flush_id": 1}
        context["text"] += data.get("transcript", "")
        last = data.get("continue") is False
        if data.get("flush") is True or last:
            await self._speak(ws, context_id, context)
            if data.get("flush") is True and not last:
                await ws.send_json(
                    {
                        "type": "flush_done",
                        "done": False,
                        "flush_done": True,
                        "flush_id": context["flush_id"],
                        "status_code": 206,
                        "context_id": context_id,
                    }
                )
                self.flushes.append(context["flush_id"])
                context["flush_id"] += 1
        if last:
            await ws.send_json({"type": "done", "done": True, "status_code": 206, "context_id": context_id})
            contexts.pop(context_id, None)

    async def _speak(self, ws: web.WebSocketResponse, context_id: str, context: dict[str, Any]) -> None:
        text, context["text"] = context["text"], ""
        if not text:
            return
        output_format = context["request"]["output_format"]
        data = encode(tone(len(text) * SECONDS_PER_CHAR, output_format["sample_rate"]), output_format)
        for at in range(0, len(data), self.chunk_bytes):
            await ws.send_json(
                {
                    "type": "chunk",
                    "data": base64.b64encode(data[at : at + self.chunk_bytes]).decode(),
                    "done": False,
                    "status_code": 206,
                    "step_time": 12.5,
                    "context_id": context_id,
                    "flush_id": context["flush_id"],
                }
            )
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)

    # --- STT websocket --------------------------------------------------------------

    async def _stt_websocket(self, request: web.Request) -> web.StreamResponse:
        seen = self._seen(request)
        refused = await self._gate(request, seen)
        if refused is not None:
            return refused
        query = request.query
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        request_id = self.request_id()
        try:
            encoding = query.get("encoding")
            rate = query.get("sample_rate", "")
            if (
                query.get("model") not in ("ink-whisper", "ink-2")
                or encoding not in STT_ENCODINGS
                or not rate.isdigit()
            ):
                await ws.send_json(
                    {
                        "type": "error",
                        "title": "Invalid request",
                        "status_code": 400,
                        "message": "model, encoding and sample_rate are required",
                        "error_code": "invalid_request",
                        "request_id": request_id,
                    }
                )
                await ws.close()
                return ws
            if self.ws_error is not None:
                await ws.send_json({"type": "error", "request_id": request_id, **self.ws_error})
                await ws.close()
                return ws
            bytes_per_second = int(rate) * STT_ENCODINGS[encoding]
            words = self.transcript.split()
            state = {"buffered": 0, "since_interim": 0, "said": 0, "at": 0.0}
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    seen.messages.append(len(message.data))
                    state["buffered"] += len(message.data)
                    state["since_interim"] += len(message.data)
                    if state["since_interim"] >= self.interim_every_seconds * bytes_per_second:
                        state["since_interim"] = 0
                        partial = " ".join(words[: min(len(words), state["said"] + 2)][state["said"] :])
                        await ws.send_json(
                            {
                                "type": "transcript",
                                "is_final": False,
                                "text": partial,
                                "duration": state["buffered"] / bytes_per_second,
                                "language": query.get("language", "en"),
                                "request_id": request_id,
                            }
                        )
                    continue
                if message.type is not WSMsgType.TEXT:
                    continue
                seen.messages.append(message.data)
                if message.data in ("finalize", "done", "close"):
                    await self._stt_final(
                        ws, state, bytes_per_second, words, request_id, query.get("language", "en")
                    )
                if message.data == "finalize":
                    await ws.send_json({"type": "flush_done", "request_id": request_id})
                elif message.data in ("done", "close"):
                    if self.stall_after_done:
                        await asyncio.sleep(3600)
                    await ws.send_json({"type": "done", "request_id": request_id})
                    await ws.close()
                    break
        finally:
            self.closed_at.append(time.monotonic())
        return ws

    async def _stt_final(
        self,
        ws: web.WebSocketResponse,
        state: dict[str, Any],
        bytes_per_second: int,
        words: list[str],
        request_id: str,
        language: str,
    ) -> None:
        if not state["buffered"]:
            return
        seconds = state["buffered"] / bytes_per_second
        text = " ".join(words[state["said"] :])
        state["said"] = len(words)
        start = state["at"]
        state["at"] += seconds
        state["buffered"] = 0
        await ws.send_json(
            {
                "type": "transcript",
                "is_final": True,
                "text": text,
                "duration": seconds,
                "language": language,
                "words": self.words(text, start, start + seconds),
                "request_id": request_id,
            }
        )


def _decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = 0
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            frames += frame.samples
    if not frames or not rate:
        raise ValueError("no audio")
    return frames / rate


__all__ = ["SECONDS_PER_CHAR", "FakeCartesia", "Seen"]
