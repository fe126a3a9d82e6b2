"""Real speech for the audio tests, made once per session by espeak-ng, sox and opusenc.

espeak-ng speaks a sentence (22.05 kHz WAV); sox turns it into every input format and
rate; opusenc (opus-tools) makes Ogg/Opus, which sox cannot write; PyAV, the library
the package itself uses for WebM and MP4, makes those two. Tests that need a missing
tool are skipped saying which (Debian: espeak-ng sox libsox-fmt-all opus-tools).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf  # type: ignore[import-untyped]

SENTENCE = "The quick brown fox jumps over the lazy dog. Speech to text, one two three."

# name -> (sox output arguments, file name)
SOX_OUTPUTS: dict[str, list[str]] = {
    "wav_8k": ["-r", "8000", "-b", "16", "wav_8k.wav"],
    "wav_16k": ["-r", "16000", "-b", "16", "wav_16k.wav"],
    "wav_24k": ["-r", "24000", "-b", "16", "wav_24k.wav"],
    "wav_44k": ["-r", "44100", "-b", "16", "wav_44k.wav"],
    "wav_48k_stereo": ["-r", "48000", "-b", "16", "-c", "2", "wav_48k_stereo.wav"],
    "wav_mulaw_8k": ["-r", "8000", "-e", "u-law", "wav_mulaw_8k.wav"],
    "wav_alaw_8k": ["-r", "8000", "-e", "a-law", "wav_alaw_8k.wav"],
    "wav_float_16k": ["-r", "16000", "-e", "floating-point", "-b", "32", "wav_float_16k.wav"],
    "wav_96k": ["-r", "96000", "-b", "16", "wav_96k.wav"],
    "raw_pcm_16k": ["-r", "16000", "-e", "signed", "-b", "16", "-L", "-t", "raw", "raw_pcm_16k.raw"],
    "raw_mulaw_8k": ["-r", "8000", "-e", "u-law", "-t", "raw", "raw_mulaw_8k.ul"],
    "raw_alaw_8k": ["-r", "8000", "-e", "a-law", "-t", "raw", "raw_alaw_8k.al"],
    "mp3_16k": ["-r", "16000", "mp3_16k.mp3"],
    "mp3_44k": ["-r", "44100", "mp3_44k.mp3"],
    "flac_16k": ["-r", "16000", "-b", "16", "flac_16k.flac"],
    "flac_48k": ["-r", "48000", "-b", "16", "flac_48k.flac"],
    "ogg_vorbis_16k": ["-r", "16000", "ogg_vorbis_16k.ogg"],
}


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(
            f"{tool} is not installed (Debian: apt-get install espeak-ng sox libsox-fmt-all opus-tools)"
        )
    return path


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Speech:
    """The fixture files, and the reference speech they were all made from."""

    directory: Path
    reference: Path  # espeak-ng's own WAV

    def path(self, name: str) -> Path:
        made = self.directory / name
        if not made.exists():
            pytest.skip(f"fixture {name} could not be made here")
        return made

    def data(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def file(self, key: str) -> bytes:
        return self.data(SOX_OUTPUTS[key][-1])

    def reference_at(self, rate: int) -> npt.NDArray[np.float32]:
        """The reference as mono float32 at `rate`, resampled by sox (not by the package)."""
        out = self.directory / f"reference_{rate}.wav"
        if not out.exists():
            _run("sox", str(self.reference), "-r", str(rate), "-b", "16", str(out))
        data, _ = sf.read(out, dtype="float32")
        return np.asarray(data, dtype=np.float32)


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    espeak = _require("espeak-ng")
    sox = _require("sox")
    directory = tmp_path_factory.mktemp("speech")
    reference = directory / "espeak.wav"
    _run(espeak, "-w", str(reference), SENTENCE)
    for args in SOX_OUTPUTS.values():
        *options, name = args
        _run(sox, str(reference), *options, str(directory / name))
    opusenc = shutil.which("opusenc")
    if opusenc is not None:
        _run(sox, str(reference), "-r", "16000", "-b", "16", str(directory / "for_opus_16k.wav"))
        _run(
            sox,
            str(reference),
            "-r",
            "48000",
            "-b",
            "16",
            "-c",
            "2",
            str(directory / "for_opus_48k_stereo.wav"),
        )
        _run(opusenc, "--quiet", str(directory / "for_opus_16k.wav"), str(directory / "ogg_opus_16k.opus"))
        _run(
            opusenc,
            "--quiet",
            str(directory / "for_opus_48k_stereo.wav"),
            str(directory / "ogg_opus_48k.opus"),
        )
    _make_with_pyav(reference, directory)
    return Speech(directory, reference)


def _make_with_pyav(reference: Path, directory: Path) -> None:
    """WebM/Opus and MP4/AAC, which neither sox nor opusenc writes."""
    try:
        import av
        import av.audio.stream
    except ImportError:
        return
    samples, rate = sf.read(reference, dtype="int16")
    for name, container, codec, codec_rate in (
        ("webm_opus.webm", "webm", "libopus", 48000),
        ("mp4_aac.mp4", "mp4", "aac", 16000),
    ):
        with av.open(str(directory / name), "w", format=container) as out:
            stream = out.add_stream(codec, rate=codec_rate, layout="mono")
            assert isinstance(stream, av.audio.stream.AudioStream)
            assert stream.codec_context.format is not None
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            fmt = stream.codec_context.format.name
            resampler = av.AudioResampler(format=fmt, layout="mono", rate=codec_rate, frame_size=960)
            for piece in [*resampler.resample(frame), *resampler.resample(None)]:
                for packet in stream.encode(piece):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)


Similarity = Callable[[npt.NDArray[np.float32], npt.NDArray[np.float32]], float]


def aligned_correlation(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], max_lag: int = 4000) -> float:
    """Peak normalised cross-correlation within ±max_lag samples (codec delays differ)."""
    n = max(len(a), len(b)) + max_lag
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size))
    corr = np.fft.irfft(spectrum, size)
    window = np.concatenate([corr[: max_lag + 1], corr[-max_lag:]])
    return float(np.max(window) / (np.linalg.norm(a) * np.linalg.norm(b)))


def envelope(x: npt.NDArray[np.float32], rate: int) -> npt.NDArray[np.float64]:
    """RMS per 20 ms: what survives a perceptual codec even when the waveform does not."""
    hop = rate // 50
    usable = len(x) // hop * hop
    levels: npt.NDArray[np.float64] = np.sqrt(
        np.mean(np.square(x[:usable].astype(np.float64)).reshape(-1, hop), axis=1)
    )
    return levels


def rms(x: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64)))))
