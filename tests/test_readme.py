"""The README's generated parts match the code they describe."""

from __future__ import annotations

from pathlib import Path

from callers.table import BEGIN, END, SPEECH_BEGIN, SPEECH_END, markdown, speech_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_provider_table_is_current() -> None:
    text = README.read_text()
    assert BEGIN in text, "README.md lost its provider table markers"
    assert END in text, "README.md lost its provider table markers"
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert current == markdown(), "README.md's provider table is stale: run `python -m callers.table`"


def test_speech_table_is_current() -> None:
    text = README.read_text()
    assert SPEECH_BEGIN in text, "README.md lost its speech table markers"
    assert SPEECH_END in text, "README.md lost its speech table markers"
    current = text[text.index(SPEECH_BEGIN) : text.index(SPEECH_END) + len(SPEECH_END)]
    assert current == speech_markdown(), "README.md's speech table is stale: run `python -m callers.table`"
