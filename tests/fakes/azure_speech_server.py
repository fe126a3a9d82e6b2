"""A real HTTP + websocket server on 127.0.0.1 that speaks Azure AI Speech's wire protocols.

Every API is served under one host, the way a resource's custom-domain endpoint serves
them (the caller's `endpoint` option is `fake.endpoint`):

- POST /stt/speech/recognition/conversation/cognitiveservices/v1 (short audio):
  Content-Type `audio/wav; codecs=audio/pcm; samplerate=16000` (or Ogg/Opus) with a WAV
  PCM 16 kHz mono body, ?language= (required) &format=detailed &wordLevelTimestamps=true;
  answers the detailed result (RecognitionStatus, DisplayText, Offset, Duration in ticks,
  NBest with Confidence/Lexical/ITN/MaskedITN/Display and Words), NoMatch for silence.
- GET on the same path with a websocket upgrade (real-time recognition): needs
  X-ConnectionId (32 hex digits); reads speech.config / speech.context text messages and
  binary audio messages (2-byte big-endian header length, headers, payload; the first
  payload a WAV header that must say PCM 16 kHz 16-bit mono, an empty payload the end of
  audio), runs a frame-energy voice detector over the PCM and answers turn.start,
  speech.startDetected, speech.hypothesis (a word per 0.4 s of speech), speech.phrase at
  each silence of segmentationSilenceTimeoutMs (default 500 ms) and at the end of audio,
  speech.endDetected and turn.end.
- POST /speechtotext/transcriptions:transcribe?api-version=2024-11-15 (fast transcription):
  multipart `audio` + `definition`; answers durationMilliseconds, combinedPhrases and
  phrases (with words, locale, confidence, and speaker when diarization is enabled).
- POST /tts/cognitiveservices/v1: SSML (parsed: a malformed document or an unknown voice is
  a 400), X-Microsoft-OutputFormat (an unknown one is a 400); answers a real 440 Hz tone,
  SECONDS_PER_CHAR per character divided by the prosody rate, in that format, written in
  pieces of `chunk_bytes`, `chunk_delay` apart.
- GET /tts/cognitiveservices/voices/list: VOICES.

Auth is `Ocp-Apim-Subscription-Key` (a wrong or missing key gets Azure's 401 body, or a
handshake refusal on the websocket). Knobs: `force_status` (+ `retry_after`) answers every
request (and websocket handshake) with that status; `delay` holds each answer; `close_with`
= (code, reason) closes each websocket after its first audio message; `stream_hang` makes
the websocket never answer. `closed_at` maps each client (host, port) to the
time.monotonic() the server saw its connection end.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from types import TracebackType
from typing import Any

import numpy as np
import orjson
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from callers import audio as hub_audio
from callers.audio.pcm import Pcm
from callers.types import AudioContainer, AudioEncoding, AudioFormat

C, E = AudioContainer, AudioEncoding
TICKS = 10_000_000
SECONDS_PER_CHAR = 0.06
WORDS = ["hello", "from", "the", "hub", "this", "is", "a", "test", "of", "the", "speech", "service"]
SECONDS_PER_WORD = 0.4
AZURE_401 = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
STT_PATH = "/stt/speech/recognition/conversation/cognitiveservices/v1"

VOICES: list[dict[str, Any]] = [
    {
        "Name": "Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)",
        "DisplayName": "Jenny",
        "LocalName": "Jenny",
        "ShortName": "en-US-JennyNeural",
        "Gender": "Female",
        "Locale": "en-US",
        "LocaleName": "English (United States)",
        "SampleRateHertz": "24000",
        "VoiceType": "Neural",
        "Status": "GA",
        "WordsPerMinute": "152",
    },
    {
        "Name": "Microsoft Server Speech Text to Speech Voice (en-GB, RyanNeural)",
        "DisplayName": "Ryan",
        "LocalName": "Ryan",
        "ShortName": "en-GB-RyanNeural",
        "Gender": "Male",
        "Locale": "en-GB",
        "LocaleName": "English (United Kingdom)",
        "SampleRateHertz": "24000",
        "VoiceType": "Neural",
        "Status": "GA",
    },
    {
        "Name": "Microsoft Server Speech Text to Speech Voice (de-DE, SeraphinaMultilingualNeural)",
        "DisplayName": "Seraphina Multilingual",
        "LocalName": "Seraphina Multilingual",
        "ShortName": "de-DE-SeraphinaMultilingualNeural",
        "Gender": "Female",
        "Locale": "de-DE",
        "LocaleName": "German (Germany)",
        "SecondaryLocaleList": ["en-US", "fr-FR"],
        "SampleRateHertz": "24000",
        "VoiceType": "Neural",
        "Status": "GA",
    },
    {
        "Name": "Microsoft Server Speech Text to Speech Voice (ja-JP, NanamiNeural)",
        "DisplayName": "Nanami",
        "LocalName": "七海",
        "ShortName": "ja-JP-NanamiNeural",
        "Gender": "Female",
        "Locale": "ja-JP",
        "LocaleName": "Japanese (Japan)",
        "SampleRateHertz": "24000",
        "VoiceType": "Neural",
        "Status": "GA",
    },
]


def _output_formats() -> dict[str, tuple[AudioFormat, str]]:
    table: dict[str, tuple[AudioFormat, str]] = {}
    for rate, name in ((8000, "8khz"), (16000, "16khz"), (22050, "22050hz"), (24000, "24khz")):
        table[f"riff-{name}-16bit-mono-pcm"] = (AudioFormat(E.PCM_S16LE, C.WAV, rate), "audio/x-wav")
        table[f"raw-{name}-16bit-mono-pcm"] = (AudioFormat(E.PCM_S16LE, C.RAW, rate), "audio/basic")
    for rate, name in ((44100, "44100hz"), (48000, "48khz")):
        table[f"riff-{name}-16bit-mono-pcm"] = (AudioFormat(E.PCM_S16LE, C.WAV, rate), "audio/x-wav")
        table[f"raw-{name}-16bit-mono-pcm"] = (AudioFormat(E.PCM_S16LE, C.RAW, rate), "audio/basic")
    table["raw-8khz-8bit-mono-mulaw"] = (AudioFormat(E.MULAW, C.RAW, 8000), "audio/basic")
    table["riff-8khz-8bit-mono-mulaw"] = (AudioFormat(E.MULAW, C.WAV, 8000), "audio/x-wav")
    table["raw-8khz-8bit-mono-alaw"] = (AudioFormat(E.ALAW, C.RAW, 8000), "audio/basic")
    table["riff-8khz-8bit-mono-alaw"] = (AudioFormat(E.ALAW, C.WAV, 8000), "audio/x-wav")
    for name, rate in (
        ("audio-16khz-32kbitrate-mono-mp3", 16000),
        ("audio-16khz-128kbitrate-mono-mp3", 16000),
        ("audio-24khz-48kbitrate-mono-mp3", 24000),
        ("audio-24khz-96kbitrate-mono-mp3", 24000),
        ("audio-48khz-96kbitrate-mono-mp3", 48000),
    ):
        table[name] = (AudioFormat(E.MP3, C.MP3, rate), "audio/mpeg")
    for rate, name in ((16000, "16khz"), (24000, "24khz"), (48000, "48khz")):
        table[f"ogg-{name}-16bit-mono-opus"] = (AudioFormat(E.OPUS, C.OGG, rate), "audio/ogg")
    return table


OUTPUT_FORMATS = _output_formats()


def tone(seconds: float, rate: int) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    return Pcm(samples.tobytes(), rate)


def azure_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    peer: tuple[str, int] | None


@dataclass
class WsMessage:
    """One message a real-time client sent: text (path, headers, JSON body) or audio."""

    kind: str  # "text" | "audio"
    headers: dict[str, str]
    body: Any = None  # JSON body of a text message
    payload: bytes = b""  # payload of an audio message


@dataclass
class WsSession:
    query: dict[str, str]
    headers: CIMultiDict[str]
    messages: list[WsMessage] = field(default_factory=list)
    sent: list[tuple[str, Any]] = field(default_factory=list)  # (path, body) the fake answered
    closed_at: float | None = None


def _headers_of(block: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers


def _wav_ok(header: bytes) -> bool:
    if len(header) < 44 or header[:4] != b"RIFF" or header[8:16] != b"WAVEfmt ":
        return False
    fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", header[20:36])
    return (fmt, channels, rate, bits) == (1, 1, 16000, 16)


@dataclass
class FakeAzureSpeech:
    valid_keys: set[str]
    force_status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    chunk_bytes: int = 4096
    chunk_delay: float = 0.0
    close_with: tuple[int, str] | None = None
    stream_hang: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    ws_sessions: list[WsSession] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)  # fast transcription forms
    ssml: list[ET.Element] = field(default_factory=list)
    closed_at: dict[tuple[str, int], float] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _port: int = 0
    _peers: dict[int, tuple[str, int]] = field(default_factory=dict)
    _closing: asyncio.Event | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def wait_for_close(self, peer: tuple[str, int] | None, timeout: float = 5.0) -> float:
        assert peer is not None
        async with asyncio.timeout(timeout):
            while peer not in self.closed_at:
                await asyncio.sleep(0.002)
        return self.closed_at[peer]

    async def __aenter__(self) -> FakeAzureSpeech:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024 * 1024)
        app.router.add_post(STT_PATH, self._short_audio)
        app.router.add_get(STT_PATH, self._realtime)
        app.router.add_post("/speechtotext/transcriptions:transcribe", self._fast)
        app.router.add_post("/tts/cognitiveservices/v1", self._tts)
        app.router.add_get("/tts/cognitiveservices/voices/list", self._voices)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        assert self._runner.server is not None
        self._watch(self._runner.server)
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

    def _watch(self, server: web.Server) -> None:
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
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=CIMultiDict(request.headers),
                body=b"" if websocket else await request.read(),
                peer=request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        if self.delay > 0 and self._closing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=self.delay)
        if self.force_status is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            return azure_error(
                self.force_status, str(self.force_status), f"forced {self.force_status}", headers
            )
        if request.headers.get("Ocp-Apim-Subscription-Key") not in self.valid_keys:
            return azure_error(401, "401", AZURE_401)
        response: web.StreamResponse = await handler(request)
        return response

    # --- short audio ---------------------------------------------------------------

    async def _short_audio(self, request: web.Request) -> web.Response:
        content_type = request.headers.get("Content-Type", "")
        if content_type not in ("audio/wav; codecs=audio/pcm; samplerate=16000", "audio/ogg; codecs=opus"):
            return web.Response(status=415, text="Unsupported audio format")
        language = request.query.get("language")
        if not language:
            return web.Response(status=400, text="language is required")
        body = await request.read()
        try:
            info = hub_audio.probe(body, C.WAV)
        except hub_audio.AudioError:
            return web.Response(status=400, text="Invalid audio")
        if (info.sample_rate_hz, info.channels) != (16000, 1):
            return web.Response(status=400, text="Audio must be 16 kHz mono")
        samples = np.frombuffer(hub_audio.decode(body, C.WAV).data, dtype="<i2")
        headers = {"X-RequestId": "stt-req-1"}
        if float(np.sqrt(np.mean(np.square(samples.astype(np.float64))))) < 50:
            return web.json_response(
                {"RecognitionStatus": "NoMatch", "Offset": 0, "Duration": int(info.duration * TICKS)},
                headers=headers,
            )
        n = 4
        words = WORDS[:n]
        step = info.duration / n
        result = {
            "RecognitionStatus": "Success",
            "Offset": 0,
            "Duration": int(info.duration * TICKS),
            "DisplayText": "Hello from the hub.",
            "NBest": [
                {
                    "Confidence": 0.93,
                    "Lexical": " ".join(words),
                    "ITN": " ".join(words),
                    "MaskedITN": " ".join(words),
                    "Display": "Hello from the hub.",
                }
            ],
        }
        if request.query.get("wordLevelTimestamps") == "true":
            result["NBest"][0]["Words"] = [  # type: ignore[index]
                {"Word": w, "Offset": int(i * step * TICKS), "Duration": int(step * TICKS)}
                for i, w in enumerate(words)
            ]
        return web.json_response(result, headers=headers)

    # --- fast transcription ----------------------------------------------------------

    async def _fast(self, request: web.Request) -> web.Response:
        if request.query.get("api-version") != "2024-11-15":
            return azure_error(400, "InvalidApiVersion", "unsupported api-version")
        fields = _multipart(request.headers.get("Content-Type", ""), await request.read())
        self.uploads.append(fields)
        upload, definition_text = fields.get("audio"), fields.get("definition")
        if not isinstance(upload, tuple) or not isinstance(definition_text, str):
            return azure_error(400, "InvalidArgument", "audio and definition are required")
        data, filename = upload
        try:
            definition = orjson.loads(definition_text)
            duration = _file_duration(data, filename)
        except Exception:
            return azure_error(400, "InvalidArgument", "Invalid audio or definition")
        locales = definition.get("locales") or []
        locale = locales[0] if len(locales) == 1 else "en-US"  # language identification
        diarize = bool((definition.get("diarization") or {}).get("enabled"))
        halves = [WORDS[:4], WORDS[4:8]]
        span = duration / 2
        phrases = []
        for index, words in enumerate(halves):
            start_ms = int(index * span * 1000)
            step_ms = int(span * 1000 / len(words))
            phrase: dict[str, Any] = {
                "offsetMilliseconds": start_ms,
                "durationMilliseconds": int(span * 1000),
                "text": " ".join(words).capitalize() + ".",
                "words": [
                    {"text": w, "offsetMilliseconds": start_ms + i * step_ms, "durationMilliseconds": step_ms}
                    for i, w in enumerate(words)
                ],
                "locale": locale,
                "confidence": 0.9 if index == 0 else 0.8,
            }
            if diarize:
                phrase["speaker"] = index + 1
            phrases.append(phrase)
        answer = {
            "durationMilliseconds": int(duration * 1000),
            "combinedPhrases": [{"text": " ".join(p["text"] for p in phrases)}],
            "phrases": phrases,
        }
        return web.json_response(answer, headers={"apim-request-id": "fast-req-1"})

    # --- text to speech ------------------------------------------------------------

    async def _tts(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Content-Type") != "application/ssml+xml":
            return web.Response(status=415)
        asked = request.headers.get("X-Microsoft-OutputFormat", "")
        if asked not in OUTPUT_FORMATS or not request.headers.get("User-Agent"):
            return web.Response(status=400)
        try:
            root = ET.fromstring(await request.read())  # noqa: S314 - the test's own SSML
        except ET.ParseError:
            return web.Response(status=400)
        self.ssml.append(root)
        voice = root.find("{http://www.w3.org/2001/10/synthesis}voice")
        known = {v["ShortName"] for v in VOICES}
        if voice is None or voice.get("name") not in known:
            return web.Response(status=400)
        text = "".join(voice.itertext())
        rate = 1.0
        prosody = voice.find("{http://www.w3.org/2001/10/synthesis}prosody")
        if prosody is not None and prosody.get("rate", "").endswith("%"):
            rate = 1.0 + float(prosody.get("rate", "0%")[:-1]) / 100
        target, content_type = OUTPUT_FORMATS[asked]
        assert target.sample_rate_hz is not None
        data = hub_audio.encode(tone(len(text) * SECONDS_PER_CHAR / rate, target.sample_rate_hz), target)
        response = web.StreamResponse(headers={"Content-Type": content_type, "X-RequestId": "tts-req-1"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(data), self.chunk_bytes):
            await response.write(data[start : start + self.chunk_bytes])
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await response.write_eof()
        return response

    async def _voices(self, request: web.Request) -> web.Response:
        return web.json_response(VOICES)

    # --- real-time websocket --------------------------------------------------------

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        connection_id = request.headers.get("X-ConnectionId", "")
        if len(connection_id) != 32 or any(c not in "0123456789abcdefABCDEF" for c in connection_id):
            return web.Response(status=400, text="X-ConnectionId must be 32 hex digits")
        if not request.query.get("language"):
            return web.Response(status=400, text="language is required")
        session = WsSession(query=dict(request.query), headers=CIMultiDict(request.headers))
        self.ws_sessions.append(session)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        recognizer = _Recognizer(
            ws,
            session,
            silence_ms=int(request.query.get("segmentationSilenceTimeoutMs", "500")),
            words=request.query.get("wordLevelTimestamps") == "true",
        )
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    head, _, body = message.data.partition("\r\n\r\n")
                    session.messages.append(WsMessage("text", _headers_of(head), orjson.loads(body)))
                elif message.type is WSMsgType.BINARY:
                    raw: bytes = message.data
                    size = struct.unpack(">H", raw[:2])[0]
                    headers = _headers_of(raw[2 : 2 + size].decode("ascii"))
                    payload = raw[2 + size :]
                    session.messages.append(WsMessage("audio", headers, payload=payload))
                    if headers.get("Path") != "audio":
                        await ws.close(code=1007, message=b"Unexpected binary message")
                        break
                    if self.close_with is not None:
                        await ws.close(code=self.close_with[0], message=self.close_with[1].encode())
                        break
                    if self.stream_hang:
                        continue
                    if not await recognizer.feed(payload):
                        await ws.close(code=1007, message=b"Invalid audio format")
                        break
        finally:
            session.closed_at = time.monotonic()
        return ws


class _Recognizer:
    """Energy-based endpointing over 20 ms frames of the received PCM, and the messages
    Azure's conversation mode sends for it."""

    FRAME = 640  # bytes: 20 ms of PCM 16 kHz

    def __init__(
        self, ws: web.WebSocketResponse, session: WsSession, *, silence_ms: int, words: bool
    ) -> None:
        self.ws, self.session, self.silence_ms, self.words = ws, session, silence_ms, words
        self.header_seen = False
        self.pending = b""
        self.frames = 0  # frames received
        self.started = False  # speech.startDetected sent
        self.phrase_start: int | None = None  # frame index where the current phrase began
        self.speech_frames = 0
        self.silent_run = 0
        self.word_index = 0
        self.phrase_words: list[tuple[str, int]] = []  # (word, frame it began)
        self.request_id = ""

    async def send(self, path: str, body: dict[str, Any]) -> None:
        self.session.sent.append((path, body))
        headers = (
            f"X-RequestId:{self.request_id}\r\nContent-Type:application/json; charset=utf-8\r\n"
            f"Path:{path}\r\n"
        )
        await self.ws.send_str(headers + "\r\n" + orjson.dumps(body).decode())

    async def feed(self, payload: bytes) -> bool:
        if not self.header_seen:
            self.header_seen = True
            self.request_id = self.session.messages[-1].headers.get("X-RequestId", "")
            if not _wav_ok(payload[:44]):
                return False
            await self.send("turn.start", {"context": {"serviceTag": "fake"}})
            payload = payload[44:]
            if not payload:
                return True
        elif not payload:  # the end of the audio
            await self.end()
            return True
        data = self.pending + payload
        whole = len(data) - len(data) % self.FRAME
        self.pending = data[whole:]
        for at in range(0, whole, self.FRAME):
            await self.frame(np.frombuffer(data[at : at + self.FRAME], dtype="<i2"))
        return True

    async def frame(self, samples: np.ndarray[Any, Any]) -> None:
        loud = float(np.sqrt(np.mean(np.square(samples.astype(np.float64))))) > 300
        index = self.frames
        self.frames += 1
        if loud:
            self.silent_run = 0
            if not self.started:
                self.started = True
                await self.send("speech.startDetected", {"Offset": index * 200_000})
            if self.phrase_start is None:
                self.phrase_start = index
                self.speech_frames = 0
            self.speech_frames += 1
            if self.speech_frames % int(SECONDS_PER_WORD * 50) == 1:
                self.phrase_words.append((WORDS[self.word_index % len(WORDS)], index))
                self.word_index += 1
                await self.send(
                    "speech.hypothesis",
                    {
                        "Text": " ".join(w for w, _ in self.phrase_words),
                        "Offset": self.phrase_start * 200_000,
                        "Duration": (index + 1 - self.phrase_start) * 200_000,
                    },
                )
        elif self.phrase_start is not None:
            self.silent_run += 1
            if self.silent_run * 20 >= self.silence_ms:
                await self.phrase(end=index + 1 - self.silent_run)

    async def phrase(self, *, end: int) -> None:
        assert self.phrase_start is not None
        words = [w for w, _ in self.phrase_words]
        lexical = " ".join(words)
        best: dict[str, Any] = {
            "Confidence": 0.91,
            "Lexical": lexical,
            "ITN": lexical,
            "MaskedITN": lexical,
            "Display": lexical.capitalize() + ".",
        }
        if self.words:
            bounds = [f for _, f in self.phrase_words] + [end]
            best["Words"] = [
                {"Word": w, "Offset": bounds[i] * 200_000, "Duration": (bounds[i + 1] - bounds[i]) * 200_000}
                for i, w in enumerate(words)
            ]
        await self.send(
            "speech.phrase",
            {
                "RecognitionStatus": "Success",
                "Offset": self.phrase_start * 200_000,
                "Duration": (end - self.phrase_start) * 200_000,
                "DisplayText": best["Display"],
                "NBest": [best],
            },
        )
        self.phrase_start = None
        self.phrase_words = []
        self.silent_run = 0

    async def end(self) -> None:
        if self.phrase_start is not None:
            await self.phrase(end=self.frames - self.silent_run)
        elif not self.started:
            await self.send(
                "speech.phrase",
                {
                    "RecognitionStatus": "InitialSilenceTimeout",
                    "Offset": 0,
                    "Duration": self.frames * 200_000,
                },
            )
        await self.send("speech.endDetected", {"Offset": self.frames * 200_000})
        await self.send("turn.end", {})


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Form fields: files as (bytes, file name), the rest as text."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        filename = part.get_filename()
        fields[str(name)] = (payload, filename) if filename else payload.decode()
    return fields


def _file_duration(data: bytes, filename: str) -> float:
    extension = filename.rsplit(".", 1)[-1].lower()
    declared: Any = {
        "wav": C.WAV,
        "mp3": C.MP3,
        "ogg": C.OGG,
        "webm": C.WEBM,
        "m4a": C.MP4,
        "flac": AudioFormat(E.FLAC, C.RAW),
    }[extension]
    return hub_audio.probe(data, declared).duration
