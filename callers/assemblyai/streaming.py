"""STREAM_STT: Universal Streaming (v3) over a websocket from the pooled aiohttp session.

Why not the SDK's `AsyncRealTimeTranscriber` (assemblyai 1.8, on `websockets`): it is
callback-based (handlers called from its own read task) where the hub needs an async
iterator, it holds the key in its options object for the life of the client, its write
loop polls its queue once a second and `disconnect()` waits up to 2 s plus
`terminate_timeout` (5 s), so a cancelled stream cannot be closed within 100 ms; and it
opens its own httpx pool per client. aiohttp's websocket client shares the hub's pooled
session, is closed at once from the generator's `finally`, and reports the close code.

The wire (the SDK's streaming/v3 and AssemblyAI's AsyncAPI spec):
- GET {streaming_url}/v3/ws?sample_rate=..&encoding=pcm_s16le|pcm_mulaw&format_turns=true
  &min_turn_silence=<endpointing ms>&keyterms_prompt=[..]&speech_model=..&speaker_labels=true,
  upgraded to a websocket, with the key as the bare `Authorization` header;
- server: {"type": "Begin", "id", "expires_at"}, {"type": "Turn", "turn_order",
  "turn_is_formatted", "end_of_turn", "transcript", "words": [{start, end (ms), text,
  confidence, word_is_final}]}, {"type": "SpeechStarted", "timestamp"} (Universal-3 Pro),
  {"type": "Termination", "audio_duration_seconds"}, {"type": "Error", "error_code", "error"};
- client: binary audio of 50 to 1000 ms per message, {"type": "Terminate"} to finish.

Events: a Turn that has not ended is an interim TranscriptEvent (its words so far, the
last one possibly not final); the turn's end (formatted, when format_turns is on, which
`punctuate` asks for) is the final TranscriptEvent followed by UtteranceEnd at its last
word. SpeechStarted is AssemblyAI's where it sends one, else the first Turn of a new turn
(speech heard), at its first word. When the client's audio ends, the rest is sent,
{"type": "Terminate"} asks for the last Turn, and Termination ends the stream with
StreamTranscribeEnd(duration=audio_duration_seconds, request_id=<session id>).

Audio: raw PCM s16le and mu-law go as they are (mono); A-law and multi-channel audio are
converted to mono PCM s16le chunk by chunk (callers.audio.StreamConverter). Chunks are
regrouped to 50-250 ms messages (AssemblyAI closes the session on a message outside
50-1000 ms); only a tail shorter than 50 ms is held, and the very last one is padded
with silence to 50 ms. Containers (WebM, Ogg...) are refused: AssemblyAI's streaming
takes headerless samples here.

Errors: a handshake refused with an HTTP status is classified by it; a close code or an
Error message by AssemblyAI's table (4001 / 1008 unauthorized -> AuthenticationFailed,
4002/4003 -> PermissionDenied, 3009/4029/4102 -> RateLimited, 3005/1011/1013 ->
ProviderUnavailable, 4031 -> ProviderTimeout, other 4xxx / 3006 / 3007 -> InvalidRequest).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from callers import pools
from callers.assemblyai import wire
from callers.audio import formats
from callers.audio.stream import StreamConverter
from callers.base import (
    AuthenticationFailed,
    CallerError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SecretFields,
    error_from_http_status,
)
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SpeechStarted,
    StreamTranscribeEnd,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    TranscriptEvent,
    UtteranceEnd,
    Word,
)

API_VERSION = "2025-05-12"  # the AssemblyAI-Version header the SDK sends
MIN_CHUNK_MS = 50
MAX_CHUNK_MS = 250
CLOSE_WAIT = 1.0  # seconds ws.close() waits for the server's close frame
ENGLISH_MODEL = "universal-streaming-english"
MULTILINGUAL_MODEL = "universal-streaming-multilingual"
# What the two Universal Streaming models transcribe (the multilingual one detects which).
_MODEL_LANGUAGES = {ENGLISH_MODEL: ("en",), MULTILINGUAL_MODEL: ("en", "es", "fr", "de", "it", "pt")}
_TERMINATE = orjson.dumps({"type": "Terminate"}).decode()

# AssemblyAI's close / error codes (the SDK's RealTimeErrorCodes, the API reference).
_CODE_CLASSES: dict[int, type[CallerError]] = {
    1011: ProviderUnavailable,
    1013: ProviderUnavailable,
    3005: ProviderUnavailable,
    3006: InvalidRequest,
    3007: InvalidRequest,
    3008: InvalidRequest,
    3009: RateLimited,
    4000: InvalidRequest,
    4001: AuthenticationFailed,
    4002: PermissionDenied,
    4003: PermissionDenied,
    4004: NotFound,
    4029: RateLimited,
    4031: ProviderTimeout,
    4102: RateLimited,
    4103: ProviderUnavailable,
}
_CODE_TEXT = {
    3005: "server error",
    3006: "input validation error",
    3007: "audio chunk duration violation",
    3008: "session expired: maximum session duration exceeded",
    3009: "too many concurrent sessions",
    4000: "sample rate must be a positive integer",
    4001: "not authorized",
    4002: "insufficient funds",
    4003: "this feature is paid-only",
    4008: "session expired",
    4029: "client sent audio too fast",
    4031: "session idle for too long",
    4101: "message with an invalid schema",
    4102: "too many streams for this account",
    1013: "temporary server condition",
}
_AUTH_WORDS = ("auth", "api key", "token", "credential")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided from the request before connecting (and before the key is read)."""

    params: dict[str, str]
    source: AudioFormat
    target: AudioFormat  # what goes on the wire: mono PCM s16le or mu-law
    format_turns: bool
    interim_results: bool

    @property
    def converts(self) -> bool:
        return self.source != self.target


def plan(request: StreamTranscribeRequest) -> Plan:
    fmt = request.audio_format
    if not formats.is_sample_format(fmt):
        raise InvalidRequest(
            f"audio_format: AssemblyAI streaming takes raw pcm_s16le, mulaw or alaw samples, "
            f"not {fmt.encoding} in {fmt.container}"
        )
    rate = formats.check_stream_format(fmt, output=False)
    if fmt.encoding is AudioEncoding.PCM_S16LE and fmt.channels == 1:
        target, encoding = fmt, "pcm_s16le"
    elif fmt.encoding is AudioEncoding.MULAW and fmt.channels == 1:
        target, encoding = fmt, "pcm_mulaw"
    else:
        out_rate = rate if rate in formats.PCM_OUTPUT_SAMPLE_RATES else 16_000
        target, encoding = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, out_rate, 1), "pcm_s16le"
    params = {"sample_rate": str(target.sample_rate_hz), "encoding": encoding}
    if request.punctuate:
        params["format_turns"] = "true"
    if request.endpointing_ms is not None:
        if request.endpointing_ms < 0:
            raise InvalidRequest("endpointing_ms: must not be negative")
        params["min_turn_silence"] = str(request.endpointing_ms)
    if request.keywords:
        params["keyterms_prompt"] = orjson.dumps(list(request.keywords)).decode()
    if request.diarize:
        params["speaker_labels"] = "true"
    model = request.model
    if request.language:
        primary = wire.language_code(request.language).split("_")[0]
        if model is None:
            model = ENGLISH_MODEL if primary == "en" else MULTILINGUAL_MODEL
        known = _MODEL_LANGUAGES.get(model)
        if known is not None and primary not in known:
            raise InvalidRequest(
                f"language: AssemblyAI's {model} transcribes {', '.join(known)}, not {request.language!r}"
            )
        if known is None:
            params["language_codes"] = orjson.dumps([primary]).decode()
    if model is not None:
        params["speech_model"] = model
    for name, value in request.provider_options.items():
        if name in params:
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        params[name] = _query_value(value)
    return Plan(
        params=params,
        source=fmt,
        target=target,
        format_turns=request.punctuate,
        interim_results=request.interim_results,
    )


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def websocket_url(options: Mapping[str, str]) -> tuple[wire.Endpoint, str]:
    target = wire.endpoint(
        options, "streaming_url", wire.DEFAULT_STREAMING_URL, schemes=("https", "http", "wss", "ws")
    )
    scheme = "wss" if target.base.scheme in ("https", "wss") else "ws"
    return target, str(target.url("/v3/ws").with_scheme(scheme))


class Rechunker:
    """Regroups samples into messages of MIN_CHUNK_MS to MAX_CHUNK_MS, cut on frames."""

    def __init__(self, target: AudioFormat) -> None:
        rate = target.sample_rate_hz or 16_000
        self.frame = formats.BYTES_PER_SAMPLE[target.encoding] * target.channels
        self.min_bytes = math.ceil(rate * MIN_CHUNK_MS / 1000) * self.frame
        self.max_bytes = rate * MAX_CHUNK_MS // 1000 * self.frame
        self.silence = b"\xff" if target.encoding is AudioEncoding.MULAW else b"\x00"
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while len(self._buffer) >= self.min_bytes:
            size = min(len(self._buffer), self.max_bytes)
            size -= size % self.frame
            out.append(bytes(self._buffer[:size]))
            del self._buffer[:size]
        return out

    def flush(self) -> bytes:
        """The held tail, padded with silence to the shortest message AssemblyAI takes."""
        whole = len(self._buffer) - len(self._buffer) % self.frame
        tail = bytes(self._buffer[:whole])
        self._buffer.clear()
        if not tail:
            return b""
        return tail + self.silence * (self.min_bytes - len(tail))


def code_error(code: int | None, reason: str, *, closed: bool) -> CallerError:
    """A close code or an Error message's error_code, classified."""
    text = reason.strip() or _CODE_TEXT.get(code or 0, "")
    what = "closed the stream" if closed else "reported an error"
    message = f"AssemblyAI {what} (code {code}){': ' + text if text else ''}"
    if code == 1008:
        lowered = text.lower()
        kind: type[CallerError] = (
            AuthenticationFailed if any(w in lowered for w in _AUTH_WORDS) else InvalidRequest
        )
    elif code is not None and code in _CODE_CLASSES:
        kind = _CODE_CLASSES[code]
    elif code is not None and 4000 <= code < 5000:
        kind = InvalidRequest
    else:
        kind = ProviderUnavailable
    return kind(message)


class TurnMapper:
    """AssemblyAI's Turn / SpeechStarted messages as the hub's events, in order."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.in_turn = False  # speech has started and its turn has not ended

    def speech_started(self, message: Mapping[str, Any]) -> list[StreamTranscribeEvent]:
        if self.in_turn:
            return []
        self.in_turn = True
        at = message.get("timestamp")
        return [SpeechStarted(at=at / 1000 if isinstance(at, int | float) else None)]

    def turn(self, message: Mapping[str, Any]) -> list[StreamTranscribeEvent]:
        words = [
            _word(w, message.get("speaker_label")) for w in message.get("words") or () if isinstance(w, dict)
        ]
        transcript = str(message.get("transcript") or "").strip()
        ended = bool(message.get("end_of_turn"))
        final = ended and (bool(message.get("turn_is_formatted")) or not self.plan.format_turns)
        events: list[StreamTranscribeEvent] = []
        if not self.in_turn and (words or transcript):
            self.in_turn = True
            events.append(SpeechStarted(at=words[0].start if words else None))
        start = words[0].start if words else None
        end = words[-1].end if words else None
        confidences = [w.confidence for w in words if w.confidence is not None]
        confidence = sum(confidences) / len(confidences) if confidences else None
        if not final:
            heard = " ".join(w.text for w in words) or transcript
            if self.plan.interim_results and heard:
                events.append(TranscriptEvent(heard, False, words, start, end, confidence))
            return events
        self.in_turn = False
        if transcript:
            events.append(TranscriptEvent(transcript, True, words, start, end, confidence))
            events.append(UtteranceEnd(at=end))
        return events


def _word(w: Mapping[str, Any], speaker: object) -> Word:
    confidence = w.get("confidence")
    label = w.get("speaker", speaker)
    return Word(
        text=str(w.get("text", "")),
        start=float(w.get("start") or 0) / 1000,
        end=float(w.get("end") or 0) / 1000,
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        speaker=str(label) if label is not None else None,
    )


async def _send_audio(ws: aiohttp.ClientWebSocketResponse, audio: AsyncIterator[bytes], plan: Plan) -> None:
    """The client's audio, converted and regrouped, then Terminate (the half-close)."""
    converter = StreamConverter(plan.source, plan.target) if plan.converts else None
    chunker = Rechunker(plan.target)
    try:
        async for piece in audio:
            data = converter.feed(piece) if converter is not None else piece
            for chunk in chunker.feed(data):
                await ws.send_bytes(chunk)
        if converter is not None:
            for chunk in chunker.feed(converter.flush()):
                await ws.send_bytes(chunk)
        last = chunker.flush()
        if last:
            await ws.send_bytes(last)
        await ws.send_str(_TERMINATE)
    except ConnectionResetError:
        return  # the server closed: the receiving side reports why


async def _next_message(
    ws: aiohttp.ClientWebSocketResponse, sender: asyncio.Task[None], timeout: float
) -> aiohttp.WSMessage:
    """The next message; while the client still sends audio, silence is no timeout."""
    _raise_if_failed(sender)
    receive = asyncio.ensure_future(ws.receive())
    try:
        if not sender.done():
            await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
            _raise_if_failed(sender)
            if receive.done():
                return receive.result()
        # the audio has ended: from now on the provider has `timeout` to answer
        async with asyncio.timeout(timeout):
            return await asyncio.shield(receive)
    except TimeoutError:
        raise ProviderTimeout(f"AssemblyAI sent nothing within {timeout:.3g} s") from None
    finally:
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(BaseException):
                await receive


def _raise_if_failed(sender: asyncio.Task[None]) -> None:
    """What went wrong while sending (the client's audio iterator, a conversion), if anything."""
    if sender.done() and not sender.cancelled():
        error = sender.exception()
        if error is not None:
            raise error


async def stream_transcribe(
    secret: SecretFields,
    options: Mapping[str, str],
    request: StreamTranscribeRequest,
    audio: AsyncIterator[bytes],
    timeout: float,
) -> AsyncIterator[StreamTranscribeEvent]:
    decided = plan(request)  # bad input is refused before the key is read or anything opens
    target, url = websocket_url(options)
    session = pools.aiohttp_session(target.upstream)
    ws: aiohttp.ClientWebSocketResponse | None = None
    sender: asyncio.Task[None] | None = None
    try:
        headers = wire.auth_headers(secret)
        key = headers["Authorization"]
        headers["AssemblyAI-Version"] = API_VERSION
        try:
            async with asyncio.timeout(timeout):
                ws = await session.ws_connect(
                    url,
                    params=decided.params,
                    headers=headers,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_WAIT),
                    autoclose=True,
                    autoping=True,
                )
                begin = await _begin(ws, key)
        except TimeoutError:
            raise ProviderTimeout(f"{target.host} did not open the stream within {timeout:.3g} s") from None
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_error(exc, key) from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(f"could not reach {target.host}: {type(exc).__name__}") from None
        session_id = begin.get("id") if isinstance(begin.get("id"), str) else None
        sender = asyncio.create_task(_send_audio(ws, audio, decided))
        mapper = TurnMapper(decided)
        while True:
            msg = await _next_message(ws, sender, timeout)
            if msg.type is aiohttp.WSMsgType.TEXT:
                message = _json(msg.data)
                kind = message.get("type")
                if kind == "Turn":
                    for event in mapper.turn(message):
                        yield event
                elif kind == "SpeechStarted":
                    for event in mapper.speech_started(message):
                        yield event
                elif kind == "Termination":
                    duration = message.get("audio_duration_seconds")
                    yield StreamTranscribeEnd(
                        duration=float(duration) if isinstance(duration, int | float) else None,
                        request_id=session_id,
                    )
                    return
                elif kind == "Error" or ("error" in message and kind is None):
                    raise _error_message(message, key)
                # Begin, Heartbeat, Warning, SpeakerRevision, Silence...: nothing for the hub
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise _close_error(ws, msg, key)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                raise ProviderUnavailable(f"the stream from {target.host} failed: {type(msg.data).__name__}")
    finally:
        if sender is not None and not sender.done():
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()


async def _begin(ws: aiohttp.ClientWebSocketResponse, key: str) -> dict[str, Any]:
    """The session's Begin message, or the reason the server gave instead."""
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            message = _json(msg.data)
            if message.get("type") == "Begin":
                return message
            if message.get("type") == "Error" or "error" in message:
                raise _error_message(message, key)
            continue
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise _close_error(ws, msg, key)
        if msg.type is aiohttp.WSMsgType.ERROR:
            raise ProviderUnavailable(f"the stream failed before it began: {type(msg.data).__name__}")


def _json(data: object) -> dict[str, Any]:
    try:
        message = orjson.loads(data if isinstance(data, str | bytes) else b"")
    except orjson.JSONDecodeError:
        raise ProviderUnavailable("AssemblyAI sent a message that is not JSON") from None
    if not isinstance(message, dict):
        raise ProviderUnavailable("AssemblyAI sent a message that is not a JSON object")
    return message


def _error_message(message: Mapping[str, Any], key: str) -> CallerError:
    code = message.get("error_code")
    return code_error(
        code if isinstance(code, int) else None,
        wire.redact(str(message.get("error") or ""), key),
        closed=False,
    )


def _close_error(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage, key: str) -> CallerError:
    code = ws.close_code
    if code is None and isinstance(msg.data, int):
        code = msg.data
    reason = msg.extra if isinstance(msg.extra, str) else ""
    if code == 1000:
        return ProviderUnavailable("AssemblyAI closed the stream before terminating the session")
    return code_error(code, wire.redact(reason, key), closed=True)


def _handshake_error(exc: aiohttp.WSServerHandshakeError, key: str) -> CallerError:
    status = exc.status
    message = wire.redact(exc.message or "", key)
    retry_after = exc.headers.get("Retry-After") if exc.headers else None
    if 200 <= status < 300 or 300 <= status < 400:
        return ProviderUnavailable(
            f"AssemblyAI did not open a websocket (HTTP {status})", provider_status=status
        )
    return error_from_http_status(
        status,
        f"AssemblyAI refused the stream (HTTP {status}){': ' + message if message else ''}",
        retry_after,
    )
