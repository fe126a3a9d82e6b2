"""The live-media converter (callers.audio.live): the same audio as StreamConverter where it
uses the same filter, in place and whole where it does not, however the stream is cut."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callers.audio import g711
from callers.audio.live import LiveConverter, g711_to_pcm16, live_converter, pcm16_to_g711
from callers.audio.stream import StreamConverter
from callers.types.speech import AudioContainer as C
from callers.types.speech import AudioEncoding as E
from callers.types.speech import AudioFormat as F
from tests.audio.conftest import Speech

MULAW_8K = F(E.MULAW, C.RAW, 8000)
ALAW_8K = F(E.ALAW, C.RAW, 8000)


def pcm(rate: int) -> F:
    return F(E.PCM_S16LE, C.RAW, rate)


def run(converter: LiveConverter | StreamConverter, data: bytes, sizes: Iterator[int]) -> bytes:
    out, position = [], 0
    for size in sizes:
        if position >= len(data):
            break
        out.append(converter.feed(data[position : position + size]))
        position += size
    out.append(converter.flush())
    return b"".join(out)


def frames(data: bytes, size: int) -> Iterator[int]:
    return itertools.repeat(size, -(-len(data) // size))


def linear(data: bytes, encoding: E) -> np.ndarray:
    if encoding is E.PCM_S16LE:
        return np.frombuffer(data, "<i2").astype(np.float64)
    return g711.decode(data, encoding).astype(np.float64)


def band_noise(rate: int, seconds: float, seed: int = 7) -> bytes:
    """Noise below 3 kHz, as loud as speech: two 20 ms stretches are never alike, so a sample
    of shift shows (its correlation with itself one 8 kHz sample later is ~0.3)."""
    n = round(rate * seconds)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) > 3000] = 0
    noise = np.fft.irfft(spectrum, n)
    return (np.clip(0.15 * noise / np.sqrt(np.mean(noise**2)), -1, 1) * 32767).astype("<i2").tobytes()


def speech_pcm(speech: Speech, rate: int) -> bytes:
    return (np.clip(speech.reference_at(rate), -1, 1) * 32767).astype("<i2").tobytes()


def frame_correlations(got: np.ndarray, want: np.ndarray, per_frame: int) -> np.ndarray:
    whole = min(len(got), len(want)) // per_frame
    a = got[: whole * per_frame].reshape(whole, per_frame)
    b = want[: whole * per_frame].reshape(whole, per_frame)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)))


# --- G.711 by tables -------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [E.MULAW, E.ALAW])
def test_g711_tables_agree_with_the_numpy_codec_on_every_value(encoding: E) -> None:
    codes = bytes(range(256))
    assert g711_to_pcm16(codes, encoding) == g711.to_pcm16(codes, encoding)
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert pcm16_to_g711(every, encoding) == g711.encode(every, encoding)
    assert pcm16_to_g711(every.astype(np.int32), encoding) == g711.encode(every, encoding)


@pytest.mark.parametrize(
    ("source", "target"),
    [(MULAW_8K, pcm(8000)), (ALAW_8K, pcm(8000)), (pcm(8000), MULAW_8K), (pcm(8000), ALAW_8K)],
)
def test_same_rate_is_exactly_streamconverters_output(speech: Speech, source: F, target: F) -> None:
    data = speech.file("raw_mulaw_8k") if source.encoding is E.MULAW else speech.file("raw_alaw_8k")
    if source.encoding is E.PCM_S16LE:
        data = speech_pcm(speech, 8000)
    size = 160 * (2 if source.encoding is E.PCM_S16LE else 1)
    expected = run(StreamConverter(source, target, low_latency=True), data, frames(data, size))
    assert run(LiveConverter(source, target), data, frames(data, size)) == expected


def test_matching_formats_pass_through_untouched() -> None:
    data = band_noise(16000, 0.1)
    converter = LiveConverter(pcm(16000), pcm(16000))
    assert converter.passes_through
    assert converter.feed(data[:641]) == data[:640]  # the odd byte waits for its sample's other half
    assert converter.feed(data[641:]) == data[640:]
    assert converter.flush() == b""


# --- going up: soxr's quick filter, on int16 --------------------------------------------


@pytest.mark.parametrize(
    ("source", "target"),
    [(MULAW_8K, pcm(16000)), (MULAW_8K, pcm(24000)), (pcm(8000), pcm(16000)), (pcm(16000), pcm(48000))],
)
def test_going_up_matches_the_float_streamconverter(speech: Speech, source: F, target: F) -> None:
    """Same filter (soxr QQ), int16 instead of float32 around it: the same length and the same
    samples to within rounding."""
    rate = source.sample_rate_hz or 8000
    data = speech.file("raw_mulaw_8k") if source.encoding is E.MULAW else speech_pcm(speech, rate)
    size = rate // 50 * (2 if source.encoding is E.PCM_S16LE else 1)
    want = run(StreamConverter(source, target, low_latency=True), data, frames(data, size))
    got = run(LiveConverter(source, target), data, frames(data, size))
    assert len(got) == len(want)
    difference = np.abs(linear(got, E.PCM_S16LE) - linear(want, E.PCM_S16LE))
    assert difference.max() <= 2, difference.max()


# --- going down: the triangular decimator -------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target"),
    [(pcm(16000), MULAW_8K), (pcm(16000), pcm(8000)), (pcm(24000), MULAW_8K), (pcm(48000), ALAW_8K)],
)
def test_going_down_a_frame_in_is_a_whole_frame_out_in_its_place(source: F, target: F) -> None:
    """No look-ahead: every 20 ms chunk comes out as 20 ms at once (nothing held back, no
    silence put in front), and each frame correlates with soxr HQ's whole-buffer conversion
    at the same place (a sample of shift would drop it to ~0.3)."""
    rate, out_rate = source.sample_rate_hz or 0, target.sample_rate_hz or 0
    data = band_noise(rate, 2.0)
    converter = LiveConverter(source, target)
    width = 2 if target.encoding is E.PCM_S16LE else 1
    out = []
    for start in range(0, len(data), rate // 50 * 2):
        piece = converter.feed(data[start : start + rate // 50 * 2])
        assert len(piece) == out_rate // 50 * width
        out.append(piece)
    assert converter.flush() == b""
    reference = StreamConverter(source, target)
    want = linear(reference.feed(data) + reference.flush(), target.encoding)
    correlations = frame_correlations(linear(b"".join(out), target.encoding), want, out_rate // 50)
    assert correlations.min() > 0.97, correlations.min()


def test_going_down_filters_what_would_fold_back() -> None:
    """A 7 kHz tone at 16 kHz has no place at 8 kHz: picking every other sample (soxr's quick
    mode) folds it back at full strength as 1 kHz; the triangle takes it down by ~28 dB."""
    n = 16000
    tone = (0.3 * np.sin(2 * np.pi * 7000 * np.arange(n) / 16000) * 32767).astype("<i2").tobytes()
    quick = StreamConverter(pcm(16000), pcm(8000), low_latency=True)
    folded = linear(quick.feed(tone) + quick.flush(), E.PCM_S16LE)
    live = LiveConverter(pcm(16000), pcm(8000))
    kept = linear(live.feed(tone) + live.flush(), E.PCM_S16LE)
    level = np.sqrt(np.mean(linear(tone, E.PCM_S16LE) ** 2))
    assert np.sqrt(np.mean(folded[100:-100] ** 2)) > 0.9 * level
    assert np.sqrt(np.mean(kept[100:-100] ** 2)) < 0.05 * level


# --- cuts, counts, fallback ---------------------------------------------------------------

PAIRS = [
    (MULAW_8K, pcm(16000)),
    (MULAW_8K, pcm(8000)),
    (pcm(16000), MULAW_8K),
    (pcm(48000), pcm(16000)),
    (pcm(8000), pcm(24000)),
    (pcm(16000), pcm(16000)),
]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pair=st.sampled_from(PAIRS),
    cuts=st.lists(st.integers(min_value=1, max_value=2001), min_size=1, max_size=30),
)
def test_output_does_not_depend_on_where_chunks_are_cut(pair: tuple[F, F], cuts: list[int]) -> None:
    """Byte for byte, except going up: soxr's int16 output is dithered, and its last bit or
    two (-84 dB) follow where the chunks were cut; the length never does."""
    source, target = pair
    rate = source.sample_rate_hz or 8000
    data = band_noise(rate, 0.5)
    if source.encoding is E.MULAW:
        data = g711.from_pcm16(data, E.MULAW)
    whole = run(LiveConverter(source, target), data, iter([len(data)]))
    cut = run(LiveConverter(source, target), data, itertools.cycle(cuts))
    if (source.sample_rate_hz or 0) < (target.sample_rate_hz or 0):
        assert len(cut) == len(whole)
        assert np.abs(linear(cut, E.PCM_S16LE) - linear(whole, E.PCM_S16LE)).max() <= 2
    else:
        assert cut == whole


def test_feed_after_flush_is_refused() -> None:
    converter = LiveConverter(MULAW_8K, pcm(16000))
    converter.flush()
    with pytest.raises(RuntimeError, match="after flush"):
        converter.feed(b"\xff" * 160)


def test_stereo_goes_to_streamconverter() -> None:
    stereo = F(E.PCM_S16LE, C.RAW, 16000, 2)
    assert isinstance(live_converter(stereo, pcm(8000)), StreamConverter)
    assert isinstance(live_converter(MULAW_8K, pcm(16000)), LiveConverter)
    with pytest.raises(ValueError, match="mono"):
        LiveConverter(stereo, pcm(8000))


@pytest.mark.parametrize(("source", "target"), [(MULAW_8K, pcm(16000)), (pcm(16000), MULAW_8K)])
def test_a_frame_costs_less_than_through_streamconverter(source: F, target: F) -> None:
    """The point of the module: measured as this thread's CPU time, best of several runs (the machine is
    shared), the live path takes less than StreamConverter per 20 ms frame (about half here:
    the bound leaves room for a noisy neighbour)."""
    rate = source.sample_rate_hz or 8000
    data = band_noise(rate, 2.0)
    if source.encoding is E.MULAW:
        data = g711.from_pcm16(data, E.MULAW)
    size = rate // 50 * (1 if source.encoding is E.MULAW else 2)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]

    def cost(converter: LiveConverter | StreamConverter) -> float:
        best = float("inf")
        for _ in range(9):
            started = time.thread_time()
            for chunk in chunks:
                converter.feed(chunk)
            best = min(best, time.thread_time() - started)
        return best

    stream = cost(StreamConverter(source, target, low_latency=True))
    live = cost(LiveConverter(source, target))
    assert live < 0.85 * stream, (live, stream)
