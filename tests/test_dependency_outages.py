"""Postgres and Redis each stopped and restarted under load, with `serve --workers 2`.

Both dependencies sit behind a TcpProxy (tests/store/tcp_proxy.py) that the test stops
and starts: the hub's connections are cut and new ones refused, as in a server
restart, while the shared servers themselves are never touched. Throughout, a client
keeps calling Chat. What must hold: readiness goes 503 naming the dependency and
comes back to 200 on every worker; no worker crashes or restarts; every call ends
OK or with a clean UNAVAILABLE (never INTERNAL, never a hang); and every call that
succeeded has its usage row once the store is back (the recorder keeps its queue
through the outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import grpc
import pytest

from integration_hub.config import Settings
from integration_hub.v1 import chat_pb2 as chat
from integration_hub.v1 import chat_pb2_grpc, credentials_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import HubProcess, hub_process, run_cli, settings_for
from tests.store.tcp_proxy import TcpProxy

KEY = "sk-test-Outage1234567890abcdef"
WORKER_HEADER = "x-hub-worker"


@contextlib.asynccontextmanager
async def proxy_to(host: str, port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def readiness_of_each_worker(http_base: str, probes: int = 12) -> dict[str, tuple[int, str]]:
    """worker -> (status, body) over several new connections (the kernel spreads them)."""
    seen: dict[str, tuple[int, str]] = {}
    for _ in range(probes):
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"{http_base}/readiness/", timeout=aiohttp.ClientTimeout(total=5)) as response,
        ):
            seen[response.headers[WORKER_HEADER]] = (response.status, await response.text())
    return seen


async def wait_for_readiness(
    http_base: str, status: int, timeout: float = 20.0
) -> dict[str, tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while True:
        seen = await readiness_of_each_worker(http_base)
        if len(seen) == 2 and all(answer[0] == status for answer in seen.values()):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"readiness never became {status} on both workers: {seen}")
        await asyncio.sleep(0.2)


class Load:
    """Chat calls one after another on a few channels until stopped; counts each outcome."""

    def __init__(self, target: str, token: str) -> None:
        self._target, self._md = target, [("authorization", f"Bearer {token}")]
        self.outcomes: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, channels: int = 4) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(channels)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _run(self) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
        async with grpc.aio.insecure_channel(self._target, options=options) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            request = chat.ChatRequest(
                credential="main",
                model="gpt-4o-mini",
                messages=[chat.ChatMessage(role=chat.ROLE_USER, content=[chat.ContentPart(text="Hi")])],
            )
            while not self._stop.is_set():
                try:
                    await stub.Chat(request, metadata=self._md, timeout=10)
                    self.outcomes["OK"] += 1
                except grpc.aio.AioRpcError as failed:
                    self.outcomes[failed.code().name] += 1
                    await asyncio.sleep(0.05)  # a failing dependency: don't spin


async def usage_rows_ok(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM usage_records WHERE status = 'OK'")
        return count
    finally:
        await connection.close()


@pytest.mark.timeout(120)
async def test_postgres_and_redis_restarts_under_load(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    pg, rd = urlsplit(postgres_url), urlsplit(redis_url)
    async with (
        FakeOpenAI(valid_keys={KEY}) as fake,
        proxy_to(pg.hostname or "127.0.0.1", pg.port or 5432) as pg_proxy,
        proxy_to(rd.hostname or "127.0.0.1", rd.port or 6379) as redis_proxy,
    ):
        proxied_pg = postgres_url.replace(f":{pg.port}/", f":{pg_proxy.port}/")
        proxied_redis = redis_url.replace(f":{rd.port}/", f":{redis_proxy.port}/")
        settings = settings_for(tmp_path, database_url=proxied_pg, redis_url=proxied_redis)
        # The proxies run on this event loop: whatever blocks (starting the process, the CLI)
        # runs in a thread so that they keep forwarding meanwhile.
        with contextlib.ExitStack() as stack:
            hub = await asyncio.to_thread(
                stack.enter_context, hub_process(settings, tmp_path / "hub.log", workers=2)
            )
            workers_before = set(await wait_for_readiness(hub.http_base, 200))
            load = Load(hub.grpc_target, await _invoke_token(settings, hub, fake.base_url))
            load.start()
            await asyncio.sleep(1.0)

            await pg_proxy.stop()
            down = await wait_for_readiness(hub.http_base, 503)
            assert all("store" in body and "unavailable" in body for _, body in down.values()), down
            await asyncio.sleep(2.0)
            await pg_proxy.start()
            await wait_for_readiness(hub.http_base, 200)
            await asyncio.sleep(1.0)

            await redis_proxy.stop()
            down = await wait_for_readiness(hub.http_base, 503)
            assert all("cache" in body for _, body in down.values()), down
            ok_before_redis_restart = load.outcomes["OK"]
            await asyncio.sleep(2.0)
            assert load.outcomes["OK"] > ok_before_redis_restart  # calls go on without Redis
            await redis_proxy.start()
            workers_after = set(await wait_for_readiness(hub.http_base, 200))
            await asyncio.sleep(0.5)
            await load.stop()

            assert workers_after == workers_before  # the same two processes: none crashed
            assert set(load.outcomes) <= {"OK", "UNAVAILABLE"}, load.outcomes
            assert load.outcomes["OK"] > 20
            # Every successful call is recorded once the store is back (direct, not proxied).
            deadline = time.monotonic() + 20
            while await usage_rows_ok(postgres_url) < load.outcomes["OK"] and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert await usage_rows_ok(postgres_url) == load.outcomes["OK"]
            hub.process.terminate()
            assert await asyncio.to_thread(hub.process.wait, 20) == 0
            logs = hub.logs()
    assert "worker exited unexpectedly" not in logs
    assert KEY not in logs


async def _invoke_token(settings: Settings, hub: HubProcess, base_url: str) -> str:
    """A token for tenant acme, and its credential "main" pointing at the fake."""
    scopes = ("--scope", "admin", "--scope", "invoke")
    token = await asyncio.to_thread(run_cli, settings, "tokens", "create", "--tenant", "acme", *scopes)
    assert token.returncode == 0, token.stderr
    value = token.stdout.strip().splitlines()[-1]
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        await credentials_pb2_grpc.CredentialServiceStub(channel).CreateCredential(
            cpb.CreateCredentialRequest(
                provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": base_url}
            ),
            metadata=[("authorization", f"Bearer {value}")],
            timeout=10,
        )
    return value
