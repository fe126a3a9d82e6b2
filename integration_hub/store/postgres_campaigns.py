"""CampaignStore on Postgres (mixed into PostgresStore, whose connection pool it uses).

Locks, always taken in this order so that no two transactions wait on each other in a
circle: the credential's campaign_pacing row (claims only, FOR UPDATE SKIP LOCKED: a
worker that finds it taken claims nothing this round instead of queueing), the campaign
(FOR SHARE by claims and outcome passes, FOR UPDATE by a state change, so a pause or a
cancel waits for a claim in progress and every later claim sees it), its rows (FOR
UPDATE SKIP LOCKED: two workers never take the same row), then calls (the outcome pass,
so that a provider event and the lost-call check serialise on the call).
"""

# ruff: noqa: S608
# Every query is built from the constant fragments of _campaigns_sql.py; values are bound.

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

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
from ._codec import require_utc
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

INSERT_CHUNK = 5000


def _pg(sql: str) -> str:
    return placeholders(sql, lambda i: f"${i}")


def _changed(status: str) -> int:
    # asyncpg answers an UPDATE with its command tag, e.g. "UPDATE 1".
    return int(status.rsplit(" ", 1)[-1])


class PostgresCampaigns:
    # A mixin of PostgresStore, whose connection it uses (declared for the type checker).
    _connection: Callable[[], AbstractAsyncContextManager[Any]]

    async def insert_campaign(self, campaign: CampaignRow, numbers: Sequence[NewNumber]) -> None:
        values = campaign_values(campaign, require_utc)
        marks = ", ".join(f"${i}" for i in range(1, CAMPAIGN_COLUMN_COUNT + 1))
        at = require_utc(campaign.created_at)
        async with self._connection() as conn, conn.transaction():
            await conn.execute(f"INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES ({marks})", *values)
            await conn.execute(
                "INSERT INTO campaign_pacing (credential_id, next_slot_at) VALUES ($1, $2)"
                " ON CONFLICT (credential_id) DO NOTHING",
                campaign.credential_id,
                at,
            )
            for start in range(0, len(numbers), INSERT_CHUNK):
                chunk = numbers[start : start + INSERT_CHUNK]
                await conn.execute(
                    f"INSERT INTO campaign_rows ({ROW_INSERT_COLUMNS})"
                    " SELECT $1, u.i, u.t, u.v::jsonb, 'pending', $2, $2"
                    " FROM unnest($3::bigint[], $4::text[], $5::text[]) AS u(i, t, v)",
                    campaign.id,
                    at,
                    list(range(start, start + len(chunk))),
                    [n.to_number for n in chunk],
                    [encode_variables(n.variables) for n in chunk],
                )

    async def get_campaign(self, tenant_id: str, campaign_id: str) -> CampaignRow | None:
        async with self._connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1 AND tenant_id = $2",
                campaign_id,
                tenant_id,
            )
        return None if record is None else campaign_from(record, require_utc)

    async def campaign_state(self, campaign_id: str) -> CampaignStateName | None:
        async with self._connection() as conn:
            state: CampaignStateName | None = await conn.fetchval(
                "SELECT state FROM campaigns WHERE id = $1", campaign_id
            )
        return state

    async def campaign_counts(self, campaign_id: str) -> CampaignCounts:
        async with self._connection() as conn:
            records = await conn.fetch(_pg(COUNTS), campaign_id)
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
        at = require_utc(now)
        async with self._connection() as conn, conn.transaction():
            record = await conn.fetchrow(
                f"UPDATE campaigns SET state = $3, updated_at = $4"
                f" WHERE id = $1 AND tenant_id = $2 AND state = ANY($5::text[]) RETURNING {CAMPAIGN_COLUMNS}",
                campaign_id,
                tenant_id,
                state,
                at,
                list(from_states),
            )
            if record is not None and state == "canceled":
                await conn.execute(_pg(CANCEL_PENDING), campaign_id, at)
        return None if record is None else campaign_from(record, require_utc)

    async def active_campaigns(self) -> list[CampaignRow]:
        async with self._connection() as conn:
            records = await conn.fetch(ACTIVE)
        return [campaign_from(r, require_utc) for r in records]

    async def claim_campaign_rows(self, request: ClaimRequest) -> list[Claim]:
        now = require_utc(request.now)
        async with self._connection() as conn, conn.transaction():
            pacing = await conn.fetchrow(
                "SELECT next_slot_at FROM campaign_pacing WHERE credential_id = $1 FOR UPDATE SKIP LOCKED",
                request.credential_id,
            )
            if pacing is None:
                # Taken by another worker's claim (or missing: made for the next round).
                await conn.execute(
                    "INSERT INTO campaign_pacing (credential_id, next_slot_at) VALUES ($1, $2)"
                    " ON CONFLICT (credential_id) DO NOTHING",
                    request.credential_id,
                    now,
                )
                return []
            state = await conn.fetchval(
                "SELECT state FROM campaigns WHERE id = $1 FOR SHARE", request.campaign_id
            )
            if state != "running":
                return []
            live = int(await conn.fetchval(_pg(COUNT_LIVE), request.credential_id))
            room = min(request.limit, request.max_concurrent_calls - live)
            slots = reserve_slots(
                pacing["next_slot_at"], now, require_utc(request.horizon), request.calls_per_second, room
            )
            if not slots:
                return []
            records = await conn.fetch(
                _pg(PENDING_DUE) + " FOR UPDATE SKIP LOCKED", request.campaign_id, now, len(slots)
            )
            if not records:
                return []
            slots = slots[: len(records)]
            indexes = [int(r["row_index"]) for r in records]
            await conn.execute(
                "UPDATE campaign_rows r SET state = 'calling', attempts = r.attempts + 1, slot_at = u.slot,"
                " claimed_by = $2, claimed_until = $3, updated_at = $4"
                " FROM unnest($5::bigint[], $6::timestamptz[]) AS u(row_index, slot)"
                " WHERE r.campaign_id = $1 AND r.row_index = u.row_index",
                request.campaign_id,
                request.worker_id,
                require_utc(request.lease_until),
                now,
                indexes,
                slots,
            )
            await conn.execute(
                "UPDATE campaign_pacing SET next_slot_at = $2 WHERE credential_id = $1",
                request.credential_id,
                next_free_slot(slots, request.calls_per_second),
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
        async with self._connection() as conn:
            status = await conn.execute(
                _pg(RELEASE), campaign_id, row_index, attempt, worker_id, require_utc(now)
            )
        return _changed(status) > 0

    async def fail_campaign_claim(
        self, campaign_id: str, row_index: int, attempt: int, error: str, now: datetime
    ) -> bool:
        async with self._connection() as conn:
            status = await conn.execute(
                _pg(FAIL_CLAIM), campaign_id, row_index, attempt, error[:500], require_utc(now)
            )
        return _changed(status) > 0

    async def apply_campaign_outcomes(self, rules: OutcomeRules) -> tuple[int, bool]:
        now = require_utc(rules.now)
        moved = 0
        async with self._connection() as conn, conn.transaction():
            state = await conn.fetchval(
                "SELECT state FROM campaigns WHERE id = $1 FOR SHARE", rules.campaign_id
            )
            if state is None:
                return 0, False
            records = await conn.fetch(
                _pg(WATCHED) + " FOR UPDATE OF r, c SKIP LOCKED",
                rules.campaign_id,
                require_utc(rules.lost_before),
            )
            decisions: list[Decision] = []
            for record in records:
                decision = decide(watched_from(record, require_utc), rules, state)
                if decision is None:
                    continue
                decisions.append(decision)
            if decisions:
                await conn.execute(
                    "UPDATE campaign_rows r SET state = u.state, attempts = u.attempts,"
                    " unplaced = u.unplaced, next_attempt_at = u.next, outcome = u.outcome,"
                    " error = u.error, last_call_id = u.call_id, claimed_by = NULL,"
                    " claimed_until = NULL, updated_at = $2"
                    " FROM unnest($3::bigint[], $4::text[], $5::int[], $6::int[], $7::timestamptz[],"
                    " $8::text[], $9::text[], $10::text[])"
                    " AS u(row_index, state, attempts, unplaced, next, outcome, error, call_id)"
                    " WHERE r.campaign_id = $1 AND r.row_index = u.row_index",
                    rules.campaign_id,
                    now,
                    [d.row_index for d in decisions],
                    [d.state for d in decisions],
                    [d.attempts for d in decisions],
                    [d.unplaced for d in decisions],
                    [d.next_attempt_at for d in decisions],
                    [d.outcome for d in decisions],
                    [d.error[:500] for d in decisions],
                    [d.last_call_id for d in decisions],
                )
                moved += len(decisions)
            orphans = await conn.fetch(_pg(ORPHANS) + " FOR UPDATE OF r SKIP LOCKED", rules.campaign_id, now)
            if orphans:
                status = await conn.execute(
                    "UPDATE campaign_rows SET state = $3, attempts = attempts - 1, next_attempt_at = $2,"
                    " slot_at = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = $2"
                    " WHERE campaign_id = $1 AND row_index = ANY($4::bigint[]) AND state = 'calling'",
                    rules.campaign_id,
                    now,
                    release_state(state),
                    [int(r["row_index"]) for r in orphans],
                )
                moved += _changed(status)
            still_open = bool(await conn.fetchval(_pg(STILL_OPEN), rules.campaign_id))
        return moved, still_open

    async def complete_campaign(self, campaign_id: str, now: datetime) -> bool:
        async with self._connection() as conn:
            done = await conn.fetchval(_pg(COMPLETE), campaign_id, require_utc(now))
        return done is not None

    async def claim_lost_campaign_calls(
        self, campaign_id: str, *, lost_before: datetime, now: datetime, lease_until: datetime, limit: int
    ) -> list[CallRow]:
        async with self._connection() as conn:
            records = await conn.fetch(
                f"UPDATE calls SET reconcile_until = $4 WHERE id IN ({_pg(LOST_CALLS)}"
                f" FOR UPDATE OF c SKIP LOCKED) RETURNING {CALL_COLUMNS}",
                campaign_id,
                require_utc(lost_before),
                require_utc(now),
                require_utc(lease_until),
                check_limit(limit),
            )
        return [call_from(record, require_utc) for record in records]

    async def campaign_call(self, campaign_id: str, row_index: int, attempt: int) -> CallRow | None:
        async with self._connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {CALL_COLUMNS} FROM calls"
                " WHERE campaign_id = $1 AND campaign_row = $2 AND attempt = $3",
                campaign_id,
                row_index,
                attempt,
            )
        return None if record is None else call_from(record, require_utc)

    async def list_campaign_rows(
        self, campaign_id: str, *, after_row: int = -1, limit: int = 1000
    ) -> list[NumberRow]:
        async with self._connection() as conn:
            records = await conn.fetch(
                f"SELECT {ROW_COLUMNS} FROM campaign_rows WHERE campaign_id = $1 AND row_index > $2"
                " ORDER BY row_index LIMIT $3",
                campaign_id,
                after_row,
                check_limit(limit),
            )
        return [number_from(r, require_utc) for r in records]
