"""Text and Markdown files: decoded strictly, titled from front matter, first heading or name."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from chatbot.sources.document import Document, SourceError, TextFormat, content_hash

TEXT_SUFFIXES = frozenset({".txt", ".text"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd"})
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_FIRST_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)


def read_capped(path: Path, max_bytes: int, item: str | None = None) -> bytes:
    """A file's bytes, refusing one larger than max_bytes before reading it all."""
    name = item or str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise SourceError(name, f"cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise SourceError(name, f"larger than the {max_bytes}-byte limit")
    return data


def decode_text(data: bytes, item: str) -> str:
    """UTF-8 (or UTF-16/32 with a byte-order mark), newlines made \\n; anything else is refused.

    A guess at a legacy code page would index garbage without a word of warning.
    """
    # UTF-32 first: its little-endian mark starts with UTF-16's.
    marks = (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    encoding = next((name for mark, name in marks if data.startswith(mark)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SourceError(
            item, f"not {encoding.upper()} text (undecodable byte at offset {exc.start}); save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise SourceError(item, "a binary file, not text (it contains NUL bytes)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _markdown_title(text: str) -> tuple[str | None, str]:
    """The front-matter or first-H1 title, and the text without its front matter."""
    front = _FRONT_MATTER.match(text)
    title = None
    if front:
        found = _FRONT_TITLE.search(front.group(1))
        if found:
            title = found.group(1).strip().strip("\"'") or None
        text = text[front.end() :]
    if title is None:
        heading = _FIRST_H1.search(text)
        if heading:
            title = heading.group(1).strip()
    return title, text


def text_document(
    data: bytes, *, source_id: str, location: str, format: TextFormat, title: str | None = None
) -> Document:
    """A document from the bytes of a text or Markdown file."""
    text = decode_text(data, location)
    found_title = None
    if format == "markdown":
        found_title, text = _markdown_title(text)
    if not text.strip():
        raise SourceError(location, "empty: no text to ingest")
    return Document(
        source_id=source_id,
        text=text,
        title=title or found_title or Path(location).stem or location,
        location=location,
        content_hash=content_hash(data),
        format=format,
    )


def load_text_file(
    path: Path, *, source_id: str, location: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Document:
    """A .txt or .md file as one document (Markdown by suffix)."""
    shown = location or str(path)
    text_format: TextFormat = "markdown" if path.suffix.lower() in MARKDOWN_SUFFIXES else "plain"
    return text_document(
        read_capped(path, max_bytes, shown), source_id=source_id, location=shown, format=text_format
    )
