"""WebM (Opus) and MP4 (AAC), which libsndfile cannot read, decoded through PyAV (FFmpeg)."""

from __future__ import annotations

import io

from callers.audio._deps import missing_extra
from callers.audio.errors import AudioError
from callers.audio.formats import INPUT_ENCODINGS, INPUT_SAMPLE_RATES, MAX_CHANNELS, check_sample_rate
from callers.audio.info import AudioInfo, Limits
from callers.audio.pcm import Frames
from callers.audio.read import SecondsLimit, check_declared_rate, require_samples
from callers.types.speech import AudioContainer, AudioEncoding

try:
    import av
    import av.audio.frame
    import numpy as np
except ImportError as exc:  # pragma: no cover - depends on the deployment
    raise missing_extra(exc) from exc

# FFmpeg's demuxer names for each container, and its decoder names for each encoding.
_DEMUXERS: dict[AudioContainer, frozenset[str]] = {
    AudioContainer.WEBM: frozenset({"matroska", "webm"}),
    AudioContainer.MP4: frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}),
}
_CODECS: dict[str, AudioEncoding] = {
    "opus": AudioEncoding.OPUS,
    "libopus": AudioEncoding.OPUS,
    "aac": AudioEncoding.AAC,
}


def scan(
    data: bytes,
    container: AudioContainer,
    encoding: AudioEncoding | None,
    declared_rate: int | None,
    limits: Limits,
    *,
    keep: bool,
) -> tuple[AudioInfo, list[Frames]]:
    name = str(container)
    try:
        handle = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioError("audio", f"is not readable as {name} audio: {_why(exc)}") from exc
    with handle:
        demuxers = set(handle.format.name.split(","))
        if not demuxers & _DEMUXERS[container]:
            raise AudioError(
                "audio_format.container", f"declared {name} but the audio is {handle.format.name}"
            )
        if not handle.streams.audio:
            raise AudioError("audio", f"the {name} file has no audio track")
        stream = handle.streams.audio[0]
        found = _CODECS.get(stream.codec_context.name)
        allowed = INPUT_ENCODINGS[container]
        if found is None or found not in allowed:
            raise AudioError(
                "audio_format.encoding",
                f"the {name} audio is {stream.codec_context.name}, which is not supported; "
                f"supported in {name}: {', '.join(allowed)}",
            )
        if encoding is not None and found is not encoding:
            raise AudioError("audio_format.encoding", f"declared {encoding} but the {name} audio is {found}")
        rate = 0
        channels = 0
        counted: SecondsLimit | None = None
        blocks: list[Frames] = []
        try:
            for frame in handle.decode(stream):
                if counted is None:
                    rate, channels = int(frame.sample_rate), int(frame.layout.nb_channels)
                    check_declared_rate(declared_rate, rate, name)
                    check_sample_rate(found, rate, INPUT_SAMPLE_RATES)
                    if channels > MAX_CHANNELS:
                        raise AudioError("audio_format.channels", f"the {name} audio has {channels} channels")
                    counted = SecondsLimit(limits, rate)
                block = _to_frames(frame, channels)
                counted.add(int(block.shape[0]))
                if keep:
                    blocks.append(block)
        except av.FFmpegError as exc:
            raise AudioError("audio", f"is corrupt {name} audio: {_why(exc)}") from exc
    if counted is None:
        raise AudioError("audio", "holds no audio samples")
    require_samples(counted.frames)
    return AudioInfo(container, found, rate, channels, counted.frames), blocks


def _why(exc: BaseException) -> str:
    """FFmpeg's reason, without its errno and the file name it does not have."""
    reason = getattr(exc, "strerror", None)
    return reason if isinstance(reason, str) and reason else str(exc)


def _to_frames(frame: av.audio.frame.AudioFrame, channels: int) -> Frames:
    """One decoded frame, planar or packed, integer or float, as float32 frames."""
    array = frame.to_ndarray()
    if frame.format.is_planar:
        array = array.T
    array = array.reshape(-1, channels)
    if array.dtype.kind == "i":
        bits = array.dtype.itemsize * 8
        return (array.astype(np.float32) / np.float32(2 ** (bits - 1))).astype(np.float32)
    return array.astype(np.float32, copy=False)
