"""Seconds of audio, for usage accounting."""

from __future__ import annotations

from callers.audio import formats
from callers.audio.errors import AudioError
from callers.audio.info import NO_LIMITS, Limits
from callers.audio.read import Declared
from callers.types.speech import AudioFormat


def pcm_seconds(byte_count: int, sample_rate_hz: int, channels: int = 1, sample_width: int = 2) -> float:
    """Seconds in `byte_count` bytes of PCM (16-bit unless `sample_width` says otherwise)."""
    if sample_rate_hz <= 0 or channels <= 0 or sample_width <= 0:
        raise ValueError("sample rate, channels and sample width must be positive")
    return byte_count // (sample_width * channels) / sample_rate_hz


def raw_seconds(byte_count: int, audio_format: AudioFormat) -> float:
    """Seconds in `byte_count` bytes of headerless samples (PCM s16le, mu-law, A-law)."""
    if not formats.is_sample_format(audio_format):
        raise AudioError(
            "audio_format.encoding",
            f"the duration of {audio_format.encoding} in {audio_format.container} "
            "cannot be told from its size; decode it",
        )
    rate = audio_format.sample_rate_hz
    if rate is None:
        raise AudioError(
            "audio_format.sample_rate_hz", f"raw {audio_format.encoding} audio needs its sample rate"
        )
    width = formats.BYTES_PER_SAMPLE[audio_format.encoding]
    return pcm_seconds(byte_count, rate, audio_format.channels, width)


def audio_seconds(data: bytes, declared: Declared, limits: Limits = NO_LIMITS) -> float:
    """Seconds of audio in `data`, decoded (so exact for compressed formats too)."""
    from callers.audio.probing import probe  # decoding libraries only when asked

    return probe(data, declared, limits).duration
