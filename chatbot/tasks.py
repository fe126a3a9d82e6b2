"""Ingestion tasks: durable rows that workers claim, follow and finish.

A task holds what it ingests (the uploaded bytes, or a website's URL) until it ends, so
that a process killed half-way leaves a task another run picks up again: a claim is a
lease (owner, expiry) that the holder renews while it works; an expired lease is
claimable. On Postgres the claim takes FOR UPDATE SKIP LOCKED, so that replicas never
claim the same task; SQLite has one writer, and its transactions serialize the claim.

Re-running a claimed task from the start is safe: ingesting a source replaces its
chunks (chatbot.vectors), so nothing is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from chatbot.db import Database, now_ms
from chatbot.errors import InvalidArgument, NotFound
from chatbot.ids import new_id
from chatbot.v1 import chatbot_pb2 as pb

MAX_PAGE_SIZE = 100
# At most this many item errors are kept per task: a website of 10,000 broken pages
# must not grow one row without bound.
MAX_KEPT_ERRORS = 200
_PENDING = (pb.TASK_STATE_QUEUED, pb.TASK_STATE_RUNNING)
_CLAIMABLE = (
    "SELECT * FROM ingestion_tasks WHERE state IN ($1, $2)"
    " AND (lease_until_ms IS NULL OR lease_until_ms < $3) ORDER BY created_ms LIMIT 1"
)
# Postgres: replicas claiming at once skip each other's rows instead of queueing on them.
_CLAIMABLE_SKIP_LOCKED = _CLAIMABLE + " FOR UPDATE SKIP LOCKED"


@dataclass(slots=True)
class ClaimedTask:
    """A task a worker holds: what to ingest and where its progress goes."""

    id: str
    tenant: str
    bot_id: str
    source_id: str
    source_name: str
    kind: int
    url: str
    filename: str
    data: bytes | None
    errors: list[tuple[str, str]] = field(default_factory=list)


class TaskQueue:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def enqueue(
        self,
        tenant: str,
        bot_id: str,
        *,
        source_id: str,
        source_name: str,
        kind: int,
        url: str = "",
        filename: str = "",
        data: bytes | None = None,
    ) -> pb.IngestionTask:
        now = now_ms()
        task_id = new_id("task")
        await self._db.execute(
            "INSERT INTO ingestion_tasks (id, tenant, bot_id, source_name, source_id, kind, url, filename,"
            " data, state, items_done, items_total, chunks_written, errors, skipped_unchanged,"
            " created_ms, updated_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, 0, '[]', 0, $11, $11)",
            task_id,
            tenant,
            bot_id,
            source_name,
            source_id,
            kind,
            url,
            filename,
            data,
            pb.TASK_STATE_QUEUED,
            now,
        )
        return await self.get(tenant, task_id)

    async def claim(self, owner: str, lease_seconds: float) -> ClaimedTask | None:
        """The oldest queued task, or a running one whose holder's lease ran out."""
        now = now_ms()
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                _CLAIMABLE_SKIP_LOCKED if self._db.shared else _CLAIMABLE,
                *_PENDING,
                now,
            )
            if row is None:
                return None
            await tx.execute(
                "UPDATE ingestion_tasks SET state = $2, lease_owner = $3, lease_until_ms = $4,"
                " updated_ms = $5, items_done = 0, chunks_written = 0, errors = '[]' WHERE id = $1",
                row["id"],
                pb.TASK_STATE_RUNNING,
                owner,
                now + int(lease_seconds * 1000),
                now,
            )
        data = row["data"]
        return ClaimedTask(
            id=row["id"],
            tenant=row["tenant"],
            bot_id=row["bot_id"],
            source_id=row["source_id"],
            source_name=row["source_name"],
            kind=int(row["kind"]),
            url=row["url"],
            filename=row["filename"],
            data=bytes(data) if data is not None else None,
        )

    async def progress(
        self, task: ClaimedTask, owner: str, *, done: int, total: int, chunks: int, lease_seconds: float
    ) -> bool:
        """Records progress and renews the lease; False when the lease was lost (stop working)."""
        now = now_ms()
        return bool(
            await self._db.execute(
                "UPDATE ingestion_tasks SET items_done = $3, items_total = $4, chunks_written = $5,"
                " errors = $6, lease_until_ms = $7, updated_ms = $8"
                " WHERE id = $1 AND lease_owner = $2 AND state = $9",
                task.id,
                owner,
                done,
                total,
                chunks,
                _errors_json(task.errors),
                now + int(lease_seconds * 1000),
                now,
                pb.TASK_STATE_RUNNING,
            )
        )

    async def finish(
        self,
        task: ClaimedTask,
        owner: str,
        *,
        done: int,
        total: int,
        chunks: int,
        skipped_unchanged: bool = False,
    ) -> bool:
        """Ends the task (succeeded, partial with item errors, or failed when nothing was
        ingested and there were errors) and drops its payload; False if the lease was lost."""
        if task.errors and chunks == 0 and not skipped_unchanged:
            state = pb.TASK_STATE_FAILED
        elif task.errors:
            state = pb.TASK_STATE_PARTIAL
        else:
            state = pb.TASK_STATE_SUCCEEDED
        return bool(
            await self._db.execute(
                "UPDATE ingestion_tasks SET state = $3, items_done = $4, items_total = $5,"
                " chunks_written = $6, errors = $7, skipped_unchanged = $8, data = NULL,"
                " lease_owner = NULL, lease_until_ms = NULL, updated_ms = $9"
                " WHERE id = $1 AND lease_owner = $2 AND state = $10",
                task.id,
                owner,
                state,
                done,
                total,
                chunks,
                _errors_json(task.errors),
                int(skipped_unchanged),
                now_ms(),
                pb.TASK_STATE_RUNNING,
            )
        )

    async def fail(self, task: ClaimedTask, owner: str, message: str) -> None:
        """The whole task failed (the source could not be read at all)."""
        task.errors.append((task.source_name, message))
        await self.finish(task, owner, done=0, total=0, chunks=0)

    async def get(self, tenant: str, task_id: str) -> pb.IngestionTask:
        row = await self._db.fetch_one(
            "SELECT * FROM ingestion_tasks WHERE id = $1 AND tenant = $2", task_id, tenant
        )
        if row is None:
            raise NotFound(f"no ingestion task {task_id!r}")
        return _task(row)

    async def page(
        self, tenant: str, bot_id: str, *, page_size: int, after: str
    ) -> tuple[list[pb.IngestionTask], str]:
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or 50, MAX_PAGE_SIZE)
        rows = await self._db.fetch_all(
            "SELECT * FROM ingestion_tasks WHERE tenant = $1 AND bot_id = $2 AND id > $3"
            " ORDER BY id LIMIT $4",
            tenant,
            bot_id,
            after,
            size + 1,
        )
        tasks = [_task(row) for row in rows[:size]]
        return tasks, (tasks[-1].id if len(rows) > size else "")

    async def pending_count(self) -> int:
        row = await self._db.fetch_one(
            "SELECT COUNT(*) AS n FROM ingestion_tasks WHERE state IN ($1, $2)", *_PENDING
        )
        return int(row["n"]) if row else 0


def record_error(task: ClaimedTask, item: str, message: str) -> None:
    if len(task.errors) < MAX_KEPT_ERRORS:
        task.errors.append((item, message))


def _errors_json(errors: list[tuple[str, str]]) -> str:
    return orjson.dumps([{"item": item, "message": message} for item, message in errors]).decode()


def _task(row: Any) -> pb.IngestionTask:
    task = pb.IngestionTask(
        id=row["id"],
        bot_id=row["bot_id"],
        source_id=row["source_id"],
        state=pb.TaskState.ValueType(int(row["state"])),
        items_done=int(row["items_done"]),
        items_total=int(row["items_total"]),
        chunks_written=int(row["chunks_written"]),
        skipped_unchanged=bool(row["skipped_unchanged"]),
    )
    for error in orjson.loads(row["errors"]):
        task.errors.append(pb.ItemError(item=error["item"], message=error["message"]))
    task.create_time.FromMilliseconds(int(row["created_ms"]))
    task.update_time.FromMilliseconds(int(row["updated_ms"]))
    return task
