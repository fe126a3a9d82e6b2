"""STT and STREAM_STT: Sarvam speech to text (Saarika, Saaras), on the wire (see wire.py).

REST: POST {base_url}/speech-to-text, multipart: ``file``, ``model`` (default
saarika:v2.5), ``language_code`` (a Sarvam code, or ``unknown`` to detect),
``with_timestamps``, ``keyterms`` (a JSON array; saaras:v4 only), ``mode`` (saaras,
through provider_options). Answer: ``{request_id, transcript, timestamps: {words,
start_time_seconds, end_time_seconds}, language_code, language_probability}``. Sarvam's
timestamps are per chunk (a phrase or sentence), not per word: each becomes one Word
whose text is the chunk. The REST API has no diarization (Sarvam's Batch API has).

Files Sarvam decodes itself (mp3, flac, ogg/opus, webm, mp4/aac, 16-bit WAV at 16 kHz)
go as they came; other WAVs and raw samples (PCM, mu-law, A-law) are converted to
16 kHz 16-bit mono WAV, the rate Sarvam's models work at.

Streaming: websocket {base_url as ws(s)}/speech-to-text/ws with the query
``language-code``, ``model``, ``sample_rate`` (16000, or 8000 for 8 kHz input),
``input_audio_codec=pcm_s16le``, ``vad_signals=true``, ``flush_signal=true`` and,
when endpointing_ms <= 500, ``high_vad_sensitivity=true`` (Sarvam ends an utterance
after about 0.5 s of silence with it, 1 s without). The client sends
``{"audio": {"data": <base64 PCM>, "sample_rate": <rate>, "encoding": "audio/wav"}}``
per chunk and ``{"type": "flush"}`` when the audio ends; Sarvam answers
``{"type": "events", "data": {"signal_type": "START_SPEECH" | "END_SPEECH",
"occured_at": <epoch>}}`` (SpeechStarted, UtteranceEnd: `at` stays None, the epoch is
not a stream offset), ``{"type": "data", "data": {"request_id", "transcript",
"language_code", "metrics": {"audio_duration"}}}`` once per utterance (a final
TranscriptEvent: this endpoint sends no interim results and no timings), and
``{"type": "error", "data": {"error", "code"}}``.

End of stream: Sarvam acknowledges no flush, and a transcript cannot be told apart
from an earlier utterance's (a client that sends faster than real time has flushed
long before Sarvam reached its last words). So after the flush the stream ends when
Sarvam has been quiet for `SETTLE_SECONDS` with no speech open, waits up to `timeout`
for the transcript of speech still open (START_SPEECH without its transcript:
ProviderTimeout if it never comes), or ends when Sarvam closes; then one
StreamTranscribeEnd.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from callers import audio
from callers.base import InvalidRequest, ProviderTimeout, ProviderUnavailable, SecretFields
from callers.sarvam import languages, wire
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SpeechStarted,
    StreamTranscribeEnd,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    TranscribeRequest,
    TranscribeResponse,
    TranscriptEvent,
    UtteranceEnd,
    Word,
)

C, E = AudioContainer, AudioEncoding
DEFAULT_MODEL = "saarika:v2.5"
KEYTERMS_MODELS = ("saaras:v4",)
RATE = 16_000
# After the flush, with no speech open: how long a quiet provider is waited for.
SETTLE_SECONDS = 1.0
# At most this much audio per websocket message (1 s of 16 kHz PCM).
MAX_MESSAGE_BYTES = 32_000

# Files sent as they are: (container, encoding) -> (file name, content type).
_AS_IS: dict[tuple[AudioContainer, AudioEncoding], tuple[str, str]] = {
    (C.MP3, E.MP3): ("audio.mp3", "audio/mpeg"),
    (C.RAW, E.MP3): ("audio.mp3", "audio/mpeg"),
    (C.RAW, E.FLAC): ("audio.flac", "audio/flac"),
    (C.OGG, E.OPUS): ("audio.ogg", "audio/ogg"),
    (C.WEBM, E.OPUS): ("audio.webm", "audio/webm"),
    (C.MP4, E.AAC): ("audio.m4a", "audio/mp4"),
}
_RESERVED = frozenset({"file", "model", "language_code", "with_timestamps", "keyterms"})
_STREAM_RESERVED = frozenset(
    {"language-code", "model", "sample_rate", "input_audio_codec", "vad_signals", "flush_signal"}
)


def _language(language: str | None, model: str) -> str:
    if language is None or language.lower() in ("", "auto", languages.AUTO_DETECT):
        return languages.AUTO_DETECT
    return languages.sarvam_language(
        language, languages.stt_languages(model), f"Sarvam speech to text ({model})"
    )


def _keyterms(keywords: list[str], model: str) -> str | None:
    if not keywords:
        return None
    if model not in KEYTERMS_MODELS:
        raise InvalidRequest(
            f"keywords: Sarvam biases recognition (keyterms) only with {', '.join(KEYTERMS_MODELS)}, "
            f"not {model}"
        )
    return orjson.dumps(keywords).decode()


def _option_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def upload(request: TranscribeRequest) -> tuple[bytes, str, str]:
    """The file to send: (bytes, file name, content type)."""
    fmt = request.audio_format
    as_is = _AS_IS.get((fmt.container, fmt.encoding))
    if as_is is not None:
        return request.audio, *as_is
    if (
        (fmt.container, fmt.encoding) == (C.WAV, E.PCM_S16LE)
        and fmt.sample_rate_hz == RATE
        and fmt.channels == 1
    ):
        return request.audio, "audio.wav", "audio/wav"
    wav = AudioFormat(E.PCM_S16LE, C.WAV, RATE, 1)
    return audio.convert(request.audio, fmt, wav), "audio.wav", "audio/wav"


def transcription_form(request: TranscribeRequest) -> aiohttp.FormData:
    if request.audio_url:
        raise InvalidRequest("audio_url: Sarvam's speech to text takes the audio itself, not a URL")
    if request.diarize:
        raise InvalidRequest(
            "diarize: Sarvam's REST speech to text has no diarization (only its Batch API has)"
        )
    model = request.model or DEFAULT_MODEL
    language = _language(request.language, model)
    keyterms = _keyterms(request.keywords, model)
    for name in request.provider_options:
        if name in _RESERVED:
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
    data, filename, content_type = upload(request)
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    form.add_field("model", model)
    form.add_field("language_code", language)
    form.add_field("with_timestamps", "true" if request.word_timestamps else "false")
    if keyterms is not None:
        form.add_field("keyterms", keyterms)
    for name, value in request.provider_options.items():
        form.add_field(name, _option_text(value))  # e.g. mode (saaras), input_audio_codec
    return form


def _floats(values: object) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, int | float)]


def parse_transcription(data: object) -> TranscribeResponse:
    if not isinstance(data, dict) or not isinstance(data.get("transcript"), str):
        raise ProviderUnavailable("unexpected speech to text answer from Sarvam: no transcript")
    words: list[Word] = []
    stamps = data.get("timestamps")
    if isinstance(stamps, dict):
        texts = stamps.get("words") if isinstance(stamps.get("words"), list) else []
        starts, ends = _floats(stamps.get("start_time_seconds")), _floats(stamps.get("end_time_seconds"))
        for text, start, end in zip(texts or [], starts, ends, strict=False):
            words.append(Word(text=str(text), start=start, end=end))
    language = data.get("language_code")
    probability = data.get("language_probability")
    request_id = data.get("request_id")
    return TranscribeResponse(
        transcript=data["transcript"].strip(),
        words=words,
        language=language if isinstance(language, str) else None,
        duration=words[-1].end if words else None,
        confidence=float(probability) if isinstance(probability, int | float) else None,
        request_id=request_id if isinstance(request_id, str) else None,
    )


# --- streaming ------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    query: dict[str, str]
    rate: int
    converter: audio.StreamConverter | None


@dataclass(slots=True)
class _State:
    """What the sender and the receiver share."""

    speech_open: bool = False
    flushed: bool = False
    send_failed: bool = False
    sent_bytes: int = 0
    request_id: str | None = None


def stream_plan(request: StreamTranscribeRequest) -> _Plan:
    """Everything checked before connecting: language, options, the audio conversion."""
    if request.diarize:
        raise InvalidRequest("diarize: Sarvam's streaming speech to text has no diarization")
    if request.word_timestamps:
        raise InvalidRequest(
            "word_timestamps: Sarvam's streaming speech to text sends no timings (its REST API does)"
        )
    model = request.model or DEFAULT_MODEL
    fmt = request.audio_format
    source_rate = audio.check_stream_format(fmt, output=False)
    rate = 8000 if source_rate == 8000 else RATE
    target = AudioFormat(E.PCM_S16LE, C.RAW, rate, 1)
    same = (fmt.encoding, fmt.sample_rate_hz, fmt.channels) == (E.PCM_S16LE, rate, 1)
    converter = None if same else audio.StreamConverter(fmt, target)
    query = {
        "language-code": _language(request.language, model),
        "model": model,
        "sample_rate": str(rate),
        "input_audio_codec": "pcm_s16le",
        "vad_signals": "true",
        "flush_signal": "true",
    }
    if request.endpointing_ms is not None:
        query["high_vad_sensitivity"] = "true" if request.endpointing_ms <= 500 else "false"
    keyterms = _keyterms(request.keywords, model)
    if keyterms is not None:
        query["keyterms"] = keyterms
    for name, value in request.provider_options.items():
        if name in _STREAM_RESERVED or name == "keyterms":
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        query[name] = _option_text(value)  # e.g. mode, high_vad_sensitivity, VAD frame counts
    return _Plan(query=query, rate=rate, converter=converter)


async def _send_audio(
    ws: aiohttp.ClientWebSocketResponse, chunks: AsyncIterator[bytes], plan: _Plan, state: _State
) -> None:
    async def put(pcm: bytes) -> None:
        for at in range(0, len(pcm), MAX_MESSAGE_BYTES):
            piece = pcm[at : at + MAX_MESSAGE_BYTES]
            message = {
                "audio": {
                    "data": base64.b64encode(piece).decode(),
                    "sample_rate": plan.rate,
                    "encoding": "audio/wav",
                }
            }
            await ws.send_str(orjson.dumps(message).decode())
            state.sent_bytes += len(piece)

    converter = plan.converter
    try:
        async for chunk in chunks:
            pcm = converter.feed(chunk) if converter is not None else chunk
            if pcm:
                await put(pcm)
        if converter is not None:
            tail = converter.flush()
            if tail:
                await put(tail)
        await ws.send_str('{"type":"flush"}')
    except (aiohttp.ClientError, ConnectionError):
        # Sarvam went away mid-stream: the receiving side reports why (its error
        # message, or the close).
        state.send_failed = True
        return
    state.flushed = True


def _events(message: object, state: _State) -> list[StreamTranscribeEvent]:
    """The events of one message."""
    if not isinstance(message, dict):
        raise ProviderUnavailable("unexpected streaming message from Sarvam: not a JSON object")
    kind, data = message.get("type"), message.get("data")
    if kind == "error":
        raise wire.message_error(data)
    if not isinstance(data, dict):
        return []
    if kind == "events":
        signal = data.get("signal_type")
        if signal == "START_SPEECH":
            state.speech_open = True
            return [SpeechStarted()]
        if signal == "END_SPEECH":
            return [UtteranceEnd()]
        return []
    if kind == "data":
        state.speech_open = False
        request_id = data.get("request_id")
        if isinstance(request_id, str):
            state.request_id = request_id
        transcript = data.get("transcript")
        if isinstance(transcript, str) and transcript.strip():
            return [TranscriptEvent(transcript=transcript.strip(), is_final=True)]
        return []
    return []


class SarvamTranscriber:
    async def transcribe(
        self, secret: SecretFields, options: Mapping[str, str], request: TranscribeRequest, *, timeout: float
    ) -> TranscribeResponse:
        form = transcription_form(request)  # bad input is refused before the key is read
        target = wire.endpoint(options, "speech-to-text")
        data = await wire.send(target, wire.key_headers(secret), form=form, timeout=timeout)
        return parse_transcription(data)

    async def stream_transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: StreamTranscribeRequest,
        audio_chunks: AsyncIterator[bytes],
        *,
        timeout: float,
    ) -> AsyncIterator[StreamTranscribeEvent]:
        plan = stream_plan(request)
        target = wire.ws_endpoint(options, "speech-to-text/ws", plan.query)
        ws = await wire.ws_connect(target, wire.key_headers(secret), timeout)
        state = _State()
        sender = asyncio.ensure_future(_send_audio(ws, audio_chunks, plan, state))
        receive: asyncio.Future[aiohttp.WSMessage] | None = None
        try:
            while True:
                if receive is None:
                    receive = asyncio.ensure_future(ws.receive())
                if not sender.done():
                    either: set[asyncio.Future[Any]] = {receive, sender}
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                    if sender.done():
                        sender.result()  # the audio failed (conversion, the client's iterator)
                    if not receive.done():
                        continue
                else:
                    quiet = (
                        timeout if state.speech_open or state.send_failed else min(timeout, SETTLE_SECONDS)
                    )
                    done, _ = await asyncio.wait({receive}, timeout=quiet)
                    if not done:
                        if state.send_failed:
                            raise ProviderUnavailable("the connection to Sarvam broke while audio was sent")
                        if state.speech_open:
                            raise ProviderTimeout(
                                f"Sarvam sent no transcript within {timeout:g} s of the end of the audio"
                            )
                        break  # flushed, nothing open, nothing more coming
                msg = receive.result()
                receive = None
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    if not state.flushed:
                        raise ProviderUnavailable(
                            f"Sarvam closed the stream before the audio ended (code {ws.close_code})"
                        )
                    break
                if msg.type is aiohttp.WSMsgType.ERROR:
                    raise ProviderUnavailable(f"the Sarvam stream failed ({type(msg.data).__name__})")
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    parsed = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    raise ProviderUnavailable("unexpected streaming message from Sarvam: not JSON") from None
                events = _events(parsed, state)
                for event in events:
                    yield event
            yield StreamTranscribeEnd(
                duration=state.sent_bytes / (2 * plan.rate), request_id=state.request_id
            )
        finally:
            sender.cancel()
            if receive is not None:
                receive.cancel()
            await wire.ws_close(ws)
            if sender.done() and not sender.cancelled():
                sender.exception()  # retrieved: an error already raised above, or none


CALLER = SarvamTranscriber()
