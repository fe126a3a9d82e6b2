"""Checking chunks and queries, and turning them into rows and back (no I/O here)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from chatbot.vectors.errors import DimensionMismatchError, VectorStoreError
from chatbot.vectors.records import (
    LOCATION_MAX_BYTES,
    NO_PAGE,
    TEXT_MAX_BYTES,
    TITLE_MAX_BYTES,
    ChunkVector,
    Hit,
    clip_utf8,
)
from chatbot.vectors.schema import VECTOR

# A batch stays well under gRPC's default 64 MiB message, whatever the texts weigh.
BATCH_ROWS = 1000
BATCH_BYTES = 16 * 1024 * 1024

Vector = npt.NDArray[np.float32]


def chunk_id(tenant: str, bot: str, source: str, revision: str, position: int) -> str:
    """The primary key, unique to this ingest of the source (so rows are only ever inserted).

    Derived, never taken from the caller, so that no id one bot writes can land on a row
    of another bot or tenant (ids are checked free of NUL, so the join is unambiguous).
    """
    key = f"{tenant}\0{bot}\0{source}\0{revision}\0{position}"
    return hashlib.sha256(key.encode()).hexdigest()


def as_vector(what: str, values: Sequence[float], dim: int) -> Vector:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"{what}: a vector must be a flat sequence of numbers")
    if array.shape[0] != dim:
        raise DimensionMismatchError(what, dim, int(array.shape[0]))
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: vector has a NaN or infinite component")
    # Cosine of a zero vector is undefined; Milvus would normalise it to NaNs.
    if not float(np.linalg.norm(array)) > 0.0:
        raise ValueError(f"{what}: vector is all zeros")
    return array


def build_rows(
    tenant: str, bot: str, source: str, revision: str, chunks: Sequence[ChunkVector], dim: int, now_ms: int
) -> list[dict[str, Any]]:
    seen: set[int] = set()
    rows: list[dict[str, Any]] = []
    for chunk in chunks:
        what = f"chunk at position {chunk.position}"
        if isinstance(chunk.position, bool) or not isinstance(chunk.position, int) or chunk.position < 0:
            raise ValueError(f"{what}: position must be a non-negative integer")
        if chunk.position in seen:
            raise ValueError(f"{what}: two chunks of source share this position")
        seen.add(chunk.position)
        if len(chunk.text.encode("utf-8")) > TEXT_MAX_BYTES:
            raise ValueError(f"{what}: text is longer than {TEXT_MAX_BYTES} bytes; chunk it smaller")
        rows.append(
            {
                "chunk_id": chunk_id(tenant, bot, source, revision, chunk.position),
                "tenant": tenant,
                "bot_id": bot,
                "source_id": source,
                "revision": revision,
                "text": chunk.text,
                # Titles are for display in citations: a long one is shortened, not refused.
                "title": clip_utf8(chunk.title, TITLE_MAX_BYTES),
                "location": clip_utf8(chunk.location, LOCATION_MAX_BYTES),
                "page": NO_PAGE if chunk.page is None else int(chunk.page),
                "position": chunk.position,
                "created_at": now_ms,
                VECTOR: as_vector(what, chunk.vector, dim),
            }
        )
    return rows


def batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        row_size = len(row["text"]) * 4 + row[VECTOR].nbytes + 4096
        if batch and (len(batch) >= BATCH_ROWS or size + row_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch


def to_hit(raw: Any, tenant: str, bot: str, score: float, rank_score: float) -> Hit:
    entity = raw["entity"]
    # Defence in depth: the filter already scopes the search; a row of another tenant or
    # bot here would be an engine fault, and is refused loudly rather than returned.
    if entity.get("tenant") != tenant or entity.get("bot_id") != bot:
        raise VectorStoreError("the engine returned a chunk outside the searched bot; refusing it")
    page = int(entity["page"])
    return Hit(
        chunk_id=str(raw.get("chunk_id") or raw.get("id")),
        source_id=str(entity["source_id"]),
        text=str(entity["text"]),
        title=str(entity["title"]),
        page=None if page == NO_PAGE else page,
        position=int(entity["position"]),
        score=score,
        rank_score=rank_score,
        location=str(entity.get("location", "")),
    )


def cosine(query: Vector, values: Sequence[float]) -> float:
    stored = np.asarray(values, dtype=np.float32)
    denominator = float(np.linalg.norm(query)) * float(np.linalg.norm(stored))
    if denominator == 0.0 or math.isnan(denominator):
        return -1.0
    return float(np.dot(query, stored)) / denominator
