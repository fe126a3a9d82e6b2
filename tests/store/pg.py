"""Throwaway Postgres databases for tests; plain async functions, reusable from any test package.

    url = await create_test_database()      # empty database hub_test_<pid>_<hex>
    ...
    await drop_test_database(url)

The admin URL (a superuser connection to an existing database) is taken from
$HUB_TEST_PG_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN_URL_ENV = "HUB_TEST_PG_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_DATABASE_PREFIX = "hub_test_"


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL)


def database_url(base_url: str, database: str) -> str:
    """base_url with its database (the URL path) replaced."""
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{database}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def create_test_database(admin: str | None = None) -> str:
    """Create an empty database named hub_test_<pid>_<random hex>; return its URL."""
    admin = admin or admin_url()
    name = f"{TEST_DATABASE_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(admin, name)


async def drop_test_database(url: str, admin: str | None = None) -> None:
    """Terminate the database's sessions, then drop it. Refuses names not made by create_test_database."""
    name = database_name(url)
    if not name.startswith(TEST_DATABASE_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a {TEST_DATABASE_PREFIX}* test database")
    conn = await asyncpg.connect(admin or admin_url())
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()


@asynccontextmanager
async def temporary_database(admin: str | None = None) -> AsyncIterator[str]:
    """create_test_database() for the duration of an async with block."""
    url = await create_test_database(admin)
    try:
        yield url
    finally:
        await drop_test_database(url, admin)


async def truncate_tables(url: str, *, keep: tuple[str, ...] = ("schema_migrations",)) -> None:
    """Empty every table of the current schema except `keep`, resetting identity sequences."""
    conn = await asyncpg.connect(url)
    try:
        tables = [
            record["tablename"]
            for record in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
            )
            if record["tablename"] not in keep
        ]
        if tables:
            quoted = ", ".join(f'"{table}"' for table in tables)
            await conn.execute(f"TRUNCATE {quoted} RESTART IDENTITY")
    finally:
        await conn.close()
