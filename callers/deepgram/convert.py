"""The hub's speech types to Deepgram's query parameters and back.

Input audio (STT): Deepgram reads containers itself (WAV, MP3, FLAC, Ogg/Opus,
WebM/Opus, MP4/AAC), so a file goes as it came, with its content type. Headerless
samples are wrapped as WAV for the prerecorded API (G.711 stays G.711); live, they go
as they are with `encoding` (linear16, mulaw, alaw) and `sample_rate`, which Deepgram
takes at any rate, and a container stream goes without them (Deepgram detects it).

Output audio (TTS, Aura): Deepgram writes linear16 (wav or none) at 8, 16, 24, 32 and
48 kHz, mu-law and A-law at 8 kHz, mp3 at 22.05 kHz, Ogg/Opus at 48 kHz and FLAC at
8, 16, 22.05, 32 and 48 kHz. An asked format among those is asked for as it is; any
other (PCM at 22.05 or 44.1 kHz, mp3 at 24 kHz, ...) is made from linear16 with
callers.audio.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from callers import audio
from callers.audio import formats
from callers.base import InvalidRequest, ProviderUnavailable
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SpeechStarted,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    SynthesizeRequest,
    TranscribeRequest,
    TranscribeResponse,
    TranscriptEvent,
    UtteranceEnd,
    Word,
)
from callers.types.common import JsonValue

C, E = AudioContainer, AudioEncoding

DEFAULT_STT_MODEL = "nova-3"
DEFAULT_TTS_MODEL = "aura-2"
DEFAULT_VOICE = "aura-2-thalia-en"
# utterance_end_ms: the gap after the last word that ends an utterance, when
# endpointing (speech_final) did not (noisy lines). Deepgram needs interim results for it.
UTTERANCE_END_MS = 1000

# --- speech to text ----------------------------------------------------------------

# Files Deepgram reads as they are: (container, encoding) -> content type.
_CONTENT_TYPES: dict[tuple[AudioContainer, AudioEncoding], str] = {
    (C.WAV, E.PCM_S16LE): "audio/wav",
    (C.WAV, E.MULAW): "audio/wav",
    (C.WAV, E.ALAW): "audio/wav",
    (C.MP3, E.MP3): "audio/mpeg",
    (C.RAW, E.MP3): "audio/mpeg",
    (C.RAW, E.FLAC): "audio/flac",
    (C.OGG, E.OPUS): "audio/ogg",
    (C.WEBM, E.OPUS): "audio/webm",
    (C.MP4, E.AAC): "audio/mp4",
}
# Headerless samples, live: Deepgram's name for each encoding.
_LIVE_ENCODINGS: dict[AudioEncoding, str] = {E.PCM_S16LE: "linear16", E.MULAW: "mulaw", E.ALAW: "alaw"}
# Container streams Deepgram detects by itself (MP4 needs its index, so it cannot stream).
_LIVE_CONTAINERS: frozenset[tuple[AudioContainer, AudioEncoding]] = frozenset(
    {
        (C.WAV, E.PCM_S16LE),
        (C.WAV, E.MULAW),
        (C.WAV, E.ALAW),
        (C.MP3, E.MP3),
        (C.RAW, E.MP3),
        (C.RAW, E.FLAC),
        (C.OGG, E.OPUS),
        (C.WEBM, E.OPUS),
    }
)
# Set by the hub from the request: a provider option must not say otherwise.
_STT_RESERVED = frozenset(
    {
        "model",
        "encoding",
        "sample_rate",
        "channels",
        "language",
        "detect_language",
        "callback",
        "callback_method",
    }
)


def query_value(value: JsonValue) -> Any:
    """A provider option as a query value: booleans as Deepgram writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [query_value(v) for v in value]
    if isinstance(value, str | int | float):
        return value
    raise InvalidRequest(
        f"provider option value {value!r}: Deepgram takes strings, numbers, booleans or lists"
    )


def _provider_query(options: dict[str, JsonValue], reserved: frozenset[str]) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name, value in options.items():
        if name in reserved:
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        query[name] = query_value(value)
    return query


def _boost(model: str, keywords: list[str]) -> dict[str, Any]:
    """Nova-3 boosts with `keyterm`; Nova-2 and older models with `keywords`."""
    if not keywords:
        return {}
    return {"keyterm": list(keywords)} if model.startswith("nova-3") else {"keywords": list(keywords)}


@dataclass(slots=True)
class Prerecorded:
    """One prerecorded call: the SDK method's arguments and the extra query parameters."""

    params: dict[str, Any]
    query: dict[str, Any]
    body: bytes = b""
    content_type: str = ""
    url: str | None = None


def prerecorded(request: TranscribeRequest) -> Prerecorded:
    model = request.model or DEFAULT_STT_MODEL
    params: dict[str, Any] = {
        "model": model,
        "punctuate": request.punctuate,
        "diarize": request.diarize,
        **_boost(model, request.keywords),
    }
    if request.language:
        params["language"] = request.language
    else:
        params["detect_language"] = True
    query = _provider_query(request.provider_options, _STT_RESERVED)
    if request.audio_url:
        if not request.audio_url.startswith(("https://", "http://")):
            raise InvalidRequest("audio_url: Deepgram fetches http(s) URLs only")
        return Prerecorded(params, query, url=request.audio_url)
    body, content_type = upload(request.audio, request.audio_format)
    return Prerecorded(params, query, body=body, content_type=content_type)


def upload(data: bytes, fmt: AudioFormat) -> tuple[bytes, str]:
    """The file to send and its content type; headerless samples become a WAV file."""
    as_is = _CONTENT_TYPES.get((fmt.container, fmt.encoding))
    if as_is is not None:
        return data, as_is
    if not formats.is_sample_format(fmt):
        raise InvalidRequest(
            f"audio_format: Deepgram does not read {fmt.encoding} in a {fmt.container} container"
        )
    rate = fmt.sample_rate_hz or 16_000
    if fmt.encoding is not E.PCM_S16LE and rate in formats.G711_SAMPLE_RATES:
        wav = AudioFormat(fmt.encoding, C.WAV, rate, fmt.channels)  # G.711 stays G.711
    else:
        pcm_rate = rate if rate in formats.PCM_OUTPUT_SAMPLE_RATES else 16_000
        wav = AudioFormat(E.PCM_S16LE, C.WAV, pcm_rate, fmt.channels)
    return audio.convert(data, fmt, wav), "audio/wav"


def _words(items: object, punctuated: bool) -> list[Word]:
    words: list[Word] = []
    if not isinstance(items, list):
        return words
    for item in items:
        get = item.get if isinstance(item, dict) else lambda name, _item=item: getattr(_item, name, None)
        text = (get("punctuated_word") if punctuated else None) or get("word") or ""
        start, end = get("start"), get("end")
        confidence, speaker = get("confidence"), get("speaker")
        words.append(
            Word(
                text=str(text),
                start=float(start) if isinstance(start, int | float) else 0.0,
                end=float(end) if isinstance(end, int | float) else 0.0,
                confidence=float(confidence) if isinstance(confidence, int | float) else None,
                speaker=str(speaker) if speaker is not None else None,
            )
        )
    return words


def transcribe_response(answer: object, request: TranscribeRequest) -> TranscribeResponse:
    """ListenV1Response (the SDK's model of Deepgram's JSON) to the hub's answer."""
    results = getattr(answer, "results", None)
    metadata = getattr(answer, "metadata", None)
    channels = getattr(results, "channels", None)
    if not channels:
        raise ProviderUnavailable("unexpected transcription answer from Deepgram: no results.channels")
    channel = channels[0]
    alternatives = getattr(channel, "alternatives", None) or []
    best = alternatives[0] if alternatives else None
    transcript = getattr(best, "transcript", None) or ""
    confidence = getattr(best, "confidence", None)
    duration = getattr(metadata, "duration", None)
    language = getattr(channel, "detected_language", None) or request.language
    return TranscribeResponse(
        transcript=transcript,
        words=_words(getattr(best, "words", None), request.punctuate),
        language=language,
        duration=float(duration) if isinstance(duration, int | float) else None,
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        request_id=getattr(metadata, "request_id", None),
    )


def live_query(request: StreamTranscribeRequest) -> list[tuple[str, str]]:
    """The query of wss://.../v1/listen for a live transcription."""
    fmt = request.audio_format
    model = request.model or DEFAULT_STT_MODEL
    query: list[tuple[str, str]] = [("model", model)]
    if formats.is_sample_format(fmt):
        if fmt.sample_rate_hz is None:
            raise InvalidRequest(
                f"audio_format.sample_rate_hz: raw {fmt.encoding} audio needs its sample rate"
            )
        query += [
            ("encoding", _LIVE_ENCODINGS[fmt.encoding]),
            ("sample_rate", str(fmt.sample_rate_hz)),
            ("channels", str(fmt.channels)),
        ]
    elif (fmt.container, fmt.encoding) not in _LIVE_CONTAINERS:
        raise InvalidRequest(
            f"audio_format: Deepgram cannot transcribe {fmt.encoding} in a {fmt.container} container live; "
            "send raw linear16/mulaw/alaw, or wav, mp3, flac, ogg/opus or webm/opus"
        )
    query += [
        ("interim_results", _flag(request.interim_results)),
        ("punctuate", _flag(request.punctuate)),
        ("diarize", _flag(request.diarize)),
        ("vad_events", "true"),
    ]
    if request.interim_results:
        query.append(("utterance_end_ms", str(UTTERANCE_END_MS)))
    if request.endpointing_ms is not None:
        if request.endpointing_ms < 0:
            raise InvalidRequest("endpointing_ms: must not be negative")
        query.append(("endpointing", str(request.endpointing_ms) if request.endpointing_ms else "false"))
    if request.language:
        query.append(("language", request.language))
    for name, value in _boost(model, request.keywords).items():
        query += [(name, v) for v in value]
    for name, value in _provider_query(request.provider_options, _STT_RESERVED).items():
        values = value if isinstance(value, list) else [value]
        query += [(name, str(v)) for v in values]
    return query


def _flag(value: bool) -> str:
    return "true" if value else "false"


@dataclass(slots=True)
class LiveEvents:
    """Deepgram's live messages to the hub's events, in order.

    An utterance ends at a Results with `speech_final` (endpointing), or at an
    UtteranceEnd message (the word-gap fallback); an UtteranceEnd that follows a
    speech_final with no word in between is the same end, and is not repeated.
    """

    punctuate: bool = True
    request_id: str | None = None
    duration: float | None = None
    _words_since_end: bool = field(default=False)

    def feed(self, message: object) -> Iterator[StreamTranscribeEvent]:
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "Results":
            yield from self._results(message)
        elif kind == "UtteranceEnd":
            if self._words_since_end:
                self._words_since_end = False
                yield UtteranceEnd(at=_seconds(message.get("last_word_end")))
        elif kind == "SpeechStarted":
            yield SpeechStarted(at=_seconds(message.get("timestamp")))
        elif kind == "Metadata":
            rid = message.get("request_id")
            self.request_id = rid if isinstance(rid, str) else self.request_id
            self.duration = _seconds(message.get("duration"))
        elif kind == "Error":
            said = message.get("description") or message.get("message") or message.get("variant")
            raise ProviderUnavailable(f"Deepgram reported an error: {said}")

    def _results(self, message: dict[str, Any]) -> Iterator[StreamTranscribeEvent]:
        channel = message.get("channel")
        alternatives = channel.get("alternatives") if isinstance(channel, dict) else None
        best = alternatives[0] if isinstance(alternatives, list) and alternatives else {}
        if not isinstance(best, dict):
            best = {}
        transcript = best.get("transcript") or ""
        words = _words(best.get("words"), self.punctuate)
        start = _seconds(message.get("start"))
        length = _seconds(message.get("duration"))
        end = start + length if start is not None and length is not None else None
        if transcript or words:
            self._words_since_end = True
            confidence = best.get("confidence")
            yield TranscriptEvent(
                transcript=str(transcript),
                is_final=bool(message.get("is_final")),
                words=words,
                start=start,
                end=end,
                confidence=float(confidence) if isinstance(confidence, int | float) else None,
            )
        if message.get("speech_final") and self._words_since_end:
            self._words_since_end = False
            yield UtteranceEnd(at=words[-1].end if words else end)


def _seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- text to speech ----------------------------------------------------------------

LINEAR16_RATES = (8000, 16000, 24000, 32000, 48000)
FLAC_RATES = (8000, 16000, 22050, 32000, 48000)
MP3_RATE = 22050
OPUS_RATE = 48000
_TTS_RESERVED = frozenset(
    {"model", "encoding", "container", "sample_rate", "callback", "callback_method", "text"}
)


@dataclass(frozen=True, slots=True)
class SpeakPlan:
    """What to ask Deepgram for, what it answers, and whether that still needs converting."""

    params: dict[str, Any]
    produced: AudioFormat
    convert: bool


def speak_plan(asked: AudioFormat) -> SpeakPlan:
    rate = asked.sample_rate_hz
    mono = asked.channels == 1
    samples = asked.container in (C.RAW, C.WAV)
    container = "wav" if asked.container is C.WAV else "none"
    if mono and samples and asked.encoding is E.PCM_S16LE and rate in LINEAR16_RATES:
        return SpeakPlan({"encoding": "linear16", "container": container, "sample_rate": rate}, asked, False)
    if mono and samples and asked.encoding in (E.MULAW, E.ALAW) and rate == 8000:
        name = "mulaw" if asked.encoding is E.MULAW else "alaw"
        return SpeakPlan({"encoding": name, "container": container, "sample_rate": rate}, asked, False)
    if mono and asked.encoding is E.MP3 and asked.container in (C.MP3, C.RAW) and rate == MP3_RATE:
        return SpeakPlan({"encoding": "mp3"}, asked, False)
    if mono and asked.encoding is E.OPUS and asked.container is C.OGG and rate == OPUS_RATE:
        return SpeakPlan({"encoding": "opus", "container": "ogg"}, asked, False)
    if mono and asked.encoding is E.FLAC and asked.container is C.RAW and rate in FLAC_RATES:
        return SpeakPlan({"encoding": "flac", "sample_rate": rate}, asked, False)
    # Anything else is made from linear16 at the nearest rate at or above the asked one.
    source = next((r for r in LINEAR16_RATES if rate is not None and r >= rate), 48000)
    produced = AudioFormat(E.PCM_S16LE, C.RAW, source, 1)
    return SpeakPlan({"encoding": "linear16", "container": "none", "sample_rate": source}, produced, True)


def speak_model(request: SynthesizeRequest) -> str:
    """The voice is the model (aura-2-<voice>-<lang>); a bare voice name is completed."""
    voice = request.voice.strip()
    if not voice:
        return DEFAULT_VOICE
    if voice.startswith("aura"):
        return voice
    family = request.model or DEFAULT_TTS_MODEL
    language = (request.language or "en").split("-")[0].lower()
    return f"{family}-{voice}-{language}"


def speak_query(request: SynthesizeRequest) -> dict[str, Any]:
    if request.is_ssml:
        raise InvalidRequest("ssml: Deepgram's speech API takes plain text only")
    if not request.text.strip():
        raise InvalidRequest("text: nothing to speak")
    return _provider_query(request.provider_options, _TTS_RESERVED)
