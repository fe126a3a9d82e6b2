"""Streaming conversion: chunks cut anywhere, agreement with whole buffers, flat memory."""

from __future__ import annotations

import asyncio
import itertools
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callers.audio import AudioError, StreamConverter, convert, convert_stream, decode
from callers.audio.g711 import decode as g711_decode
from callers.types.speech import AudioContainer as C
from callers.types.speech import AudioEncoding as E
from callers.types.speech import AudioFormat as F
from tests.audio.conftest import Speech, aligned_correlation

MULAW_8K = F(E.MULAW, C.RAW, 8000)
ALAW_8K = F(E.ALAW, C.RAW, 8000)
PCM_16K = F(E.PCM_S16LE, C.RAW, 16000)
PCM_24K = F(E.PCM_S16LE, C.RAW, 24000)
PCM_8K = F(E.PCM_S16LE, C.RAW, 8000)


def run(data: bytes, source: F, target: F, sizes: Iterator[int]) -> bytes:
    converter = StreamConverter(source, target)
    out = []
    position = 0
    for size in sizes:
        if position >= len(data):
            break
        out.append(converter.feed(data[position : position + size]))
        position += size
    out.append(converter.flush())
    return b"".join(out)


def whole(data: bytes, source: F, target: F) -> bytes:
    return run(data, source, target, iter([len(data)]))


@pytest.fixture(scope="module")
def phone_line(speech: Speech) -> bytes:
    """About 1.5 s of real speech as a phone line carries it: mu-law at 8 kHz."""
    return speech.file("raw_mulaw_8k")[4000:16000]


@pytest.fixture(scope="module")
def linear_16k(speech: Speech) -> bytes:
    return speech.file("raw_pcm_16k")[16000:64001]  # odd length: ends inside a sample


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=997), min_size=1, max_size=40))
def test_output_does_not_depend_on_where_chunks_are_cut(
    phone_line: bytes, linear_16k: bytes, cuts: list[int]
) -> None:
    for data, source, target in (
        (phone_line, MULAW_8K, PCM_16K),
        (linear_16k, PCM_16K, MULAW_8K),
        (linear_16k, PCM_16K, PCM_24K),
    ):
        assert run(data, source, target, itertools.cycle(cuts)) == whole(data, source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [(MULAW_8K, PCM_16K), (PCM_16K, MULAW_8K), (ALAW_8K, PCM_8K), (PCM_16K, PCM_16K)],
    ids=["mulaw8k-pcm16k", "pcm16k-mulaw8k", "alaw8k-pcm8k", "pcm16k-pcm16k"],
)
@pytest.mark.parametrize("size", [1, 3, 7, 160, 161, 4095])
def test_tiny_and_odd_chunks(phone_line: bytes, linear_16k: bytes, source: F, target: F, size: int) -> None:
    data = (phone_line if source.encoding is not E.PCM_S16LE else linear_16k)[:8001]
    assert run(data, source, target, itertools.repeat(size)) == whole(data, source, target)


def test_a_sample_split_across_chunks_is_carried_over() -> None:
    converter = StreamConverter(PCM_8K, MULAW_8K)
    sample = np.array([12345], dtype="<i2").tobytes()
    assert converter.feed(sample[:1]) == b""
    assert converter.feed(sample[1:]) == convert(sample, PCM_8K, MULAW_8K)
    assert converter.feed(b"\x01") == b""
    assert converter.flush() == b""
    assert converter.dropped_bytes == 1  # an incomplete last sample is discarded
    with pytest.raises(RuntimeError):
        converter.feed(b"\x00\x00")


def test_streaming_agrees_with_whole_buffer_conversion(phone_line: bytes) -> None:
    streamed = run(phone_line, MULAW_8K, PCM_16K, itertools.repeat(160))  # 20 ms telephony frames
    whole_buffer = decode(phone_line, MULAW_8K, sample_rate_hz=16000).data
    assert len(streamed) == len(whole_buffer) == 4 * len(phone_line)
    a = np.frombuffer(streamed, dtype="<i2").astype(np.int32)
    b = np.frombuffer(whole_buffer, dtype="<i2").astype(np.int32)
    assert np.max(np.abs(a - b)) <= 1

    # ... and back to the phone line: mu-law 8 kHz -> PCM 16 kHz -> mu-law 8 kHz.
    back_streamed = run(streamed, PCM_16K, MULAW_8K, itertools.repeat(641))
    back_whole = convert(whole_buffer, PCM_16K, MULAW_8K)
    assert len(back_streamed) == len(back_whole) == len(phone_line)
    same = np.frombuffer(back_streamed, np.uint8) == np.frombuffer(back_whole, np.uint8)
    assert same.mean() > 0.99
    original = g711_decode(phone_line, E.MULAW).astype(np.float32)
    again = g711_decode(back_streamed, E.MULAW).astype(np.float32)
    assert aligned_correlation(again, original, max_lag=8) > 0.99


def test_counters_say_how_much_audio_passed(phone_line: bytes) -> None:
    converter = StreamConverter(MULAW_8K, PCM_16K)
    out = converter.feed(phone_line) + converter.flush()
    assert converter.input_frames == len(phone_line)
    assert converter.input_seconds == pytest.approx(len(phone_line) / 8000)
    assert converter.output_frames == len(out) // 2
    assert converter.output_seconds == pytest.approx(converter.input_seconds, abs=0.001)


def test_stereo_is_mixed_down_in_a_stream(speech: Speech) -> None:
    stereo = decode(speech.file("wav_48k_stereo"), C.WAV, sample_rate_hz=16000)
    source = F(E.PCM_S16LE, C.RAW, 16000, channels=2)
    data = stereo.data[:64003]
    mixed = run(data, source, MULAW_8K, itertools.repeat(333))
    assert len(mixed) == 64000 // 4 // 2
    assert mixed == whole(data, source, MULAW_8K)


async def _chunks(data: bytes, size: int, seen: list[int]) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        seen.append(start)
        yield data[start : start + size]
        await asyncio.sleep(0)


async def test_async_adapter(phone_line: bytes) -> None:
    seen: list[int] = []
    out = [chunk async for chunk in convert_stream(_chunks(phone_line, 161, seen), MULAW_8K, PCM_16K)]
    assert all(out)
    assert b"".join(out) == whole(phone_line, MULAW_8K, PCM_16K)
    assert len(seen) == -(-len(phone_line) // 161)


async def test_async_adapter_refuses_a_bad_format_before_reading() -> None:
    seen: list[int] = []
    with pytest.raises(AudioError) as caught:
        convert_stream(_chunks(b"\x00" * 100, 10, seen), F(E.MP3, C.MP3, 16000), PCM_16K)
    assert caught.value.field == "audio_format.encoding"
    assert seen == []


@pytest.mark.parametrize(
    ("source", "target", "field", "words"),
    [
        (F(E.PCM_S16LE, C.WAV, 16000), PCM_16K, "audio_format.encoding", "cannot be converted as a stream"),
        (F(E.OPUS, C.OGG, 48000), PCM_16K, "audio_format.encoding", "cannot be converted as a stream"),
        (F(E.MULAW, C.RAW), PCM_16K, "audio_format.sample_rate_hz", "needs its sample rate"),
        (
            MULAW_8K,
            F(E.MULAW, C.RAW, 16000),
            "audio_format.sample_rate_hz",
            "16000 Hz is not supported for mulaw",
        ),
        (
            MULAW_8K,
            F(E.PCM_S16LE, C.RAW, 16000, channels=2),
            "audio_format.channels",
            "converts to 1 or 1, not 2",
        ),
        (PCM_16K, F(E.PCM_S16LE, C.RAW, 96000), "audio_format.sample_rate_hz", "96000 Hz is not supported"),
    ],
)
def test_stream_format_errors(source: F, target: F, field: str, words: str) -> None:
    with pytest.raises(AudioError) as caught:
        StreamConverter(source, target)
    assert caught.value.field == field
    assert words in caught.value.problem


HOUR = 3600


def _an_hour(one_second: bytes) -> Iterator[bytes]:
    """An hour of audio in 100 ms media frames, the first of each second one byte longer
    (so that every later chunk straddles a sample), made as needed, never held whole."""
    tenth = len(one_second) // 10
    pieces = [one_second[i : i + tenth] for i in range(0, len(one_second), tenth)]
    pieces[0], pieces[1] = pieces[0] + pieces[1][:1], pieces[1][1:]
    for _ in range(HOUR):
        yield from pieces


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096
    except OSError:
        return None


@pytest.mark.parametrize(("source", "target"), [(MULAW_8K, PCM_16K), (PCM_16K, MULAW_8K)], ids=["in", "out"])
def test_memory_stays_flat_while_an_hour_streams_through(phone_line: bytes, source: F, target: F) -> None:
    """Mu-law 8 kHz <-> PCM 16 kHz for an hour: 28.8 MB one side, 115 MB the other."""
    one_second = phone_line[:8000] if source is MULAW_8K else whole(phone_line[:8000], MULAW_8K, PCM_16K)
    converter = StreamConverter(source, target)
    # warm up (tables, soxr's filter) outside the measurement
    out_bytes = len(converter.feed(one_second))
    resident_before = _resident_bytes()
    started = time.monotonic()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for chunk in _an_hour(one_second):
            out_bytes += len(converter.feed(chunk))
        out_bytes += len(converter.flush())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    resident_after = _resident_bytes()
    assert converter.input_seconds == pytest.approx(HOUR + 1)
    rate, width = target.sample_rate_hz or 0, 2 if target.encoding is E.PCM_S16LE else 1
    assert out_bytes == rate * width * (HOUR + 1)
    # What is held at any time is a chunk's worth: Python-side (tracemalloc, numpy
    # included) and in the process as a whole (soxr's C buffers included).
    assert peak < 500_000, f"peak {peak} bytes traced"
    if resident_before is not None and resident_after is not None:
        assert resident_after - resident_before < 16_000_000
    assert elapsed < 20, f"an hour took {elapsed:.1f} s"
