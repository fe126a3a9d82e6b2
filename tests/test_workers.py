"""`integration-hub serve --workers N` as real processes: every worker takes connections
on the shared ports, a dead worker is replaced, /metrics adds up every worker, SIGTERM
drains them all and exits 0, and a supervisor that is killed leaves no worker behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from integration_hub.v1 import credentials_pb2 as pb
from integration_hub.v1 import credentials_pb2_grpc
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import HubProcess, hub_process, run_cli, settings_for

KEY = "sk-test-Workers1234567890abcd"
WORKER_HEADER = "x-hub-worker"


@pytest.fixture
def two_workers(tmp_path: Path, redis_url: str) -> Iterator[HubProcess]:
    settings = settings_for(tmp_path, database_url=None, redis_url=redis_url)
    with hub_process(settings, tmp_path / "hub.log", workers=2) as hub:
        yield hub


async def _worker_of_a_new_connection(http_base: str, path: str = "/healthz/", status: int = 200) -> str:
    # A new connection each time (force_close): the kernel picks a worker per connection.
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"{http_base}{path}", timeout=aiohttp.ClientTimeout(total=5)) as response,
    ):
        assert response.status == status
        return response.headers[WORKER_HEADER]


async def _workers_seen(
    http_base: str, connections: int = 60, path: str = "/healthz/", status: int = 200
) -> set[str]:
    return {await _worker_of_a_new_connection(http_base, path, status) for _ in range(connections)}


async def _wait_for_workers(http_base: str, count: int, timeout: float = 30.0) -> set[str]:
    """The `index/pid` of `count` distinct workers, once they all answer."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen |= await _workers_seen(http_base, 20)
        indexes = {value.split("/")[0] for value in seen}
        if len(indexes) >= count:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {sorted(seen)} answered within {timeout}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_every_worker_takes_connections_on_the_shared_ports(two_workers: HubProcess) -> None:
    seen = await _wait_for_workers(two_workers.http_base, 2)
    assert {value.split("/")[0] for value in seen} == {"0", "1"}
    pids = {int(value.split("/")[1]) for value in seen}
    assert two_workers.process.pid not in pids  # the supervisor serves nothing itself
    async with grpc.aio.insecure_channel(two_workers.grpc_target) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_killed_worker_is_replaced_and_the_others_keep_serving(two_workers: HubProcess) -> None:
    seen = await _wait_for_workers(two_workers.http_base, 2)
    victim = next(v for v in seen if v.startswith("0/"))
    victim_pid = int(victim.split("/")[1])
    os.kill(victim_pid, signal.SIGKILL)

    deadline = time.monotonic() + 20
    replaced: str | None = None
    while time.monotonic() < deadline and replaced is None:
        # Every connection is answered meanwhile: by worker 1, or by worker 0's successor.
        for value in await _workers_seen(two_workers.http_base, 10):
            if value.startswith("0/") and value != victim:
                replaced = value
        await asyncio.sleep(0.1)
    assert replaced is not None, two_workers.logs()
    assert two_workers.process.poll() is None
    assert "restarting worker" in two_workers.logs()


async def test_metrics_add_up_every_worker(two_workers: HubProcess) -> None:
    await _wait_for_workers(two_workers.http_base, 2)
    seen = await _workers_seen(two_workers.http_base, 40, path="/v1/no-such-route", status=404)
    assert len({value.split("/")[0] for value in seen}) == 2  # both workers answered some of them
    # Whichever worker answers the scrape, it counts the requests both workers answered.
    for _ in range(4):
        assert await _unmatched_requests(two_workers.http_base) == 40


async def _unmatched_requests(http_base: str) -> float:
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"{http_base}/metrics") as response,
    ):
        text = await response.text()
    pattern = r'^hub_requests_total\{(?=[^}]*method="unmatched")[^}]*\} ([0-9.e+]+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


async def test_sigterm_drains_every_worker_and_exits_zero(tmp_path: Path, redis_url: str) -> None:
    settings = settings_for(tmp_path, database_url=None, redis_url=redis_url)
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        with hub_process(settings, tmp_path / "hub.log", workers=2) as hub:
            await _wait_for_workers(hub.http_base, 2)
            token = run_cli(settings, "tokens", "create", "--tenant", "acme", "--scope", "admin").stdout
            md = [("authorization", f"Bearer {token.strip()}")]
            created = await _create_credential(hub, md, fake.base_url)
            fake.delay = 1.0  # every call is still in flight when SIGTERM comes
            calls = [
                asyncio.ensure_future(_verify_on_a_new_channel(hub, md, created))
                for _ in range(6)  # on six channels (connections): both workers get some
            ]
            await asyncio.sleep(0.4)
            hub.process.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*calls)
            exit_code = await asyncio.to_thread(hub.process.wait, 20)
            logs = hub.logs()
    assert all(answer.valid for answer in answers)
    assert exit_code == 0, logs
    assert logs.count('"worker exited"') == 2
    assert KEY not in logs


async def _create_credential(hub: HubProcess, md: list[tuple[str, str]], base_url: str) -> str:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        created = await credentials_pb2_grpc.CredentialServiceStub(channel).CreateCredential(
            pb.CreateCredentialRequest(
                provider="openai", name="slow", secret={"api_key": KEY}, options={"base_url": base_url}
            ),
            metadata=md,
            timeout=10,
        )
    return created.credential.id


async def _verify_on_a_new_channel(
    hub: HubProcess, md: list[tuple[str, str]], credential_id: str
) -> pb.VerifyCredentialResponse:
    async with grpc.aio.insecure_channel(
        hub.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]
    ) as ch:
        answer: pb.VerifyCredentialResponse = await credentials_pb2_grpc.CredentialServiceStub(
            ch
        ).VerifyCredential(pb.VerifyCredentialRequest(id=credential_id), metadata=md, timeout=15)
        return answer


async def test_workers_stop_by_themselves_when_the_supervisor_is_killed(two_workers: HubProcess) -> None:
    seen = await _wait_for_workers(two_workers.http_base, 2)
    pids = [int(value.split("/")[1]) for value in seen]
    two_workers.process.kill()
    two_workers.process.wait(10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        await asyncio.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), "a worker outlived its supervisor"


def test_a_worker_that_cannot_start_stops_the_supervisor_with_the_reason(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    Path(settings.keyring_file or "").chmod(0o644)  # the workers refuse a readable keyring
    with pytest.raises(RuntimeError) as failed, hub_process(settings, tmp_path / "hub.log", workers=2):
        pass
    message = str(failed.value)
    assert "before it started serving" in message
    assert "0600" in message or "mode" in message
