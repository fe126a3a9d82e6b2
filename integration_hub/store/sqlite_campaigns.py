"""CampaignStore on SQLite (mixed into SqliteStore, whose one connection it uses).

Every read-decide-write runs in a BEGIN IMMEDIATE transaction: SQLite has one writer at
a time across processes, so a claim, an outcome pass and a state change are serialised
without row locks, and two workers (of `serve --workers N` on one file) never take the
same row. Batches go in as one statement over json_each (see sqlite.py's _from_json_rows).
"""

# ruff: noqa: S608
# Every query is built from the constant fragments of _campaigns_sql.py; values are bound.

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import orjson

from ._calls_sql import CALL_COLUMNS, call_from
from ._campaigns_sql import (
    ACTIVE,
    CAMPAIGN_COLUMN_COUNT,
    CAMPAIGN_COLUMNS,
    CANCEL_PENDING,
    COMPLETE,
    COUNT_LIVE,
    COUNTS,
    FAIL_CLAIM,
    LOST_CALLS,
    ORPHANS,
    PENDING_DUE,
    RELEASE,
    ROW_COLUMNS,
    ROW_INSERT_COLUMNS,
    STILL_OPEN,
    WATCHED,
    campaign_from,
    campaign_values,
    encode_variables,
    number_from,
    placeholders,
    str_dict,
    watched_from,
)
from ._codec import parse_utc_iso, utc_iso
from ._sql import check_limit
from .calls import CallRow
from .campaigns import (
    CampaignCounts,
    CampaignRow,
    CampaignStateName,
    Claim,
    ClaimRequest,
    Decision,
    NewNumber,
    NumberRow,
    OutcomeRules,
    counts_from,
    decide,
    next_free_slot,
    release_state,
    reserve_slots,
)
from .sqlite_calls import _immediate

INSERT_CHUNK = 10_000


def _lite(sql: str) -> str:
    return placeholders(sql, lambda i: f"?{i}")


_STATE = "SELECT state FROM campaigns WHERE id = ?"


def _json(rows: Sequence[Any]) -> str:
    return orjson.dumps(rows).decode()


class SqliteCampaigns:
    # A mixin of SqliteStore, whose connection it uses (declared for the type checker).
    _connection: Callable[[], AbstractAsyncContextManager[Any]]

    async def _all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        async with self._connection() as conn, conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def _changes(self, sql: str, params: Sequence[Any]) -> int:
        async with self._connection() as conn, conn.execute(sql, tuple(params)) as cursor:
            return int(cursor.rowcount)

    async def insert_campaign(self, campaign: CampaignRow, numbers: Sequence[NewNumber]) -> None:
        marks = ", ".join("?" * CAMPAIGN_COLUMN_COUNT)
        at = utc_iso(campaign.created_at)
        async with self._connection() as conn, _immediate(conn):
            await conn.execute(
                f"INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES ({marks})",
                campaign_values(campaign, utc_iso),
            )
            await conn.execute(
                "INSERT INTO campaign_pacing (credential_id, next_slot_at) VALUES (?, ?)"
                " ON CONFLICT (credential_id) DO NOTHING",
                (campaign.credential_id, at),
            )
            for start in range(0, len(numbers), INSERT_CHUNK):
                chunk = numbers[start : start + INSERT_CHUNK]
                rows = [(start + i, n.to_number, encode_variables(n.variables)) for i, n in enumerate(chunk)]
                await conn.execute(
                    f"INSERT INTO campaign_rows ({ROW_INSERT_COLUMNS})"
                    " SELECT ?1, value ->> 0, value ->> 1, value ->> 2, 'pending', ?2, ?2 FROM json_each(?3)",
                    (campaign.id, at, _json(rows)),
                )

    async def get_campaign(self, tenant_id: str, campaign_id: str) -> CampaignRow | None:
        records = await self._all(
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ? AND tenant_id = ?",
            (campaign_id, tenant_id),
        )
        return campaign_from(records[0], parse_utc_iso) if records else None

    async def campaign_state(self, campaign_id: str) -> CampaignStateName | None:
        records = await self._all("SELECT state FROM campaigns WHERE id = ?", (campaign_id,))
        state: CampaignStateName | None = records[0][0] if records else None
        return state

    async def campaign_counts(self, campaign_id: str) -> CampaignCounts:
        records = await self._all(_lite(COUNTS), (campaign_id,))
        return counts_from([(r["state"], r["outcome"], int(r["n"])) for r in records])

    async def set_campaign_state(
        self,
        tenant_id: str,
        campaign_id: str,
        state: CampaignStateName,
        *,
        from_states: Sequence[CampaignStateName],
        now: datetime,
    ) -> CampaignRow | None:
        at = utc_iso(now)
        async with self._connection() as conn, _immediate(conn):
            async with conn.execute(
                f"UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ? AND tenant_id = ?"
                f" AND state IN (SELECT value FROM json_each(?)) RETURNING {CAMPAIGN_COLUMNS}",
                (state, at, campaign_id, tenant_id, _json(list(from_states))),
            ) as cursor:
                record = await cursor.fetchone()
            if record is not None and state == "canceled":
                await conn.execute(_lite(CANCEL_PENDING), (campaign_id, at))
        return None if record is None else campaign_from(record, parse_utc_iso)

    async def active_campaigns(self) -> list[CampaignRow]:
        return [campaign_from(r, parse_utc_iso) for r in await self._all(ACTIVE, ())]

    async def claim_campaign_rows(self, request: ClaimRequest) -> list[Claim]:
        now = utc_iso(request.now)
        async with self._connection() as conn, _immediate(conn):
            async with conn.execute(
                "SELECT next_slot_at FROM campaign_pacing WHERE credential_id = ?", (request.credential_id,)
            ) as cursor:
                pacing = await cursor.fetchone()
            if pacing is None:
                await conn.execute(
                    "INSERT INTO campaign_pacing (credential_id, next_slot_at) VALUES (?, ?)",
                    (request.credential_id, now),
                )
                next_slot = request.now
            else:
                next_slot = parse_utc_iso(pacing[0])
            async with conn.execute(
                "SELECT state FROM campaigns WHERE id = ?", (request.campaign_id,)
            ) as cursor:
                state = await cursor.fetchone()
            if state is None or state[0] != "running":
                return []
            async with conn.execute(_lite(COUNT_LIVE), (request.credential_id,)) as cursor:
                live = await cursor.fetchone()
            room = min(request.limit, request.max_concurrent_calls - int(live[0]))
            slots = reserve_slots(next_slot, request.now, request.horizon, request.calls_per_second, room)
            if not slots:
                return []
            async with conn.execute(_lite(PENDING_DUE), (request.campaign_id, now, len(slots))) as cursor:
                records = list(await cursor.fetchall())
            if not records:
                return []
            slots = slots[: len(records)]
            indexes = [int(r["row_index"]) for r in records]
            await conn.execute(
                "UPDATE campaign_rows SET state = 'calling', attempts = attempts + 1, slot_at = u.slot,"
                " claimed_by = ?2, claimed_until = ?3, updated_at = ?4"
                " FROM (SELECT value ->> 0 AS row_index, value ->> 1 AS slot FROM json_each(?5)) AS u"
                " WHERE campaign_rows.campaign_id = ?1 AND campaign_rows.row_index = u.row_index",
                (
                    request.campaign_id,
                    request.worker_id,
                    utc_iso(request.lease_until),
                    now,
                    _json([(i, utc_iso(s)) for i, s in zip(indexes, slots, strict=True)]),
                ),
            )
            await conn.execute(
                "UPDATE campaign_pacing SET next_slot_at = ? WHERE credential_id = ?",
                (utc_iso(next_free_slot(slots, request.calls_per_second)), request.credential_id),
            )
        return [
            Claim(
                campaign_id=request.campaign_id,
                row_index=index,
                to_number=record["to_number"],
                variables=str_dict(record["variables"]),
                attempt=int(record["attempts"]) + 1,
                slot_at=slot,
            )
            for index, record, slot in zip(indexes, records, slots, strict=True)
        ]

    async def release_campaign_claim(
        self, campaign_id: str, row_index: int, attempt: int, worker_id: str, now: datetime
    ) -> bool:
        return (
            await self._changes(_lite(RELEASE), (campaign_id, row_index, attempt, worker_id, utc_iso(now)))
            > 0
        )

    async def fail_campaign_claim(
        self, campaign_id: str, row_index: int, attempt: int, error: str, now: datetime
    ) -> bool:
        return (
            await self._changes(
                _lite(FAIL_CLAIM), (campaign_id, row_index, attempt, error[:500], utc_iso(now))
            )
            > 0
        )

    async def apply_campaign_outcomes(self, rules: OutcomeRules) -> tuple[int, bool]:
        now = utc_iso(rules.now)
        moved = 0
        async with self._connection() as conn, _immediate(conn):
            async with conn.execute(
                "SELECT state FROM campaigns WHERE id = ?", (rules.campaign_id,)
            ) as cursor:
                found = await cursor.fetchone()
            if found is None:
                return 0, False
            state = str(found[0])
            async with conn.execute(
                _lite(WATCHED), (rules.campaign_id, utc_iso(rules.lost_before))
            ) as cursor:
                records = list(await cursor.fetchall())
            decisions: list[Decision] = []
            for record in records:
                decision = decide(watched_from(record, parse_utc_iso), rules, state)
                if decision is None:
                    continue
                decisions.append(decision)
            if decisions:
                rows = [
                    (
                        d.row_index,
                        d.state,
                        d.attempts,
                        d.unplaced,
                        utc_iso(d.next_attempt_at),
                        d.outcome,
                        d.error[:500],
                        d.last_call_id,
                    )
                    for d in decisions
                ]
                await conn.execute(
                    "UPDATE campaign_rows SET state = u.state, attempts = u.attempts,"
                    " unplaced = u.unplaced, next_attempt_at = u.next, outcome = u.outcome,"
                    " error = u.error, last_call_id = u.call_id, claimed_by = NULL,"
                    " claimed_until = NULL, updated_at = ?2"
                    " FROM (SELECT value ->> 0 AS row_index, value ->> 1 AS state,"
                    " value ->> 2 AS attempts, value ->> 3 AS unplaced, value ->> 4 AS next,"
                    " value ->> 5 AS outcome, value ->> 6 AS error, value ->> 7 AS call_id"
                    " FROM json_each(?3)) AS u"
                    " WHERE campaign_rows.campaign_id = ?1 AND campaign_rows.row_index = u.row_index",
                    (rules.campaign_id, now, _json(rows)),
                )
                moved += len(decisions)
            async with conn.execute(_lite(ORPHANS), (rules.campaign_id, now)) as cursor:
                orphans = [int(r[0]) for r in await cursor.fetchall()]
            if orphans:
                async with conn.execute(
                    "UPDATE campaign_rows SET state = ?3, attempts = attempts - 1, next_attempt_at = ?2,"
                    " slot_at = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = ?2"
                    " WHERE campaign_id = ?1 AND state = 'calling'"
                    " AND row_index IN (SELECT value FROM json_each(?4))",
                    (rules.campaign_id, now, release_state(state), _json(orphans)),
                ) as cursor:
                    moved += int(cursor.rowcount)
            async with conn.execute(_lite(STILL_OPEN), (rules.campaign_id,)) as cursor:
                still = await cursor.fetchone()
        return moved, bool(still[0])

    async def complete_campaign(self, campaign_id: str, now: datetime) -> bool:
        return bool(await self._all(_lite(COMPLETE), (campaign_id, utc_iso(now))))

    async def claim_lost_campaign_calls(
        self, campaign_id: str, *, lost_before: datetime, now: datetime, lease_until: datetime, limit: int
    ) -> list[CallRow]:
        # One statement under SQLite's single writer: two workers never take the same call.
        sql = (
            f"UPDATE calls SET reconcile_until = ?4 WHERE id IN ({_lite(LOST_CALLS)})"
            f" RETURNING {CALL_COLUMNS}"
        )
        params = (campaign_id, utc_iso(lost_before), utc_iso(now), utc_iso(lease_until), check_limit(limit))
        async with self._connection() as conn, conn.execute(sql, params) as cursor:
            records = await cursor.fetchall()
        return [call_from(record, parse_utc_iso) for record in records]

    async def campaign_call(self, campaign_id: str, row_index: int, attempt: int) -> CallRow | None:
        records = await self._all(
            f"SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ? AND campaign_row = ? AND attempt = ?",
            (campaign_id, row_index, attempt),
        )
        return call_from(records[0], parse_utc_iso) if records else None

    async def list_campaign_rows(
        self, campaign_id: str, *, after_row: int = -1, limit: int = 1000
    ) -> list[NumberRow]:
        records = await self._all(
            f"SELECT {ROW_COLUMNS} FROM campaign_rows WHERE campaign_id = ? AND row_index > ?"
            " ORDER BY row_index LIMIT ?",
            (campaign_id, after_row, check_limit(limit)),
        )
        return [number_from(r, parse_utc_iso) for r in records]
