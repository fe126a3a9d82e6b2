"""Speech-to-text and text-to-speech requests and responses, provider-neutral.

Durations and timings are seconds (float), sample rates hertz. Audio travels as
bytes described by an AudioFormat, because telephony audio (8 kHz mu-law, raw) and
file audio (mp3, wav) must both pass through without guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from callers.types.common import JsonValue


class AudioEncoding(StrEnum):
    PCM_S16LE = "pcm_s16le"  # linear 16-bit little-endian
    MULAW = "mulaw"  # G.711 mu-law, what most telephony media streams carry
    ALAW = "alaw"
    MP3 = "mp3"
    OPUS = "opus"
    FLAC = "flac"
    AAC = "aac"


class AudioContainer(StrEnum):
    RAW = "raw"  # headerless samples: sample_rate_hz and channels are then required
    WAV = "wav"
    OGG = "ogg"
    WEBM = "webm"
    MP3 = "mp3"
    MP4 = "mp4"


@dataclass(slots=True)
class AudioFormat:
    encoding: AudioEncoding
    container: AudioContainer = AudioContainer.RAW
    sample_rate_hz: int | None = None
    channels: int = 1


# --- speech to text ---------------------------------------------------------------


@dataclass(slots=True)
class TranscribeRequest:
    """A whole recording. The hub has probed `audio` against `audio_format` before the
    caller sees it (a container's own header is authoritative), so a caller may trust
    the format; it converts with `callers.audio` when its provider takes another one.
    Exactly one of `audio` and `audio_url` is set (`audio_url`: https, fetched by the
    provider; a caller whose provider cannot fetch raises InvalidRequest)."""

    audio: bytes
    audio_format: AudioFormat
    model: str | None = None  # None: the provider's default model
    language: str | None = None  # BCP-47, e.g. "en-US"; None: let the provider detect
    audio_url: str | None = None
    punctuate: bool = True
    diarize: bool = False
    word_timestamps: bool = False
    keywords: list[str] = field(default_factory=list)  # boosted words/phrases, where offered
    provider_options: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(slots=True)
class StreamTranscribeRequest:
    """Settings for a live transcription; the audio itself arrives as a byte stream of
    raw samples in `audio_format` (or a container stream such as webm/opus)."""

    audio_format: AudioFormat
    model: str | None = None
    language: str | None = None
    interim_results: bool = True
    punctuate: bool = True
    diarize: bool = False
    word_timestamps: bool = False
    keywords: list[str] = field(default_factory=list)
    endpointing_ms: int | None = None  # silence that ends an utterance; None: provider default
    provider_options: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(slots=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float | None = None
    speaker: str | None = None  # provider's diarization label, when diarization is on


@dataclass(slots=True)
class TranscribeResponse:
    transcript: str
    words: list[Word] = field(default_factory=list)
    language: str | None = None
    duration: float | None = None  # seconds of audio, as the provider measured it
    confidence: float | None = None
    request_id: str | None = None


@dataclass(slots=True)
class TranscriptEvent:
    """One update of a live transcription; interim results are later replaced."""

    transcript: str
    is_final: bool
    words: list[Word] = field(default_factory=list)
    start: float | None = None  # seconds from the start of the stream
    end: float | None = None
    confidence: float | None = None


@dataclass(slots=True)
class UtteranceEnd:
    """The provider detected the end of an utterance (endpointing / voice activity)."""

    at: float | None = None  # seconds from the start of the stream, where the provider says


@dataclass(slots=True)
class SpeechStarted:
    """The provider detected the start of speech."""

    at: float | None = None


@dataclass(slots=True)
class StreamTranscribeEnd:
    """The last event of a live transcription that ended normally (after half-close)."""

    duration: float | None = None
    request_id: str | None = None


StreamTranscribeEvent = TranscriptEvent | UtteranceEnd | SpeechStarted | StreamTranscribeEnd


# --- text to speech ---------------------------------------------------------------


@dataclass(slots=True)
class SynthesizeRequest:
    """`output_format` is what the client asked for and the caller must answer exactly
    (container, encoding, sample rate): natively where the provider can, else by
    asking the provider for PCM and converting with `callers.audio`."""

    text: str
    voice: str
    output_format: AudioFormat
    is_ssml: bool = False
    language: str | None = None
    model: str | None = None
    speed: float | None = None  # 1.0 is normal; None: the provider's default
    provider_options: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(slots=True)
class SynthesizeResponse:
    audio: bytes
    audio_format: AudioFormat
    duration: float | None = None
    request_id: str | None = None


@dataclass(slots=True)
class AudioChunk:
    """A piece of streamed synthesis, in the request's output format; `is_last` marks
    the end of the utterance. `request_id` is the provider's, on any chunk that knows it."""

    audio: bytes
    is_last: bool = False
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Flush:
    """In a text input stream: synthesize what is buffered now, without waiting for more."""


FLUSH = Flush()
TextInput = str | Flush


class VoiceGender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    NEUTRAL = "neutral"


@dataclass(slots=True)
class Voice:
    id: str  # what SynthesizeRequest.voice takes
    name: str
    languages: list[str] = field(default_factory=list)  # BCP-47
    gender: VoiceGender | None = None
    models: list[str] = field(default_factory=list)
