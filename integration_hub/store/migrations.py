"""Schema migrations: ordered SQL files per dialect, each applied once in its own transaction.

Layout: ``<migrations dir>/<dialect>/NNNN_description.sql``, applied in lexical order and
recorded in ``schema_migrations``. The directory is ``$HUB_MIGRATIONS_DIR`` when set
(installed packages have no repository around them), else ``<repo root>/migrations``.

A failing migration rolls back completely and is not recorded; its database error
propagates with a note naming the file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from ._codec import utc_iso
from .base import StoreError

MIGRATIONS_DIR_ENV = "HUB_MIGRATIONS_DIR"

Dialect = Literal["postgres", "sqlite"]

# Identifies "integration-hub schema migration" among the server's advisory locks;
# every process migrating the same database must use the same key.
POSTGRES_MIGRATION_LOCK_KEY = 0x6875625F6D696772  # b"hub_migr"


class MigrationError(StoreError):
    """The migrations themselves are missing or malformed."""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sql: str


def migrations_dir() -> Path:
    configured = os.environ.get(MIGRATIONS_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "migrations"


def load_migrations(dialect: Dialect, root: Path | None = None) -> list[Migration]:
    directory = (root if root is not None else migrations_dir()) / dialect
    if not directory.is_dir():
        raise MigrationError(f"no {dialect} migrations directory at {directory} (set {MIGRATIONS_DIR_ENV})")
    files = sorted(path for path in directory.iterdir() if path.suffix == ".sql" and path.is_file())
    return [Migration(path.name, path.read_text(encoding="utf-8")) for path in files]


# --- Postgres -----------------------------------------------------------------------

_PG_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate_postgres(conn: Any, migrations: Sequence[Migration]) -> list[str]:
    """Apply pending migrations on an asyncpg connection; safe to run from many processes at once.

    Every transaction here first takes the same transaction-scoped advisory lock, so
    concurrent runners queue up; each re-checks the ledger under the lock, so a file
    applied by another runner meanwhile is skipped, not applied twice.
    """
    async with conn.transaction():
        await _pg_lock(conn)
        # Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide.
        await conn.execute(_PG_CREATE_LEDGER)
        applied = {record["name"] for record in await conn.fetch("SELECT name FROM schema_migrations")}
    return [m.name for m in migrations if m.name not in applied and await _pg_apply(conn, m)]


async def _pg_lock(conn: Any) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", POSTGRES_MIGRATION_LOCK_KEY)


async def _pg_apply(conn: Any, migration: Migration) -> bool:
    async with conn.transaction():
        await _pg_lock(conn)
        if await conn.fetchval("SELECT 1 FROM schema_migrations WHERE name = $1", migration.name):
            return False
        with _naming_failures_after(migration):
            await conn.execute(migration.sql)
        await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", migration.name)
    return True


# --- SQLite -------------------------------------------------------------------------

_SQLITE_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
) STRICT
"""


async def migrate_sqlite(conn: aiosqlite.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply pending migrations on a connection opened with isolation_level=None."""
    await conn.execute(_SQLITE_CREATE_LEDGER)
    async with conn.execute("SELECT name FROM schema_migrations") as cursor:
        applied = {row[0] for row in await cursor.fetchall()}
    return [m.name for m in migrations if m.name not in applied and await _sqlite_apply(conn, m)]


async def _sqlite_apply(conn: aiosqlite.Connection, migration: Migration) -> bool:
    # IMMEDIATE takes the write lock up front: another process migrating the same file
    # waits here (busy_timeout), then sees the ledger entry and skips it.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        async with conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (migration.name,)) as cur:
            if await cur.fetchone() is not None:
                await conn.rollback()
                return False
        with _naming_failures_after(migration):
            for statement in split_sqlite_script(migration.sql):
                await conn.execute(statement)
        await conn.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
            (migration.name, utc_iso(datetime.now(UTC))),
        )
        await conn.commit()
    except BaseException:
        if conn.in_transaction:
            await conn.rollback()
        raise
    return True


def split_sqlite_script(script: str) -> list[str]:
    """Split a script into single statements.

    sqlite3 executes one statement per call, and executescript() would COMMIT the
    enclosing transaction first, defeating the one-transaction-per-file rule.
    sqlite3.complete_statement understands literals, comments and trigger bodies, so a
    ';' inside any of them does not end the statement.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    # The loop appended one ';' past the end of the script. A leftover means that ';'
    # fell inside a trailing line comment (fine) or an unclosed literal/block comment.
    remainder = buffer[:-1]
    if remainder.strip():
        if not sqlite3.complete_statement(remainder + "\n;"):
            raise MigrationError(f"unterminated SQL at the end of the script: {remainder[:60]!r}")
        statements.append(remainder + "\n;")
    return statements


@contextmanager
def _naming_failures_after(migration: Migration) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        exc.add_note(f"while applying migration {migration.name}")
        raise
