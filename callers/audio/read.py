"""Reading audio bytes as declared: checks, then float32 frames block by block.

`scan` is shared by probing (which keeps nothing) and decoding (which keeps the
blocks). Files go through libsndfile (soundfile); WebM and MP4, which it cannot read,
through PyAV, imported only when such audio arrives.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from callers.audio import formats, g711
from callers.audio._deps import missing_extra
from callers.audio.errors import AudioError
from callers.audio.info import AudioInfo, Limits
from callers.audio.pcm import Frames, int16_to_frames
from callers.types.speech import AudioContainer, AudioEncoding, AudioFormat

try:
    import numpy as np
    import soundfile as sf  # type: ignore[import-untyped]
except (ImportError, OSError) as exc:  # pragma: no cover - depends on the deployment
    raise missing_extra(exc) from exc

C = AudioContainer
E = AudioEncoding

BLOCK_FRAMES = 65536

# libsndfile's names for the files each declared container may hold.
_SNDFILE_FORMATS: dict[AudioContainer | AudioEncoding, frozenset[str]] = {
    C.WAV: frozenset({"WAV", "WAVEX", "RF64"}),
    C.MP3: frozenset({"MP3"}),
    C.OGG: frozenset({"OGG"}),
    E.MP3: frozenset({"MP3"}),
    E.FLAC: frozenset({"FLAC"}),
}
_SNDFILE_SUBTYPES: dict[str, AudioEncoding] = {
    "PCM_16": E.PCM_S16LE,
    "ULAW": E.MULAW,
    "ALAW": E.ALAW,
    "MPEG_LAYER_III": E.MP3,
    "OPUS": E.OPUS,
}
_PYAV_CONTAINERS = frozenset({C.WEBM, C.MP4})

Declared = AudioFormat | AudioContainer


def scan(data: bytes, declared: Declared, limits: Limits, *, keep: bool) -> tuple[AudioInfo, list[Frames]]:
    """Check `data` against what was declared and decode it; the blocks if `keep`."""
    if not data:
        raise AudioError("audio", "is empty")
    if limits.max_bytes is not None and len(data) > limits.max_bytes:
        raise AudioError("audio", f"is {len(data)} bytes, more than the {limits.max_bytes} allowed")
    container: AudioContainer
    encoding: AudioEncoding | None
    rate: int | None
    if isinstance(declared, AudioContainer):
        if declared is C.RAW:
            raise AudioError("audio_format.encoding", "raw audio needs its encoding and sample rate")
        container, encoding, rate = declared, None, None
    else:
        formats.check_input_format(declared)
        container, encoding, rate = declared.container, declared.encoding, declared.sample_rate_hz
        if formats.is_sample_format(declared):
            return _scan_samples(data, declared, limits, keep=keep)
    if container in _PYAV_CONTAINERS:
        from callers.audio import pyav_read  # PyAV only when such audio arrives

        # (WebM's Opus always decodes at 48 kHz, whatever rate it was made from.)
        expected_rate = None if container is C.WEBM else rate
        return pyav_read.scan(data, container, encoding, expected_rate, limits, keep=keep)
    return _scan_sndfile(data, container, encoding, rate, limits, keep=keep)


def check_declared_rate(declared: int | None, found: int, name: str) -> None:
    if declared is not None and declared != found:
        raise AudioError(
            "audio_format.sample_rate_hz", f"declared {declared} Hz but the {name} audio is at {found} Hz"
        )


class SecondsLimit:
    """Stops decoding as soon as audio runs past `max_seconds`."""

    def __init__(self, limits: Limits, sample_rate_hz: int) -> None:
        self._max_frames = None if limits.max_seconds is None else limits.max_seconds * sample_rate_hz
        self._max_seconds = limits.max_seconds
        self.frames = 0

    def add(self, frames: int) -> None:
        self.frames += frames
        if self._max_frames is not None and self.frames > self._max_frames:
            raise AudioError("audio", f"is longer than the {self._max_seconds:g} seconds allowed")


def require_samples(frames: int) -> None:
    if frames == 0:
        raise AudioError("audio", "holds no audio samples")


def _scan_samples(
    data: bytes, declared: AudioFormat, limits: Limits, *, keep: bool
) -> tuple[AudioInfo, list[Frames]]:
    width = formats.BYTES_PER_SAMPLE[declared.encoding] * declared.channels
    if len(data) % width:
        raise AudioError(
            "audio",
            f"is {len(data)} bytes, not a whole number of {declared.encoding} frames "
            f"({width} bytes each for {declared.channels} channel(s))",
        )
    rate = declared.sample_rate_hz
    if rate is None:  # (check_input_format has said so already)
        raise AudioError(
            "audio_format.sample_rate_hz", f"raw {declared.encoding} audio needs its sample rate"
        )
    frame_count = len(data) // width
    SecondsLimit(limits, rate).add(frame_count)
    blocks: list[Frames] = []
    if keep:
        if declared.encoding is E.PCM_S16LE:
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
        else:
            samples = g711.decode(data, declared.encoding)
        blocks.append(int16_to_frames(samples, declared.channels))
    info = AudioInfo(C.RAW, declared.encoding, rate, declared.channels, frame_count)
    return info, blocks


def _scan_sndfile(
    data: bytes,
    container: AudioContainer,
    encoding: AudioEncoding | None,
    declared_rate: int | None,
    limits: Limits,
    *,
    keep: bool,
) -> tuple[AudioInfo, list[Frames]]:
    # A FLAC or MP3 stream declared in the raw container is the codec's own file.
    kind: AudioContainer | AudioEncoding = container
    if container is C.RAW and encoding is not None:
        kind = encoding
    name = str(kind)
    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise AudioError("audio", f"is not readable as {name} audio: {_why(exc)}") from exc
    with handle:
        found = handle.format
        if found not in _SNDFILE_FORMATS[kind]:
            raise AudioError("audio_format.container", f"declared {name} but the audio is {found}")
        found_encoding = E.FLAC if found == "FLAC" else _SNDFILE_SUBTYPES.get(handle.subtype)
        allowed = formats.INPUT_ENCODINGS[container]
        if found_encoding is None or found_encoding not in allowed:
            raise AudioError(
                "audio_format.encoding",
                f"the {name} audio is {handle.subtype}, which is not supported; "
                f"supported in {name}: {', '.join(allowed)}",
            )
        if encoding is not None and found_encoding is not encoding:
            raise AudioError(
                "audio_format.encoding", f"declared {encoding} but the {name} audio is {found_encoding}"
            )
        rate, channels = int(handle.samplerate), int(handle.channels)
        check_declared_rate(declared_rate, rate, name)
        formats.check_sample_rate(found_encoding, rate, formats.INPUT_SAMPLE_RATES)
        if channels > formats.MAX_CHANNELS:
            raise AudioError("audio_format.channels", f"the {name} audio has {channels} channels")
        counted = SecondsLimit(limits, rate)
        blocks: list[Frames] = []
        for block in _sndfile_blocks(handle, name):
            counted.add(int(block.shape[0]))
            if keep:
                blocks.append(block)
        claimed = int(handle.frames)
        damage = _ogg_damage(handle) if found == "OGG" else None
    if damage is not None:
        raise AudioError("audio", f"is damaged {name} audio: {damage}")
    require_samples(counted.frames)
    # Ogg pages and the FLAC header carry the length: fewer frames than promised
    # means pages were lost or damaged. (WAV sizes are not held against the audio:
    # live recorders write placeholders, and libsndfile reads what is there.)
    if found in ("OGG", "FLAC") and claimed > counted.frames:
        raise AudioError(
            "audio", f"is damaged or truncated: {claimed} frames promised, {counted.frames} decodable"
        )
    return AudioInfo(container, found_encoding, rate, channels, counted.frames), blocks


def _sndfile_blocks(handle: sf.SoundFile, name: str) -> Iterator[Frames]:
    while True:
        try:
            block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
        except (RuntimeError, ValueError) as exc:
            raise AudioError("audio", f"is corrupt {name} audio: {_why(exc)}") from exc
        if block.shape[0] == 0:
            return
        yield block


# What libsndfile's log says when Ogg pages fail their checksum or go missing; its
# decoder then skips or pads over the hole instead of failing.
_OGG_DAMAGE = ("Corrupted bitstream", "reports a hole")


def _ogg_damage(handle: sf.SoundFile) -> str | None:
    log = str(handle.extra_info)
    for sign in _OGG_DAMAGE:
        if sign in log:
            return f"pages are corrupt or missing (libsndfile: {sign!r})"
    return None


def _why(exc: BaseException) -> str:
    """libsndfile's reason, without the file object's repr and its misleading stock text."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    text = text.split(">: ", 1)[-1]
    if "File does not exist" in text or "Format not recognised" in text:
        return "not recognised as audio of any kind libsndfile reads"
    return text
