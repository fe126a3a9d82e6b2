"""G.711 tables: libsndfile's codec, checked against the stdlib's audioop and sox."""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pytest

from callers.audio import g711
from callers.types.speech import AudioEncoding as E
from tests.audio.conftest import Speech

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop", reason="audioop left the stdlib in Python 3.13")

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
LAWS = [(E.MULAW, "ulaw2lin", "lin2ulaw"), (E.ALAW, "alaw2lin", "lin2alaw")]


@pytest.mark.parametrize(("encoding", "to_linear", "_"), LAWS)
def test_decoding_matches_the_standard_exactly(encoding: E, to_linear: str, _: str) -> None:
    codes = bytes(range(256))
    reference = np.frombuffer(getattr(audioop, to_linear)(codes, 2), dtype="<i2")
    assert np.array_equal(g711.decode(codes, encoding), reference)


@pytest.mark.parametrize(("encoding", "_", "from_linear"), LAWS)
def test_encoding_agrees_with_the_standard_to_a_level(encoding: E, _: str, from_linear: str) -> None:
    """libsndfile picks the nearest level; audioop truncates to 14 bits first, so at some
    decision boundaries the two pick neighbouring codes. mu-law: libsndfile is never
    worse. A-law: libsndfile is worse at six values only, the negative powers of two
    from -16384 to -512 (one level off where audioop is half a level off)."""
    ours = np.frombuffer(g711.encode(ALL_INT16, encoding), dtype=np.uint8)
    theirs = np.frombuffer(getattr(audioop, from_linear)(ALL_INT16.tobytes(), 2), dtype=np.uint8)
    ours_error = np.abs(g711.decode(ours.tobytes(), encoding).astype(np.int32) - ALL_INT16)
    theirs_error = np.abs(g711.decode(theirs.tobytes(), encoding).astype(np.int32) - ALL_INT16)
    worse = ALL_INT16[ours_error > theirs_error]
    if encoding is E.MULAW:
        assert worse.size == 0
    else:
        assert sorted(worse.tolist()) == [-16384, -8192, -4096, -2048, -1024, -512]
    assert np.count_nonzero(ours != theirs) < 0.01 * len(ALL_INT16)


@pytest.mark.parametrize("encoding", [E.MULAW, E.ALAW])
def test_every_code_survives_decode_then_encode(encoding: E) -> None:
    codes = np.arange(256, dtype=np.uint8)
    again = np.frombuffer(g711.encode(g711.decode(codes.tobytes(), encoding), encoding), dtype=np.uint8)
    # mu-law has two codes for zero (0x7f and 0xff); every other code maps back to itself.
    same_level = g711.decode(again.tobytes(), encoding) == g711.decode(codes.tobytes(), encoding)
    assert np.all(same_level)


@pytest.mark.parametrize(
    ("encoding", "name", "sox_type"), [(E.MULAW, "raw_mulaw_8k.ul", "ul"), (E.ALAW, "raw_alaw_8k.al", "al")]
)
def test_decoding_agrees_with_sox(speech: Speech, encoding: E, name: str, sox_type: str) -> None:
    path = speech.path(name)
    linear = subprocess.run(
        [
            "sox",
            "-t",
            sox_type,
            "-r",
            "8000",
            "-c",
            "1",
            str(path),
            "-t",
            "raw",
            "-e",
            "signed",
            "-b",
            "16",
            "-L",
            "-",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    assert g711.to_pcm16(path.read_bytes(), encoding) == linear


def test_bytes_helpers_round_trip() -> None:
    pcm = ALL_INT16[::97].astype("<i2").tobytes()
    mulaw = g711.from_pcm16(pcm, E.MULAW)
    assert len(mulaw) == len(pcm) // 2
    assert len(g711.to_pcm16(mulaw, E.MULAW)) == len(pcm)
    assert g711.from_pcm16(g711.to_pcm16(mulaw, E.MULAW), E.MULAW) == mulaw
