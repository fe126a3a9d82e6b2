"""A bot's sources: what was ingested, under which name, with which content hash.

A source's name is unique within its bot: adding one under a taken name keeps its id
(so its vectors are replaced, not duplicated), and ingestion skips it when the content
hash is unchanged. The vectors themselves live in chatbot.vectors; deleting a source
here is followed by deleting its vectors there (chatbot.ingest does both).
"""

from __future__ import annotations

from typing import Any

from chatbot.db import Database, now_ms
from chatbot.errors import InvalidArgument, NotFound
from chatbot.ids import new_id
from chatbot.v1 import chatbot_pb2 as pb

MAX_PAGE_SIZE = 100
MAX_NAME_CHARS = 200


class Catalog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(self, tenant: str, bot_id: str, name: str, kind: int, origin: str) -> pb.Source:
        """The source of this name, created if new (empty hash, no chunks yet)."""
        name = name.strip()
        if not name:
            raise InvalidArgument("name", "required")
        if len(name) > MAX_NAME_CHARS:
            raise InvalidArgument("name", f"at most {MAX_NAME_CHARS} characters")
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                "SELECT * FROM sources WHERE tenant = $1 AND bot_id = $2 AND name = $3", tenant, bot_id, name
            )
            if row is not None:
                if int(row["kind"]) != kind:
                    raise InvalidArgument(
                        "kind", f"source {name!r} exists with another kind; delete it first"
                    )
                await tx.execute("UPDATE sources SET origin = $2 WHERE id = $1", row["id"], origin)
                return _source({**row, "origin": origin})
            source_id = new_id("src")
            now = now_ms()
            await tx.execute(
                "INSERT INTO sources"
                " (id, tenant, bot_id, name, kind, origin, content_hash, chunk_count, updated_ms)"
                " VALUES ($1, $2, $3, $4, $5, $6, '', 0, $7)",
                source_id,
                tenant,
                bot_id,
                name,
                kind,
                origin,
                now,
            )
        return await self.get(tenant, bot_id, source_id)

    async def ingested(self, tenant: str, source_id: str, content_hash: str, chunk_count: int) -> None:
        await self._db.execute(
            "UPDATE sources SET content_hash = $3, chunk_count = $4, updated_ms = $5"
            " WHERE id = $1 AND tenant = $2",
            source_id,
            tenant,
            content_hash,
            chunk_count,
            now_ms(),
        )

    async def get(self, tenant: str, bot_id: str, source_id: str) -> pb.Source:
        row = await self._db.fetch_one(
            "SELECT * FROM sources WHERE id = $1 AND tenant = $2 AND bot_id = $3", source_id, tenant, bot_id
        )
        if row is None:
            raise NotFound(f"no source {source_id!r} in this bot")
        return _source(row)

    async def page(
        self, tenant: str, bot_id: str, *, page_size: int, after: str
    ) -> tuple[list[pb.Source], str]:
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or 50, MAX_PAGE_SIZE)
        rows = await self._db.fetch_all(
            "SELECT * FROM sources WHERE tenant = $1 AND bot_id = $2 AND id > $3 ORDER BY id LIMIT $4",
            tenant,
            bot_id,
            after,
            size + 1,
        )
        sources = [_source(row) for row in rows[:size]]
        return sources, (sources[-1].id if len(rows) > size else "")

    async def delete(self, tenant: str, bot_id: str, source_id: str) -> None:
        if not await self._db.execute(
            "DELETE FROM sources WHERE id = $1 AND tenant = $2 AND bot_id = $3", source_id, tenant, bot_id
        ):
            raise NotFound(f"no source {source_id!r} in this bot")


def _source(row: Any) -> pb.Source:
    source = pb.Source(
        id=row["id"],
        bot_id=row["bot_id"],
        name=row["name"],
        kind=pb.SourceKind.ValueType(int(row["kind"])),
        origin=row["origin"],
        content_hash=row["content_hash"],
        chunk_count=int(row["chunk_count"]),
    )
    source.update_time.FromMilliseconds(int(row["updated_ms"]))
    return source
