"""Fixtures shared by the end-to-end tests: real stores, a real hub on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import HubUnderTest, running_hub, settings_for
from tests.store.pg import create_test_database, drop_test_database

# Tests use Redis database 12, flushed before each test that asks for it, so that
# rows cached by one test's hub can never be served to another's.
REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture(params=["sqlite", "postgres"])
async def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database of each kind: a SQLite file, or a new Postgres database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    url = await create_test_database()
    try:
        yield url
    finally:
        await drop_test_database(url)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await create_test_database()
    try:
        yield url
    finally:
        await drop_test_database(url)


@pytest.fixture
async def hut(backend_url: str, tmp_path: Path) -> AsyncIterator[HubUnderTest]:
    """The hub under test, in-process, on each store backend."""
    async with running_hub(settings_for(tmp_path, database_url=backend_url)) as hub:
        yield hub


@pytest.fixture
async def redis_url() -> str:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    return REDIS_URL
