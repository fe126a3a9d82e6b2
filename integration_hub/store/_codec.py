"""Conversions shared by the backends: JSON columns, UTC timestamps and rows.

Both backends read rows by column name (asyncpg.Record and sqlite3.Row both allow it),
so one set of converters serves both; only the timestamp decoding differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from .base import AuditEvent, CredentialRow, TokenRow


class Record(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


TimeDecoder = Callable[[Any], datetime]


def encode_str_dict(value: Mapping[str, str]) -> str:
    return json.dumps(dict(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def encode_str_list(value: Iterable[str]) -> str:
    return json.dumps(list(value), ensure_ascii=False, separators=(",", ":"))


def decode_str_dict(text: str) -> dict[str, str]:
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise TypeError(f"expected a JSON object, got {type(loaded).__name__}")
    return {str(key): str(value) for key, value in loaded.items()}


def decode_str_tuple(text: str) -> tuple[str, ...]:
    loaded = json.loads(text)
    if not isinstance(loaded, list):
        raise TypeError(f"expected a JSON array, got {type(loaded).__name__}")
    return tuple(str(item) for item in loaded)


def require_utc(moment: datetime) -> datetime:
    """Normalise an aware datetime to UTC; refuse naive ones rather than guess their zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime given to the store; pass a timezone-aware datetime")
    return moment.astimezone(UTC)


def utc_iso(moment: datetime) -> str:
    """Fixed-width ISO-8601 in UTC, so that text order is time order (SQLite columns)."""
    return require_utc(moment).isoformat(timespec="microseconds")


def utc_iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else utc_iso(moment)


def parse_utc_iso(text: str) -> datetime:
    return require_utc(datetime.fromisoformat(text))


def credential_from(record: Record, decode_time: TimeDecoder) -> CredentialRow:
    return CredentialRow(
        id=record["id"],
        tenant_id=record["tenant_id"],
        name=record["name"],
        provider=record["provider"],
        options=decode_str_dict(record["options"]),
        ciphertext=bytes(record["ciphertext"]),
        key_id=int(record["key_id"]),
        hint=record["hint"],
        secret_fields=decode_str_tuple(record["secret_fields"]),
        created_at=decode_time(record["created_at"]),
        updated_at=decode_time(record["updated_at"]),
        version=int(record["version"]),
    )


def token_from(record: Record, decode_time: TimeDecoder) -> TokenRow:
    expires_at, revoked_at = record["expires_at"], record["revoked_at"]
    return TokenRow(
        id=record["id"],
        tenant_id=record["tenant_id"],
        name=record["name"],
        token_hash=record["token_hash"],
        scopes=decode_str_tuple(record["scopes"]),
        created_at=decode_time(record["created_at"]),
        expires_at=None if expires_at is None else decode_time(expires_at),
        revoked_at=None if revoked_at is None else decode_time(revoked_at),
    )


def audit_event_from(record: Record, decode_time: TimeDecoder) -> AuditEvent:
    return AuditEvent(
        at=decode_time(record["at"]),
        action=record["action"],
        outcome=record["outcome"],
        tenant_id=record["tenant_id"],
        credential_id=record["credential_id"],
        actor=record["actor"],
        request_id=record["request_id"],
        detail=decode_str_dict(record["detail"]),
    )
