"""What goes into the store and what a search gives back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TEXT_MAX_BYTES = 65535  # Milvus's largest VARCHAR
TITLE_MAX_BYTES = 1024
LOCATION_MAX_BYTES = 2048  # a page URL or file path, for citations
NO_PAGE = -1  # stored for a chunk without a page (Milvus fields are not nullable everywhere)


@dataclass(slots=True, frozen=True)
class ChunkVector:
    """One chunk of a source with its embedding; position is unique within the source."""

    position: int
    text: str
    vector: Sequence[float]
    title: str = ""
    page: int | None = None
    location: str = ""  # the page URL or file path a citation points to


@dataclass(slots=True, frozen=True)
class Hit:
    """A retrieved chunk. score is its cosine similarity to the query vector (the value
    the threshold is applied to); rank_score is what it was ordered by: the same cosine
    for a dense search, the fused reciprocal-rank score for a hybrid one."""

    chunk_id: str
    source_id: str
    text: str
    title: str
    page: int | None
    position: int
    score: float
    rank_score: float
    location: str = ""


def clip_utf8(value: str, max_bytes: int) -> str:
    """value cut to at most max_bytes of UTF-8, never inside a character."""
    encoded = value.encode("utf-8")
    if len(encoded) <= max_bytes:
        return value
    return encoded[:max_bytes].decode("utf-8", errors="ignore")
