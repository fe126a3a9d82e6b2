"""Sample-rate conversion (soxr) and channel mixing of float32 frames."""

from __future__ import annotations

from callers.audio._deps import missing_extra
from callers.audio.errors import AudioError
from callers.audio.pcm import Frames

try:
    import numpy as np
    import soxr  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the deployment
    raise missing_extra(exc) from exc

QUALITY = "HQ"  # soxr's high quality: inaudible error, and fast enough for live audio
# For a live call's 20 ms frames: soxr's quick (cubic) resampler gives each chunk's output
# at once, where HQ's filter holds output back and releases it in ~100 ms bursts, more
# than a conversation can wait for. Its error is audible only above telephone bandwidth.
LIVE_QUALITY = "QQ"


def resample(frames: Frames, from_rate: int, to_rate: int) -> Frames:
    """The whole buffer at another rate."""
    if from_rate == to_rate or frames.shape[0] == 0:
        return frames
    out = soxr.resample(frames, from_rate, to_rate, quality=QUALITY)
    return np.asarray(out, dtype=np.float32).reshape(-1, frames.shape[1])


class StreamResampler:
    """soxr's streaming resampler: chunk in, chunk out, the filter state carried over.

    Its output does not depend on where the chunks are cut.
    """

    def __init__(self, from_rate: int, to_rate: int, channels: int, *, quality: str = QUALITY) -> None:
        self._channels = channels
        self._stream = soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32", quality=quality)

    def push(self, frames: Frames, *, last: bool = False) -> Frames:
        out = self._stream.resample_chunk(np.ascontiguousarray(frames, dtype=np.float32), last=last)
        return np.asarray(out, dtype=np.float32).reshape(-1, self._channels)


def mix_channels(frames: Frames, channels: int) -> Frames:
    """Down-mix to mono by averaging, or repeat mono; other changes are refused."""
    have = int(frames.shape[1])
    if have == channels:
        return frames
    if channels == 1:
        mono: Frames = frames.mean(axis=1, dtype=np.float32, keepdims=True)
        return mono
    if have == 1:
        return np.repeat(frames, channels, axis=1)
    raise AudioError("audio_format.channels", f"cannot mix {have} channels into {channels}")
