"""Streaming conversion of headerless samples: chunk in, chunk out, bounded memory.

For telephony media streams and live synthesis: mu-law or A-law at 8 kHz to PCM s16le
at the provider's rate and back, or PCM between rates. Chunks may be cut anywhere, in
the middle of a sample or of a frame: the incomplete tail is carried over to the next
chunk. The output does not depend on where the input was cut. Only the carried-over
bytes and soxr's filter state are held between chunks, so memory stays flat however
long the stream runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from callers.audio import formats, g711
from callers.audio._deps import missing_extra
from callers.audio.errors import AudioError
from callers.audio.pcm import Frames, frames_to_int16, int16_to_frames
from callers.audio.resample import LIVE_QUALITY, QUALITY, StreamResampler, mix_channels
from callers.types.speech import AudioEncoding, AudioFormat

try:
    import numpy as np
except ImportError as exc:  # pragma: no cover - depends on the deployment
    raise missing_extra(exc) from exc


class StreamConverter:
    """Converts a stream of raw samples from `source`'s format to `target`'s.

    Both formats are raw (container ``raw``) PCM s16le, mu-law or A-law with their
    sample rates. `target.channels` is `source.channels` or 1 (a down-mix). Call
    `feed` per chunk and `flush` once at the end; each returns the bytes ready so far.
    `low_latency` (live call media) trades resampling quality for output at once
    (resample.LIVE_QUALITY).
    """

    def __init__(self, source: AudioFormat, target: AudioFormat, *, low_latency: bool = False) -> None:
        self._source_rate = formats.check_stream_format(source, output=False)
        self._target_rate = formats.check_stream_format(target, output=True)
        if target.channels not in (1, source.channels):
            raise AudioError(
                "audio_format.channels",
                f"a stream of {source.channels} channel(s) converts to {source.channels} or 1, "
                f"not {target.channels}",
            )
        self.source = source
        self.target = target
        self._frame_bytes = formats.BYTES_PER_SAMPLE[source.encoding] * source.channels
        self._pending = b""
        self._resampler = (
            StreamResampler(
                self._source_rate,
                self._target_rate,
                target.channels,
                quality=LIVE_QUALITY if low_latency else QUALITY,
            )
            if self._source_rate != self._target_rate
            else None
        )
        self._closed = False
        self.input_frames = 0
        self.output_frames = 0
        self.dropped_bytes = 0  # an incomplete last frame, discarded by flush

    @property
    def input_seconds(self) -> float:
        return self.input_frames / self._source_rate

    @property
    def output_seconds(self) -> float:
        return self.output_frames / self._target_rate

    def feed(self, chunk: bytes) -> bytes:
        """The converted bytes of `chunk`, as far as whole frames (and the filter) allow."""
        if self._closed:
            raise RuntimeError("StreamConverter.feed after flush")
        data = self._pending + chunk if self._pending else chunk
        whole = len(data) - len(data) % self._frame_bytes
        self._pending = data[whole:]
        if whole == 0:
            return b""
        return self._convert(self._decode(data[:whole]), last=False)

    def flush(self) -> bytes:
        """The rest of the output (the resampler's tail); the converter is then closed."""
        if self._closed:
            return b""
        self._closed = True
        self.dropped_bytes = len(self._pending)
        self._pending = b""
        if self._resampler is None:
            return b""
        empty = np.zeros((0, self.target.channels), dtype=np.float32)
        return self._convert(empty, last=True, mixed=True)

    def _decode(self, data: bytes) -> Frames:
        encoding = self.source.encoding
        if encoding is AudioEncoding.PCM_S16LE:
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
        else:
            samples = g711.decode(data, encoding)
        frames = int16_to_frames(samples, self.source.channels)
        self.input_frames += int(frames.shape[0])
        return frames

    def _convert(self, frames: Frames, *, last: bool, mixed: bool = False) -> bytes:
        if not mixed:
            frames = mix_channels(frames, self.target.channels)
        if self._resampler is not None:
            frames = self._resampler.push(frames, last=last)
        self.output_frames += int(frames.shape[0])
        samples = frames_to_int16(frames)
        if self.target.encoding is AudioEncoding.PCM_S16LE:
            return samples.astype("<i2", copy=False).tobytes()
        return g711.encode(samples, self.target.encoding)


def convert_stream(
    chunks: AsyncIterable[bytes], source: AudioFormat, target: AudioFormat
) -> AsyncIterator[bytes]:
    """`chunks` converted from `source`'s format to `target`'s, as they arrive.

    The formats are checked here, at the call, so that an unsupported one is refused
    before any chunk is read or any provider is called. Yields only non-empty chunks.
    """
    return _converted(chunks, StreamConverter(source, target))


async def _converted(chunks: AsyncIterable[bytes], converter: StreamConverter) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        out = converter.feed(chunk)
        if out:
            yield out
    tail = converter.flush()
    if tail:
        yield tail
