"""CallStore on SQLite (mixed into SqliteStore, whose one connection it uses).

Writes run in BEGIN IMMEDIATE transactions: SQLite has one writer at a time (across
processes too), so an event's read-compare-apply is atomic and sequence order is
commit order.
"""

# ruff: noqa: S608
# Every query is built from the constant fragments of _calls_sql.py; values are bound.

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

from ._calls_sql import (
    CALL_COLUMNS,
    EVENT_COLUMNS,
    EVENT_INSERT_COLUMNS,
    call_from,
    call_select,
    call_values,
    event_from,
    event_select,
    event_values,
)
from ._codec import parse_utc_iso, utc_iso
from ._sql import Conditions, check_limit
from .base import StoreError
from .calls import CallEventRow, CallPlaced, CallQuery, CallRow

_IDEMPOTENCY_COLUMNS = "calls.tenant_id, calls.idempotency_key"


def _placeholder(_: int) -> str:
    return "?"


@asynccontextmanager
async def _immediate(conn: Any) -> AsyncIterator[None]:
    # IMMEDIATE takes the write lock at BEGIN: the read that decides the write cannot go
    # stale before the write (a DEFERRED transaction could be overtaken by another process).
    await conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        await conn.rollback()
        raise
    await conn.commit()


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqliteCalls:
    # A mixin of SqliteStore, whose connection it uses (declared for the type checker).
    _connection: Callable[[], AbstractAsyncContextManager[Any]]

    async def _one(self, sql: str, params: tuple[Any, ...]) -> CallRow | None:
        async with self._connection() as conn, conn.execute(sql, params) as cursor:
            record = await cursor.fetchone()
        return None if record is None else call_from(record, parse_utc_iso)

    async def insert_call(self, row: CallRow) -> CallRow:
        try:
            async with self._connection() as conn:
                await conn.execute(
                    f"INSERT INTO calls ({CALL_COLUMNS}) VALUES ({_marks(len(CALL_COLUMNS.split(',')))})",
                    call_values(row, utc_iso),
                )
            return row
        except sqlite3.IntegrityError as exc:
            if _IDEMPOTENCY_COLUMNS not in str(exc):
                raise StoreError("a call row with this key already exists") from None
        existing = await self._one(
            f"SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = ? AND idempotency_key = ?",
            (row.tenant_id, row.idempotency_key),
        )
        if existing is None:  # the call holding the key was deleted in between
            raise StoreError("the call with this idempotency key is gone; retry with a new key")
        return existing

    async def get_call(self, tenant_id: str, call_id: str) -> CallRow | None:
        return await self._one(
            f"SELECT {CALL_COLUMNS} FROM calls WHERE id = ? AND tenant_id = ?", (call_id, tenant_id)
        )

    async def get_call_by_id(self, call_id: str) -> CallRow | None:
        return await self._one(f"SELECT {CALL_COLUMNS} FROM calls WHERE id = ?", (call_id,))

    async def mark_call_placed(self, call_id: str, placed: CallPlaced) -> CallRow:
        # As on Postgres: the status moves only forward; the provider's id is set regardless.
        rank = placed.status_rank
        row = await self._one(
            "UPDATE calls SET provider_call_id = ?, updated_at = ?,"
            " provider_status = CASE WHEN ? > status_rank THEN ? ELSE provider_status END,"
            " status = CASE WHEN ? > status_rank THEN ? ELSE status END,"
            " status_rank = max(status_rank, COALESCE(?, status_rank))"
            f" WHERE id = ? RETURNING {CALL_COLUMNS}",
            (
                placed.provider_call_id,
                utc_iso(placed.at),
                rank,
                placed.provider_status,
                rank,
                placed.status,
                rank,
                call_id,
            ),
        )
        if row is None:
            raise StoreError(f"call {call_id} is gone")
        return row

    async def mark_call_failed(self, call_id: str, error: str, at: datetime) -> CallRow:
        row = await self._one(
            "UPDATE calls SET status = 'failed', status_rank = 3, error = ?, updated_at = ?"
            f" WHERE id = ? RETURNING {CALL_COLUMNS}",
            (error, utc_iso(at), call_id),
        )
        if row is None:
            raise StoreError(f"call {call_id} is gone")
        return row

    async def adopt_provider_call_id(self, call_id: str, provider_call_id: str) -> bool:
        try:
            async with (
                self._connection() as conn,
                conn.execute(
                    "UPDATE calls SET provider_call_id = ? WHERE id = ? AND provider_call_id = ''",
                    (provider_call_id, call_id),
                ) as cursor,
            ):
                return bool(cursor.rowcount)
        except sqlite3.IntegrityError:
            return False  # another call has it (calls_provider_call_unique)

    async def call_by_provider_id(self, provider: str, provider_call_id: str) -> CallRow | None:
        return await self._one(
            f"SELECT {CALL_COLUMNS} FROM calls WHERE provider = ? AND provider_call_id = ? LIMIT 1",
            (provider, provider_call_id),
        )

    async def fail_unplaced_call(self, call_id: str, error: str, at: datetime) -> bool:
        async with (
            self._connection() as conn,
            conn.execute(
                "UPDATE calls SET status = 'failed', status_rank = 3, error = ?, updated_at = ?"
                " WHERE id = ? AND status_rank < 3 AND provider_call_id = ''"
                " AND NOT EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = calls.id)",
                (error, utc_iso(at), call_id),
            ) as cursor,
        ):
            return bool(cursor.rowcount)

    async def claim_silent_calls(
        self, *, now: datetime, silent_before: datetime, lease_until: datetime, limit: int
    ) -> list[CallRow]:
        # One statement, under SQLite's single writer: two workers never take the same call.
        sql = (
            "UPDATE calls SET reconcile_until = ? WHERE id IN (SELECT id FROM calls"
            " WHERE status_rank < 3 AND updated_at < ?"
            " AND (reconcile_until IS NULL OR reconcile_until < ?)"
            f" ORDER BY updated_at LIMIT ?) RETURNING {CALL_COLUMNS}"
        )
        params = (utc_iso(lease_until), utc_iso(silent_before), utc_iso(now), check_limit(limit))
        async with self._connection() as conn, conn.execute(sql, params) as cursor:
            records = await cursor.fetchall()
        return [call_from(record, parse_utc_iso) for record in records]

    async def list_calls(self, query: CallQuery) -> list[CallRow]:
        conditions = Conditions(_placeholder)
        conditions.add("tenant_id =", query.tenant_id)
        conditions.add_if_given("status =", query.status)
        conditions.add_if_given("campaign_id =", query.campaign_id)
        if query.created_after is not None:
            conditions.add("created_at >=", utc_iso(query.created_after))
        if query.created_before is not None:
            conditions.add("created_at <", utc_iso(query.created_before))
        if query.after is not None:
            at, call_id = query.after
            a, b = conditions.bind(utc_iso(at)), conditions.bind(call_id)
            conditions.clauses.append(f"(created_at, id) < ({a}, {b})")
        limit = conditions.bind(check_limit(query.limit))
        sql = (
            f"SELECT {CALL_COLUMNS} FROM calls {conditions.where()}"
            f" ORDER BY created_at DESC, id DESC LIMIT {limit}"
        )
        async with self._connection() as conn, conn.execute(sql, conditions.args) as cursor:
            records = await cursor.fetchall()
        return [call_from(record, parse_utc_iso) for record in records]

    async def add_call_event(self, event: CallEventRow) -> tuple[CallEventRow | None, CallRow]:
        async with self._connection() as conn, _immediate(conn):
            async with conn.execute(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE id = ?", (event.call_id,)
            ) as cur:
                record = await cur.fetchone()
            if record is None:
                raise StoreError(f"call {event.call_id} is gone")
            current = call_from(record, parse_utc_iso)
            applied = event.status_rank is not None and event.status_rank > current.status_rank
            values = event_values(event, applied, utc_iso)
            async with conn.execute(
                f"INSERT INTO call_events ({EVENT_INSERT_COLUMNS}) VALUES ({_marks(len(values))})"
                f" ON CONFLICT (call_id, event_id) DO NOTHING RETURNING {EVENT_COLUMNS}",
                values,
            ) as cur:
                stored = await cur.fetchone()
            if stored is None:
                return None, current
            stored_event = event_from(stored, parse_utc_iso)
            if applied:
                async with conn.execute(
                    "UPDATE calls SET status = ?, status_rank = ?, provider_status = ?,"
                    " duration_ms = COALESCE(?, duration_ms),"
                    " answered_by = CASE WHEN ? <> '' THEN ? ELSE answered_by END,"
                    " error = CASE WHEN ? <> '' THEN ? ELSE error END, updated_at = ?"
                    f" WHERE id = ? RETURNING {CALL_COLUMNS}",
                    (
                        event.status,
                        event.status_rank,
                        event.provider_status,
                        event.duration_ms,
                        event.answered_by,
                        event.answered_by,
                        event.error,
                        event.error,
                        utc_iso(event.received_at),
                        event.call_id,
                    ),
                ) as cur:
                    updated = await cur.fetchone()
                current = call_from(updated, parse_utc_iso)
            elif not event.status and event.answered_by:
                # Machine detection reports on its own, with no change of state.
                async with conn.execute(
                    f"UPDATE calls SET answered_by = ?, updated_at = ? WHERE id = ? RETURNING {CALL_COLUMNS}",
                    (event.answered_by, utc_iso(event.received_at), event.call_id),
                ) as cur:
                    updated = await cur.fetchone()
                current = call_from(updated, parse_utc_iso)
        return stored_event, current

    async def list_call_events(
        self, tenant_id: str, after_sequence: int, *, campaign_id: str | None = None, limit: int = 500
    ) -> list[tuple[CallEventRow, CallRow]]:
        conditions = Conditions(_placeholder)
        conditions.add("e.tenant_id =", tenant_id)
        conditions.add("e.sequence >", after_sequence)
        conditions.add_if_given("e.campaign_id =", campaign_id)
        limit_placeholder = conditions.bind(check_limit(limit))
        sql = (
            f"SELECT {event_select('e_')}, {call_select()} FROM call_events e"
            f" JOIN calls c ON c.id = e.call_id {conditions.where()}"
            f" ORDER BY e.sequence LIMIT {limit_placeholder}"
        )
        async with self._connection() as conn, conn.execute(sql, conditions.args) as cursor:
            records = await cursor.fetchall()
        return [(event_from(r, parse_utc_iso, prefix="e_"), call_from(r, parse_utc_iso)) for r in records]

    async def last_call_event_sequence(self, tenant_id: str) -> int:
        async with (
            self._connection() as conn,
            conn.execute(
                "SELECT COALESCE(max(sequence), 0) FROM call_events WHERE tenant_id = ?", (tenant_id,)
            ) as cursor,
        ):
            record = await cursor.fetchone()
        return int(record[0]) if record is not None else 0
