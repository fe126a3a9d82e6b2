"""Whole-buffer conversion: any readable audio to PCM, and PCM to each output format."""

from __future__ import annotations

import io

from callers.audio import formats, g711
from callers.audio._deps import missing_extra
from callers.audio.info import NO_LIMITS, Limits
from callers.audio.pcm import Pcm, frames_to_int16, frames_to_pcm, pcm_to_frames
from callers.audio.read import Declared, scan
from callers.audio.resample import mix_channels, resample
from callers.types.speech import AudioContainer, AudioEncoding, AudioFormat

try:
    import numpy as np
    import soundfile as sf  # type: ignore[import-untyped]
except (ImportError, OSError) as exc:  # pragma: no cover - depends on the deployment
    raise missing_extra(exc) from exc

C = AudioContainer
E = AudioEncoding

# libsndfile's (format, subtype) for each file output; headerless samples are written
# directly (PCM) or through the G.711 tables instead.
_SNDFILE_OUTPUT: dict[tuple[AudioContainer, AudioEncoding], tuple[str, str]] = {
    (C.WAV, E.PCM_S16LE): ("WAV", "PCM_16"),
    (C.WAV, E.MULAW): ("WAV", "ULAW"),
    (C.WAV, E.ALAW): ("WAV", "ALAW"),
    (C.MP3, E.MP3): ("MP3", "MPEG_LAYER_III"),
    (C.RAW, E.MP3): ("MP3", "MPEG_LAYER_III"),
    (C.RAW, E.FLAC): ("FLAC", "PCM_16"),
    (C.OGG, E.OPUS): ("OGG", "OPUS"),
}


def decode(
    data: bytes,
    declared: Declared,
    *,
    sample_rate_hz: int | None = None,
    channels: int | None = None,
    limits: Limits = NO_LIMITS,
) -> Pcm:
    """Audio as PCM s16le, at `sample_rate_hz` and `channels` (None: as it is).

    Validates exactly as `probe` does. Resampling is soxr's; down-mixing averages the
    channels.
    """
    info, blocks = scan(data, declared, limits, keep=True)
    frames = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    if channels is not None:
        frames = mix_channels(frames, channels)
    rate = sample_rate_hz or info.sample_rate_hz
    return frames_to_pcm(resample(frames, info.sample_rate_hz, rate), rate)


def encode(pcm: Pcm, target: AudioFormat) -> bytes:
    """PCM in `target`'s format, resampled and mixed to its rate and channels."""
    rate = formats.check_output_format(target)
    frames = resample(mix_channels(pcm_to_frames(pcm), target.channels), pcm.sample_rate_hz, rate)
    if formats.is_sample_format(target):
        samples = frames_to_int16(frames)
        if target.encoding is E.PCM_S16LE:
            return samples.astype("<i2", copy=False).tobytes()
        return g711.encode(samples, target.encoding)
    file_format, subtype = _SNDFILE_OUTPUT[(target.container, target.encoding)]
    out = io.BytesIO()
    sf.write(out, frames, rate, format=file_format, subtype=subtype)
    return out.getvalue()


def convert(data: bytes, declared: Declared, target: AudioFormat, *, limits: Limits = NO_LIMITS) -> bytes:
    """Any readable audio in `target`'s format: `decode` then `encode`."""
    formats.check_output_format(target)
    return encode(decode(data, declared, limits=limits), target)
