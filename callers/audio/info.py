"""What probing found out about a piece of audio, and the limits it is held to."""

from __future__ import annotations

from dataclasses import dataclass

from callers.types.speech import AudioContainer, AudioEncoding, AudioFormat


@dataclass(frozen=True, slots=True)
class AudioInfo:
    container: AudioContainer
    encoding: AudioEncoding
    sample_rate_hz: int
    channels: int
    frames: int  # samples per channel, as decoded

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.frames / self.sample_rate_hz

    @property
    def audio_format(self) -> AudioFormat:
        return AudioFormat(self.encoding, self.container, self.sample_rate_hz, self.channels)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds checked before (bytes) and while (seconds) audio is decoded; None: none."""

    max_bytes: int | None = None
    max_seconds: float | None = None


NO_LIMITS = Limits()
