"""Probing real speech in every input container and rate, and every way it can be wrong."""

from __future__ import annotations

import numpy as np
import pytest

from callers.audio import NO_LIMITS, AudioError, AudioInfo, Limits, probe
from callers.errors import InvalidRequest
from callers.types.speech import AudioContainer as C
from callers.types.speech import AudioEncoding as E
from callers.types.speech import AudioFormat as F
from tests.audio.conftest import Speech

# The sentence lasts about 4.7 s; every format must report (nearly) the reference's length.
CASES: list[tuple[str, F | C, C, E, int, int]] = [
    # (fixture, declared, container, encoding, rate, channels)
    ("wav_8k.wav", C.WAV, C.WAV, E.PCM_S16LE, 8000, 1),
    ("wav_16k.wav", F(E.PCM_S16LE, C.WAV, 16000), C.WAV, E.PCM_S16LE, 16000, 1),
    ("wav_24k.wav", C.WAV, C.WAV, E.PCM_S16LE, 24000, 1),
    ("wav_44k.wav", C.WAV, C.WAV, E.PCM_S16LE, 44100, 1),
    ("wav_48k_stereo.wav", C.WAV, C.WAV, E.PCM_S16LE, 48000, 2),
    ("wav_mulaw_8k.wav", F(E.MULAW, C.WAV), C.WAV, E.MULAW, 8000, 1),
    ("wav_alaw_8k.wav", C.WAV, C.WAV, E.ALAW, 8000, 1),
    ("raw_pcm_16k.raw", F(E.PCM_S16LE, C.RAW, 16000), C.RAW, E.PCM_S16LE, 16000, 1),
    ("raw_mulaw_8k.ul", F(E.MULAW, C.RAW, 8000), C.RAW, E.MULAW, 8000, 1),
    ("raw_alaw_8k.al", F(E.ALAW, C.RAW, 8000), C.RAW, E.ALAW, 8000, 1),
    ("mp3_16k.mp3", C.MP3, C.MP3, E.MP3, 16000, 1),
    ("mp3_44k.mp3", F(E.MP3, C.MP3, 44100), C.MP3, E.MP3, 44100, 1),
    ("mp3_16k.mp3", F(E.MP3, C.RAW), C.RAW, E.MP3, 16000, 1),
    ("flac_16k.flac", F(E.FLAC), C.RAW, E.FLAC, 16000, 1),
    ("flac_48k.flac", F(E.FLAC, C.RAW, 48000), C.RAW, E.FLAC, 48000, 1),
    ("ogg_opus_16k.opus", C.OGG, C.OGG, E.OPUS, 16000, 1),
    ("ogg_opus_48k.opus", F(E.OPUS, C.OGG), C.OGG, E.OPUS, 48000, 2),
    ("webm_opus.webm", C.WEBM, C.WEBM, E.OPUS, 48000, 1),
    ("webm_opus.webm", F(E.OPUS, C.WEBM, 16000), C.WEBM, E.OPUS, 48000, 1),  # Opus decodes at 48 kHz
    ("mp4_aac.mp4", F(E.AAC, C.MP4), C.MP4, E.AAC, 16000, 1),
]


@pytest.mark.parametrize(
    ("name", "declared", "container", "encoding", "rate", "channels"),
    CASES,
    ids=[f"{c[0]}-{c[1]}" for c in CASES],
)
def test_probe_describes_each_format(
    speech: Speech, name: str, declared: F | C, container: C, encoding: E, rate: int, channels: int
) -> None:
    info = probe(speech.data(name), declared)
    assert (info.container, info.encoding, info.sample_rate_hz, info.channels) == (
        container,
        encoding,
        rate,
        channels,
    )
    expected = len(speech.reference_at(8000)) / 8000
    # Codecs pad (MP3 by up to ~0.1 s, AAC by a frame); lossless formats are exact to a sample.
    assert info.duration == pytest.approx(expected, abs=0.15)
    assert info.audio_format.sample_rate_hz == rate


def test_lossless_durations_are_exact(speech: Speech) -> None:
    frames = len(speech.reference_at(16000))
    for name, declared in (
        ("wav_16k.wav", C.WAV),
        ("flac_16k.flac", F(E.FLAC)),
        ("raw_pcm_16k.raw", F(E.PCM_S16LE, sample_rate_hz=16000)),
    ):
        assert probe(speech.data(name), declared).frames == frames, name


def _problem(data: bytes, declared: F | C, limits: Limits = NO_LIMITS) -> AudioError:
    with pytest.raises(AudioError) as caught:
        probe(data, declared, limits)
    assert isinstance(caught.value, InvalidRequest)  # the hub's INVALID_ARGUMENT class
    assert str(caught.value) == f"{caught.value.field}: {caught.value.problem}"
    return caught.value


def test_empty_audio(speech: Speech) -> None:
    error = _problem(b"", C.WAV)
    assert (error.field, error.problem) == ("audio", "is empty")


def test_too_large_is_refused_before_decoding() -> None:
    error = _problem(b"\x00" * 1001, F(E.PCM_S16LE, sample_rate_hz=16000), Limits(max_bytes=1000))
    assert error.field == "audio"
    assert "1001 bytes" in error.problem
    assert "1000 allowed" in error.problem


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("wav_16k.wav", C.WAV),
        ("mp3_16k.mp3", C.MP3),
        ("ogg_opus_16k.opus", C.OGG),
        ("webm_opus.webm", C.WEBM),
        ("raw_mulaw_8k.ul", F(E.MULAW, sample_rate_hz=8000)),
    ],
)
def test_too_long(speech: Speech, name: str, declared: F | C) -> None:
    error = _problem(speech.data(name), declared, Limits(max_seconds=2))
    assert error.field == "audio"
    assert "longer than the 2 seconds allowed" in error.problem


def test_raw_without_sample_rate() -> None:
    error = _problem(b"\x00\x01" * 100, F(E.PCM_S16LE, C.RAW))
    assert error.field == "audio_format.sample_rate_hz"
    assert "needs its sample rate" in error.problem
    error = _problem(b"\x00\x01" * 100, C.RAW)
    assert error.field == "audio_format.encoding"


@pytest.mark.parametrize("rate", [7000, 96000, 0, -8000])
def test_unsupported_declared_sample_rate(rate: int) -> None:
    error = _problem(b"\x00\x01" * 100, F(E.PCM_S16LE, C.RAW, rate))
    assert error.field == "audio_format.sample_rate_hz"
    assert f"{rate} Hz is not supported" in error.problem
    assert "16000" in error.problem  # says what is supported


def test_unsupported_sample_rate_in_file(speech: Speech) -> None:
    error = _problem(speech.file("wav_96k"), C.WAV)
    assert error.field == "audio_format.sample_rate_hz"
    assert "96000 Hz is not supported" in error.problem


def test_declared_rate_must_match_the_file(speech: Speech) -> None:
    error = _problem(speech.file("wav_16k"), F(E.PCM_S16LE, C.WAV, 8000))
    assert error.field == "audio_format.sample_rate_hz"
    assert error.problem == "declared 8000 Hz but the wav audio is at 16000 Hz"


@pytest.mark.parametrize(
    ("declared", "field", "words"),
    [
        (F(E.OPUS, C.RAW, 16000), "audio_format.encoding", "opus is not supported in the raw container"),
        (F(E.AAC, C.OGG), "audio_format.encoding", "aac is not supported in the ogg container"),
        (F(E.MP3, C.WAV), "audio_format.encoding", "mp3 is not supported in the wav container"),
        (F(E.PCM_S16LE, C.RAW, 16000, channels=0), "audio_format.channels", "0 is not between 1 and 8"),
        (F(E.PCM_S16LE, C.RAW, 16000, channels=9), "audio_format.channels", "9 is not between 1 and 8"),
    ],
)
def test_unsupported_declared_formats(declared: F, field: str, words: str) -> None:
    error = _problem(b"\x00" * 64, declared)
    assert error.field == field
    assert words in error.problem


def test_unsupported_codec_inside_a_container(speech: Speech) -> None:
    error = _problem(speech.file("ogg_vorbis_16k"), C.OGG)
    assert error.field == "audio_format.encoding"
    assert "VORBIS" in error.problem
    assert "supported in ogg: opus" in error.problem
    error = _problem(speech.file("wav_float_16k"), C.WAV)
    assert error.field == "audio_format.encoding"
    assert "FLOAT" in error.problem


@pytest.mark.parametrize(
    ("name", "declared", "field", "words"),
    [
        ("mp3_16k.mp3", C.WAV, "audio_format.container", "declared wav but the audio is MP3"),
        ("wav_16k.wav", C.OGG, "audio_format.container", "declared ogg but the audio is WAV"),
        ("flac_16k.flac", C.MP3, "audio_format.container", "declared mp3 but the audio is FLAC"),
        ("wav_mulaw_8k.wav", F(E.PCM_S16LE, C.WAV), "audio_format.encoding", "declared pcm_s16le"),
        ("ogg_opus_16k.opus", C.WEBM, "audio_format.container", "declared webm but the audio is ogg"),
        ("webm_opus.webm", C.MP4, "audio_format.container", "declared mp4 but the audio is matroska"),
    ],
)
def test_audio_that_is_not_what_it_claims(
    speech: Speech, name: str, declared: F | C, field: str, words: str
) -> None:
    error = _problem(speech.data(name), declared)
    assert error.field == field
    assert words in error.problem


def test_raw_length_must_be_whole_frames() -> None:
    error = _problem(b"\x00" * 101, F(E.PCM_S16LE, C.RAW, 16000))
    assert error.field == "audio"
    assert "101 bytes, not a whole number of pcm_s16le frames" in error.problem
    error = _problem(b"\x00" * 3, F(E.MULAW, C.RAW, 8000, channels=2))
    assert "2 bytes each for 2 channel(s)" in error.problem


JUNK = np.random.default_rng(7).integers(0, 256, 6000, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("declared", [C.WAV, C.MP3, C.OGG, F(E.FLAC), C.WEBM, C.MP4])
def test_junk_is_an_error_naming_the_audio(declared: F | C) -> None:
    error = _problem(JUNK, declared)
    assert error.field == "audio"
    assert "is not readable as" in error.problem
    assert "File does not exist" not in error.problem  # libsndfile's stock text would mislead


@pytest.mark.parametrize(
    ("name", "declared"),
    [("flac_16k.flac", F(E.FLAC)), ("ogg_opus_16k.opus", C.OGG), ("mp3_16k.mp3", C.MP3)],
)
def test_damage_inside_a_file_is_found(speech: Speech, name: str, declared: F | C) -> None:
    data = bytearray(speech.data(name))
    third = len(data) // 3
    data[third : third + 2000] = JUNK[:2000]
    error = _problem(bytes(data), declared)
    assert error.field == "audio"
    assert "corrupt" in error.problem or "damaged" in error.problem


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("wav_16k.wav", C.WAV),
        ("flac_16k.flac", F(E.FLAC)),
        ("mp3_16k.mp3", C.MP3),
        ("ogg_opus_16k.opus", C.OGG),
        ("webm_opus.webm", C.WEBM),
        ("mp4_aac.mp4", C.MP4),
    ],
)
@pytest.mark.parametrize("keep", [8, 40, 200])
def test_truncated_files_never_crash(speech: Speech, name: str, declared: F | C, keep: int) -> None:
    """Cut short anywhere: either a shorter valid description or an AudioError, nothing else."""
    data = speech.data(name)
    outcome: AudioInfo | AudioError
    try:
        outcome = probe(data[: keep * len(data) // 1000], declared)
    except AudioError as error:
        outcome = error
    if isinstance(outcome, AudioError):
        assert outcome.field.startswith("audio")
    else:
        assert outcome.frames > 0


def test_a_header_with_no_samples(speech: Speech) -> None:
    header_only = speech.file("wav_16k")[:44]
    error = _problem(header_only, C.WAV)
    assert error.field == "audio"
