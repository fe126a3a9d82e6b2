"""The package stays cheap to import, and says which extra is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("numpy", "soundfile", "soxr", "av")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_callers_audio_loads_no_audio_library() -> None:
    result = _python(
        f"""
        import sys
        import callers, callers.audio
        from callers.audio import AudioError, check_input_format
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_missing_library_is_reported_as_the_speech_extra() -> None:
    result = _python(
        """
        import sys
        sys.modules["soxr"] = None  # as if it were not installed
        from callers.errors import MissingExtra
        import callers.audio
        try:
            callers.audio.decode
        except MissingExtra as exc:
            print(exc.extra, "|", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    extra, _, message = result.stdout.partition("|")
    assert extra.strip() == "speech"
    assert "soxr" in message
    assert "integration-hub[speech]" in message


def test_pyav_is_loaded_only_for_webm_and_mp4() -> None:
    result = _python(
        """
        import io, sys
        import numpy as np, soundfile as sf
        from callers.audio import probe
        from callers.types.speech import AudioContainer
        out = io.BytesIO()
        sf.write(out, np.zeros(1600, dtype=np.int16), 16000, format="WAV")
        probe(out.getvalue(), AudioContainer.WAV)
        print("av" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_unknown_names_are_attribute_errors() -> None:
    import callers.audio

    assert not hasattr(callers.audio, "no_such_thing")
