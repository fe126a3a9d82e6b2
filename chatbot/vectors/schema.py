"""The chunk collection's schema and indexes, and the check of an existing collection.

One row per chunk. bot_id is the partition key (a server routes and prunes by it); the
tenant is a field of its own and in every filter, so that a bot id reused by two
tenants still never mixes their chunks. With full-text search, text is analyzed and a
BM25 function fills the sparse field on insert (Milvus 2.5+, Milvus Lite 3.x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatbot.vectors.engine import DataType, Function, FunctionType, MilvusClient
from chatbot.vectors.errors import DimensionMismatchError, SchemaMismatchError
from chatbot.vectors.expr import BOT_MAX_BYTES, SOURCE_MAX_BYTES, TENANT_MAX_BYTES
from chatbot.vectors.records import LOCATION_MAX_BYTES, TEXT_MAX_BYTES, TITLE_MAX_BYTES

VECTOR = "vector"
SPARSE = "sparse"
BM25_FUNCTION = "text_bm25"
# Returned by every search: what a Hit needs, and nothing of another row.
OUTPUT_FIELDS = ["chunk_id", "source_id", "text", "title", "page", "position", "location"]
PARTITIONS = 16  # Milvus's default bucket count for a partition key
# FLAT is exact (no recall lost to a selective bot filter) and, with the bot's bucket
# searched alone, fast enough at the 100,000 chunks; AUTOINDEX is an option for
# collections far larger, where a server's HNSW pays off.
DEFAULT_INDEX = "FLAT"


@dataclass(slots=True, frozen=True)
class Layout:
    """What an existing (or newly made) collection holds."""

    dim: int
    full_text: bool


def build_schema(dim: int, full_text: bool) -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("tenant", DataType.VARCHAR, max_length=TENANT_MAX_BYTES)
    schema.add_field("bot_id", DataType.VARCHAR, max_length=BOT_MAX_BYTES, is_partition_key=True)
    schema.add_field("source_id", DataType.VARCHAR, max_length=SOURCE_MAX_BYTES)
    # The ingest that wrote the row: rows of an older revision of a source are stale.
    schema.add_field("revision", DataType.VARCHAR, max_length=32)
    if full_text:
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES, enable_analyzer=True)
    else:
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
    schema.add_field("title", DataType.VARCHAR, max_length=TITLE_MAX_BYTES)
    schema.add_field("location", DataType.VARCHAR, max_length=LOCATION_MAX_BYTES)
    schema.add_field("page", DataType.INT64)
    schema.add_field("position", DataType.INT64)
    schema.add_field("created_at", DataType.INT64)  # Unix milliseconds
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    if full_text:
        schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name=BM25_FUNCTION,
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=[SPARSE],
            )
        )
    return schema


def build_indexes(client: Any, index_type: str, full_text: bool) -> Any:
    params = client.prepare_index_params()
    params.add_index(field_name=VECTOR, index_type=index_type, metric_type="COSINE")
    if full_text:
        params.add_index(field_name=SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return params


def read_layout(name: str, description: dict[str, Any]) -> Layout:
    """The layout of an existing collection, or SchemaMismatchError if it is not ours."""
    fields = {f["name"]: f for f in description.get("fields", [])}
    missing = {
        "chunk_id",
        "tenant",
        "bot_id",
        "source_id",
        "revision",
        "text",
        "location",
        VECTOR,
    } - fields.keys()
    if missing:
        raise SchemaMismatchError(f"collection {name} lacks fields {sorted(missing)}")
    if not fields["bot_id"].get("is_partition_key"):
        raise SchemaMismatchError(f"collection {name}: bot_id is not its partition key")
    dim = int(fields[VECTOR].get("params", {}).get("dim", 0))
    functions = description.get("functions", [])
    full_text = SPARSE in fields and any(
        SPARSE in fn.get("output_field_names", []) and fn.get("type") == FunctionType.BM25 for fn in functions
    )
    return Layout(dim=dim, full_text=full_text)


def check_dim(name: str, layout: Layout, dim: int) -> None:
    if layout.dim != dim:
        raise DimensionMismatchError(f"collection {name}", layout.dim, dim)
