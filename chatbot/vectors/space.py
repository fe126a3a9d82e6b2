"""One collection (an embedding model at one dimension) and the operations on its chunks.

Every call into pymilvus goes through the store's bounded thread pool (Runner): the
client is synchronous and Milvus Lite runs in this process, so a call on the event loop
would stall every other request for its duration.

Re-ingesting a source inserts the new chunks under a fresh revision (their primary keys
include it) and then deletes the source's rows of every other revision. Inserting first
means a search never finds the source missing; for the moment between the two steps it
may find both versions. A crash between them leaves exactly that (old and new chunks,
still scoped to the bot); a crash inside the insert leaves part of the new revision.
Either way, running the ingest again converges to exactly its chunks, since it deletes
everything but its own revision: re-ingest is idempotent and needs no cleanup. (Deleting
first, the other order, would leave the source with no chunks until the re-ingest.)
Rows are only inserted, never upserted: Milvus Lite's upsert reads every row back first.
Writes to one collection are serialised in-process (Milvus Lite does not support
concurrent writers); several chatbot processes on one Milvus server must ingest a given
source one at a time (the durable ingestion task's job).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from chatbot.vectors import lite
from chatbot.vectors.engine import AnnSearchRequest, RRFRanker
from chatbot.vectors.errors import VectorStoreError
from chatbot.vectors.expr import quote, scope
from chatbot.vectors.records import ChunkVector, Hit
from chatbot.vectors.rows import as_vector, batches, build_rows, cosine, to_hit
from chatbot.vectors.schema import OUTPUT_FIELDS, SPARSE, VECTOR

T = TypeVar("T")
MAX_K = 100
RRF_K = 60  # the constant of reciprocal-rank fusion (Milvus's default)
_HIT_FIELDS = [*OUTPUT_FIELDS, "tenant", "bot_id"]
_DELETE_PAGE = 10_000  # under Milvus's query window of 16,384 rows
_MAX_DELETE_PASSES = 1_000
_FLUSH_ROWS = 1_000


class Runner(Protocol):
    async def __call__(self, op: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class VectorSpace:
    """The chunks of every bot that embeds with one model at one dimension."""

    def __init__(
        self,
        client: Any,
        run: Runner,
        name: str,
        dim: int,
        full_text: bool,
        buckets: int | None,
        lite_engine: bool,
    ) -> None:
        self._client = client
        self._run = run
        self.name = name
        self.dim = dim
        self._full_text = full_text
        self._buckets = buckets  # Milvus Lite's bucket count when the partition hint applies
        self._lite_engine = lite_engine
        self._pending_rows = 0  # written since the last flush (Lite only)
        self._write_lock = asyncio.Lock()

    @property
    def full_text_search(self) -> bool:
        """Whether query_text makes a search hybrid (dense + BM25); if not, it is dense only."""
        return self._full_text

    async def upsert_source(self, tenant: str, bot: str, source: str, chunks: Sequence[ChunkVector]) -> int:
        """Replace the source's chunks with these; returns how many were written."""
        source_scope = scope(tenant, bot, source)  # checks the ids before anything is written
        revision = uuid.uuid4().hex
        rows = build_rows(tenant, bot, source, revision, chunks, self.dim, int(time.time() * 1000))
        async with self._write_lock:
            for batch in batches(rows):
                await self._run("insert", self._client.insert, self.name, batch)
            await self._delete_where(bot, f"{source_scope} and revision != {quote(revision)}")
            await self._flush_if_due(len(rows))
        return len(rows)

    async def delete_source(self, tenant: str, bot: str, source: str) -> None:
        async with self._write_lock:
            await self._delete_where(bot, scope(tenant, bot, source))

    async def delete_bot(self, tenant: str, bot: str) -> None:
        async with self._write_lock:
            await self._delete_where(bot, scope(tenant, bot))

    async def count(self, tenant: str, bot: str, source: str | None = None) -> int:
        rows = await self._run(
            "count",
            self._client.query,
            self.name,
            filter=scope(tenant, bot, source),
            output_fields=["count(*)"],
            **self._hint(bot),
        )
        return int(rows[0]["count(*)"]) if rows else 0

    async def search(
        self,
        tenant: str,
        bot: str,
        vector: Sequence[float],
        k: int,
        threshold: float,
        query_text: str | None = None,
    ) -> list[Hit]:
        """The bot's k chunks nearest to vector with cosine >= threshold, best first.

        With query_text and full-text search, dense and BM25 rankings are fused (RRF)
        over a wider candidate set; the threshold still applies to each hit's cosine, so
        BM25 can reorder and promote chunks but never admit one the embedding rejects
        (the fallback answer depends on that gate).
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer from 1 to {MAX_K}")
        if not -1.0 <= threshold <= 1.0:
            raise ValueError("threshold is a cosine similarity, from -1 to 1")
        query = as_vector("query", vector, self.dim)
        where = scope(tenant, bot)
        text = (query_text or "").strip()
        if text and self._full_text:
            return await self._hybrid(tenant, bot, query, where, text, k, threshold)
        found = await self._run(
            "search",
            self._client.search,
            self.name,
            data=[query],
            anns_field=VECTOR,
            limit=k,
            filter=where,
            output_fields=_HIT_FIELDS,
            search_params={"metric_type": "COSINE"},
            **self._hint(bot),
        )
        hits = [to_hit(raw, tenant, bot, float(raw["distance"]), float(raw["distance"])) for raw in found[0]]
        return [hit for hit in hits if hit.score >= threshold]

    async def _hybrid(
        self, tenant: str, bot: str, query: Any, where: str, text: str, k: int, threshold: float
    ) -> list[Hit]:
        candidates = min(max(4 * k, 20), 4 * MAX_K)
        dense = AnnSearchRequest(
            data=[query], anns_field=VECTOR, param={"metric_type": "COSINE"}, limit=candidates, expr=where
        )
        keyword = AnnSearchRequest(
            data=[text], anns_field=SPARSE, param={"metric_type": "BM25"}, limit=candidates, expr=where
        )
        found = await self._run(
            "hybrid search",
            self._client.hybrid_search,
            self.name,
            [dense, keyword],
            RRFRanker(RRF_K),
            limit=candidates,
            output_fields=[*_HIT_FIELDS, VECTOR],
            **self._hint(bot),
        )
        hits: list[Hit] = []
        for raw in found[0]:
            hit = to_hit(raw, tenant, bot, cosine(query, raw["entity"][VECTOR]), float(raw["distance"]))
            if hit.score >= threshold:
                hits.append(hit)
                if len(hits) == k:
                    break
        return hits

    async def _flush_if_due(self, written: int) -> None:
        """On Milvus Lite, flush once _FLUSH_ROWS rows are pending (a server flushes itself).

        Lite searches its memtable row by row in Python and keeps up to 128 MiB there
        (tens of thousands of chunks of dim 384): with 5,000 chunks in it a search took
        57 ms, flushed 4 ms (bench/chatbot_retrieval.py). Flushing after every source
        would cost some 70 ms each instead; a thousand pending rows cost a search a few ms.
        """
        if not self._lite_engine:
            return
        self._pending_rows += written
        if self._pending_rows >= _FLUSH_ROWS:
            await self._run("flush", self._client.flush, self.name)
            self._pending_rows = 0

    async def _delete_where(self, bot: str, where: str) -> None:
        """Delete the rows matching where (always bot-scoped), a page of ids at a time.

        Ids are read first, in the bot's bucket, and deleted by id: a delete by filter
        makes Milvus Lite scan every partition. Bounded: each pass removes what it read.
        """
        for _ in range(_MAX_DELETE_PASSES):
            found = await self._run(
                "find chunks to delete",
                self._client.query,
                self.name,
                filter=where,
                output_fields=["chunk_id"],
                limit=_DELETE_PAGE,
                **self._hint(bot),
            )
            ids = [row["chunk_id"] for row in found]
            if ids:
                await self._run("delete chunks", self._client.delete, self.name, ids=ids)
            if len(ids) < _DELETE_PAGE:
                return
        raise VectorStoreError(f"delete did not finish in {_MAX_DELETE_PASSES} passes of {_DELETE_PAGE}")

    def _hint(self, bot: str) -> dict[str, Any]:
        if self._buckets is None:
            return {}
        return {"partition_names": [lite.bucket_of(bot, self._buckets)]}
