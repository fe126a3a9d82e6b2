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
    audio: bytes
    audio_format: AudioFormat
    model: str | None = None  # None: the provider's default model
    language: str | None = None  # BCP-47, e.g. "en-US"; None: let the provider detect
    provider_options: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(slots=True)
class StreamTranscribeRequest:
    """Settings for a live transcription; the audio itself arrives as a byte stream."""

    audio_format: AudioFormat
    model: str | None = None
    language: str | None = None
    interim_results: bool = True
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
    duration: float | None = None
    request_id: str | None = None


@dataclass(slots=True)
class TranscriptEvent:
    """One update of a live transcription; interim results are later replaced."""

    transcript: str
    is_final: bool
    words: list[Word] = field(default_factory=list)
    start: float | None = None
    end: float | None = None


# --- text to speech ---------------------------------------------------------------


@dataclass(slots=True)
class SynthesizeRequest:
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
    """A piece of streamed synthesis; `is_last` marks the end of the utterance."""

    audio: bytes
    is_last: bool = False
