"""Telephony SQL shared by the backends: column lists and row converters.

Every query is assembled from these constant fragments; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ._codec import Record, TimeDecoder, decode_str_dict
from .calls import CallEventRow, CallRow

CALL_COLUMNS = (
    "id, tenant_id, credential_id, credential_name, provider, provider_call_id, to_number, from_number,"
    " status, status_rank, provider_status, action, metadata, token_hash, idempotency_key, campaign_id,"
    " campaign_row, attempt, duration_ms, answered_by, error, created_at, updated_at"
)
CALL_COLUMN_NAMES = tuple(name.strip() for name in CALL_COLUMNS.split(","))
EVENT_COLUMNS = (
    "sequence, call_id, tenant_id, campaign_id, event_id, status, provider_status, occurred_at,"
    " received_at, duration_ms, answered_by, error, applied, raw"
)
# The columns an insert gives (sequence is the database's).
EVENT_INSERT_COLUMNS = EVENT_COLUMNS.removeprefix("sequence, ")


def encode_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def decode_json_object(value: Any) -> dict[str, Any]:
    # asyncpg hands jsonb over as text (no codec registered); SQLite stores text.
    decoded = orjson.loads(value) if isinstance(value, str | bytes) else value
    return dict(decoded) if isinstance(decoded, dict) else {}


def call_values(row: CallRow, encode_time: Callable[[Any], Any]) -> tuple[Any, ...]:
    """The row's values in CALL_COLUMNS order."""
    return (
        row.id,
        row.tenant_id,
        row.credential_id,
        row.credential_name,
        row.provider,
        row.provider_call_id,
        row.to_number,
        row.from_number,
        row.status,
        row.status_rank,
        row.provider_status,
        encode_json(dict(row.action)),
        encode_json(dict(row.metadata)),
        row.token_hash,
        row.idempotency_key,
        row.campaign_id,
        row.campaign_row,
        row.attempt,
        row.duration_ms,
        row.answered_by,
        row.error,
        encode_time(row.created_at),
        encode_time(row.updated_at),
    )


def event_values(event: CallEventRow, applied: bool, encode_time: Callable[[Any], Any]) -> tuple[Any, ...]:
    """The event's values in EVENT_INSERT_COLUMNS order."""
    return (
        event.call_id,
        event.tenant_id,
        event.campaign_id,
        event.event_id,
        event.status,
        event.provider_status,
        None if event.occurred_at is None else encode_time(event.occurred_at),
        encode_time(event.received_at),
        event.duration_ms,
        event.answered_by,
        event.error,
        applied,
        encode_json(dict(event.raw)),
    )


def call_from(record: Record, decode_time: TimeDecoder) -> CallRow:
    return CallRow(
        id=record["id"],
        tenant_id=record["tenant_id"],
        credential_id=record["credential_id"],
        credential_name=record["credential_name"],
        provider=record["provider"],
        provider_call_id=record["provider_call_id"],
        to_number=record["to_number"],
        from_number=record["from_number"],
        status=record["status"],
        status_rank=int(record["status_rank"]),
        provider_status=record["provider_status"],
        action=decode_json_object(record["action"]),
        metadata=decode_str_dict(record["metadata"]),
        token_hash=record["token_hash"],
        idempotency_key=record["idempotency_key"],
        campaign_id=record["campaign_id"],
        campaign_row=record["campaign_row"],
        attempt=int(record["attempt"]),
        duration_ms=record["duration_ms"],
        answered_by=record["answered_by"],
        error=record["error"],
        created_at=decode_time(record["created_at"]),
        updated_at=decode_time(record["updated_at"]),
    )


def event_from(record: Record, decode_time: TimeDecoder, *, prefix: str = "") -> CallEventRow:
    """An event from its columns, read as `prefix` + name (joined queries alias them)."""

    def col(name: str) -> Any:
        return record[prefix + name]

    occurred = col("occurred_at")
    return CallEventRow(
        sequence=int(col("sequence")),
        call_id=col("call_id"),
        tenant_id=col("tenant_id"),
        campaign_id=col("campaign_id"),
        event_id=col("event_id"),
        status=col("status"),
        provider_status=col("provider_status"),
        occurred_at=None if occurred is None else decode_time(occurred),
        received_at=decode_time(col("received_at")),
        duration_ms=col("duration_ms"),
        answered_by=col("answered_by"),
        error=col("error"),
        applied=bool(col("applied")),
        raw={str(k): str(v) for k, v in decode_json_object(col("raw")).items()},
    )


def event_select(alias_prefix: str) -> str:
    """The event columns of table alias e, each renamed to alias_prefix + name."""
    return ", ".join(f"e.{c.strip()} AS {alias_prefix}{c.strip()}" for c in EVENT_COLUMNS.split(","))


def call_select() -> str:
    return ", ".join(f"c.{name}" for name in CALL_COLUMN_NAMES)
