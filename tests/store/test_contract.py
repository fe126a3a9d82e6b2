"""The Store contract: every test here runs against PostgresStore and SqliteStore alike."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from integration_hub.store import (
    CredentialRow,
    DuplicateName,
    StaleWrite,
    Store,
    StoreError,
    StoreUnavailable,
    open_store,
)
from integration_hub.store.migrations import Dialect, load_migrations

from .rows import NOW, make_audit_event, make_credential, make_token

# --- lifecycle and migrations ---------------------------------------------------------


async def test_ping_succeeds_on_a_connected_store(store: Store) -> None:
    await store.ping()


async def test_migrate_again_applies_nothing(store: Store) -> None:
    assert await store.migrate() == []


async def test_methods_before_connect_raise_store_unavailable(fresh_database_url: str) -> None:
    unconnected = open_store(fresh_database_url)
    with pytest.raises(StoreUnavailable, match="not connected"):
        await unconnected.ping()


async def test_close_twice_is_harmless(fresh_database_url: str) -> None:
    store = open_store(fresh_database_url)
    await store.connect()
    await store.close()
    await store.close()


async def test_concurrent_migrations_from_two_stores_apply_each_file_once(fresh_database_url: str) -> None:
    first, second = open_store(fresh_database_url), open_store(fresh_database_url)
    await asyncio.gather(first.connect(), second.connect())
    try:
        applied_by_first, applied_by_second = await asyncio.gather(first.migrate(), second.migrate())
        dialect: Dialect = "postgres" if fresh_database_url.startswith("postgres") else "sqlite"
        every_migration = [m.name for m in load_migrations(dialect)]
        assert sorted(applied_by_first + applied_by_second) == every_migration
        assert await first.migrate() == []
        assert await second.migrate() == []
        # Both see a working schema.
        await first.insert_credential(make_credential())
        assert len(await second.list_credentials("tenant-a", provider=None, after_name=None, limit=10)) == 1
    finally:
        await asyncio.gather(first.close(), second.close())


# --- credentials: round trips -----------------------------------------------------------


async def test_inserted_credential_reads_back_equal_by_id_and_by_name(store: Store) -> None:
    row = make_credential()
    await store.insert_credential(row)
    assert await store.get_credential(row.tenant_id, row.id) == row
    assert await store.get_credential_by_name(row.tenant_id, row.name) == row


async def test_ciphertext_round_trips_every_byte_value(store: Store) -> None:
    every_byte = bytes(range(256))
    row = make_credential(ciphertext=every_byte + every_byte[::-1])
    await store.insert_credential(row)
    stored = await store.get_credential(row.tenant_id, row.id)
    assert stored is not None
    assert stored.ciphertext == every_byte + every_byte[::-1]
    assert isinstance(stored.ciphertext, bytes)


async def test_text_and_json_fields_round_trip_unicode_and_escapes(store: Store) -> None:
    tricky = 'ключ 🔑 "quoted" \\back\\slash\n\ttab'
    row = make_credential(
        name=tricky,
        hint=tricky,
        options={tricky: tricky, "empty": ""},
        secret_fields=("api_key", tricky),
    )
    await store.insert_credential(row)
    assert await store.get_credential_by_name(row.tenant_id, tricky) == row


async def test_empty_options_and_secret_fields_round_trip(store: Store) -> None:
    row = make_credential(options={}, secret_fields=())
    await store.insert_credential(row)
    assert await store.get_credential(row.tenant_id, row.id) == row


async def test_datetimes_come_back_aware_in_utc_with_microseconds(store: Store) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    created = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=india)
    row = make_credential(created_at=created, updated_at=created + timedelta(microseconds=1))
    await store.insert_credential(row)
    stored = await store.get_credential(row.tenant_id, row.id)
    assert stored is not None
    assert stored.created_at == created
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.updated_at - stored.created_at == timedelta(microseconds=1)


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.insert_credential(make_credential(created_at=datetime(2025, 1, 1)))


async def test_unknown_credential_reads_as_none(store: Store) -> None:
    assert await store.get_credential("tenant-a", "cred_missing") is None
    assert await store.get_credential_by_name("tenant-a", "missing") is None


# --- credentials: uniqueness ------------------------------------------------------------


async def test_duplicate_name_in_one_tenant_raises_duplicate_name(store: Store) -> None:
    await store.insert_credential(make_credential(name="prod"))
    with pytest.raises(DuplicateName):
        await store.insert_credential(make_credential(name="prod"))


async def test_same_name_in_another_tenant_is_allowed(store: Store) -> None:
    await store.insert_credential(make_credential(tenant_id="tenant-a", name="prod"))
    await store.insert_credential(make_credential(tenant_id="tenant-b", name="prod"))


async def test_duplicate_id_is_a_store_error_but_not_a_name_clash(store: Store) -> None:
    row = make_credential(name="first")
    await store.insert_credential(row)
    with pytest.raises(StoreError) as raised:
        await store.insert_credential(replace(row, name="second"))
    assert not isinstance(raised.value, DuplicateName)


# --- credentials: listing ---------------------------------------------------------------


async def _insert_named(store: Store, names: list[str], **fields: object) -> None:
    for name in names:
        await store.insert_credential(make_credential(name=name, **fields))


def _names(rows: list[CredentialRow]) -> list[str]:
    return [row.name for row in rows]


async def test_list_pages_through_names_with_an_exclusive_cursor(store: Store) -> None:
    names = [f"cred-{i:02d}" for i in (7, 3, 5, 1, 6, 2, 4)]
    await _insert_named(store, names)
    pages: list[list[str]] = []
    cursor: str | None = None
    while page := await store.list_credentials("tenant-a", provider=None, after_name=cursor, limit=3):
        pages.append(_names(page))
        cursor = page[-1].name
    assert pages == [
        ["cred-01", "cred-02", "cred-03"],
        ["cred-04", "cred-05", "cred-06"],
        ["cred-07"],
    ]


async def test_list_orders_names_by_code_point_on_every_backend(store: Store) -> None:
    names = ["b", "B", "a", "é", "Z", "a b", "ab", "_x", "😀", "ä", "10", "9"]
    await _insert_named(store, names)
    rows = await store.list_credentials("tenant-a", provider=None, after_name=None, limit=100)
    assert _names(rows) == sorted(names)
    after_b = await store.list_credentials("tenant-a", provider=None, after_name="b", limit=100)
    assert _names(after_b) == [n for n in sorted(names) if n > "b"]


async def test_list_filters_by_provider_and_pages_within_it(store: Store) -> None:
    await _insert_named(store, ["o1", "o2", "o3"], provider="openai")
    await _insert_named(store, ["a1", "z9"], provider="azure_openai")
    first = await store.list_credentials("tenant-a", provider="openai", after_name=None, limit=2)
    assert _names(first) == ["o1", "o2"]
    rest = await store.list_credentials("tenant-a", provider="openai", after_name="o2", limit=2)
    assert _names(rest) == ["o3"]
    azure = await store.list_credentials("tenant-a", provider="azure_openai", after_name=None, limit=10)
    assert _names(azure) == ["a1", "z9"]
    assert await store.list_credentials("tenant-a", provider="none", after_name=None, limit=10) == []


async def test_list_limit_zero_is_empty_and_negative_is_refused(store: Store) -> None:
    await _insert_named(store, ["one"])
    assert await store.list_credentials("tenant-a", provider=None, after_name=None, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        await store.list_credentials("tenant-a", provider=None, after_name=None, limit=-1)


# --- credentials: compare-and-swap updates ----------------------------------------------


async def test_update_writes_every_field_and_bumps_the_version(store: Store) -> None:
    row = make_credential()
    await store.insert_credential(row)
    later = NOW + timedelta(hours=1)
    changed = replace(
        row,
        name="renamed",
        provider="openrouter",
        options={"base_url": "https://openrouter.ai/api/v1"},
        ciphertext=b"\x02resealed",
        key_id=2,
        hint="sk-...zz99",
        secret_fields=("api_key", "org_key"),
        updated_at=later,
    )
    stored = await store.update_credential(changed, expected_version=1)
    assert stored == replace(changed, version=2)
    assert await store.get_credential(row.tenant_id, row.id) == stored


async def test_update_keeps_created_at(store: Store) -> None:
    row = make_credential()
    await store.insert_credential(row)
    stored = await store.update_credential(
        replace(row, created_at=NOW + timedelta(days=9)), expected_version=1
    )
    assert stored.created_at == NOW


async def test_update_against_a_moved_version_raises_stale_write(store: Store) -> None:
    row = make_credential()
    await store.insert_credential(row)
    await store.update_credential(replace(row, hint="first"), expected_version=1)
    with pytest.raises(StaleWrite):
        await store.update_credential(replace(row, hint="second"), expected_version=1)
    stored = await store.get_credential(row.tenant_id, row.id)
    assert stored is not None
    assert (stored.hint, stored.version) == ("first", 2)


async def test_update_of_a_deleted_row_raises_stale_write(store: Store) -> None:
    row = make_credential()
    with pytest.raises(StaleWrite):
        await store.update_credential(row, expected_version=1)


async def test_concurrent_updates_from_one_version_have_exactly_one_winner(store: Store) -> None:
    row = make_credential()
    await store.insert_credential(row)
    attempts = [replace(row, hint=f"writer-{i}") for i in range(5)]
    outcomes = await asyncio.gather(
        *(store.update_credential(attempt, expected_version=1) for attempt in attempts),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, CredentialRow)]
    losers = [o for o in outcomes if isinstance(o, StaleWrite)]
    assert (len(winners), len(losers)) == (1, 4), outcomes
    assert await store.get_credential(row.tenant_id, row.id) == winners[0]
    assert winners[0].version == 2


async def test_rename_onto_an_existing_name_raises_duplicate_name(store: Store) -> None:
    taken = make_credential(name="taken")
    row = make_credential(name="free")
    await store.insert_credential(taken)
    await store.insert_credential(row)
    with pytest.raises(DuplicateName):
        await store.update_credential(replace(row, name="taken"), expected_version=1)
    assert await store.get_credential(row.tenant_id, row.id) == row


# --- credentials: tenant isolation and deletion -----------------------------------------


async def test_another_tenant_cannot_see_update_or_delete_a_credential(store: Store) -> None:
    row = make_credential(tenant_id="tenant-a")
    await store.insert_credential(row)
    assert await store.get_credential("tenant-b", row.id) is None
    assert await store.get_credential_by_name("tenant-b", row.name) is None
    assert await store.list_credentials("tenant-b", provider=None, after_name=None, limit=10) == []
    assert await store.delete_credential("tenant-b", row.id) is False
    with pytest.raises(StaleWrite):
        await store.update_credential(replace(row, tenant_id="tenant-b"), expected_version=1)
    assert await store.get_credential("tenant-a", row.id) == row


async def test_delete_removes_the_row_once(store: Store) -> None:
    row = make_credential()
    await store.insert_credential(row)
    assert await store.delete_credential(row.tenant_id, row.id) is True
    assert await store.delete_credential(row.tenant_id, row.id) is False
    assert await store.get_credential(row.tenant_id, row.id) is None


# --- credentials: key bookkeeping -------------------------------------------------------


async def test_credentials_not_under_key_spans_tenants_in_id_order_with_a_cursor(store: Store) -> None:
    rows = [
        make_credential(id="c-05", tenant_id="tenant-a", name="x", key_id=1),
        make_credential(id="c-01", tenant_id="tenant-b", name="x", key_id=1),
        make_credential(id="c-03", tenant_id="tenant-c", name="x", key_id=2),
        make_credential(id="c-02", tenant_id="tenant-a", name="y", key_id=3),
        make_credential(id="c-04", tenant_id="tenant-b", name="y", key_id=1),
    ]
    for row in rows:
        await store.insert_credential(row)
    first = await store.credentials_not_under_key(3, after_id=None, limit=2)
    assert [r.id for r in first] == ["c-01", "c-03"]
    second = await store.credentials_not_under_key(3, after_id="c-03", limit=2)
    assert [r.id for r in second] == ["c-04", "c-05"]
    assert await store.credentials_not_under_key(3, after_id="c-05", limit=2) == []
    assert {r.tenant_id for r in first + second} == {"tenant-a", "tenant-b", "tenant-c"}
    assert [r.id for r in await store.credentials_not_under_key(1, after_id=None, limit=9)] == [
        "c-02",
        "c-03",
    ]


async def test_count_credentials_by_key(store: Store) -> None:
    assert await store.count_credentials_by_key() == {}
    for key_id, name in [(1, "a"), (1, "b"), (2, "c")]:
        await store.insert_credential(make_credential(key_id=key_id, name=name))
    await store.insert_credential(make_credential(key_id=1, name="a", tenant_id="tenant-b"))
    assert await store.count_credentials_by_key() == {1: 3, 2: 1}


# --- key usage --------------------------------------------------------------------------


async def test_add_encryptions_accumulates_per_key(store: Store) -> None:
    assert await store.encryption_counts() == {}
    await store.add_encryptions(1, 5)
    await store.add_encryptions(1, 7)
    await store.add_encryptions(2, 1)
    assert await store.encryption_counts() == {1: 12, 2: 1}


async def test_concurrent_add_encryptions_lose_no_increment(store: Store) -> None:
    await asyncio.gather(*(store.add_encryptions(9, 3) for _ in range(20)))
    assert await store.encryption_counts() == {9: 60}


async def test_add_encryptions_handles_counts_beyond_32_bits(store: Store) -> None:
    await store.add_encryptions(1, 2**32)
    await store.add_encryptions(1, 2**32)
    assert await store.encryption_counts() == {1: 2**33}


async def test_negative_encryption_count_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        await store.add_encryptions(1, -1)


# --- tokens -----------------------------------------------------------------------------


async def test_token_round_trips_by_hash(store: Store) -> None:
    token = make_token(expires_at=NOW + timedelta(days=30))
    await store.insert_token(token)
    assert await store.get_token_by_hash(token.token_hash) == token
    assert await store.get_token_by_hash("0" * 64) is None


async def test_duplicate_token_hash_is_a_store_error(store: Store) -> None:
    token = make_token()
    await store.insert_token(token)
    with pytest.raises(StoreError):
        await store.insert_token(make_token(token_hash=token.token_hash))


async def test_list_tokens_by_tenant_or_all_in_creation_order(store: Store) -> None:
    late = make_token(tenant_id="tenant-a", created_at=NOW + timedelta(minutes=2))
    early = make_token(tenant_id="tenant-a", created_at=NOW)
    other = make_token(tenant_id="tenant-b", created_at=NOW + timedelta(minutes=1))
    for token in (late, early, other):
        await store.insert_token(token)
    assert await store.list_tokens("tenant-a") == [early, late]
    assert await store.list_tokens(None) == [early, other, late]
    assert await store.list_tokens("tenant-z") == []


async def test_revoke_sets_revoked_at_once_and_returns_the_row(store: Store) -> None:
    token = make_token()
    await store.insert_token(token)
    first = NOW + timedelta(hours=1)
    revoked = await store.revoke_token(token.id, first)
    assert revoked == replace(token, revoked_at=first)
    again = await store.revoke_token(token.id, first + timedelta(hours=1))
    assert again is not None
    assert again.revoked_at == first
    assert await store.get_token_by_hash(token.token_hash) == revoked


async def test_revoking_an_unknown_token_returns_none(store: Store) -> None:
    assert await store.revoke_token("tok_missing", NOW) is None


# --- audit ------------------------------------------------------------------------------


async def test_audit_events_list_newest_first(store: Store) -> None:
    events = [make_audit_event(at=NOW + timedelta(seconds=s), request_id=f"r{s}") for s in (2, 0, 1)]
    await store.insert_audit_events(events)
    listed = await store.list_audit_events()
    assert [e.request_id for e in listed] == ["r2", "r1", "r0"]
    assert listed[0] == events[0]


async def test_audit_events_at_the_same_instant_list_latest_inserted_first(store: Store) -> None:
    await store.insert_audit_events([make_audit_event(request_id="first")])
    await store.insert_audit_events([make_audit_event(request_id="second")])
    assert [e.request_id for e in await store.list_audit_events()] == ["second", "first"]


async def test_audit_events_filter_by_tenant_and_action_with_limit(store: Store) -> None:
    await store.insert_audit_events(
        [
            make_audit_event(tenant_id="tenant-a", action="credential.decrypt", at=NOW),
            make_audit_event(tenant_id="tenant-a", action="credential.create", at=NOW + timedelta(seconds=1)),
            make_audit_event(
                tenant_id="tenant-b", action="credential.decrypt", at=NOW + timedelta(seconds=2)
            ),
            make_audit_event(tenant_id="", action="key.rotate", outcome="error", actor="cli", detail={}),
        ]
    )
    by_tenant = await store.list_audit_events(tenant_id="tenant-a")
    assert [e.action for e in by_tenant] == ["credential.create", "credential.decrypt"]
    by_action = await store.list_audit_events(action="credential.decrypt")
    assert [e.tenant_id for e in by_action] == ["tenant-b", "tenant-a"]
    both = await store.list_audit_events(tenant_id="tenant-a", action="credential.decrypt")
    assert len(both) == 1
    assert len(await store.list_audit_events(limit=2)) == 2
    (rotation,) = await store.list_audit_events(action="key.rotate")
    assert (rotation.tenant_id, rotation.outcome, rotation.detail) == ("", "error", {})


async def test_audit_event_fields_and_times_round_trip(store: Store) -> None:
    event = make_audit_event(
        at=datetime(2025, 6, 1, 8, 30, 0, 1, tzinfo=timezone(timedelta(hours=-7))),
        detail={"reason": "scope missing: credentials:write", "ñ": "✓"},
    )
    await store.insert_audit_events([event])
    (stored,) = await store.list_audit_events()
    assert stored == event
    assert stored.at.tzinfo is not None
    assert stored.at.utcoffset() == timedelta(0)
    assert stored.at == event.at.astimezone(UTC)


async def test_inserting_no_audit_events_is_a_no_op(store: Store) -> None:
    await store.insert_audit_events([])
    assert await store.list_audit_events() == []
