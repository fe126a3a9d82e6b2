"""Probing: is this audio what it claims to be, and what is it?"""

from __future__ import annotations

from callers.audio.info import NO_LIMITS, AudioInfo, Limits
from callers.audio.read import Declared, scan


def probe(data: bytes, declared: Declared, limits: Limits = NO_LIMITS) -> AudioInfo:
    """Describe `data`, declared as an AudioFormat (or only its container).

    Raises AudioError, naming the field, for an unsupported container, encoding, sample
    rate or channel count, raw audio without a sample rate, audio that is not what was
    declared, corrupt, truncated or empty audio, and audio past the limits. Files are
    decoded through to the end (block by block, nothing kept), so that corruption
    anywhere is found and the duration is exact.
    """
    info, _ = scan(data, declared, limits, keep=False)
    return info
