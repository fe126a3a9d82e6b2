"""PostgresStore under outages: StoreUnavailable (never a driver error or a crash), no
password in any message, and a pool that works again once the server is back.

The shared Postgres server is never stopped: outages are simulated with a closed
loopback port, a TCP proxy the test stops and restarts, and pg_terminate_backend.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from integration_hub.store import PostgresStore, StoreUnavailable
from integration_hub.store.postgres import redact_url

from .pg import database_url, truncate_tables
from .rows import make_credential
from .tcp_proxy import TcpProxy

PASSWORD = "s3cretpw"
CLOSED_PORT_URL = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/x"


def _everything_printed_about(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


async def test_unreachable_server_raises_store_unavailable_without_the_password() -> None:
    store = PostgresStore(CLOSED_PORT_URL, connect_timeout=5)
    with pytest.raises(StoreUnavailable) as raised:
        await store.connect()
    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "postgres:***@" in message
    assert PASSWORD not in _everything_printed_about(raised.value)
    assert PASSWORD not in repr(store)


async def test_password_in_the_query_string_is_not_printed_either() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:1/x?password={PASSWORD}", connect_timeout=5)
    with pytest.raises(StoreUnavailable) as raised:
        await store.connect()
    assert PASSWORD not in _everything_printed_about(raised.value)


async def test_calls_on_a_store_whose_connect_failed_raise_store_unavailable() -> None:
    store = PostgresStore(CLOSED_PORT_URL, connect_timeout=5)
    with pytest.raises(StoreUnavailable):
        await store.connect()
    with pytest.raises(StoreUnavailable):
        await store.list_credentials("tenant-a", provider=None, after_name=None, limit=10)
    await store.close()


async def test_missing_database_is_reported_as_unavailable(pg_database_url: str) -> None:
    url = database_url(pg_database_url, "hub_no_such_database")
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await PostgresStore(url).connect()


@pytest.mark.parametrize(
    ("url", "printed"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        (
            "postgresql://u:p%40ss@h/db?password=x&sslmode=require",
            "postgresql://u:***@h/db?password=***&sslmode=require",
        ),
        ("postgresql://u:p@ss@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_redact_url_hides_passwords_only(url: str, printed: str) -> None:
    assert redact_url(url) == printed


# --- outage and recovery through a stoppable proxy ------------------------------------


@pytest_asyncio.fixture
async def proxy(pg_database_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(pg_database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def _via_local_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}")
    )


@pytest_asyncio.fixture
async def proxied_store(pg_database_url: str, proxy: TcpProxy) -> AsyncIterator[PostgresStore]:
    await truncate_tables(pg_database_url)
    store = PostgresStore(_via_local_port(pg_database_url, proxy.port), max_size=3, connect_timeout=5)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


async def test_store_raises_unavailable_during_an_outage_and_recovers_after_it(
    proxied_store: PostgresStore, proxy: TcpProxy
) -> None:
    row = make_credential()
    await proxied_store.insert_credential(row)

    await proxy.stop()
    with pytest.raises(StoreUnavailable):
        await proxied_store.ping()
    with pytest.raises(StoreUnavailable):
        await proxied_store.get_credential(row.tenant_id, row.id)

    await proxy.start()
    await proxied_store.ping()
    assert await proxied_store.get_credential(row.tenant_id, row.id) == row


async def test_close_during_an_outage_does_not_hang(proxied_store: PostgresStore, proxy: TcpProxy) -> None:
    await proxy.stop()
    await proxied_store.close()


async def _kill_sessions_of(database_url: str) -> None:
    """What a server restart does to every open session of the database."""
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()


async def _hold_connection(store: PostgresStore) -> None:
    async with store._connection() as conn:
        await conn.execute("SELECT pg_sleep(0.05)")


async def test_sessions_killed_by_the_server_fail_one_call_at_most(
    postgres_store: PostgresStore, pg_database_url: str
) -> None:
    # Several rounds: whether the kill notice or our next query reaches the connection
    # first is a race, and both orders must end in StoreUnavailable or success.
    for _ in range(5):
        # Several pooled connections, all of which the kill makes dead: only one call may fail.
        await asyncio.gather(*(_hold_connection(postgres_store) for _ in range(4)))
        await _kill_sessions_of(pg_database_url)
        outcomes: list[str] = []
        for _ in range(2):
            try:
                await postgres_store.ping()
                outcomes.append("ok")
            except StoreUnavailable:
                outcomes.append("unavailable")
        assert outcomes[-1] == "ok", outcomes
