"""The vector store: Milvus Lite for a file path, a Milvus server for a URI, same code.

``await VectorStore.open("./bots.db")`` runs Milvus Lite in this process on that file;
``await VectorStore.open("http://milvus:19530", token=...)`` talks to Milvus standalone or
a cluster. pymilvus's MilvusClient is synchronous, so every call runs in one bounded
thread pool owned by the store (``workers`` threads), never on the event loop. Milvus
Lite's own search work runs in this process too (Python and FAISS threads), so a busy
deployment should move to a server URI.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from chatbot.vectors import lite
from chatbot.vectors.engine import MilvusClient, MilvusException
from chatbot.vectors.errors import VectorStoreError
from chatbot.vectors.naming import PREFIX, collection_name
from chatbot.vectors.schema import (
    DEFAULT_INDEX,
    PARTITIONS,
    Layout,
    build_indexes,
    build_schema,
    check_dim,
    read_layout,
)
from chatbot.vectors.space import VectorSpace

log = logging.getLogger(__name__)

T = TypeVar("T")


class VectorStore:
    def __init__(
        self,
        client: Any,
        executor: ThreadPoolExecutor,
        uri: str,
        lite_path: str | None,
        *,
        full_text: bool,
        index_type: str,
        timeout: float,
    ) -> None:
        self._client = client
        self._executor = executor
        self.uri = uri  # redacted: safe to log
        self._lite_path = lite_path
        self._want_full_text = full_text
        self._index_type = index_type
        self._timeout = timeout
        self._spaces: dict[str, VectorSpace] = {}
        self._spaces_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(
        cls,
        uri: str,
        *,
        token: str | None = None,
        full_text: bool = True,
        index_type: str = DEFAULT_INDEX,
        workers: int = 4,
        timeout: float = 30.0,
    ) -> VectorStore:
        """Open the store. full_text=False never uses BM25 (dense search only)."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        lite_path = None if lite.is_server_uri(uri) else lite.local_path(uri)
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="milvus")
        connect = functools.partial(MilvusClient, uri=lite_path or uri, token=token or "", timeout=timeout)
        if lite_path is not None:
            lite.acquire(lite_path)
        loop = asyncio.get_running_loop()
        try:
            client = await loop.run_in_executor(executor, connect)
        except Exception as exc:
            if lite_path is not None:
                await loop.run_in_executor(executor, lite.release, lite_path)
            executor.shutdown(wait=False)
            raise VectorStoreError(
                f"cannot open vector store {lite.redacted(uri)}: {_scrub(str(exc), uri, token)}"
            ) from None
        return cls(
            client,
            executor,
            lite.redacted(uri),
            lite_path,
            full_text=full_text,
            index_type=index_type,
            timeout=timeout,
        )

    @property
    def is_lite(self) -> bool:
        return self._lite_path is not None

    async def space(self, model: str, dim: int) -> VectorSpace:
        """The collection for this embedding model and dimension, created on first use."""
        name = collection_name(model, dim)
        async with self._spaces_lock:
            found = self._spaces.get(name)
            if found is None:
                found = await self._open_space(name, dim)
                self._spaces[name] = found
            return found

    async def delete_bot(self, tenant: str, bot: str) -> None:
        """Delete the bot's chunks from every collection (it may have changed model)."""
        for space in await self._every_space():
            await space.delete_bot(tenant, bot)

    async def delete_source(self, tenant: str, bot: str, source: str) -> None:
        """Delete the source's chunks from every collection (the bot may have changed model)."""
        for space in await self._every_space():
            await space.delete_source(tenant, bot, source)

    async def _every_space(self) -> list[VectorSpace]:
        names = await self._run("list collections", self._client.list_collections)
        spaces: list[VectorSpace] = []
        for name in sorted(n for n in names if n.startswith(PREFIX)):
            async with self._spaces_lock:
                space = self._spaces.get(name)
                if space is None:
                    space = await self._open_space(name, None)
                    self._spaces[name] = space
            spaces.append(space)
        return spaces

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._run("close", self._client.close)
        finally:
            if self._lite_path is not None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._executor, lite.release, self._lite_path)
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> VectorStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _open_space(self, name: str, dim: int | None) -> VectorSpace:
        exists = await self._run("has collection", self._client.has_collection, name)
        if exists:
            layout = read_layout(name, await self._run("describe", self._client.describe_collection, name))
            if dim is not None:
                check_dim(name, layout, dim)
            await self._run("load", self._client.load_collection, name)
        elif dim is None:
            raise VectorStoreError(f"collection {name} does not exist")
        else:
            layout = await self._create(name, dim)
        buckets = None
        if self.is_lite and lite.hint_supported():
            partitions = await self._run("list partitions", self._client.list_partitions, name)
            buckets = lite.bucket_count(partitions)
        if self._want_full_text and not layout.full_text:
            log.warning("vector collection %s has no BM25 full-text search: searches are dense only", name)
        full_text = layout.full_text and self._want_full_text
        return VectorSpace(self._client, self._run, name, layout.dim, full_text, buckets, self.is_lite)

    async def _create(self, name: str, dim: int) -> Layout:
        if self._want_full_text:
            try:
                await self._create_with(name, dim, full_text=True)
                return Layout(dim=dim, full_text=True)
            except VectorStoreError as exc:
                # Detected once, at creation: an engine without BM25 functions (Milvus
                # before 2.5) refuses this schema; the same schema without them is made.
                log.warning("%s refused a BM25 collection (%s); creating it dense only", self.uri, exc)
        await self._create_with(name, dim, full_text=False)
        return Layout(dim=dim, full_text=False)

    async def _create_with(self, name: str, dim: int, *, full_text: bool) -> None:
        await self._run(
            "create collection",
            self._client.create_collection,
            name,
            schema=build_schema(dim, full_text),
            index_params=build_indexes(self._client, self._index_type, full_text),
            num_partitions=PARTITIONS,
            # A re-ingest's delete must be visible to the next search.
            consistency_level="Strong",
        )

    async def _run(self, op: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._closed and op != "close":
            raise VectorStoreError("vector store is closed")
        if op != "close":
            kwargs.setdefault("timeout", self._timeout)
        call = functools.partial(fn, *args, **kwargs)
        future = asyncio.get_running_loop().run_in_executor(self._executor, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: let the call finish (bounded by its timeout)
            # so that a write lock is not released while the write still runs.
            await asyncio.wait([future])
            raise
        except MilvusException as exc:
            raise VectorStoreError(f"{op} failed: {exc.message} (code {exc.code})") from exc


def _scrub(message: str, uri: str, token: str | None) -> str:
    """An engine's message with the URI's credentials and the token taken out."""
    message = message.replace(uri, lite.redacted(uri))
    return message.replace(token, "***") if token else message
