"""SqliteStore: the embedded default backend, one aiosqlite connection in WAL mode.

The connection runs in autocommit mode (isolation_level=None) so that transactions
are explicit, and an asyncio.Lock hands it to one operation at a time: aiosqlite
serialises statements on its thread, but without the lock one coroutine's statements
could land inside another coroutine's open transaction.
"""

# ruff: noqa: S608
# S608 ("SQL built from strings") is silenced for this module on purpose: every query is
# assembled from constant fragments (column lists from _sql.py, fixed Conditions clauses);
# every value reaches the database as a bound parameter, never as SQL text.

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from ._codec import (
    audit_event_from,
    credential_from,
    encode_str_dict,
    encode_str_list,
    parse_utc_iso,
    token_from,
    utc_iso,
    utc_iso_or_none,
)
from ._sql import AUDIT_COLUMNS, CREDENTIAL_COLUMNS, TOKEN_COLUMNS, Conditions, check_limit
from ._usage_sql import USAGE_COLUMNS, usage_row_from, usage_totals_from, usage_totals_sql, usage_values
from .base import (
    AuditEvent,
    CredentialRow,
    DuplicateName,
    StaleWrite,
    StoreError,
    StoreUnavailable,
    TokenRow,
    UsageQuery,
    UsageRow,
    UsageTotals,
)
from .migrations import load_migrations, migrate_sqlite
from .sqlite_calls import SqliteCalls
from .sqlite_campaigns import SqliteCampaigns

IN_MEMORY = ":memory:"

# The database holds ciphertext and token hashes: owner-only. SQLite gives its -wal and
# -shm files the database file's mode, so setting it on the main file covers them.
DATABASE_FILE_MODE = 0o600
_SIDE_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")

# Primary result codes meaning "cannot use the database right now", not "bad query".
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)

_WAL_RETRY_SECONDS = 0.01

# SQLite names the columns of the violated unique constraint in its message.
_NAME_CONSTRAINT_COLUMNS = "credentials.tenant_id, credentials.name"


class SqliteStore(SqliteCalls, SqliteCampaigns):
    def __init__(self, path: str, *, busy_timeout_ms: int = 5000) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    # --- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        async with self._lock:
            if self._conn is not None:
                return
            with self._unavailable_on_failure():
                if self._path != IN_MEMORY:
                    _prepare_database_file(Path(self._path))
                conn = await aiosqlite.connect(self._path, isolation_level=None)
                try:
                    await self._configure(conn)
                except BaseException:
                    await conn.close()
                    raise
            self._conn = conn

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        conn.row_factory = aiosqlite.Row
        # Wait for another process's write lock instead of failing at once.
        await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        await self._enable_wal(conn)
        # FULL (not NORMAL) even under WAL: losing a committed key_usage increment on
        # power loss would undercount encryptions against the nonce bound.
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")

    async def _enable_wal(self, conn: aiosqlite.Connection) -> None:
        """WAL lets readers proceed during a write; in-memory databases stay "memory".

        Switching a fresh file to WAL needs an exclusive lock, and SQLite reports BUSY
        at once (without consulting busy_timeout) when another connection is opening
        the same file at that moment, so retry for as long as busy_timeout allows.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_timeout_ms / 1000
        while True:
            try:
                await conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or loop.time() >= deadline:
                    raise
            await asyncio.sleep(_WAL_RETRY_SECONDS)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    async def ping(self) -> None:
        await self._fetch_one("SELECT 1", ())

    async def migrate(self) -> list[str]:
        migrations = load_migrations("sqlite")
        async with self._connection() as conn:
            return await migrate_sqlite(conn, migrations)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._conn is None:
                raise StoreUnavailable("SqliteStore is not connected; call connect() first")
            with self._unavailable_on_failure():
                yield self._conn

    @contextmanager
    def _unavailable_on_failure(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode & 0xFF not in _UNAVAILABLE_CODES:
                raise
            raise StoreUnavailable(
                f"SQLite database {self._path} is unavailable: {type(exc).__name__}: {exc}"
            ) from exc

    async def _fetch_all(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        async with self._connection() as conn, conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _fetch_one(self, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
        rows = await self._fetch_all(sql, params)
        return rows[0] if rows else None

    # --- credentials -----------------------------------------------------------------

    async def insert_credential(self, row: CredentialRow) -> None:
        with _unique_violations_as_store_errors():
            await self._fetch_all(
                f"INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.tenant_id,
                    row.name,
                    row.provider,
                    encode_str_dict(row.options),
                    row.ciphertext,
                    row.key_id,
                    row.hint,
                    encode_str_list(row.secret_fields),
                    utc_iso(row.created_at),
                    utc_iso(row.updated_at),
                    row.version,
                ),
            )

    async def get_credential(self, tenant_id: str, credential_id: str) -> CredentialRow | None:
        return await self._fetch_credential("id", tenant_id, credential_id)

    async def get_credential_by_name(self, tenant_id: str, name: str) -> CredentialRow | None:
        return await self._fetch_credential("name", tenant_id, name)

    async def _fetch_credential(self, column: str, tenant_id: str, value: str) -> CredentialRow | None:
        conditions = Conditions(_placeholder)
        conditions.add("tenant_id =", tenant_id)
        conditions.add(f"{column} =", value)
        row = await self._fetch_one(
            f"SELECT {CREDENTIAL_COLUMNS} FROM credentials {conditions.where()}", conditions.args
        )
        return None if row is None else credential_from(row, parse_utc_iso)

    async def list_credentials(
        self, tenant_id: str, *, provider: str | None, after_name: str | None, limit: int
    ) -> list[CredentialRow]:
        conditions = Conditions(_placeholder)
        conditions.add("tenant_id =", tenant_id)
        conditions.add_if_given("provider =", provider)
        conditions.add_if_given("name >", after_name)
        return await self._fetch_credentials(conditions, order_by="name", limit=limit)

    async def credentials_not_under_key(
        self, key_id: int, *, after_id: str | None, limit: int
    ) -> list[CredentialRow]:
        conditions = Conditions(_placeholder)
        conditions.add("key_id <>", key_id)
        conditions.add_if_given("id >", after_id)
        return await self._fetch_credentials(conditions, order_by="id", limit=limit)

    async def _fetch_credentials(
        self, conditions: Conditions, *, order_by: str, limit: int
    ) -> list[CredentialRow]:
        limit_placeholder = conditions.bind(check_limit(limit))
        rows = await self._fetch_all(
            f"SELECT {CREDENTIAL_COLUMNS} FROM credentials {conditions.where()}"
            f" ORDER BY {order_by} LIMIT {limit_placeholder}",
            conditions.args,
        )
        return [credential_from(row, parse_utc_iso) for row in rows]

    async def update_credential(self, row: CredentialRow, *, expected_version: int) -> CredentialRow:
        with _unique_violations_as_store_errors():
            stored = await self._fetch_one(
                "UPDATE credentials SET name = ?, provider = ?, options = ?, ciphertext = ?, key_id = ?,"
                " hint = ?, secret_fields = ?, updated_at = ?, version = version + 1"
                f" WHERE id = ? AND tenant_id = ? AND version = ? RETURNING {CREDENTIAL_COLUMNS}",
                (
                    row.name,
                    row.provider,
                    encode_str_dict(row.options),
                    row.ciphertext,
                    row.key_id,
                    row.hint,
                    encode_str_list(row.secret_fields),
                    utc_iso(row.updated_at),
                    row.id,
                    row.tenant_id,
                    expected_version,
                ),
            )
        if stored is None:
            raise StaleWrite(f"credential changed or was deleted since version {expected_version}")
        return credential_from(stored, parse_utc_iso)

    async def delete_credential(self, tenant_id: str, credential_id: str) -> bool:
        deleted = await self._fetch_one(
            "DELETE FROM credentials WHERE id = ? AND tenant_id = ? RETURNING 1", (credential_id, tenant_id)
        )
        return deleted is not None

    async def count_credentials_by_key(self) -> dict[int, int]:
        rows = await self._fetch_all("SELECT key_id, count(*) AS n FROM credentials GROUP BY key_id", ())
        return {int(row["key_id"]): int(row["n"]) for row in rows}

    # --- key usage ---------------------------------------------------------------------

    async def add_encryptions(self, key_id: int, count: int) -> None:
        if count < 0:
            raise ValueError(f"encryption count must be >= 0, got {count}")
        await self._fetch_all(
            "INSERT INTO key_usage (key_id, encryptions) VALUES (?, ?) ON CONFLICT (key_id)"
            " DO UPDATE SET encryptions = key_usage.encryptions + excluded.encryptions",
            (key_id, count),
        )

    async def encryption_counts(self) -> dict[int, int]:
        rows = await self._fetch_all("SELECT key_id, encryptions FROM key_usage", ())
        return {int(row["key_id"]): int(row["encryptions"]) for row in rows}

    # --- tokens --------------------------------------------------------------------------

    async def insert_token(self, row: TokenRow) -> None:
        with _unique_violations_as_store_errors():
            await self._fetch_all(
                f"INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.tenant_id,
                    row.name,
                    row.token_hash,
                    encode_str_list(row.scopes),
                    utc_iso(row.created_at),
                    utc_iso_or_none(row.expires_at),
                    utc_iso_or_none(row.revoked_at),
                ),
            )

    async def get_token_by_hash(self, token_hash: str) -> TokenRow | None:
        row = await self._fetch_one(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?", (token_hash,))
        return None if row is None else token_from(row, parse_utc_iso)

    async def list_tokens(self, tenant_id: str | None) -> list[TokenRow]:
        conditions = Conditions(_placeholder)
        conditions.add_if_given("tenant_id =", tenant_id)
        rows = await self._fetch_all(
            f"SELECT {TOKEN_COLUMNS} FROM tokens {conditions.where()} ORDER BY created_at, id",
            conditions.args,
        )
        return [token_from(row, parse_utc_iso) for row in rows]

    async def revoke_token(self, token_id: str, at: datetime) -> TokenRow | None:
        # COALESCE keeps the first revocation time when a token is revoked twice.
        row = await self._fetch_one(
            f"UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING {TOKEN_COLUMNS}",
            (utc_iso(at), token_id),
        )
        return None if row is None else token_from(row, parse_utc_iso)

    # --- audit ---------------------------------------------------------------------------

    async def insert_audit_events(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        rows = [
            (
                utc_iso(e.at),
                e.action,
                e.outcome,
                e.tenant_id,
                e.credential_id,
                e.actor,
                e.request_id,
                encode_str_dict(e.detail),
            )
            for e in events
        ]
        async with self._connection() as conn, _transaction(conn):
            # One transaction for the batch (one fsync) and one statement (see _from_json_rows).
            await conn.execute(_INSERT_AUDIT, (_json_rows(rows),))

    async def list_audit_events(
        self, *, tenant_id: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        conditions = Conditions(_placeholder)
        conditions.add_if_given("tenant_id =", tenant_id)
        conditions.add_if_given("action =", action)
        limit_placeholder = conditions.bind(check_limit(limit))
        rows = await self._fetch_all(
            f"SELECT {AUDIT_COLUMNS} FROM audit_events {conditions.where()}"
            f" ORDER BY at DESC, id DESC LIMIT {limit_placeholder}",
            conditions.args,
        )
        return [audit_event_from(row, parse_utc_iso) for row in rows]

    # --- usage accounting --------------------------------------------------------------

    async def insert_usage_records(self, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        records = [usage_values(row, utc_iso) for row in rows]
        async with self._connection() as conn, _transaction(conn):
            # One transaction for the batch (one fsync, all rows or none) and one statement.
            await conn.execute(_INSERT_USAGE, (_json_rows(records),))

    async def list_usage_records(self, tenant_id: str, *, limit: int = 100) -> list[UsageRow]:
        rows = await self._fetch_all(
            f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE tenant_id = ?"
            " ORDER BY at DESC, id DESC LIMIT ?",
            (tenant_id, check_limit(limit)),
        )
        return [usage_row_from(row, parse_utc_iso) for row in rows]

    async def usage_totals(self, query: UsageQuery) -> list[UsageTotals]:
        # "at" is ISO-8601 UTC text, so date(at) is the UTC day.
        sql, args = usage_totals_sql(
            query, placeholder=_placeholder, encode_time=utc_iso, day_expression="date(at)"
        )
        rows = await self._fetch_all(sql, args)
        return [usage_totals_from(row, query.group_by) for row in rows]


def _placeholder(position: int) -> str:
    return "?"


def _prepare_database_file(path: Path) -> None:
    """Create the parent directory and an owner-only database file before SQLite opens it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created with the final mode (no window in which it is readable by others) ...
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, DATABASE_FILE_MODE))
    # ... and tightened if it, or its WAL files, already existed with a looser one.
    for suffix in _SIDE_FILE_SUFFIXES:
        side_file = path.with_name(path.name + suffix)
        if side_file.exists():
            side_file.chmod(DATABASE_FILE_MODE)


def _from_json_rows(columns: str) -> str:
    """SELECT the columns of each row of a JSON array of arrays, bound as one parameter.

    Batches of usage rows and audit events go in as one statement: executemany steps
    once per row, and each step gives up and takes back the GIL, which the event loop
    holds while serving; under load that handoff, twice per call, cost more CPU than the
    hub's whole request path. `value ->> n` keeps each JSON value's type (text, integer,
    real, null), so the tables' types and CHECK constraints apply as with bound values.
    """
    count = len(columns.split(","))
    selected = ", ".join(f"value ->> {n}" for n in range(count))
    # "WHERE true": SQLite's documented way to let an upsert follow INSERT ... SELECT.
    return f"INSERT INTO {{table}} ({columns}) SELECT {selected} FROM json_each(?) WHERE true"


def _json_rows(rows: Sequence[Sequence[Any]]) -> str:
    return orjson.dumps(rows).decode()


_INSERT_AUDIT = _from_json_rows(AUDIT_COLUMNS).format(table="audit_events")
# A row stored already (its batch written again after a lost answer) is skipped; any other
# constraint still refuses the batch (unlike INSERT OR IGNORE).
_INSERT_USAGE = (
    _from_json_rows(USAGE_COLUMNS).format(table="usage_records") + " ON CONFLICT (record_id) DO NOTHING"
)


@asynccontextmanager
async def _transaction(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    await conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        await conn.rollback()
        raise
    await conn.commit()


@contextmanager
def _unique_violations_as_store_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        # The message names the constraint's columns, never the clashing values.
        message = str(exc)
        if not message.startswith("UNIQUE constraint failed"):
            raise
        if _NAME_CONSTRAINT_COLUMNS in message:
            raise DuplicateName("a credential with this name already exists for the tenant") from exc
        raise StoreError(f"a row with this key already exists ({message})") from exc
