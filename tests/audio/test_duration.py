"""Seconds of audio for usage accounting."""

from __future__ import annotations

import pytest

from callers.audio import AudioError, audio_seconds, pcm_seconds, probe, raw_seconds
from callers.types.speech import AudioContainer as C
from callers.types.speech import AudioEncoding as E
from callers.types.speech import AudioFormat as F
from tests.audio.conftest import Speech


def test_pcm_seconds() -> None:
    assert pcm_seconds(32000, 16000) == 1.0
    assert pcm_seconds(32001, 16000) == 1.0  # an incomplete sample is not audio
    assert pcm_seconds(96000, 24000, channels=2) == 1.0
    assert pcm_seconds(8000, 8000, sample_width=1) == 1.0
    assert pcm_seconds(0, 8000) == 0.0
    with pytest.raises(ValueError, match="positive"):
        pcm_seconds(100, 0)


def test_raw_seconds() -> None:
    assert raw_seconds(8000, F(E.MULAW, C.RAW, 8000)) == 1.0
    assert raw_seconds(8000, F(E.ALAW, C.RAW, 8000)) == 1.0
    assert raw_seconds(64000, F(E.PCM_S16LE, C.RAW, 16000, channels=2)) == 1.0
    with pytest.raises(AudioError) as caught:
        raw_seconds(1000, F(E.MP3, C.MP3, 16000))
    assert caught.value.field == "audio_format.encoding"
    assert "cannot be told from its size" in caught.value.problem
    with pytest.raises(AudioError) as caught:
        raw_seconds(1000, F(E.MULAW, C.RAW))
    assert caught.value.field == "audio_format.sample_rate_hz"


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("wav_16k.wav", C.WAV),
        ("mp3_16k.mp3", C.MP3),
        ("ogg_opus_16k.opus", C.OGG),
        ("flac_48k.flac", F(E.FLAC)),
    ],
)
def test_audio_seconds_of_files(speech: Speech, name: str, declared: F | C) -> None:
    expected = len(speech.reference_at(8000)) / 8000
    assert audio_seconds(speech.data(name), declared) == pytest.approx(expected, abs=0.15)
    assert audio_seconds(speech.data(name), declared) == probe(speech.data(name), declared).duration
