"""A real HTTP + websocket server on 127.0.0.1 that speaks Sarvam AI's speech wire.

The wire is the one the sarvamai SDK (0.1.39) sends, which is what the caller is
checked against here:

- every request needs ``api-subscription-key``; a missing or unknown key is answered
  403 ``{"error": {"message", "code": "invalid_api_key_error", "request_id"}}`` (what
  Sarvam answers; 401 is not what it sends) and a websocket upgrade is refused the same;
- POST /speech-to-text, multipart ``file``, ``model``, ``language_code``,
  ``with_timestamps``, ``keyterms``...: the file is decoded with PyAV (so an upload
  that is not audio gets Sarvam's 400), languages and models are checked against
  Sarvam's lists, and the answer is ``{request_id, transcript, timestamps: {words,
  start_time_seconds, end_time_seconds}, language_code, language_probability}`` with
  the chunks of `transcript` spread over the real duration;
- POST /text-to-speech, JSON ``{text, language_code, speaker, model,
  speech_sample_rate, pace, ...}``: speakers and rates checked per model, answered
  ``{request_id, audios: [<base64 WAV>]}``: a 440 Hz tone, 60 ms per character / pace;
- GET /text-to-speech/pronunciation-dictionary: ``{dictionary_count, dictionaries}``;
- websocket /speech-to-text/ws?language-code=..&model=..&sample_rate=..&input_audio_codec=..
  &vad_signals=..&flush_signal=..&high_vad_sensitivity=..: ``{"audio": {"data",
  "sample_rate", "encoding"}}`` messages are decoded and run through an energy VAD
  (20 ms frames): START_SPEECH / END_SPEECH events (``{"type": "events", "data":
  {"signal_type", "occured_at"}}``) after 600 ms of silence (300 ms with
  high_vad_sensitivity) and one ``{"type": "data", "data": {request_id, transcript,
  language_code, metrics}}`` per utterance; ``{"type": "flush"}`` finalizes open speech;
- websocket /text-to-speech/ws?model=..&send_completion_event=..: ``config`` first, then
  ``text`` (synthesized once ``min_buffer_size`` characters are buffered) and ``flush``
  (synthesizes the rest, then ``{"type": "event", "data": {"event_type": "final"}}``);
  audio goes out as ``{"type": "audio", "data": {content_type, audio, request_id}}``
  pieces of ``chunk_bytes``, linear16 (headerless PCM) or mp3 at speech_sample_rate.

Knobs: `force_status` (+ `retry_after`) answers every later request with that status;
`delay` holds every answer (and upgrade); `stream_hang` makes websockets take messages
and answer nothing; `close_after` closes a websocket (1011) after that many messages;
`tts_chunk_delay` paces synthesized audio. What arrived is kept in
`requests`, `stt_uploads`, `tts_bodies`, `ws_queries`, `ws_messages`; `ws_closed` is
set (with `ws_closed_at`, time.monotonic()) the moment a websocket ends (a client close is seen at once).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import av
import numpy as np
import soundfile as sf  # type: ignore[import-untyped]
from aiohttp import WSMsgType, web

ELEVEN = ("hi-IN", "bn-IN", "kn-IN", "ml-IN", "mr-IN", "od-IN", "pa-IN", "ta-IN", "te-IN", "en-IN", "gu-IN")
TWENTY_THREE = (
    *ELEVEN,
    *("as-IN", "ur-IN", "ne-IN", "kok-IN", "ks-IN", "sd-IN", "sa-IN", "sat-IN", "mni-IN", "brx-IN"),
    *("mai-IN", "doi-IN"),
)
STT_MODELS = {"saarika:v2.5": ELEVEN, "saaras:v3": TWENTY_THREE, "saaras:v4": TWENTY_THREE}
V2_SPEAKERS = ("anushka", "manisha", "vidya", "arya", "abhilash", "karun", "hitesh")
V3_SPEAKERS = ("shubh", "aditya", "ritu", "priya", "neha", "rahul", "pooja", "rohan", "simran", "kavya")
TTS_MODELS = {
    "bulbul:v2": (V2_SPEAKERS, (8000, 16000, 22050, 24000)),
    "bulbul:v3": (V3_SPEAKERS, (8000, 16000, 22050, 24000, 32000, 44100, 48000)),
}
STREAM_RATES = (8000, 16000, 22050, 24000)
SECONDS_PER_CHAR = 0.06
FRAME_SECONDS = 0.02
SPEECH_RMS = 300.0  # int16 RMS above which a frame is speech


def sarvam_error(status: int, message: str, code: str) -> web.Response:
    body = {"error": {"message": message, "code": code, "request_id": f"20260101_{uuid.uuid4()}"}}
    return web.json_response(body, status=status)


def tone(seconds: float, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")


def decode_any(data: bytes) -> tuple[float, int]:
    """(duration seconds, sample rate) of an audio file, decoded by PyAV as Sarvam would."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples, rate = 0, 0
        for frame in container.decode(stream):
            samples += frame.samples
            rate = frame.sample_rate
    if not samples or not rate:
        raise ValueError("no audio")
    return samples / rate, rate


@dataclass
class _Vad:
    """The fake's voice activity detector over 16-bit PCM, 20 ms frames."""

    rate: int
    end_silence: float
    in_speech: bool = False
    silent_for: float = 0.0
    pending: bytes = b""
    heard: float = 0.0  # seconds of audio received

    def feed(self, pcm: bytes) -> list[str]:
        """START_SPEECH / END_SPEECH signals of this audio, in order."""
        data = self.pending + pcm
        frame = int(self.rate * FRAME_SECONDS) * 2
        signals: list[str] = []
        whole = len(data) - len(data) % frame
        self.pending = data[whole:]
        for at in range(0, whole, frame):
            samples = np.frombuffer(data[at : at + frame], dtype="<i2").astype(np.float64)
            loud = float(np.sqrt(np.mean(samples**2))) > SPEECH_RMS
            self.heard += FRAME_SECONDS
            if loud:
                self.silent_for = 0.0
                if not self.in_speech:
                    self.in_speech = True
                    signals.append("START_SPEECH")
            elif self.in_speech:
                self.silent_for += FRAME_SECONDS
                if self.silent_for >= self.end_silence:
                    self.in_speech = False
                    signals.append("END_SPEECH")
        return signals


@dataclass
class FakeSarvam:
    valid_keys: Collection[str] = ("sk-sarvam-good",)
    transcript: str = "The quick brown fox jumps over the lazy dog. Speech to text, one two three."
    stream_transcripts: tuple[str, ...] = ("the quick brown fox", "one two three")
    chunk_bytes: int = 4096
    tts_chunk_delay: float = 0.0
    force_status: int | None = None
    force_code: str = "internal_server_error"
    retry_after: str | None = None
    delay: float = 0.0
    stream_hang: bool = False
    close_after: int | None = None  # a websocket is closed (1011) after this many messages
    dictionaries: tuple[str, ...] = ("p_1a2b3c",)
    requests: list[dict[str, Any]] = field(default_factory=list)
    stt_uploads: list[dict[str, Any]] = field(default_factory=list)
    tts_bodies: list[dict[str, Any]] = field(default_factory=list)
    ws_queries: list[dict[str, str]] = field(default_factory=list)
    ws_messages: list[dict[str, Any]] = field(default_factory=list)
    ws_closed: asyncio.Event = field(default_factory=asyncio.Event)
    ws_closed_at: float | None = None
    base_url: str = ""

    async def __aenter__(self) -> FakeSarvam:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/speech-to-text", self._stt)
        app.router.add_post("/text-to-speech", self._tts)
        app.router.add_get("/text-to-speech/pronunciation-dictionary", self._dictionaries)
        app.router.add_get("/speech-to-text/ws", self._stt_ws)
        app.router.add_get("/text-to-speech/ws", self._tts_ws)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._runner.cleanup()

    @property
    def options(self) -> dict[str, str]:
        return {"base_url": self.base_url}

    # --- the gate: recording, delay, forced status, auth ---------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            {"method": request.method, "path": request.path, "headers": dict(request.headers)}
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.force_status is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            response = sarvam_error(self.force_status, f"forced {self.force_status}", self.force_code)
            response.headers.update(headers)
            return response
        key = request.headers.get("api-subscription-key")
        if key is None or key not in self.valid_keys:
            return sarvam_error(
                403, "Invalid API key. Please check your API subscription key.", "invalid_api_key_error"
            )
        result: web.StreamResponse = await handler(request)
        return result

    # --- REST ----------------------------------------------------------------------

    async def _stt(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        upload = form.get("file")
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        if isinstance(upload, web.FileField):
            fields["file"] = upload.file.read()
            fields["filename"], fields["content_type"] = upload.filename, upload.content_type
        self.stt_uploads.append(fields)
        if "file" not in fields:
            return sarvam_error(400, "file is required", "invalid_request_error")
        model = fields.get("model", "saaras:v3")
        if model not in STT_MODELS:
            return sarvam_error(400, f"Invalid model: {model}", "invalid_request_error")
        language = fields.get("language_code", "unknown")
        if language != "unknown" and language not in STT_MODELS[model]:
            return sarvam_error(
                422, f"Input should be one of {STT_MODELS[model]}", "unprocessable_entity_error"
            )
        try:
            duration, rate = decode_any(fields["file"])
        except Exception:
            return sarvam_error(
                400, "Invalid audio file. Unable to decode the file.", "invalid_request_error"
            )
        fields["decoded_rate"] = rate
        answer: dict[str, Any] = {
            "request_id": f"20260101_{uuid.uuid4()}",
            "transcript": self.transcript,
            "language_code": "en-IN" if language == "unknown" else language,
        }
        if language == "unknown":
            answer["language_probability"] = 0.91
        if fields.get("with_timestamps") == "true":
            chunks = [c.strip() + "." for c in self.transcript.rstrip(".").split(". ")]
            step = duration / len(chunks)
            answer["timestamps"] = {
                "words": chunks,
                "start_time_seconds": [round(i * step, 3) for i in range(len(chunks))],
                "end_time_seconds": [round((i + 1) * step, 3) for i in range(len(chunks))],
            }
        return web.json_response(answer)

    async def _tts(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.tts_bodies.append(body)
        problem = _tts_problem(body, rest=True)
        if problem:
            return sarvam_error(400, problem, "invalid_request_error")
        rate = int(body.get("speech_sample_rate", 22050))
        seconds = len(body["text"]) * SECONDS_PER_CHAR / float(body.get("pace", 1.0))
        out = io.BytesIO()
        sf.write(out, tone(seconds, rate), rate, format="WAV", subtype="PCM_16")
        audio_b64 = base64.b64encode(out.getvalue()).decode()
        return web.json_response({"request_id": f"20260101_{uuid.uuid4()}", "audios": [audio_b64]})

    async def _dictionaries(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"dictionary_count": len(self.dictionaries), "dictionaries": list(self.dictionaries)}
        )

    # --- websockets ------------------------------------------------------------------

    def _closed(self) -> None:
        self.ws_closed_at = time.monotonic()
        self.ws_closed.set()

    async def _stt_ws(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.ws_queries.append(query)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        model = query.get("model", "saaras:v4")
        language = query.get("language-code", "unknown")
        problem = None
        if model not in STT_MODELS:
            problem = f"Invalid model: {model}"
        elif language != "unknown" and language not in STT_MODELS[model]:
            problem = f"Invalid language-code: {language}"
        elif query.get("sample_rate", "16000") not in ("8000", "16000"):
            problem = "sample_rate must be 8000 or 16000"
        elif query.get("input_audio_codec", "wav") not in ("wav", "pcm_s16le", "pcm_l16", "pcm_raw"):
            problem = "unsupported input_audio_codec"
        if problem:
            await ws.send_json({"type": "error", "data": {"error": problem, "code": "invalid_request_error"}})
            await ws.close()
            return ws
        rate = int(query.get("sample_rate", "16000"))
        vad = _Vad(rate, 0.3 if query.get("high_vad_sensitivity") == "true" else 0.6)
        signals = query.get("vad_signals") == "true"
        request_id = f"20260101_{uuid.uuid4()}"
        utterances = 0
        utterance_start = 0.0

        async def transcript() -> None:
            nonlocal utterances
            text = self.stream_transcripts[utterances % len(self.stream_transcripts)]
            utterances += 1
            data = {
                "request_id": request_id,
                "transcript": text,
                "language_code": "en-IN" if language == "unknown" else language,
                "metrics": {
                    "audio_duration": round(vad.heard - utterance_start, 3),
                    "processing_latency": 0.01,
                },
            }
            await ws.send_json({"type": "data", "data": data})

        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                self.ws_messages.append(message)
                if self.close_after is not None and len(self.ws_messages) >= self.close_after:
                    await ws.close(code=1011, message=b"internal error")
                    break
                if self.stream_hang:
                    continue
                if "audio" in message:
                    audio = message["audio"]
                    if audio.get("encoding") != "audio/wav" or int(audio.get("sample_rate", 0)) != rate:
                        await ws.send_json(
                            {
                                "type": "error",
                                "data": {"error": "bad audio message", "code": "invalid_request_error"},
                            }
                        )
                        continue
                    pcm = base64.b64decode(audio["data"])
                    for signal in vad.feed(pcm):
                        if signals:
                            event = {"signal_type": signal, "occured_at": time.time()}
                            await ws.send_json({"type": "events", "data": event})
                        if signal == "START_SPEECH":
                            utterance_start = vad.heard
                        else:
                            await transcript()
                elif message.get("type") == "flush" and vad.in_speech:
                    vad.in_speech, vad.silent_for = False, 0.0
                    await transcript()
        finally:
            self._closed()
        return ws

    async def _tts_ws(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.ws_queries.append(query)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        model = query.get("model", "bulbul:v2")
        completion = query.get("send_completion_event") == "true"
        config: dict[str, Any] | None = None
        buffered = ""
        request_id = f"20260101_{uuid.uuid4()}"

        async def error(message: str) -> None:
            await ws.send_json({"type": "error", "data": {"message": message, "code": 400}})

        async def speak(text: str) -> None:
            assert config is not None
            rate = int(config.get("speech_sample_rate", 22050))
            samples = tone(len(text) * SECONDS_PER_CHAR / float(config.get("pace", 1.0)), rate)
            codec = config.get("output_audio_codec", "mp3")
            if codec == "linear16":
                data, content_type = samples.tobytes(), "audio/pcm"
            else:
                out = io.BytesIO()
                sf.write(out, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
                data, content_type = out.getvalue(), "audio/mpeg"
            for at in range(0, len(data), self.chunk_bytes):
                piece = base64.b64encode(data[at : at + self.chunk_bytes]).decode()
                payload = {"content_type": content_type, "audio": piece, "request_id": request_id}
                await ws.send_json({"type": "audio", "data": payload})
                if self.tts_chunk_delay:
                    await asyncio.sleep(self.tts_chunk_delay)

        # Synthesis runs beside the reading, as on a real server: a client's close is seen
        # at once, whatever is being synthesized.
        work: asyncio.Queue[str | None] = asyncio.Queue()

        async def worker() -> None:
            while (item := await work.get()) is not None:
                if item:
                    await speak(item)
                elif completion:  # "" marks a flush
                    event = {"event_type": "final", "message": "done", "timestamp": "2026-01-01T00:00:00Z"}
                    await ws.send_json({"type": "event", "data": event})

        synthesis = asyncio.ensure_future(worker())
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                self.ws_messages.append(message)
                if self.close_after is not None and len(self.ws_messages) >= self.close_after:
                    await ws.close(code=1011, message=b"internal error")
                    break
                if self.stream_hang:
                    continue
                kind = message.get("type")
                if kind == "config":
                    body = {**message.get("data", {}), "model": model}
                    problem = _tts_problem({**body, "text": "x"}, rest=False)
                    if problem:
                        await error(problem)
                        continue
                    config = body
                elif config is None:
                    await error("the first message must be a config message")
                elif kind == "text":
                    buffered += message["data"]["text"]
                    if len(buffered) >= int(config.get("min_buffer_size", 50)):
                        work.put_nowait(buffered)
                        buffered = ""
                elif kind == "flush":
                    if buffered:
                        work.put_nowait(buffered)
                        buffered = ""
                    work.put_nowait("")
        finally:
            self._closed()
            synthesis.cancel()
        return ws


def _tts_problem(body: dict[str, Any], *, rest: bool) -> str | None:
    if not isinstance(body.get("text"), str) or not body["text"]:
        return "text is required"
    model = body.get("model", "bulbul:v3")
    if model not in TTS_MODELS:
        return f"Invalid model: {model}"
    speakers, rates = TTS_MODELS[model]
    if body.get("language_code") not in ELEVEN:
        return f"language_code must be one of {', '.join(ELEVEN)}"
    speaker = body.get("speaker")
    if speaker is not None and speaker not in speakers:
        return f"Speaker '{speaker}' is not compatible with model {model}"
    rate = int(body.get("speech_sample_rate", 22050))
    if rate not in (rates if rest else STREAM_RATES):
        return f"speech_sample_rate {rate} is not supported"
    if not rest and body.get("output_audio_codec", "mp3") not in ("linear16", "mp3"):
        return "this fake streams linear16 and mp3"
    return None
