"""Collection names: one collection per (embedding model, dimension).

Milvus allows letters, digits and underscores (a letter or underscore first, at most 255
characters). The readable part is a slug of the model name; the hash of the exact model
name and dimension keeps two models whose slugs collide ("a-b" and "a_b") apart.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "chunks_"
_SLUG_MAX = 48


def collection_name(model: str, dim: int) -> str:
    if not model or not model.strip():
        raise ValueError("embedding model name must not be empty")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 32768:
        raise ValueError(f"dimension must be an integer from 1 to 32768, got {dim!r}")
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:_SLUG_MAX] or "model"
    digest = hashlib.sha256(f"{model}\0{dim}".encode()).hexdigest()[:10]
    return f"{PREFIX}{slug}_d{dim}_{digest}"
