"""Ingestion: a worker claims a task, reads its source, chunks, embeds and stores it.

The path of a task: read (chatbot.sources: text/Markdown, PDF, Q&A sheet, website) ->
the source's content hash, unchanged since the last ingestion -> skipped -> chunks
(chatbot.chunking) -> vectors through the hub's Embed, `EMBED_SLICE` chunks at a time,
progress recorded and the lease renewed after each slice -> the source's chunks
replaced in the vector store -> the catalog updated -> the task finished.

A task is run whole from its start by whoever claims it (a restart re-claims it once its
lease has expired); replacing a source's chunks makes that safe. Per-item errors (a
broken page, a bad row) are recorded and the rest ingested; a source that cannot be
read at all, or a hub refusal, fails the task with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from chatbot.bots import BotStore
from chatbot.catalog import Catalog
from chatbot.chunking import Chunk, TokenCounter, chunk_documents
from chatbot.errors import NotFound
from chatbot.fetch import FetchPolicy, SafeFetcher
from chatbot.hub_client import HubCallError, ModelRef
from chatbot.sources.document import LoadResult, SourceError, TextFormat, combined_hash, content_hash
from chatbot.sources.pdf import pdf_documents
from chatbot.sources.qa import csv_pairs, xlsx_pairs
from chatbot.sources.text import MARKDOWN_SUFFIXES, text_document
from chatbot.sources.website import CrawlLimits, crawl_website
from chatbot.tasks import ClaimedTask, TaskQueue, record_error
from chatbot.tenants import TenantHubs
from chatbot.v1 import chatbot_pb2 as pb
from chatbot.vectors import ChunkVector, VectorStore

log = logging.getLogger("chatbot.ingest")

LEASE_SECONDS = 60.0
EMBED_SLICE = 256  # chunks per progress step (the hub client batches within it)
IDLE_POLL_SECONDS = 2.0


class LeaseLost(Exception):
    """Another worker holds the task now: stop without writing anything more."""


@dataclass(frozen=True, slots=True)
class IngestSettings:
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    crawl: CrawlLimits = field(default_factory=CrawlLimits)


def model_key(ref: pb.ModelRef) -> str:
    """The vector collection's model name: chunks embedded by one model share one space."""
    return f"{ref.credential}/{ref.model}" if ref.credential else ref.model


def hub_model(ref: pb.ModelRef) -> ModelRef:
    return ModelRef(ref.credential, ref.model)


class IngestWorker:
    def __init__(
        self,
        queue: TaskQueue,
        bots: BotStore,
        catalog: Catalog,
        vectors: VectorStore,
        hubs: TenantHubs,
        counter: TokenCounter,
        settings: IngestSettings | None = None,
        owner: str | None = None,
    ) -> None:
        self._queue = queue
        self._bots = bots
        self._catalog = catalog
        self._vectors = vectors
        self._hubs = hubs
        self._counter = counter
        self._settings = settings or IngestSettings()
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A task was just queued: look now rather than at the next poll."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            if not await self.run_once():
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_SECONDS)

    async def run_once(self) -> bool:
        """Claims and runs one task; False when there was none."""
        task = await self._queue.claim(self.owner, LEASE_SECONDS)
        if task is None:
            return False
        try:
            await self._run(task)
        except LeaseLost:
            log.warning("ingestion task %s: lease lost to another worker", task.id)
        except (SourceError, NotFound) as error:
            await self._queue.fail(task, self.owner, str(error))
        except HubCallError as error:
            await self._queue.fail(
                task, self.owner, f"the hub refused the embedding: {error.reason or error.code.name}"
            )
        except asyncio.CancelledError:
            raise  # shutting down: the lease runs out and another run takes the task
        except Exception as error:
            log.exception("ingestion task %s failed", task.id)
            await self._queue.fail(task, self.owner, f"internal error ({type(error).__name__})")
        return True

    async def _run(self, task: ClaimedTask) -> None:
        bot = await self._bots.get(task.tenant, task.bot_id)
        loaded = await self._load(task)
        for error in loaded.errors:
            record_error(task, error.item, error.message)
        documents = loaded.documents
        digest = content_hash(task.data) if task.data is not None else combined_hash(documents)
        source = await self._catalog.get(task.tenant, task.bot_id, task.source_id)
        if source.content_hash == digest and source.chunk_count > 0:
            await self._finish(
                task, done=len(documents), total=len(documents), chunks=source.chunk_count, skipped=True
            )
            return
        if not documents:
            raise SourceError(task.source_name, "nothing to ingest: no text was found")
        chunks = chunk_documents(documents, counter=self._counter)
        vectors = await self._embed(task, bot, len(documents), chunks)
        space = await self._vectors.space(model_key(bot.embedding_model), len(vectors[0]))
        written = await space.upsert_source(task.tenant, task.bot_id, task.source_id, _rows(chunks, vectors))
        await self._catalog.ingested(task.tenant, task.source_id, digest, written)
        await self._finish(task, done=len(documents), total=len(documents), chunks=written, skipped=False)

    async def _embed(
        self, task: ClaimedTask, bot: pb.Bot, documents: int, chunks: Sequence[Chunk]
    ) -> list[list[float]]:
        hub = self._hubs.hub(task.tenant)
        vectors: list[list[float]] = []
        for start in range(0, len(chunks), EMBED_SLICE):
            part = chunks[start : start + EMBED_SLICE]
            answer = await hub.embed(
                [_embedded_text(c) for c in part], hub_model(bot.embedding_model), input_type="document"
            )
            vectors.extend(answer.vectors)
            if not await self._queue.progress(
                task,
                self.owner,
                done=_documents_done(chunks, start + len(part)),
                total=documents,
                chunks=len(vectors),
                lease_seconds=LEASE_SECONDS,
            ):
                raise LeaseLost(task.id)
        return vectors

    async def _finish(self, task: ClaimedTask, *, done: int, total: int, chunks: int, skipped: bool) -> None:
        if not await self._queue.finish(
            task, self.owner, done=done, total=total, chunks=chunks, skipped_unchanged=skipped
        ):
            raise LeaseLost(task.id)

    async def _load(self, task: ClaimedTask) -> LoadResult:
        where = task.filename or task.source_name
        if task.kind == pb.SOURCE_KIND_WEBSITE:
            async with SafeFetcher(self._settings.fetch) as fetcher:
                return await crawl_website(
                    task.url, source_id=task.source_id, fetcher=fetcher, limits=self._settings.crawl
                )
        data = task.data
        if data is None:
            raise SourceError(where, "the task holds no content")
        # Parsing a PDF or a spreadsheet is CPU work: off the event loop.
        return await asyncio.to_thread(_read_upload, task.kind, data, task.source_id, where)


def _read_upload(kind: int, data: bytes, source_id: str, where: str) -> LoadResult:
    suffix = PurePath(where).suffix.lower()
    if kind == pb.SOURCE_KIND_TEXT:
        text_format: TextFormat = "markdown" if suffix in MARKDOWN_SUFFIXES else "plain"
        return LoadResult(
            documents=[text_document(data, source_id=source_id, location=where, format=text_format)]
        )
    if kind == pb.SOURCE_KIND_PDF:
        return pdf_documents(data, source_id=source_id, location=where)
    if kind == pb.SOURCE_KIND_QA:
        if suffix == ".xlsx":
            return xlsx_pairs(data, source_id=source_id, location=where)
        return csv_pairs(data, source_id=source_id, location=where)
    raise SourceError(where, f"unknown source kind {kind}")


def _embedded_text(chunk: Chunk) -> str:
    # The heading path gives a chunk the context its own words may lack ("Leave > Carry-over").
    heading = " > ".join(chunk.heading_path)
    return f"{heading}\n{chunk.text}" if heading else chunk.text


def _documents_done(chunks: Sequence[Chunk], embedded: int) -> int:
    """How many documents have every one of their chunks among the first `embedded`."""
    last_chunk: dict[tuple[str, int | None, str], int] = {}
    for index, chunk in enumerate(chunks):
        last_chunk[(chunk.location, chunk.page, chunk.content_hash)] = index
    return sum(1 for index in last_chunk.values() if index < embedded)


def _rows(chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> list[ChunkVector]:
    return [
        ChunkVector(
            position=chunk.ordinal,
            text=chunk.text,
            vector=vector,
            title=" > ".join((chunk.title, *chunk.heading_path)) if chunk.heading_path else chunk.title,
            page=chunk.page,
            location=chunk.location,
        )
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]
