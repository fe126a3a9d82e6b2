"""What every source yields: documents to chunk, and per-item errors that do not stop the rest.

A source (a file, a folder, a website, a Q&A sheet) is read into `Document`s, one per item a reader
would cite: a text file, a PDF page, a web page, a Q&A pair. Each carries the SHA-256 of the raw
bytes it came from, so that re-ingesting an unchanged source can be skipped (the hash of a PDF page
or Q&A pair is that of its whole file: the file is what changes). Problems with one item are
`ItemError`s collected beside the documents; a problem with the source as a whole (unreadable file,
a Q&A sheet without an answer column) raises `SourceError`. Both name the item and what is wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

# How the chunker reads a document's text: Markdown headings split sections; plain text has none.
TextFormat = Literal["markdown", "plain"]


def content_hash(data: bytes) -> str:
    """The hex SHA-256 of raw bytes: the change detector for re-ingestion."""
    return hashlib.sha256(data).hexdigest()


def combined_hash(documents: Iterable[Document]) -> str:
    """One hash for a whole source (a folder, a site): its items' locations and hashes, in order.

    Order-independent (sorted), so a site whose sitemap lists pages in another order is unchanged.
    """
    digest = hashlib.sha256()
    for location, page, item_hash in sorted({(d.location, d.page or 0, d.content_hash) for d in documents}):
        digest.update(f"{location}\0{page}\0{item_hash}\n".encode())
    return digest.hexdigest()


@dataclass(slots=True, frozen=True)
class Document:
    """One citable item of a source, ready to chunk."""

    source_id: str
    text: str
    title: str
    location: str  # the file path or the page URL (after redirects) a citation points to
    content_hash: str  # hex SHA-256 of the raw bytes this came from (see module docstring)
    page: int | None = None  # 1-based PDF page, None where pages do not apply
    format: TextFormat = "plain"
    # False for items that must stay one chunk whatever their size (a Q&A pair: one vector per pair).
    splittable: bool = True


@dataclass(slots=True, frozen=True)
class ItemError:
    """An item of a source that could not be read; the rest of the source still is."""

    item: str  # the path, URL, "file.csv row 7" or "file.pdf page 3"
    message: str

    def __str__(self) -> str:
        return f"{self.item}: {self.message}"


@dataclass(slots=True)
class LoadResult:
    """The documents a source yielded and the items that failed."""

    documents: list[Document] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.documents.extend(other.documents)
        self.errors.extend(other.errors)


class SourceError(Exception):
    """A source (or one of its items) that cannot be read at all; the message names it."""

    def __init__(self, item: str, message: str) -> None:
        super().__init__(f"{item}: {message}")
        self.item = item
        self.message = message

    def as_item_error(self) -> ItemError:
        return ItemError(self.item, self.message)
