"""Whole-buffer conversion: every input to PCM, PCM to every output, the speech intact."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from callers.audio import AudioError, Pcm, convert, decode, encode, probe
from callers.types.speech import AudioContainer as C
from callers.types.speech import AudioEncoding as E
from callers.types.speech import AudioFormat as F
from tests.audio.conftest import Speech, aligned_correlation, envelope, rms


def _mono(pcm: Pcm) -> npt.NDArray[np.float32]:
    samples = np.frombuffer(pcm.data, dtype="<i2").astype(np.float32) / 32768
    mono: npt.NDArray[np.float32] = samples.reshape(-1, pcm.channels).mean(axis=1).astype(np.float32)
    return mono


def assert_same_speech(
    got: npt.NDArray[np.float32], want: npt.NDArray[np.float32], rate: int, *, lossy: bool
) -> None:
    """The same sentence: waveforms correlate (lossless), or at least loudness over time does."""
    assert rms(got) == pytest.approx(rms(want), rel=0.25)
    assert len(got) == pytest.approx(len(want), abs=0.15 * rate)
    if lossy:
        a, b = envelope(got, rate), envelope(want, rate)
        assert aligned_correlation(a.astype(np.float32), b.astype(np.float32), max_lag=10) > 0.9
    else:
        assert aligned_correlation(got, want, max_lag=64) > 0.98


INPUTS: list[tuple[str, F | C, bool]] = [
    ("wav_8k.wav", C.WAV, False),
    ("wav_16k.wav", C.WAV, False),
    ("wav_44k.wav", C.WAV, False),
    ("wav_48k_stereo.wav", C.WAV, False),
    ("wav_mulaw_8k.wav", C.WAV, False),
    ("raw_pcm_16k.raw", F(E.PCM_S16LE, C.RAW, 16000), False),
    ("raw_mulaw_8k.ul", F(E.MULAW, C.RAW, 8000), False),
    ("raw_alaw_8k.al", F(E.ALAW, C.RAW, 8000), False),
    ("flac_48k.flac", F(E.FLAC), False),
    ("mp3_16k.mp3", C.MP3, True),
    ("mp3_44k.mp3", C.MP3, True),
    ("ogg_opus_16k.opus", C.OGG, True),
    ("ogg_opus_48k.opus", C.OGG, True),
    ("webm_opus.webm", C.WEBM, True),
    ("mp4_aac.mp4", C.MP4, True),
]


@pytest.mark.parametrize(("name", "declared", "lossy"), INPUTS, ids=[i[0] for i in INPUTS])
def test_decode_any_input_to_pcm16_16k_mono(speech: Speech, name: str, declared: F | C, lossy: bool) -> None:
    pcm = decode(speech.data(name), declared, sample_rate_hz=16000, channels=1)
    assert (pcm.sample_rate_hz, pcm.channels) == (16000, 1)
    assert len(pcm.data) == 2 * pcm.frames
    # 8 kHz sources lost everything above 4 kHz: compare them with an 8 kHz reference.
    reference_rate = 8000 if "8k" in name else 16000
    reference = speech.reference_at(reference_rate)
    got = (
        _mono(pcm)
        if reference_rate == 16000
        else _mono(decode(speech.data(name), declared, sample_rate_hz=8000))
    )
    assert_same_speech(got, reference, reference_rate, lossy=lossy)


def test_decode_keeps_rate_and_channels_unless_asked(speech: Speech) -> None:
    pcm = decode(speech.file("wav_48k_stereo"), C.WAV)
    assert (pcm.sample_rate_hz, pcm.channels) == (48000, 2)
    assert pcm.duration == pytest.approx(probe(speech.file("wav_48k_stereo"), C.WAV).duration)


OUTPUTS: list[tuple[F, bool]] = [
    *[(F(E.PCM_S16LE, C.WAV, rate), False) for rate in (8000, 16000, 24000, 48000)],
    *[(F(E.PCM_S16LE, C.RAW, rate), False) for rate in (8000, 16000, 24000, 48000)],
    (F(E.MULAW, C.RAW, 8000), False),
    (F(E.ALAW, C.RAW, 8000), False),
    (F(E.MULAW, C.WAV, 8000), False),
    (F(E.FLAC, C.RAW, 16000), False),
    *[(F(E.MP3, C.MP3, rate), True) for rate in (16000, 24000, 44100)],
    *[(F(E.OPUS, C.OGG, rate), True) for rate in (16000, 24000, 48000)],
]


@pytest.mark.parametrize(
    ("target", "lossy"), OUTPUTS, ids=[f"{t.container}-{t.encoding}-{t.sample_rate_hz}" for t, _ in OUTPUTS]
)
def test_encode_then_decode_round_trip(speech: Speech, target: F, lossy: bool) -> None:
    source = decode(speech.file("wav_44k"), C.WAV)
    audio = encode(source, target)
    rate = target.sample_rate_hz
    assert rate is not None
    info = probe(audio, target)
    assert (info.encoding, info.sample_rate_hz, info.channels) == (target.encoding, rate, 1)
    assert info.duration == pytest.approx(source.duration, abs=0.15)
    back = decode(audio, target)
    reference_rate = min(rate, 16000)
    got = _mono(decode(audio, target, sample_rate_hz=reference_rate))
    assert_same_speech(got, speech.reference_at(reference_rate), reference_rate, lossy=lossy)
    assert back.sample_rate_hz == rate


def test_stereo_output_and_mono_downmix(speech: Speech) -> None:
    stereo = decode(speech.file("wav_48k_stereo"), C.WAV)
    wav = encode(stereo, F(E.PCM_S16LE, C.WAV, 24000, channels=2))
    assert probe(wav, C.WAV).channels == 2
    opus = encode(stereo, F(E.OPUS, C.OGG, 48000, channels=2))
    assert probe(opus, C.OGG).channels == 2
    mono = decode(wav, C.WAV, channels=1)
    assert mono.channels == 1
    # sox wrote the same signal to both channels (dithered apart by an LSB or two):
    # the down-mix is that signal.
    left = np.frombuffer(decode(wav, C.WAV).data, dtype="<i2")[::2]
    assert np.max(np.abs(np.frombuffer(mono.data, dtype="<i2").astype(np.int32) - left)) <= 2
    upmixed = encode(mono, F(E.PCM_S16LE, C.RAW, 24000, channels=2))
    assert len(upmixed) == 2 * len(mono.data)


def test_convert_a_phone_call_recording(speech: Speech) -> None:
    mulaw = convert(speech.file("mp3_16k"), C.MP3, F(E.MULAW, C.RAW, 8000))
    info = probe(mulaw, F(E.MULAW, C.RAW, 8000))
    assert info.duration == pytest.approx(len(speech.reference_at(8000)) / 8000, abs=0.15)
    linear = convert(mulaw, F(E.MULAW, C.RAW, 8000), F(E.PCM_S16LE, C.RAW, 16000))
    assert len(linear) == pytest.approx(4 * len(mulaw), abs=4)


@pytest.mark.parametrize(
    ("target", "field", "words"),
    [
        (F(E.PCM_S16LE, C.WAV), "audio_format.sample_rate_hz", "an output format needs its sample rate"),
        (F(E.MULAW, C.RAW, 16000), "audio_format.sample_rate_hz", "16000 Hz is not supported for mulaw"),
        (F(E.OPUS, C.OGG, 44100), "audio_format.sample_rate_hz", "44100 Hz is not supported for opus"),
        (F(E.PCM_S16LE, C.RAW, 11025), "audio_format.sample_rate_hz", "11025 Hz is not supported"),
        (F(E.OPUS, C.WEBM, 48000), "audio_format.container", "webm is not supported here"),
        (F(E.AAC, C.MP4, 16000), "audio_format.container", "mp4 is not supported here"),
        (F(E.OPUS, C.RAW, 48000), "audio_format.encoding", "opus is not supported in the raw container"),
        (F(E.OPUS, C.OGG, 48000, channels=3), "audio_format.channels", "mono or stereo"),
    ],
)
def test_unsupported_outputs(target: F, field: str, words: str) -> None:
    pcm = Pcm(b"\x00\x00" * 1600, 16000)
    with pytest.raises(AudioError) as caught:
        encode(pcm, target)
    assert caught.value.field == field
    assert words in caught.value.problem


def test_channel_changes_other_than_mixing_are_refused() -> None:
    stereo = Pcm(b"\x00\x00" * 3200, 16000, channels=2)
    with pytest.raises(AudioError) as caught:
        encode(stereo, F(E.PCM_S16LE, C.RAW, 16000, channels=3))
    assert caught.value.field == "audio_format.channels"


def test_pcm_must_hold_whole_frames() -> None:
    with pytest.raises(AudioError) as caught:
        Pcm(b"\x00" * 3, 16000)
    assert caught.value.field == "audio"
    with pytest.raises(AudioError):
        Pcm(b"\x00" * 4, 16000, channels=0)
