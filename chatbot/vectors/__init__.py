"""Vectors for the chatbot layer: chunks of every bot in Milvus (Lite or a server).

VectorStore.open(uri) gives the store; store.space(model, dim) the collection of one
embedding model, whose upsert_source, delete_source, delete_bot, count and search are
always scoped to one tenant's bot.
"""

from chatbot.vectors.errors import (
    DimensionMismatchError,
    InvalidIdentifierError,
    SchemaMismatchError,
    VectorStoreError,
)
from chatbot.vectors.records import ChunkVector, Hit
from chatbot.vectors.space import MAX_K, VectorSpace
from chatbot.vectors.store import VectorStore

__all__ = [
    "MAX_K",
    "ChunkVector",
    "DimensionMismatchError",
    "Hit",
    "InvalidIdentifierError",
    "SchemaMismatchError",
    "VectorSpace",
    "VectorStore",
    "VectorStoreError",
]
