"""bench/RESULTS.md holds one section per benchmark (call path, speech), each written by
its own tool between markers, so running one benchmark never erases another's figures."""

from __future__ import annotations

import re
from pathlib import Path


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin (written by bench; edit the tool, not this) -->", f"<!-- {name}:end -->"


def write_section(path: Path, name: str, body: str, *, first: bool = False) -> None:
    """Replace section `name` of `path` with `body`, keeping every other section.

    A missing section is added at the end (at the start with `first`)."""
    begin, end = _markers(name)
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(old):
        new = pattern.sub(lambda _: block, old, count=1)
    elif first:
        new = block + ("\n" + old if old else "")
    else:
        new = old + ("\n" if old and not old.endswith("\n\n") else "") + block
    path.write_text(new)
