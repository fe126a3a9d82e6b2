"""The README's generated parts match the code they describe."""

from __future__ import annotations

from pathlib import Path

from callers.table import BEGIN, END, markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_provider_table_is_current() -> None:
    text = README.read_text()
    assert BEGIN in text, "README.md lost its provider table markers"
    assert END in text, "README.md lost its provider table markers"
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert current == markdown(), "README.md's provider table is stale: run `python -m callers.table`"
