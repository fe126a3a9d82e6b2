"""Campaign SQL shared by the backends: column lists, the fixed queries, row converters.

Every query is assembled from these constant fragments; every value is a bound parameter.
Placeholders are written as {p1}, {p2}, ... and formatted per backend ($1, or SQLite's
numbered ?1, which may also appear more than once), so that both run the same statements.
"""

# ruff: noqa: S608
# The statements are constants assembled from constant fragments; values are bound.

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from ._calls_sql import decode_json_object, encode_json
from ._codec import Record, TimeDecoder
from .campaigns import (
    CallingWindow,
    CampaignRow,
    CampaignStateName,
    NumberRow,
    RetryRule,
    RowStateName,
    Watched,
)

CAMPAIGN_COLUMNS = (
    "id, tenant_id, credential_id, name, from_number, action, state, calls_per_second,"
    " max_concurrent_calls, retry, calling_window, ring_timeout, time_limit, machine_detection,"
    " total_rows, created_at, updated_at"
)
CAMPAIGN_COLUMN_COUNT = len(CAMPAIGN_COLUMNS.split(","))
ROW_COLUMNS = (
    "campaign_id, row_index, to_number, variables, state, attempts, unplaced, next_attempt_at, slot_at,"
    " last_call_id, outcome, error, claimed_by, claimed_until, updated_at"
)
# What a new row is inserted with (the rest take their defaults).
ROW_INSERT_COLUMNS = "campaign_id, row_index, to_number, variables, state, next_attempt_at, updated_at"

# A calling row's call: the calls row of its campaign, row and current attempt.
_ATTEMPT_CALL = "c.campaign_id = r.campaign_id AND c.campaign_row = r.row_index AND c.attempt = r.attempts"


def placeholders(sql: str, style: Callable[[int], str], count: int = 12) -> str:
    return sql.format(**{f"p{i}": style(i) for i in range(1, count + 1)})


# Live rows of every campaign on a credential (for max_concurrent_calls).
COUNT_LIVE = (
    "SELECT count(*) FROM campaign_rows r JOIN campaigns c ON c.id = r.campaign_id"
    " WHERE c.credential_id = {p1} AND c.state <> 'completed' AND r.state = 'calling'"
)
PENDING_DUE = (
    "SELECT row_index, to_number, variables, attempts FROM campaign_rows"
    " WHERE campaign_id = {p1} AND state = 'pending' AND next_attempt_at <= {p2}"
    " ORDER BY row_index LIMIT {p3}"
)
# Calling rows whose call ended, or is older than the lost-call bound.
WATCHED = (
    "SELECT r.row_index, r.attempts, r.unplaced, c.id AS call_id, c.status, c.status_rank,"
    " c.provider_call_id, c.error, c.created_at,"
    " EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = c.id) AS has_events"
    f" FROM campaign_rows r JOIN calls c ON {_ATTEMPT_CALL}"
    " WHERE r.campaign_id = {p1} AND r.state = 'calling' AND (c.status_rank >= 3 OR c.created_at < {p2})"
)
# Claims whose lease ran out with no call stored for their attempt.
ORPHANS = (
    "SELECT r.row_index, r.attempts FROM campaign_rows r"
    " WHERE r.campaign_id = {p1} AND r.state = 'calling' AND r.claimed_until < {p2}"
    f" AND NOT EXISTS (SELECT 1 FROM calls c WHERE {_ATTEMPT_CALL})"
)
STILL_OPEN = (
    "SELECT EXISTS (SELECT 1 FROM campaign_rows WHERE campaign_id = {p1} AND state IN ('pending', 'calling'))"
)
COMPLETE = (
    "UPDATE campaigns SET state = 'completed', updated_at = {p2}"
    " WHERE id = {p1} AND state IN ('running', 'paused') AND NOT EXISTS"
    " (SELECT 1 FROM campaign_rows WHERE campaign_id = {p1} AND state IN ('pending', 'calling'))"
    " RETURNING id"
)
COUNTS = (
    "SELECT state, outcome, count(*) AS n FROM campaign_rows WHERE campaign_id = {p1} GROUP BY state, outcome"
)
ACTIVE = (
    f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE state IN ('running', 'paused') OR (state = 'canceled'"
    " AND EXISTS (SELECT 1 FROM campaign_rows r WHERE r.campaign_id = campaigns.id AND r.state = 'calling'))"
    " ORDER BY created_at, id"
)
CANCEL_PENDING = (
    "UPDATE campaign_rows SET state = 'canceled', updated_at = {p2}"
    " WHERE campaign_id = {p1} AND state = 'pending'"
)
# A claim given back: release_state() of the campaign's state, the attempt number returned.
RELEASE = (
    "UPDATE campaign_rows SET"
    " state = CASE WHEN (SELECT state FROM campaigns WHERE id = {p1}) = 'canceled'"
    " THEN 'canceled' ELSE 'pending' END,"
    " attempts = attempts - 1, next_attempt_at = {p5}, slot_at = NULL, claimed_by = NULL,"
    " claimed_until = NULL, updated_at = {p5}"
    " WHERE campaign_id = {p1} AND row_index = {p2} AND attempts = {p3} AND claimed_by = {p4}"
    " AND state = 'calling'"
    " AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.campaign_id = {p1} AND c.campaign_row = {p2}"
    " AND c.attempt = {p3})"
)
FAIL_CLAIM = (
    "UPDATE campaign_rows SET state = 'done', outcome = 'failed', error = {p4}, slot_at = NULL,"
    " claimed_by = NULL, claimed_until = NULL, updated_at = {p5}"
    " WHERE campaign_id = {p1} AND row_index = {p2} AND attempts = {p3} AND state = 'calling'"
    " AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.campaign_id = {p1} AND c.campaign_row = {p2}"
    " AND c.attempt = {p3})"
)
# A call that never reached the provider, found by decide(): failed, unless it moved on.
# The current attempt's calls of a campaign's calling rows, past their longest life and
# not ended, whose reconciliation lease is free (the caller appends its locking clause).
LOST_CALLS = (
    "SELECT c.id FROM campaign_rows r JOIN calls c ON " + _ATTEMPT_CALL + " WHERE r.campaign_id = {p1}"
    " AND r.state = 'calling' AND c.status_rank < 3 AND c.created_at < {p2}"
    " AND (c.reconcile_until IS NULL OR c.reconcile_until < {p3}) ORDER BY c.created_at LIMIT {p5}"
)


def campaign_values(row: CampaignRow, encode_time: Callable[[Any], Any]) -> tuple[Any, ...]:
    """The campaign's values in CAMPAIGN_COLUMNS order."""
    retry = {"on": list(row.retry.on), "max_attempts": row.retry.max_attempts, "delay_ms": row.retry.delay_ms}
    window = None
    if row.window is not None:
        window = encode_json(
            {"time_zone": row.window.time_zone, "start": row.window.start, "end": row.window.end}
        )
    return (
        row.id,
        row.tenant_id,
        row.credential_id,
        row.name,
        row.from_number,
        encode_json(dict(row.action)),
        row.state,
        float(row.calls_per_second),
        row.max_concurrent_calls,
        encode_json(retry),
        window,
        row.ring_timeout,
        row.time_limit,
        row.machine_detection,
        row.total_rows,
        encode_time(row.created_at),
        encode_time(row.updated_at),
    )


def campaign_from(record: Record, decode_time: TimeDecoder) -> CampaignRow:
    retry = decode_json_object(record["retry"])
    window_value = record["calling_window"]
    window = None
    if window_value is not None:
        fields = decode_json_object(window_value)
        window = CallingWindow(str(fields["time_zone"]), str(fields["start"]), str(fields["end"]))
    return CampaignRow(
        id=record["id"],
        tenant_id=record["tenant_id"],
        credential_id=record["credential_id"],
        name=record["name"],
        from_number=record["from_number"],
        action=decode_json_object(record["action"]),
        state=cast(CampaignStateName, record["state"]),
        calls_per_second=float(record["calls_per_second"]),
        max_concurrent_calls=int(record["max_concurrent_calls"]),
        retry=RetryRule(
            on=tuple(str(s) for s in retry.get("on", [])),
            max_attempts=int(retry.get("max_attempts", 1)),
            delay_ms=int(retry.get("delay_ms", 0)),
        ),
        window=window,
        ring_timeout=record["ring_timeout"],
        time_limit=record["time_limit"],
        machine_detection=record["machine_detection"],
        total_rows=int(record["total_rows"]),
        created_at=decode_time(record["created_at"]),
        updated_at=decode_time(record["updated_at"]),
    )


def str_dict(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in decode_json_object(value).items()}


def encode_variables(variables: Mapping[str, str]) -> str:
    return encode_json(dict(variables))


def number_from(record: Record, decode_time: TimeDecoder) -> NumberRow:
    def time_or_none(value: Any) -> Any:
        return None if value is None else decode_time(value)

    return NumberRow(
        campaign_id=record["campaign_id"],
        row_index=int(record["row_index"]),
        to_number=record["to_number"],
        variables=str_dict(record["variables"]),
        state=cast(RowStateName, record["state"]),
        attempts=int(record["attempts"]),
        unplaced=int(record["unplaced"]),
        next_attempt_at=decode_time(record["next_attempt_at"]),
        slot_at=time_or_none(record["slot_at"]),
        last_call_id=record["last_call_id"],
        outcome=record["outcome"],
        error=record["error"],
        claimed_by=record["claimed_by"],
        claimed_until=time_or_none(record["claimed_until"]),
        updated_at=decode_time(record["updated_at"]),
    )


def watched_from(record: Record, decode_time: TimeDecoder) -> Watched:
    return Watched(
        row_index=int(record["row_index"]),
        attempts=int(record["attempts"]),
        unplaced=int(record["unplaced"]),
        call_id=record["call_id"],
        status=record["status"],
        status_rank=int(record["status_rank"]),
        provider_call_id=record["provider_call_id"],
        error=record["error"],
        created_at=decode_time(record["created_at"]),
        has_events=bool(record["has_events"]),
    )
