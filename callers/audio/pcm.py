"""Decoded audio as the package passes it around, and sample-level conversions.

`Pcm` holds interleaved signed 16-bit little-endian samples, the form providers
accept as ``linear16``. Inside the package, audio is float32 frames (frames x
channels, in [-1, 1)), the form soxr resamples and soundfile writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from callers.audio._deps import missing_extra
from callers.audio.errors import AudioError

try:
    import numpy as np
    import numpy.typing as npt
except ImportError as exc:  # pragma: no cover - depends on the deployment
    raise missing_extra(exc) from exc

Frames = npt.NDArray[np.float32]  # shape (frames, channels)


@dataclass(frozen=True, slots=True)
class Pcm:
    """Interleaved PCM s16le samples at a sample rate."""

    data: bytes
    sample_rate_hz: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.sample_rate_hz <= 0 or self.channels <= 0:
            raise AudioError("audio_format", "sample rate and channels must be positive")
        if len(self.data) % (2 * self.channels):
            raise AudioError(
                "audio", f"is {len(self.data)} bytes, not whole 16-bit frames of {self.channels} channel(s)"
            )

    @property
    def frames(self) -> int:
        return len(self.data) // (2 * self.channels)

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.frames / self.sample_rate_hz


def int16_to_frames(samples: npt.NDArray[np.int16], channels: int) -> Frames:
    """Interleaved 16-bit samples to float32 frames."""
    return (samples.astype(np.float32) / np.float32(32768.0)).reshape(-1, channels)


def frames_to_int16(frames: Frames) -> npt.NDArray[np.int16]:
    """Float32 frames to interleaved 16-bit samples, rounded and clipped."""
    scaled = np.rint(frames.reshape(-1) * np.float32(32768.0))
    samples: npt.NDArray[np.int16] = np.clip(scaled, -32768, 32767).astype(np.int16)
    return samples


def pcm_to_frames(pcm: Pcm) -> Frames:
    return int16_to_frames(np.frombuffer(pcm.data, dtype="<i2").astype(np.int16), pcm.channels)


def frames_to_pcm(frames: Frames, sample_rate_hz: int) -> Pcm:
    data = frames_to_int16(frames).astype("<i2", copy=False).tobytes()
    return Pcm(data, sample_rate_hz, int(frames.shape[1]))
