"""The migration runner: discovery, ordering, statement splitting, atomicity, schema parity."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest

from integration_hub.store import open_store
from integration_hub.store.migrations import (
    MIGRATIONS_DIR_ENV,
    MigrationError,
    load_migrations,
    migrations_dir,
    split_sqlite_script,
)

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def test_default_directory_is_the_repository_migrations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIGRATIONS_DIR_ENV, raising=False)
    assert migrations_dir() == REPO_MIGRATIONS


def test_environment_overrides_the_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path))
    assert migrations_dir() == tmp_path


def test_files_load_in_lexical_order_and_only_sql(tmp_path: Path) -> None:
    (tmp_path / "sqlite").mkdir()
    for name in ("0010_later.sql", "0002_second.sql", "0001_first.sql", "README.md"):
        (tmp_path / "sqlite" / name).write_text("SELECT 1;")
    names = [m.name for m in load_migrations("sqlite", tmp_path)]
    assert names == ["0001_first.sql", "0002_second.sql", "0010_later.sql"]


def test_missing_directory_raises_migration_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match=MIGRATIONS_DIR_ENV):
        load_migrations("postgres", tmp_path)


def test_both_dialects_ship_the_same_migration_files() -> None:
    postgres = [m.name for m in load_migrations("postgres", REPO_MIGRATIONS)]
    assert postgres == [m.name for m in load_migrations("sqlite", REPO_MIGRATIONS)]
    assert postgres[0] == "0001_init.sql"


@pytest.mark.parametrize(
    ("script", "statements"),
    [
        ("CREATE TABLE a (x);\nCREATE TABLE b (y);\n", ["CREATE TABLE a (x);", "CREATE TABLE b (y);"]),
        ("INSERT INTO a VALUES ('x;y');", ["INSERT INTO a VALUES ('x;y');"]),
        ("-- note; still a comment\nSELECT 1;", ["-- note; still a comment\nSELECT 1;"]),
        (
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;",
            ["CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;"],
        ),
        ("SELECT 1", ["SELECT 1;"]),
        ("SELECT 1; -- trailing comment", ["SELECT 1;", " -- trailing comment\n;"]),
        ("\n\n;;\n", []),
    ],
)
def test_split_sqlite_script(script: str, statements: list[str]) -> None:
    assert split_sqlite_script(script) == statements


def test_split_sqlite_script_refuses_an_unclosed_literal() -> None:
    with pytest.raises(MigrationError, match="unterminated"):
        split_sqlite_script("INSERT INTO a VALUES ('unclosed);")


# --- atomicity, against both backends ---------------------------------------------------


def _dialect(url: str) -> str:
    return "postgres" if url.startswith("postgres") else "sqlite"


async def _tables(url: str) -> set[str]:
    if _dialect(url) == "postgres":
        conn = await asyncpg.connect(url)
        try:
            records = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        finally:
            await conn.close()
        return {record["tablename"] for record in records}
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows if not name.startswith("sqlite_")}


async def _columns(url: str, table: str) -> list[str]:
    if _dialect(url) == "postgres":
        conn = await asyncpg.connect(url)
        try:
            records = await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                table,
            )
        finally:
            await conn.close()
        return [record["column_name"] for record in records]
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _copy_real_migrations(tmp_path: Path, dialect: str) -> Path:
    root = tmp_path / "migrations"
    shutil.copytree(REPO_MIGRATIONS / dialect, root / dialect)
    return root / dialect


async def test_a_failing_migration_leaves_no_trace_and_can_be_fixed(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialect = _dialect(fresh_database_url)
    directory = _copy_real_migrations(tmp_path, dialect)
    broken = directory / "9000_broken.sql"
    broken.write_text("CREATE TABLE half_done (x integer);\nSELECT * FROM no_such_table;\n")
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(directory.parent))
    store = open_store(fresh_database_url)
    await store.connect()
    try:
        with pytest.raises(Exception, match="no_such_table") as raised:
            await store.migrate()
        assert "while applying migration 9000_broken.sql" in raised.value.__notes__
        assert "half_done" not in await _tables(fresh_database_url)
        assert "credentials" in await _tables(fresh_database_url)  # 0001 committed on its own

        broken.write_text("CREATE TABLE half_done (x integer);\n")
        assert await store.migrate() == ["9000_broken.sql"]
        assert "half_done" in await _tables(fresh_database_url)
    finally:
        await store.close()


async def test_both_dialects_create_the_same_tables_and_columns(
    fresh_postgres_url: str, fresh_sqlite_url: str
) -> None:
    for url in (fresh_postgres_url, fresh_sqlite_url):
        store = open_store(url)
        await store.connect()
        try:
            await store.migrate()
        finally:
            await store.close()
    tables = await _tables(fresh_postgres_url)
    assert tables == await _tables(fresh_sqlite_url)
    assert {"credentials", "tokens", "key_usage", "audit_events", "schema_migrations"} <= tables
    for table in sorted(tables):
        assert await _columns(fresh_postgres_url, table) == await _columns(fresh_sqlite_url, table), table
