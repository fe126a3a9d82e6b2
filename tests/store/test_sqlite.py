"""SqliteStore specifics: file creation and permissions, pragmas, and error mapping."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from integration_hub.store import SqliteStore, StoreUnavailable
from integration_hub.store.sqlite import DATABASE_FILE_MODE

from .rows import make_credential


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _open(path: Path) -> SqliteStore:
    store = SqliteStore(str(path))
    await store.connect()
    await store.migrate()
    return store


async def test_creates_missing_parent_directories_and_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "hub.db"
    store = await _open(path)
    try:
        await store.insert_credential(make_credential())
        assert _mode(path) == DATABASE_FILE_MODE == 0o600
        # Written data sits in the WAL until a checkpoint: it must be owner-only too.
        assert _mode(path.with_name("hub.db-wal")) == 0o600
    finally:
        await store.close()


async def test_tightens_the_mode_of_an_existing_database_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    store = await _open(path)
    await store.close()
    assert _mode(path) == 0o600


async def test_uses_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = SqliteStore(str(path), busy_timeout_ms=1234)
    await store.connect()
    try:
        conn = store._conn  # the pragmas below are per connection
        assert conn is not None
        async with conn.execute("PRAGMA foreign_keys") as cursor:
            assert (await cursor.fetchone())[0] == 1  # type: ignore[index]
        async with conn.execute("PRAGMA busy_timeout") as cursor:
            assert (await cursor.fetchone())[0] == 1234  # type: ignore[index]
    finally:
        await store.close()
    # journal_mode=WAL is persistent: a plain connection sees it.
    with closing(sqlite3.connect(path)) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_survives_a_reopen_with_data_and_migrations_intact(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    row = make_credential()
    store = await _open(path)
    await store.insert_credential(row)
    await store.close()
    reopened = SqliteStore(str(path))
    await reopened.connect()
    try:
        assert await reopened.migrate() == []
        assert await reopened.get_credential(row.tenant_id, row.id) == row
    finally:
        await reopened.close()


async def test_in_memory_database_works(tmp_path: Path) -> None:
    store = SqliteStore(":memory:")
    await store.connect()
    try:
        await store.migrate()
        row = make_credential()
        await store.insert_credential(row)
        assert await store.get_credential(row.tenant_id, row.id) == row
    finally:
        await store.close()


async def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    path.write_bytes(b"this is not a database, just some text long enough to be a header" * 10)
    with pytest.raises(StoreUnavailable, match="not a database"):
        await SqliteStore(str(path)).connect()


async def test_a_parent_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable, match="unavailable"):
        await SqliteStore(str(blocker / "hub.db")).connect()


async def test_two_stores_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    first, second = await _open(path), await _open(path)
    try:
        row = make_credential()
        await first.insert_credential(row)
        assert await second.get_credential(row.tenant_id, row.id) == row
    finally:
        await first.close()
        await second.close()
