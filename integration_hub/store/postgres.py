"""PostgresStore: the production backend, on an asyncpg connection pool.

Outages surface as StoreUnavailable, never as driver errors, and the pool outlives
them: asyncpg drops connections the server closed and dials new ones on the next
acquire, so the first call after the server is back simply works.
"""

# ruff: noqa: S608
# S608 ("SQL built from strings") is silenced for this module on purpose: every query is
# assembled from constant fragments (column lists from _sql.py, fixed Conditions clauses);
# every value reaches the database as a bound parameter, never as SQL text.

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from ._codec import (
    audit_event_from,
    credential_from,
    encode_str_dict,
    encode_str_list,
    require_utc,
    token_from,
)
from ._sql import AUDIT_COLUMNS, CREDENTIAL_COLUMNS, TOKEN_COLUMNS, Conditions, check_limit
from ._usage_sql import (
    USAGE_COLUMN_NAMES,
    USAGE_COLUMNS,
    usage_row_from,
    usage_totals_from,
    usage_totals_sql,
    usage_values,
)
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
from .migrations import load_migrations, migrate_postgres
from .postgres_calls import PostgresCalls
from .postgres_campaigns import PostgresCampaigns

# Errors meaning "the database cannot be reached or refused the operation", as opposed
# to a bug in a query. TimeoutError (connect timeout) is an OSError.
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, DNS failure, timeout
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and connection lost mid-call
    asyncpg.InterfaceError,  # pool or connection closed under us
    # Raised when the server's "terminating connection" notice reached an idle connection
    # just before our query did (seen when sessions are killed, as in a restart).
    asyncpg.InternalClientError,
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up, crashed
    asyncpg.InvalidAuthorizationSpecificationError,  # class 28: role or password rejected
    asyncpg.InvalidCatalogNameError,  # the database does not exist
    asyncpg.ReadOnlySQLTransactionError,  # landed on a standby, e.g. during failover
)

# The array type unnest takes for each of usage_records' columns that is not text.
_USAGE_ARRAY_TYPES = {
    "at": "timestamptz",
    "input_tokens": "bigint",
    "output_tokens": "bigint",
    "cached_tokens": "bigint",
    "latency_ms": "float8",
    "upstream_ms": "float8",
    "audio_seconds": "float8",
    "characters": "bigint",
}
_INSERT_USAGE = (
    f"INSERT INTO usage_records ({USAGE_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(
        f"${n}::{_USAGE_ARRAY_TYPES.get(column, 'text')}[]"
        for n, column in enumerate(USAGE_COLUMN_NAMES, start=1)
    )
    + ") ON CONFLICT (record_id) DO NOTHING"
)

# Named in migrations/postgres/0001_init.sql; any other unique violation is not a name clash.
_NAME_CONSTRAINT = "credentials_tenant_name_key"

_PASSWORD_QUERY_KEYS = frozenset({"password", "sslpassword"})


def redact_url(url: str) -> str:
    """The URL with any password (user info or query parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostinfo}"
    query = urlencode(
        [
            (key, "***" if key.lower() in _PASSWORD_QUERY_KEYS else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_secrets(url: str) -> list[str]:
    """Every password spelled in the URL, raw and percent-decoded, for scrubbing messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    userinfo, at, _ = parts.netloc.rpartition("@")
    found = [userinfo.partition(":")[2]] if at and ":" in userinfo else []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _PASSWORD_QUERY_KEYS]
    return [s for secret in found for s in {secret, unquote(secret)} if s]


def _is_unavailability(exc: BaseException) -> bool:
    # asyncpg's client-side DataError (bad argument type) is an InterfaceError too, but a bug.
    return isinstance(exc, _UNAVAILABLE_ERRORS) and not isinstance(exc, ValueError)


class PostgresStore(PostgresCalls, PostgresCampaigns):
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float | None = None,
    ) -> None:
        self._url = url
        self._safe_url = redact_url(url)
        self._secrets = url_secrets(url)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: Any = None
        self._connect_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({self._safe_url!r})"

    # --- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        async with self._connect_lock:
            if self._pool is not None:
                return
            try:
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                )
            except Exception as exc:
                if not _is_unavailability(exc):
                    raise
                raise self._unavailable(exc) from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # A graceful close waits for connections in use; an unreachable server must not hang it.
            await asyncio.wait_for(pool.close(), timeout=self._connect_timeout)
        except Exception as exc:
            if not _is_unavailability(exc):
                raise
            pool.terminate()

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def migrate(self) -> list[str]:
        migrations = load_migrations("postgres")
        async with self._connection() as conn:
            return await migrate_postgres(conn, migrations)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("PostgresStore is not connected; call connect() first")
        try:
            async with pool.acquire() as conn:
                yield conn
        except Exception as exc:
            if _is_unavailability(exc):
                # One dead connection means the server went away (restart, failover): every
                # pooled connection is dead too. Expire them all, so that only this call
                # fails and the next one reconnects, instead of one failure per connection.
                await pool.expire_connections()
                raise self._unavailable(exc) from exc
            raise

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        detail = str(exc)
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        problem = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return StoreUnavailable(f"Postgres at {self._safe_url} is unavailable: {problem}")

    # --- credentials -----------------------------------------------------------------

    async def insert_credential(self, row: CredentialRow) -> None:
        async with self._connection() as conn, _unique_violations_as_store_errors():
            await conn.execute(
                f"INSERT INTO credentials ({CREDENTIAL_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                row.id,
                row.tenant_id,
                row.name,
                row.provider,
                encode_str_dict(row.options),
                row.ciphertext,
                row.key_id,
                row.hint,
                encode_str_list(row.secret_fields),
                require_utc(row.created_at),
                require_utc(row.updated_at),
                row.version,
            )

    async def get_credential(self, tenant_id: str, credential_id: str) -> CredentialRow | None:
        return await self._fetch_credential("id", tenant_id, credential_id)

    async def get_credential_by_name(self, tenant_id: str, name: str) -> CredentialRow | None:
        return await self._fetch_credential("name", tenant_id, name)

    async def _fetch_credential(self, column: str, tenant_id: str, value: str) -> CredentialRow | None:
        conditions = Conditions(_placeholder)
        conditions.add("tenant_id =", tenant_id)
        conditions.add(f"{column} =", value)
        async with self._connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {CREDENTIAL_COLUMNS} FROM credentials {conditions.where()}", *conditions.args
            )
        return None if record is None else credential_from(record, require_utc)

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
        query = (
            f"SELECT {CREDENTIAL_COLUMNS} FROM credentials {conditions.where()}"
            f" ORDER BY {order_by} LIMIT {limit_placeholder}"
        )
        async with self._connection() as conn:
            records = await conn.fetch(query, *conditions.args)
        return [credential_from(record, require_utc) for record in records]

    async def update_credential(self, row: CredentialRow, *, expected_version: int) -> CredentialRow:
        # One statement: under READ COMMITTED a concurrent writer's commit makes Postgres
        # re-check "version = expected" against the new row, so exactly one CAS wins.
        async with self._connection() as conn, _unique_violations_as_store_errors():
            record = await conn.fetchrow(
                "UPDATE credentials SET name = $3, provider = $4, options = $5, ciphertext = $6,"
                " key_id = $7, hint = $8, secret_fields = $9, updated_at = $10, version = version + 1"
                f" WHERE id = $1 AND tenant_id = $2 AND version = $11 RETURNING {CREDENTIAL_COLUMNS}",
                row.id,
                row.tenant_id,
                row.name,
                row.provider,
                encode_str_dict(row.options),
                row.ciphertext,
                row.key_id,
                row.hint,
                encode_str_list(row.secret_fields),
                require_utc(row.updated_at),
                expected_version,
            )
        if record is None:
            raise StaleWrite(f"credential changed or was deleted since version {expected_version}")
        return credential_from(record, require_utc)

    async def delete_credential(self, tenant_id: str, credential_id: str) -> bool:
        async with self._connection() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM credentials WHERE id = $1 AND tenant_id = $2 RETURNING 1",
                credential_id,
                tenant_id,
            )
        return deleted is not None

    async def count_credentials_by_key(self) -> dict[int, int]:
        async with self._connection() as conn:
            records = await conn.fetch("SELECT key_id, count(*) AS n FROM credentials GROUP BY key_id")
        return {int(record["key_id"]): int(record["n"]) for record in records}

    # --- key usage ---------------------------------------------------------------------

    async def add_encryptions(self, key_id: int, count: int) -> None:
        if count < 0:
            raise ValueError(f"encryption count must be >= 0, got {count}")
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO key_usage (key_id, encryptions) VALUES ($1, $2) ON CONFLICT (key_id)"
                " DO UPDATE SET encryptions = key_usage.encryptions + excluded.encryptions",
                key_id,
                count,
            )

    async def encryption_counts(self) -> dict[int, int]:
        async with self._connection() as conn:
            records = await conn.fetch("SELECT key_id, encryptions FROM key_usage")
        return {int(record["key_id"]): int(record["encryptions"]) for record in records}

    # --- tokens --------------------------------------------------------------------------

    async def insert_token(self, row: TokenRow) -> None:
        async with self._connection() as conn, _unique_violations_as_store_errors():
            await conn.execute(
                f"INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                row.id,
                row.tenant_id,
                row.name,
                row.token_hash,
                encode_str_list(row.scopes),
                require_utc(row.created_at),
                None if row.expires_at is None else require_utc(row.expires_at),
                None if row.revoked_at is None else require_utc(row.revoked_at),
            )

    async def get_token_by_hash(self, token_hash: str) -> TokenRow | None:
        async with self._connection() as conn:
            record = await conn.fetchrow(
                f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = $1", token_hash
            )
        return None if record is None else token_from(record, require_utc)

    async def list_tokens(self, tenant_id: str | None) -> list[TokenRow]:
        conditions = Conditions(_placeholder)
        conditions.add_if_given("tenant_id =", tenant_id)
        async with self._connection() as conn:
            records = await conn.fetch(
                f"SELECT {TOKEN_COLUMNS} FROM tokens {conditions.where()} ORDER BY created_at, id",
                *conditions.args,
            )
        return [token_from(record, require_utc) for record in records]

    async def revoke_token(self, token_id: str, at: datetime) -> TokenRow | None:
        # COALESCE keeps the first revocation time when a token is revoked twice.
        async with self._connection() as conn:
            record = await conn.fetchrow(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2)"
                f" WHERE id = $1 RETURNING {TOKEN_COLUMNS}",
                token_id,
                require_utc(at),
            )
        return None if record is None else token_from(record, require_utc)

    # --- audit ---------------------------------------------------------------------------

    async def insert_audit_events(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        rows = [
            (
                require_utc(e.at),
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
        async with self._connection() as conn:
            await conn.executemany(
                f"INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                rows,
            )

    async def list_audit_events(
        self, *, tenant_id: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        conditions = Conditions(_placeholder)
        conditions.add_if_given("tenant_id =", tenant_id)
        conditions.add_if_given("action =", action)
        limit_placeholder = conditions.bind(check_limit(limit))
        async with self._connection() as conn:
            records = await conn.fetch(
                f"SELECT {AUDIT_COLUMNS} FROM audit_events {conditions.where()}"
                f" ORDER BY at DESC, id DESC LIMIT {limit_placeholder}",
                *conditions.args,
            )
        return [audit_event_from(record, require_utc) for record in records]

    # --- usage accounting --------------------------------------------------------------

    async def insert_usage_records(self, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        records = [usage_values(row, require_utc) for row in rows]
        columns = [list(column) for column in zip(*records, strict=True)]
        async with self._connection() as conn:
            # One statement for the whole batch (all rows or none), its columns as arrays;
            # a row whose record_id is stored already (a batch written again) is skipped.
            await conn.execute(_INSERT_USAGE, *columns)

    async def list_usage_records(self, tenant_id: str, *, limit: int = 100) -> list[UsageRow]:
        async with self._connection() as conn:
            records = await conn.fetch(
                f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE tenant_id = $1"
                " ORDER BY at DESC, id DESC LIMIT $2",
                tenant_id,
                check_limit(limit),
            )
        return [usage_row_from(record, require_utc) for record in records]

    async def usage_totals(self, query: UsageQuery) -> list[UsageTotals]:
        sql, args = usage_totals_sql(
            query,
            placeholder=_placeholder,
            encode_time=require_utc,
            # The UTC day whatever the session's TimeZone setting.
            day_expression="(at AT TIME ZONE 'UTC')::date",
            # usage_records' text columns have the database's collation: order by code point.
            code_point_order=' COLLATE "C"',
        )
        async with self._connection() as conn:
            records = await conn.fetch(sql, *args)
        return [usage_totals_from(record, query.group_by) for record in records]


def _placeholder(position: int) -> str:
    return f"${position}"


@asynccontextmanager
async def _unique_violations_as_store_errors() -> AsyncIterator[None]:
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        # "from None": the driver's message quotes the clashing key (row contents).
        if exc.constraint_name == _NAME_CONSTRAINT:
            raise DuplicateName("a credential with this name already exists for the tenant") from None
        raise StoreError(f"a row with this key already exists ({exc.constraint_name})") from None
