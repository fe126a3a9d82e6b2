"""The usage part of the Store contract (insert_usage_records, list_usage_records,
usage_totals): every test here runs against PostgresStore and SqliteStore alike, on
the `store` fixture of the contract suite. A few Postgres-only tests at the end prove
that the answers do not depend on the database's collation or the session's time zone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from integration_hub.store import PostgresStore, Store, StoreUnavailable
from integration_hub.store.base import UsageDimension, UsageQuery, UsageRow, UsageTotals

from .pg import TEST_DATABASE_PREFIX, admin_url, database_url, drop_test_database

T0 = datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC)
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def usage(**overrides: Any) -> UsageRow:
    row = UsageRow(
        at=T0,
        tenant_id="tenant-a",
        operation="chat",
        model="gpt-4o",
        status="OK",
        credential_id="cred_1",
        credential_name="main",
        provider="openai",
        input_tokens=10,
        output_tokens=5,
        cached_tokens=2,
        latency_ms=100.0,
        upstream_ms=80.0,
        request_id="req",
    )
    return replace(row, **overrides)


def query(**overrides: Any) -> UsageQuery:
    base = UsageQuery(tenant_id="tenant-a", start=WIDE[0], end=WIDE[1])
    return replace(base, **overrides)


def keys(totals: list[UsageTotals], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(getattr(t, f) for f in fields) for t in totals]


def requests_by(totals: list[UsageTotals], field: str) -> dict[Any, int]:
    return {getattr(t, field): t.requests for t in totals}


# --- writing and reading back ------------------------------------------------------------


async def test_rows_round_trip_every_field_newest_first_per_tenant(store: Store) -> None:
    first = usage(at=T0, route="fast", target="main/gpt-4o", reason="", request_id="r1")
    second = usage(
        at=T0 + timedelta(seconds=1, microseconds=7),
        status="UNAVAILABLE",
        reason="PROVIDER_UNAVAILABLE",
        operation="stream_chat",
        model="modèle-✓",
        request_id="r2",
        latency_ms=12.5,
        upstream_ms=0.0,
    )
    other = usage(tenant_id="tenant-b", request_id="r3")
    await store.insert_usage_records([first, second, other])
    assert await store.list_usage_records("tenant-a") == [second, first]
    assert await store.list_usage_records("tenant-a", limit=1) == [second]
    assert await store.list_usage_records("tenant-b") == [other]
    assert await store.list_usage_records("tenant-c") == []
    (stored,) = await store.list_usage_records("tenant-a", limit=1)
    assert stored.at.utcoffset() == timedelta(0)


async def test_times_in_another_offset_are_stored_as_the_same_instant(store: Store) -> None:
    at = datetime(2025, 6, 1, 20, 30, 0, 1, tzinfo=timezone(timedelta(hours=-5)))
    await store.insert_usage_records([usage(at=at)])
    (stored,) = await store.list_usage_records("tenant-a")
    assert stored.at == at
    assert stored.at.tzinfo is not None
    assert stored.at.utcoffset() == timedelta(0)


async def test_inserting_no_rows_is_a_no_op(store: Store) -> None:
    await store.insert_usage_records([])
    assert await store.list_usage_records("tenant-a") == []


async def test_a_batch_is_written_all_or_none(store: Store) -> None:
    # A negative count is refused by the table (usage_row never produces one): the whole
    # batch is refused, and not as an outage.
    batch = [usage(request_id="ok-1"), usage(input_tokens=-1), usage(request_id="ok-2")]
    # Postgres: 'violates check constraint'; SQLite: 'CHECK constraint failed'.
    with pytest.raises(Exception, match=r"(?i)check constraint") as raised:
        await store.insert_usage_records(batch)
    assert not isinstance(raised.value, StoreUnavailable)
    assert await store.list_usage_records("tenant-a") == []


async def test_a_batch_written_again_adds_only_the_rows_not_stored_yet(store: Store) -> None:
    # The recorder writes a batch again when an outage cut the answer to its commit: the
    # rows that did land (same record_id) are skipped, the others are added, once each.
    landed = [usage(request_id="r1", record_id="a" * 32), usage(request_id="r2", record_id="b" * 32)]
    await store.insert_usage_records(landed)
    again = [*landed, usage(request_id="r3", record_id="c" * 32)]
    await store.insert_usage_records(again)
    stored = await store.list_usage_records("tenant-a")
    assert sorted(row.request_id for row in stored) == ["r1", "r2", "r3"]
    assert {row.record_id for row in stored} == {"a" * 32, "b" * 32, "c" * 32}


async def test_rows_without_a_record_id_are_never_deduplicated(store: Store) -> None:
    await store.insert_usage_records([usage()] * 3)
    await store.insert_usage_records([usage()])
    (total,) = await store.usage_totals(query())
    assert total.requests == 4
    assert all(row.record_id == "" for row in await store.list_usage_records("tenant-a"))


async def test_a_duplicate_record_id_does_not_hide_a_refused_row(store: Store) -> None:
    # ON CONFLICT (record_id) skips only the duplicate: a CHECK violation in the same
    # batch still refuses it (INSERT OR IGNORE would have dropped that row silently).
    await store.insert_usage_records([usage(record_id="a" * 32)])
    with pytest.raises(Exception, match=r"(?i)check constraint"):
        await store.insert_usage_records([usage(record_id="a" * 32), usage(input_tokens=-1)])
    assert len(await store.list_usage_records("tenant-a")) == 1


async def test_a_large_batch_is_one_call(store: Store) -> None:
    rows = [usage(at=T0 + timedelta(microseconds=i), request_id=f"r{i}") for i in range(3000)]
    await store.insert_usage_records(rows)
    (total,) = await store.usage_totals(query())
    assert total.requests == 3000
    assert total.input_tokens == 30_000


# --- totals ---------------------------------------------------------------------------------


async def test_without_group_by_one_total_and_zeros_when_nothing_matched(store: Store) -> None:
    assert await store.usage_totals(query()) == [
        UsageTotals(
            requests=0,
            errors=0,
            input_tokens=0,
            output_tokens=0,
            cached_tokens=0,
            latency_ms_sum=0.0,
            upstream_ms_sum=0.0,
        )
    ]
    await store.insert_usage_records(
        [
            usage(),
            usage(status="UNAVAILABLE", input_tokens=0, output_tokens=0, cached_tokens=0, latency_ms=3.0),
            usage(status="CANCELLED", input_tokens=1, output_tokens=0, cached_tokens=0, upstream_ms=1.0),
        ]
    )
    (total,) = await store.usage_totals(query())
    assert (total.requests, total.errors) == (3, 2)
    assert (total.input_tokens, total.output_tokens, total.cached_tokens) == (11, 5, 2)
    assert total.latency_ms_sum == pytest.approx(203.0)
    assert total.upstream_ms_sum == pytest.approx(161.0)
    # Only the grouped keys are set.
    assert (total.credential_id, total.model, total.provider, total.operation, total.day) == (
        "",
        "",
        "",
        "",
        None,
    )


async def test_sums_beyond_32_bits_are_exact(store: Store) -> None:
    big = 2**32 - 1
    await store.insert_usage_records([usage(input_tokens=big, output_tokens=big, cached_tokens=big)] * 3)
    (total,) = await store.usage_totals(query())
    assert (total.input_tokens, total.output_tokens, total.cached_tokens) == (3 * big, 3 * big, 3 * big)


async def _insert_mixed(store: Store) -> None:
    await store.insert_usage_records(
        [
            usage(credential_id="c1", credential_name="main", model="gpt-4o", provider="openai"),
            usage(credential_id="c1", credential_name="main", model="gpt-4o-mini", provider="openai"),
            # c1 renamed: the name it had at the time of the call makes its own group.
            usage(credential_id="c1", credential_name="primary", model="gpt-4o", provider="openai"),
            usage(
                credential_id="c2",
                credential_name="claude",
                model="claude-sonnet",
                provider="anthropic",
                operation="stream_chat",
                status="UNAVAILABLE",
            ),
            usage(
                credential_id="c3",
                credential_name="embedder",
                model="text-embedding-3-small",
                provider="openai",
                operation="embed",
                output_tokens=0,
            ),
            usage(tenant_id="tenant-b", credential_id="c9", credential_name="theirs", model="gpt-4o"),
        ]
    )


async def test_group_by_credential_is_by_id_and_name_at_the_time(store: Store) -> None:
    await _insert_mixed(store)
    totals = await store.usage_totals(query(group_by=("credential",)))
    assert keys(totals, "credential_id", "credential_name", "requests") == [
        ("c1", "main", 2),
        ("c1", "primary", 1),
        ("c2", "claude", 1),
        ("c3", "embedder", 1),
    ]
    assert all(t.model == "" and t.provider == "" for t in totals)


@pytest.mark.parametrize(
    ("dimension", "expected"),
    [
        (
            "model",
            {"claude-sonnet": 1, "gpt-4o": 2, "gpt-4o-mini": 1, "text-embedding-3-small": 1},
        ),
        ("provider", {"anthropic": 1, "openai": 4}),
        ("operation", {"chat": 3, "embed": 1, "stream_chat": 1}),
    ],
)
async def test_group_by_each_dimension(
    store: Store, dimension: UsageDimension, expected: dict[str, int]
) -> None:
    await _insert_mixed(store)
    totals = await store.usage_totals(query(group_by=(dimension,)))
    assert requests_by(totals, dimension) == expected
    assert [getattr(t, dimension) for t in totals] == sorted(expected)  # ordered by the key


async def test_errors_and_tokens_are_summed_per_group(store: Store) -> None:
    await _insert_mixed(store)
    by_provider = {t.provider: t for t in await store.usage_totals(query(group_by=("provider",)))}
    assert (by_provider["anthropic"].requests, by_provider["anthropic"].errors) == (1, 1)
    assert by_provider["openai"].errors == 0
    assert by_provider["openai"].input_tokens == 40
    assert by_provider["openai"].output_tokens == 15  # the embed call has none


async def test_group_by_day_is_the_utc_calendar_day(store: Store) -> None:
    await store.insert_usage_records(
        [
            usage(at=datetime(2025, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)),
            usage(at=datetime(2025, 2, 1, 0, 0, 0, tzinfo=UTC)),
            # 20:30 at UTC-5 is 01:30 UTC the next day.
            usage(at=datetime(2025, 1, 31, 20, 30, tzinfo=timezone(timedelta(hours=-5)))),
            # 00:30 at UTC+2 is 22:30 UTC the day before.
            usage(at=datetime(2025, 2, 2, 0, 30, tzinfo=timezone(timedelta(hours=2)))),
        ]
    )
    totals = await store.usage_totals(query(group_by=("day",)))
    assert keys(totals, "day", "requests") == [(date(2025, 1, 31), 1), (date(2025, 2, 1), 3)]


async def test_group_by_several_dimensions_orders_by_them_in_the_order_asked(store: Store) -> None:
    day1, day2 = datetime(2025, 5, 1, 9, tzinfo=UTC), datetime(2025, 5, 2, 9, tzinfo=UTC)
    await store.insert_usage_records(
        [
            usage(at=day2, model="a"),
            usage(at=day1, model="b"),
            usage(at=day1, model="a"),
            usage(at=day1, model="a"),
        ]
    )
    by_model_day = await store.usage_totals(query(group_by=("model", "day")))
    assert keys(by_model_day, "model", "day", "requests") == [
        ("a", date(2025, 5, 1), 2),
        ("a", date(2025, 5, 2), 1),
        ("b", date(2025, 5, 1), 1),
    ]
    by_day_model = await store.usage_totals(query(group_by=("day", "model")))
    assert keys(by_day_model, "day", "model", "requests") == [
        (date(2025, 5, 1), "a", 2),
        (date(2025, 5, 1), "b", 1),
        (date(2025, 5, 2), "a", 1),
    ]


async def test_groups_are_in_code_point_order_on_every_backend(store: Store) -> None:
    models = ["b", "B", "a", "é", "Z", "a b", "ab", "_x", "😀", "ä", "10", "9"]
    await store.insert_usage_records([usage(model=m) for m in models])
    totals = await store.usage_totals(query(group_by=("model",)))
    assert [t.model for t in totals] == sorted(models)
    first_three = await store.usage_totals(query(group_by=("model",), limit=3))
    assert [t.model for t in first_three] == sorted(models)[:3]


# --- filters, range, limit ---------------------------------------------------------------------


async def test_credential_filter_matches_the_id_or_the_name_at_the_time(store: Store) -> None:
    await _insert_mixed(store)
    (by_id,) = await store.usage_totals(query(credential="c1"))
    assert by_id.requests == 3
    (by_old_name,) = await store.usage_totals(query(credential="main"))
    assert by_old_name.requests == 2
    (by_new_name,) = await store.usage_totals(query(credential="primary"))
    assert by_new_name.requests == 1
    (other_tenants,) = await store.usage_totals(query(credential="c9"))
    assert other_tenants.requests == 0


async def test_model_and_provider_filters_combine(store: Store) -> None:
    await _insert_mixed(store)
    (gpt4o,) = await store.usage_totals(query(model="gpt-4o"))
    assert gpt4o.requests == 2  # tenant-b's gpt-4o call is not counted
    (openai,) = await store.usage_totals(query(provider="openai"))
    assert openai.requests == 4
    (both,) = await store.usage_totals(query(provider="anthropic", model="gpt-4o"))
    assert both.requests == 0
    grouped = await store.usage_totals(query(provider="openai", credential="c1", group_by=("model",)))
    assert requests_by(grouped, "model") == {"gpt-4o": 2, "gpt-4o-mini": 1}


async def test_each_tenant_sees_only_its_own_calls(store: Store) -> None:
    await _insert_mixed(store)
    (b,) = await store.usage_totals(query(tenant_id="tenant-b"))
    assert b.requests == 1
    (nobody,) = await store.usage_totals(query(tenant_id="tenant-z"))
    assert nobody.requests == 0
    assert [t.credential_id for t in await store.usage_totals(query(group_by=("credential",)))] == [
        "c1",
        "c1",
        "c2",
        "c3",
    ]


async def test_range_is_start_inclusive_end_exclusive_to_the_microsecond(store: Store) -> None:
    tick = timedelta(microseconds=1)
    await store.insert_usage_records(
        [
            usage(at=T0 - tick, request_id="before"),
            usage(at=T0, request_id="at-start"),
            usage(at=T0 + timedelta(hours=1) - tick, request_id="last-inside"),
            usage(at=T0 + timedelta(hours=1), request_id="at-end"),
        ]
    )
    (inside,) = await store.usage_totals(query(start=T0, end=T0 + timedelta(hours=1)))
    assert inside.requests == 2
    (nothing,) = await store.usage_totals(query(start=T0 + tick, end=T0 + tick * 2))
    assert nothing.requests == 0
    # Bounds given in another offset mean the same instants.
    minus_five = timezone(timedelta(hours=-5))
    (same,) = await store.usage_totals(
        query(start=T0.astimezone(minus_five), end=(T0 + timedelta(hours=1)).astimezone(minus_five))
    )
    assert same.requests == 2


async def test_limit_keeps_the_first_groups_in_key_order(store: Store) -> None:
    await _insert_mixed(store)
    limited = await store.usage_totals(query(group_by=("model",), limit=2))
    assert [t.model for t in limited] == ["claude-sonnet", "gpt-4o"]
    assert await store.usage_totals(query(group_by=("model",), limit=0)) == []
    assert len(await store.usage_totals(query(group_by=("model",), limit=100))) == 4
    with pytest.raises(ValueError, match="limit"):
        await store.usage_totals(query(group_by=("model",), limit=-1))


async def test_extreme_but_valid_ranges(store: Store) -> None:
    await store.insert_usage_records([usage()])
    earliest = datetime(1, 1, 1, tzinfo=UTC)
    latest = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    (everything,) = await store.usage_totals(query(start=earliest, end=latest))
    assert everything.requests == 1


# --- Postgres: independent of the database's collation and the session's time zone ----------


@pytest_asyncio.fixture
async def icu_new_york_database() -> AsyncIterator[str]:
    """A migrated database whose default collation is ICU English (not code point order) and
    whose sessions run in America/New_York, unlike the test server's C.UTF-8 / UTC defaults."""
    admin = admin_url()
    name = f"{TEST_DATABASE_PREFIX}usage_icu_{datetime.now().strftime('%H%M%S%f')}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'"
            " LOCALE 'C.UTF-8'"
        )
        await conn.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'")
    finally:
        await conn.close()
    url = database_url(admin, name)
    try:
        store = PostgresStore(url, max_size=2)
        await store.connect()
        await store.migrate()
        await store.close()
        yield url
    finally:
        await drop_test_database(url)


async def test_postgres_orders_groups_by_code_point_under_an_icu_collation(
    icu_new_york_database: str,
) -> None:
    store = PostgresStore(icu_new_york_database, max_size=2)
    await store.connect()
    try:
        conn = await asyncpg.connect(icu_new_york_database)
        try:
            # The premise: this database's own ORDER BY is not code point order.
            ordered = await conn.fetch("SELECT v FROM unnest(ARRAY['b', 'B', 'a']) AS v ORDER BY v")
            assert [r["v"] for r in ordered] != sorted(["b", "B", "a"])
            assert await conn.fetchval("SHOW timezone") == "America/New_York"
        finally:
            await conn.close()
        models = ["b", "B", "a", "é", "Z", "a b", "ab", "_x", "ä", "10", "9"]
        await store.insert_usage_records([usage(model=m) for m in models])
        totals = await store.usage_totals(query(group_by=("model",)))
        assert [t.model for t in totals] == sorted(models)
        limited = await store.usage_totals(query(group_by=("model",), limit=4))
        assert [t.model for t in limited] == sorted(models)[:4]
        # 23:30 UTC is 18:30 in New York on the same day, and 01:30 UTC is the evening before
        # there: the day is the UTC one whatever the session's zone.
        await store.insert_usage_records(
            [
                usage(at=datetime(2025, 7, 1, 1, 30, tzinfo=UTC), model="day"),
                usage(at=datetime(2025, 7, 1, 23, 30, tzinfo=UTC), model="day"),
            ]
        )
        days = await store.usage_totals(query(model="day", group_by=("day",)))
        assert keys(days, "day", "requests") == [(date(2025, 7, 1), 2)]
    finally:
        await store.close()
