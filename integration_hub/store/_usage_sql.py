"""Usage accounting SQL shared by the backends: the column list, the totals query and
the row converters. The dialects differ only in placeholders, how a timestamp is
bound, how the UTC day of a timestamp is computed and how text is ordered by code
point; those are passed in.

Every query is assembled from the constant fragments below; every value is a bound
parameter, never SQL text.
"""

# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from ._codec import Record, TimeDecoder
from ._sql import Conditions, check_limit
from .base import UsageDimension, UsageQuery, UsageRow, UsageTotals

USAGE_COLUMNS = (
    "at, tenant_id, credential_id, credential_name, provider, model, operation, route, target,"
    " input_tokens, output_tokens, cached_tokens, latency_ms, upstream_ms, status, reason, request_id,"
    " record_id, audio_seconds, characters"
)
USAGE_COLUMN_NAMES = tuple(name.strip() for name in USAGE_COLUMNS.split(","))

# The result columns each dimension adds to a group's key; "day" is the dialect's expression.
_KEY_COLUMNS: dict[UsageDimension, tuple[str, ...]] = {
    "credential": ("credential_id", "credential_name"),
    "model": ("model",),
    "provider": ("provider",),
    "operation": ("operation",),
    "day": ("day",),
}

# Portable aggregates (CASE, not FILTER, which SQLite lacks). Sums of no rows are NULL:
# the converter reads them as 0.
_SUMS = (
    "count(*) AS requests, sum(CASE WHEN status <> 'OK' THEN 1 ELSE 0 END) AS errors,"
    " sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,"
    " sum(cached_tokens) AS cached_tokens, sum(latency_ms) AS latency_ms_sum,"
    " sum(upstream_ms) AS upstream_ms_sum, sum(audio_seconds) AS audio_seconds,"
    " sum(characters) AS characters"
)


def usage_values(row: UsageRow, encode_time: Callable[[Any], Any]) -> tuple[Any, ...]:
    """The row's values in USAGE_COLUMNS order."""
    return (
        encode_time(row.at),
        row.tenant_id,
        row.credential_id,
        row.credential_name,
        row.provider,
        row.model,
        row.operation,
        row.route,
        row.target,
        row.input_tokens,
        row.output_tokens,
        row.cached_tokens,
        row.latency_ms,
        row.upstream_ms,
        row.status,
        row.reason,
        row.request_id,
        row.record_id or None,
        row.audio_seconds,
        row.characters,
    )


def usage_totals_sql(
    query: UsageQuery,
    *,
    placeholder: Callable[[int], str],
    encode_time: Callable[[Any], Any],
    day_expression: str,
    code_point_order: str = "",
) -> tuple[str, list[Any]]:
    """The GROUP BY query answering `query`, and its parameters.

    `code_point_order` follows each text key in ORDER BY so that groups come in code
    point order on every backend (and LIMIT keeps the same ones): Postgres orders text
    by the database's collation unless told otherwise (' COLLATE "C"'); SQLite's
    default BINARY collation already is code point order ("").
    """
    conditions = Conditions(placeholder)
    conditions.add("tenant_id =", query.tenant_id)
    conditions.add("at >=", encode_time(query.start))
    conditions.add("at <", encode_time(query.end))
    if query.credential is not None:
        by_id, by_name = conditions.bind(query.credential), conditions.bind(query.credential)
        conditions.clauses.append(f"(credential_id = {by_id} OR credential_name = {by_name})")
    conditions.add_if_given("model =", query.model)
    conditions.add_if_given("provider =", query.provider)
    expressions = [
        day_expression if column == "day" else column
        for dimension in query.group_by
        for column in _KEY_COLUMNS[dimension]
    ]
    names = [column for dimension in query.group_by for column in _KEY_COLUMNS[dimension]]
    select = [f"{expression} AS {name}" for expression, name in zip(expressions, names, strict=True)]
    sql = f"SELECT {', '.join([*select, _SUMS])} FROM usage_records {conditions.where()}"
    if expressions:
        order = [
            expression if name == "day" else f"{expression}{code_point_order}"
            for expression, name in zip(expressions, names, strict=True)
        ]
        sql += f" GROUP BY {', '.join(expressions)} ORDER BY {', '.join(order)}"
    if query.limit is not None:
        sql += f" LIMIT {conditions.bind(check_limit(query.limit))}"
    return sql, conditions.args


def usage_totals_from(record: Record, group_by: tuple[UsageDimension, ...]) -> UsageTotals:
    keys: dict[str, Any] = {
        column: record[column] for dimension in group_by for column in _KEY_COLUMNS[dimension]
    }
    if "day" in keys:
        # Postgres answers a date, SQLite the text "YYYY-MM-DD".
        day = keys["day"]
        keys["day"] = day if isinstance(day, date) else date.fromisoformat(day)
    return UsageTotals(
        requests=int(record["requests"]),
        errors=int(record["errors"] or 0),
        input_tokens=int(record["input_tokens"] or 0),
        output_tokens=int(record["output_tokens"] or 0),
        cached_tokens=int(record["cached_tokens"] or 0),
        latency_ms_sum=float(record["latency_ms_sum"] or 0.0),
        upstream_ms_sum=float(record["upstream_ms_sum"] or 0.0),
        audio_seconds=float(record["audio_seconds"] or 0.0),
        characters=int(record["characters"] or 0),
        **keys,
    )


def usage_row_from(record: Record, decode_time: TimeDecoder) -> UsageRow:
    return UsageRow(
        at=decode_time(record["at"]),
        tenant_id=record["tenant_id"],
        credential_id=record["credential_id"],
        credential_name=record["credential_name"],
        provider=record["provider"],
        model=record["model"],
        operation=record["operation"],
        route=record["route"],
        target=record["target"],
        input_tokens=int(record["input_tokens"]),
        output_tokens=int(record["output_tokens"]),
        cached_tokens=int(record["cached_tokens"]),
        latency_ms=float(record["latency_ms"]),
        upstream_ms=float(record["upstream_ms"]),
        status=record["status"],
        reason=record["reason"],
        request_id=record["request_id"],
        record_id=record["record_id"] or "",
        audio_seconds=float(record["audio_seconds"]),
        characters=int(record["characters"]),
    )
