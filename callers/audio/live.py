"""Per-frame conversion for live call media: mono mu-law, A-law or linear16, 20 ms at a time.

StreamConverter (stream.py) takes any chunk through float32 frames, channel mixing and
soxr: 9-14 µs of CPU per 20 ms frame here (mulaw 8 kHz <-> linear16 16 kHz, or 8 kHz),
mostly numpy's per-call set-up on arrays of 160 samples, and a hub carrying a hundred
calls converts 10,000 such frames a second. This path takes 1.5-9 µs for the same. It
does only what the formats need, with as few array operations as it can:

- same encoding and rate: nothing (the bytes pass through, an odd byte carried over);
- G.711 to linear16: two ``bytes.translate`` tables (the low and the high byte of each
  code's sample, from g711's libsndfile table) interleaved into one buffer: no numpy;
- linear16 to G.711: one lookup of each 16-bit value in a 65,536-entry table indexed by
  the sample's raw bits (g711's table, reordered once);
- down by a whole factor R (16 kHz -> 8 kHz, 24 or 48 kHz -> 8 kHz, 48 kHz -> 16 kHz): a
  triangular low-pass of 2R - 1 taps centred on every R-th sample, in integers. It needs
  no sample after the block it is given, so it holds nothing back and adds no delay: a
  20 ms frame in is a whole 20 ms frame out, in its place. soxr's quick mode, used here
  before, picks every R-th sample (no low-pass at all) and holds one back, and the frame it
  completes late cost the hub either a frame time of delay or a sample of silence put in
  front, which shifts the whole stream (see media_provider). The triangle takes the band
  above the new Nyquist rate down (-6 dB at it, ~-28 dB at 7 kHz from 16 kHz) where
  picking folds all of it back into the speech band, at the price of a duller top end:
  -3 to -4 dB at 3 kHz, -4 to -5 dB at 3.4 kHz. A fair trade on a phone line; a longer
  filter would need samples from the next frame, i.e. a frame time of delay.
- anything else (up: 8 -> 16 kHz, or 16 -> 24 kHz): soxr's streaming resampler at its
  quick quality (resample.LIVE_QUALITY, output at once), straight on int16: the same
  filter as before without the float32 round trip. It holds back a few output samples
  (0.25 ms at 16 kHz), which flush() returns. libsoxr dithers int16 output (TPDF, its
  default): the last bit or two of a sample (-84 dB) may differ with where the chunks
  were cut; everything else here is exact whatever the cuts.

Only mono: a live call is mono; other formats get StreamConverter (`live_converter`).
"""

from __future__ import annotations

import functools

from callers.audio import formats, g711
from callers.audio._deps import missing_extra
from callers.audio.resample import LIVE_QUALITY
from callers.audio.stream import StreamConverter
from callers.types.speech import AudioEncoding, AudioFormat

try:
    import numpy as np
    import numpy.typing as npt
    import soxr  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the deployment
    raise missing_extra(exc) from exc

Int16 = npt.NDArray[np.int16]
Int32 = npt.NDArray[np.int32]
_G711 = (AudioEncoding.MULAW, AudioEncoding.ALAW)


@functools.cache
def _decode_tables(encoding: AudioEncoding) -> tuple[bytes, bytes]:
    """For bytes.translate: each code's 16-bit sample, its low byte and its high byte."""
    decode_table, _ = g711._tables(encoding)
    raw = decode_table.astype("<i2").view(np.uint16)
    return bytes((raw & 0xFF).astype(np.uint8)), bytes((raw >> 8).astype(np.uint8))


@functools.cache
def _encode_table(encoding: AudioEncoding) -> npt.NDArray[np.uint8]:
    """g711's encode table (indexed by sample + 32768) indexed by the sample's raw 16 bits."""
    _, encode_table = g711._tables(encoding)
    table = np.ascontiguousarray(encode_table[np.arange(65536) ^ 0x8000])
    table.setflags(write=False)
    return table


def g711_to_pcm16(data: bytes, encoding: AudioEncoding) -> bytes:
    """G.711 bytes to PCM s16le, without numpy: the same samples as g711.to_pcm16."""
    low, high = _decode_tables(encoding)
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(low)
    out[1::2] = data.translate(high)
    return bytes(out)


def pcm16_to_g711(samples: Int16 | Int32, encoding: AudioEncoding) -> bytes:
    """16-bit samples (int16, or int32 within its range) to G.711 bytes: g711.encode's."""
    bits = samples.view(np.uint16) if samples.dtype == np.int16 else samples & 0xFFFF
    return _encode_table(encoding)[bits].tobytes()


class _Decimator:
    """Down by a whole factor, with the triangular low-pass centred on each kept sample."""

    def __init__(self, factor: int) -> None:
        self._factor = factor
        # Tap j of 2R - 1 weighs sample m*R + j - (R - 1) by R - |j - (R - 1)|; they sum to R*R.
        self._taps: Int32 = (factor - np.abs(np.arange(1 - factor, factor))).astype(np.int32)
        self._scale = factor * factor
        self._history: Int32 = np.zeros(factor - 1, dtype=np.int32)  # silence before the stream
        self._carry: Int16 = np.zeros(0, dtype=np.int16)  # samples short of a whole block

    def push(self, samples: Int16) -> Int32:
        factor = self._factor
        if self._carry.size:
            samples = np.concatenate((self._carry, samples))
        span = samples.size - samples.size % factor
        self._carry = samples[span:]
        if span == 0:
            return np.zeros(0, dtype=np.int32)
        window = np.concatenate((self._history, samples[:span]), dtype=np.int32)
        if factor > 1:
            self._history = window[-(factor - 1) :]
        # Output m is centred on block sample m*R, whose last tap is sample m*R + R - 1:
        # inside the block, so nothing waits for the next one. Row m of this view is the
        # window's 2R - 1 samples under output m's taps (rows R samples apart, no copy):
        # one product with the taps, not np.convolve's every-sample output thrown away.
        rows = np.ndarray(
            (span // factor, 2 * factor - 1),
            dtype=np.int32,
            buffer=window,
            strides=(factor * window.itemsize, window.itemsize),
        )
        summed: Int32 = rows @ self._taps
        summed += self._scale // 2
        summed //= self._scale
        return summed


class LiveConverter:
    """Converts a mono live stream from `source`'s format to `target`'s, chunk by chunk.

    As StreamConverter (chunks cut anywhere, the output independent of the cuts, bounded
    memory): `feed` per chunk, `flush` once at the end for what a resampler still holds.
    """

    def __init__(self, source: AudioFormat, target: AudioFormat) -> None:
        self._source_rate = formats.check_stream_format(source, output=False)
        self._target_rate = formats.check_stream_format(target, output=True)
        if source.channels != 1 or target.channels != 1:
            raise ValueError("LiveConverter is for mono streams: use StreamConverter (live_converter)")
        self.source = source
        self.target = target
        self._width = formats.BYTES_PER_SAMPLE[source.encoding]
        self._pending = b""  # an incomplete sample (linear16 cut between its two bytes)
        self._decimator: _Decimator | None = None
        self._resampler: soxr.ResampleStream | None = None
        if self._source_rate != self._target_rate:
            if self._source_rate % self._target_rate == 0:
                self._decimator = _Decimator(self._source_rate // self._target_rate)
            else:
                self._resampler = soxr.ResampleStream(
                    self._source_rate, self._target_rate, 1, dtype="int16", quality=LIVE_QUALITY
                )
        self._closed = False

    @property
    def passes_through(self) -> bool:
        """True when the formats match: feed hands the bytes on as they are."""
        return self.source.encoding is self.target.encoding and self._source_rate == self._target_rate

    def feed(self, chunk: bytes) -> bytes:
        """The converted bytes of `chunk`, as far as whole samples (and a resampler) allow."""
        if self._closed:
            raise RuntimeError("LiveConverter.feed after flush")
        if self._width == 2:
            data = self._pending + chunk if self._pending else chunk
            if len(data) % 2:
                data, self._pending = data[:-1], data[-1:]
            else:
                self._pending = b""
        else:
            data = chunk
        if not data:
            return b""
        if self.passes_through:
            return data
        source = self.source.encoding
        linear = g711_to_pcm16(data, source) if source in _G711 else data
        if self.target.encoding is AudioEncoding.PCM_S16LE and self._source_rate == self._target_rate:
            return linear  # G.711 decoded, at its rate: no array at all
        return self._encode(self._resample(np.frombuffer(linear, dtype="<i2"), last=False))

    def flush(self) -> bytes:
        """What a resampler still holds; the converter is then closed."""
        if self._closed:
            return b""
        self._closed = True
        self._pending = b""
        if self._resampler is None:
            return b""  # the decimator holds nothing back; its carry is less than a sample out
        return self._encode(self._resample(np.zeros(0, dtype=np.int16), last=True))

    def _resample(self, samples: Int16, *, last: bool) -> Int16 | Int32:
        if self._decimator is not None:
            return self._decimator.push(samples)
        if self._resampler is not None:
            # As one column (frames x 1 channel): soxr then neither adds nor squeezes an axis
            # per chunk, and its contiguous output reads out as the same bytes.
            out: Int16 = self._resampler.resample_chunk(samples.reshape(-1, 1), last=last)
            return out
        return samples

    def _encode(self, samples: Int16 | Int32) -> bytes:
        if samples.size == 0:
            return b""
        if self.target.encoding is AudioEncoding.PCM_S16LE:
            return samples.astype("<i2", copy=False).tobytes()
        return pcm16_to_g711(samples, self.target.encoding)


def live_converter(source: AudioFormat, target: AudioFormat) -> LiveConverter | StreamConverter:
    """The lean converter for mono live media; StreamConverter (low latency) for anything else."""
    if source.channels == 1 and target.channels == 1:
        return LiveConverter(source, target)
    return StreamConverter(source, target, low_latency=True)
