"""CallStore on Postgres (mixed into PostgresStore, whose connection pool it uses)."""

# ruff: noqa: S608
# Every query is built from the constant fragments of _calls_sql.py; values are bound.

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import asyncpg

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
from ._codec import require_utc
from ._sql import Conditions, check_limit
from .base import StoreError
from .calls import CallEventRow, CallPlaced, CallQuery, CallRow

_IDEMPOTENCY_CONSTRAINT = "calls_tenant_idempotency_key"


def _placeholder(position: int) -> str:
    return f"${position}"


def _numbered(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class PostgresCalls:
    # A mixin of PostgresStore, whose connection it uses (declared for the type checker).
    _connection: Callable[[], AbstractAsyncContextManager[Any]]

    async def insert_call(self, row: CallRow) -> CallRow:
        values = call_values(row, require_utc)
        async with self._connection() as conn:
            try:
                await conn.execute(
                    f"INSERT INTO calls ({CALL_COLUMNS}) VALUES ({_numbered(len(values))})", *values
                )
                return row
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != _IDEMPOTENCY_CONSTRAINT:
                    raise StoreError(f"a row with this key already exists ({exc.constraint_name})") from None
            record = await conn.fetchrow(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = $1 AND idempotency_key = $2",
                row.tenant_id,
                row.idempotency_key,
            )
        if record is None:  # the call holding the key was deleted in between
            raise StoreError("the call with this idempotency key is gone; retry with a new key")
        return call_from(record, require_utc)

    async def get_call(self, tenant_id: str, call_id: str) -> CallRow | None:
        async with self._connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE id = $1 AND tenant_id = $2", call_id, tenant_id
            )
        return None if record is None else call_from(record, require_utc)

    async def get_call_by_id(self, call_id: str) -> CallRow | None:
        async with self._connection() as conn:
            record = await conn.fetchrow(f"SELECT {CALL_COLUMNS} FROM calls WHERE id = $1", call_id)
        return None if record is None else call_from(record, require_utc)

    async def mark_call_placed(self, call_id: str, placed: CallPlaced) -> CallRow:
        # The provider's callbacks may have moved the call on already: its status moves
        # only forward (by rank); the provider's call id is set whatever came first.
        async with self._connection() as conn:
            record = await conn.fetchrow(
                "UPDATE calls SET provider_call_id = $2, updated_at = $3,"
                " provider_status = CASE WHEN $5::smallint > status_rank THEN $6 ELSE provider_status END,"
                " status = CASE WHEN $5::smallint > status_rank THEN $4 ELSE status END,"
                " status_rank = GREATEST(status_rank, COALESCE($5::smallint, status_rank))"
                f" WHERE id = $1 RETURNING {CALL_COLUMNS}",
                call_id,
                placed.provider_call_id,
                require_utc(placed.at),
                placed.status,
                placed.status_rank,
                placed.provider_status,
            )
        if record is None:
            raise StoreError(f"call {call_id} is gone")
        return call_from(record, require_utc)

    async def mark_call_failed(self, call_id: str, error: str, at: datetime) -> CallRow:
        async with self._connection() as conn:
            record = await conn.fetchrow(
                "UPDATE calls SET status = 'failed', status_rank = 3, error = $2, updated_at = $3"
                f" WHERE id = $1 RETURNING {CALL_COLUMNS}",
                call_id,
                error,
                require_utc(at),
            )
        if record is None:
            raise StoreError(f"call {call_id} is gone")
        return call_from(record, require_utc)

    async def adopt_provider_call_id(self, call_id: str, provider_call_id: str) -> bool:
        async with self._connection() as conn:
            try:
                status = await conn.execute(
                    "UPDATE calls SET provider_call_id = $2 WHERE id = $1 AND provider_call_id = ''",
                    call_id,
                    provider_call_id,
                )
            except asyncpg.UniqueViolationError:
                return False  # another call has it (calls_provider_call_unique)
        return str(status).rsplit(" ", 1)[-1] != "0"

    async def call_by_provider_id(self, provider: str, provider_call_id: str) -> CallRow | None:
        async with self._connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE provider = $1 AND provider_call_id = $2 LIMIT 1",
                provider,
                provider_call_id,
            )
        return None if record is None else call_from(record, require_utc)

    async def fail_unplaced_call(self, call_id: str, error: str, at: datetime) -> bool:
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE calls SET status = 'failed', status_rank = 3, error = $2, updated_at = $3"
                " WHERE id = $1 AND status_rank < 3 AND provider_call_id = ''"
                " AND NOT EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = calls.id)",
                call_id,
                error,
                require_utc(at),
            )
        return str(status).rsplit(" ", 1)[-1] != "0"

    async def claim_silent_calls(
        self, *, now: datetime, silent_before: datetime, lease_until: datetime, limit: int
    ) -> list[CallRow]:
        # SKIP LOCKED: workers picking at the same moment take different calls.
        async with self._connection() as conn:
            records = await conn.fetch(
                "UPDATE calls SET reconcile_until = $3 WHERE id IN (SELECT id FROM calls"
                " WHERE status_rank < 3 AND updated_at < $2"
                " AND (reconcile_until IS NULL OR reconcile_until < $1)"
                " ORDER BY updated_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
                f" RETURNING {CALL_COLUMNS}",
                require_utc(now),
                require_utc(silent_before),
                require_utc(lease_until),
                check_limit(limit),
            )
        return [call_from(record, require_utc) for record in records]

    async def list_calls(self, query: CallQuery) -> list[CallRow]:
        conditions = Conditions(_placeholder)
        conditions.add("tenant_id =", query.tenant_id)
        conditions.add_if_given("status =", query.status)
        conditions.add_if_given("campaign_id =", query.campaign_id)
        if query.created_after is not None:
            conditions.add("created_at >=", require_utc(query.created_after))
        if query.created_before is not None:
            conditions.add("created_at <", require_utc(query.created_before))
        if query.after is not None:
            at, call_id = query.after
            a, b = conditions.bind(require_utc(at)), conditions.bind(call_id)
            conditions.clauses.append(f"(created_at, id) < ({a}, {b})")
        limit = conditions.bind(check_limit(query.limit))
        async with self._connection() as conn:
            records = await conn.fetch(
                f"SELECT {CALL_COLUMNS} FROM calls {conditions.where()}"
                f" ORDER BY created_at DESC, id DESC LIMIT {limit}",
                *conditions.args,
            )
        return [call_from(record, require_utc) for record in records]

    async def add_call_event(self, event: CallEventRow) -> tuple[CallEventRow | None, CallRow]:
        async with self._connection() as conn, conn.transaction():
            # One writer of a tenant's events at a time: sequence order is commit order,
            # so a watcher reading "after N" never skips an event committed later.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('call_events:' || $1))", event.tenant_id
            )
            call = await conn.fetchrow(
                f"SELECT {CALL_COLUMNS} FROM calls WHERE id = $1 FOR UPDATE", event.call_id
            )
            if call is None:
                raise StoreError(f"call {event.call_id} is gone")
            current = call_from(call, require_utc)
            applied = event.status_rank is not None and event.status_rank > current.status_rank
            values = event_values(event, applied, require_utc)
            stored = await conn.fetchrow(
                f"INSERT INTO call_events ({EVENT_INSERT_COLUMNS}) VALUES ({_numbered(len(values))})"
                f" ON CONFLICT ON CONSTRAINT call_events_call_event_key DO NOTHING RETURNING {EVENT_COLUMNS}",
                *values,
            )
            if stored is None:
                return None, current
            if applied:
                call = await conn.fetchrow(
                    "UPDATE calls SET status = $2, status_rank = $3, provider_status = $4,"
                    " duration_ms = COALESCE($5, duration_ms),"
                    " answered_by = CASE WHEN $6 <> '' THEN $6 ELSE answered_by END,"
                    " error = CASE WHEN $7 <> '' THEN $7 ELSE error END, updated_at = $8"
                    f" WHERE id = $1 RETURNING {CALL_COLUMNS}",
                    event.call_id,
                    event.status,
                    event.status_rank,
                    event.provider_status,
                    event.duration_ms,
                    event.answered_by,
                    event.error,
                    require_utc(event.received_at),
                )
                current = call_from(call, require_utc)
            elif not event.status and event.answered_by:
                # Machine detection reports on its own, with no change of state.
                call = await conn.fetchrow(
                    "UPDATE calls SET answered_by = $2, updated_at = $3"
                    f" WHERE id = $1 RETURNING {CALL_COLUMNS}",
                    event.call_id,
                    event.answered_by,
                    require_utc(event.received_at),
                )
                current = call_from(call, require_utc)
        return event_from(stored, require_utc), current

    async def list_call_events(
        self, tenant_id: str, after_sequence: int, *, campaign_id: str | None = None, limit: int = 500
    ) -> list[tuple[CallEventRow, CallRow]]:
        conditions = Conditions(_placeholder)
        conditions.add("e.tenant_id =", tenant_id)
        conditions.add("e.sequence >", after_sequence)
        conditions.add_if_given("e.campaign_id =", campaign_id)
        limit_placeholder = conditions.bind(check_limit(limit))
        async with self._connection() as conn:
            records = await conn.fetch(
                f"SELECT {event_select('e_')}, {call_select()} FROM call_events e"
                f" JOIN calls c ON c.id = e.call_id {conditions.where()}"
                f" ORDER BY e.sequence LIMIT {limit_placeholder}",
                *conditions.args,
            )
        return [(event_from(r, require_utc, prefix="e_"), call_from(r, require_utc)) for r in records]

    async def last_call_event_sequence(self, tenant_id: str) -> int:
        async with self._connection() as conn:
            value = await conn.fetchval(
                "SELECT COALESCE(max(sequence), 0) FROM call_events WHERE tenant_id = $1", tenant_id
            )
        return int(value)
