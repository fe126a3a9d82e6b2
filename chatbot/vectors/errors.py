"""Errors of the vector store, split into the caller's mistakes and the engine's faults.

The caller's mistakes (a wrong dimension, an unusable id) are ValueErrors raised before
anything reaches Milvus; the engine's faults wrap pymilvus's exception with the operation
named and never the URI's credentials.
"""

from __future__ import annotations


class VectorStoreError(Exception):
    """Milvus (Lite or a server) failed or is not usable for this store."""


class DimensionMismatchError(ValueError):
    """A vector's length differs from its collection's dimension."""

    def __init__(self, what: str, expected: int, got: int) -> None:
        super().__init__(f"{what}: expected a vector of dimension {expected}, got {got}")
        self.expected = expected
        self.got = got


class InvalidIdentifierError(ValueError):
    """A tenant, bot or source id that cannot be stored or filtered on safely."""


class SchemaMismatchError(VectorStoreError):
    """An existing collection under our name does not have the schema this code writes."""
