"""Store fixtures: every contract test runs against both backends.

Reusable by other test packages:
  pg_database_url     session-scoped URL of a fresh, migrated Postgres database (dropped at the end)
  postgres_store      connected PostgresStore on it, all tables but schema_migrations emptied first
  sqlite_store        connected, migrated SqliteStore in tmp_path
  store               parametrized over both of the above ("postgres", "sqlite")
  fresh_database_url  parametrized URL of an empty, unmigrated database of each backend
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from integration_hub.store import PostgresStore, SqliteStore, Store

from .pg import create_test_database, drop_test_database, temporary_database, truncate_tables

BACKENDS = ["postgres", "sqlite"]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_database_url() -> AsyncIterator[str]:
    url = await create_test_database()
    try:
        store = PostgresStore(url, max_size=2)
        await store.connect()
        try:
            await store.migrate()
        finally:
            await store.close()
        yield url
    finally:
        await drop_test_database(url)


@pytest_asyncio.fixture
async def postgres_store(pg_database_url: str) -> AsyncIterator[PostgresStore]:
    await truncate_tables(pg_database_url)
    store = PostgresStore(pg_database_url, max_size=6)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


@pytest_asyncio.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    # A not-yet-existing subdirectory: the store must create it.
    store = SqliteStore(str(tmp_path / "data" / "hub.db"))
    await store.connect()
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    backend_store: Store = request.getfixturevalue(f"{request.param}_store")
    return backend_store


@pytest_asyncio.fixture
async def fresh_postgres_url() -> AsyncIterator[str]:
    async with temporary_database() as url:
        yield url


@pytest.fixture
def fresh_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fresh' / 'hub.db'}"


@pytest.fixture(params=BACKENDS)
def fresh_database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"fresh_{request.param}_url")
    return url
