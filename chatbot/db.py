"""The chatbot layer's database: an embedded SQLite file by default, Postgres by URL.

One small interface over both, so that every query is written once: SQL uses Postgres's
numbered placeholders ($1, $2, ...), which SQLite also understands once spelled ?1, ?2.
The schema sticks to what both accept (TEXT, BIGINT, DOUBLE PRECISION, times as epoch
milliseconds); the one type that differs, binary data, is named by `Database.blob_type`.

SQLite: one connection (aiosqlite runs it on its own thread), WAL, and an asyncio lock
around transactions, because SQLite has one writer anyway. Postgres: an asyncpg pool.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

_NUMBERED = re.compile(r"\$(\d+)")


class DatabaseError(Exception):
    """The database could not be opened or a statement failed; says which and why."""


class Conflict(DatabaseError):
    """A unique constraint refused the write (a name already taken...)."""


class Executor(Protocol):
    """What a query needs: the database itself, or one transaction on it."""

    async def execute(self, sql: str, *args: Any) -> int: ...

    async def fetch_all(self, sql: str, *args: Any) -> list[Mapping[str, Any]]: ...

    async def fetch_one(self, sql: str, *args: Any) -> Mapping[str, Any] | None: ...


class Database(Executor, Protocol):
    blob_type: str
    # True when several processes may claim the same rows: claims then need SKIP LOCKED.
    shared: bool

    def transaction(self) -> Any: ...  # an async context manager yielding an Executor

    async def close(self) -> None: ...


async def open_database(url: str) -> Database:
    """`sqlite:///path/to/file.db` (or a plain path), or `postgresql://...`."""
    if url.startswith(("postgres://", "postgresql://")):
        return await _PostgresDatabase.open(url)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if "://" in path:
        raise DatabaseError(
            f"unsupported database URL scheme: {url.split('://', 1)[0]!r} (sqlite or postgresql)"
        )
    return await _SqliteDatabase.open(Path(path))


# --- SQLite ------------------------------------------------------------------------


class _SqliteExecutor:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        import sqlite3

        try:
            cursor = await self._conn.execute(_sqlite_sql(sql), args)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None
        return int(cursor.rowcount)

    async def fetch_all(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        return await self._rows(sql, args)

    async def fetch_one(self, sql: str, *args: Any) -> Mapping[str, Any] | None:
        rows = await self._rows(sql, args)
        return rows[0] if rows else None

    async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Mapping[str, Any]]:
        import sqlite3

        try:
            async with self._conn.execute(_sqlite_sql(sql), args) as cursor:
                rows = await cursor.fetchall()
        except sqlite3.IntegrityError as exc:  # an INSERT ... RETURNING
            raise Conflict(str(exc)) from None
        return [dict(row) for row in rows]


class _SqliteDatabase(_SqliteExecutor):
    blob_type = "BLOB"
    shared = False

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> _SqliteDatabase:
        import sqlite3

        import aiosqlite

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the SQLite database {path}: {exc}") from None
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        return cls(conn)

    async def execute(self, sql: str, *args: Any) -> int:
        # Outside a transaction a statement commits by itself (isolation_level=None), but it
        # must still wait for a transaction in progress on the shared connection.
        async with self._lock:
            return await super().execute(sql, *args)

    async def fetch_all(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        # Reads wait too: on the shared connection they would see a transaction's
        # uncommitted rows.
        async with self._lock:
            return await super().fetch_all(sql, *args)

    async def fetch_one(self, sql: str, *args: Any) -> Mapping[str, Any] | None:
        async with self._lock:
            return await super().fetch_one(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteExecutor(self._conn)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()


def _sqlite_sql(sql: str) -> str:
    return _NUMBERED.sub(r"?\1", sql)


# --- Postgres ----------------------------------------------------------------------


class _PostgresExecutor:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        import asyncpg

        try:
            status: str = await self._conn.execute(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(str(exc)) from None
        # "UPDATE 3", "DELETE 0", "INSERT 0 1": the last number is the row count.
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetch_all(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        import asyncpg

        try:
            rows = await self._conn.fetch(sql, *args)
        except asyncpg.UniqueViolationError as exc:  # an INSERT ... RETURNING
            raise Conflict(str(exc)) from None
        return [dict(row) for row in rows]

    async def fetch_one(self, sql: str, *args: Any) -> Mapping[str, Any] | None:
        rows = await self.fetch_all(sql, *args)
        return rows[0] if rows else None


class _PostgresDatabase(_PostgresExecutor):
    blob_type = "BYTEA"
    shared = True

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> _PostgresDatabase:
        import asyncpg

        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
        except (OSError, asyncpg.PostgresError) as exc:
            # The URL may hold a password: name the failure, not the URL.
            raise DatabaseError(f"cannot connect to Postgres: {type(exc).__name__}: {exc}") from None
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PostgresExecutor(conn)

    async def close(self) -> None:
        await self._pool.close()


def now_ms() -> int:
    """The schema's time: epoch milliseconds."""
    return time.time_ns() // 1_000_000


def placeholders(start: int, count: int) -> str:
    """`$start, ..., $(start+count-1)`: for IN lists of bound values."""
    return ", ".join(f"${n}" for n in range(start, start + count))
