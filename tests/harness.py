"""Runs a real hub for tests: in-process on loopback ports, or as a subprocess.

Nothing is mocked: the servers, the store (SQLite or Postgres), Redis and the
keyring file are the real ones; only providers are fakes on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from integration_hub.auth import mint_token
from integration_hub.config import Settings
from integration_hub.hub import Hub
from integration_hub.logs import configure_logging
from integration_hub.serve import RunningServers, start_servers
from integration_hub.v1 import credentials_pb2_grpc
from integration_hub.vault import Keyring

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_keyring(path: Path) -> Path:
    Keyring.generate().save(path)
    return path


@dataclass
class Tokens:
    admin: str  # tenant "acme", scopes admin + invoke
    invoke_only: str  # tenant "acme", scope invoke
    other_tenant: str  # tenant "globex", scopes admin + invoke


@dataclass
class HubUnderTest:
    hub: Hub
    servers: RunningServers
    settings: Settings
    tokens: Tokens
    logs: io.StringIO
    http: aiohttp.ClientSession
    channel: grpc.aio.Channel

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.servers.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.servers.grpc_port}"

    def credentials_stub(self) -> credentials_pb2_grpc.CredentialServiceStub:
        return credentials_pb2_grpc.CredentialServiceStub(self.channel)

    @staticmethod
    def auth(token: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token}")]

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


# Most tests check what one provider answer becomes (a mapped error, a usage row), so
# their hubs make one attempt per call; retries, fallback and breakers are tested under
# tests/policy/ with policies of their own (pass `policy=` here, or None for the defaults).
ONE_ATTEMPT_POLICY = "[defaults]\nmax_attempts = 1\n"


def write_policy(tmp: Path, text: str, name: str = "policy.toml") -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def settings_for(
    tmp: Path,
    *,
    database_url: str | None,
    redis_url: str | None = None,
    policy: str | None = ONE_ATTEMPT_POLICY,
    **overrides: Any,
) -> Settings:
    keyring = (
        make_keyring(tmp / "keyring.json") if not (tmp / "keyring.json").exists() else tmp / "keyring.json"
    )
    if policy is not None and "policy_file" not in overrides:
        overrides["policy_file"] = write_policy(tmp, policy)
    base = Settings(
        database_url=database_url or f"sqlite:///{tmp / 'hub.db'}",
        redis_url=redis_url,
        keyring_file=str(keyring),
        host="127.0.0.1",
        grpc_port=0,
        http_port=0,
        drain_seconds=2.0,
    )
    return replace(base, **overrides)


@contextlib.asynccontextmanager
async def running_hub(settings: Settings) -> AsyncIterator[HubUnderTest]:
    logs = io.StringIO()
    handler = configure_logging("DEBUG", stream=logs)
    hub = await Hub.open(settings, migrate=True)
    servers = await start_servers(hub, settings)
    tokens = Tokens(
        admin=(await mint_token(hub.store, tenant_id="acme", scopes=["admin", "invoke"]))[1],
        invoke_only=(await mint_token(hub.store, tenant_id="acme", scopes=["invoke"]))[1],
        other_tenant=(await mint_token(hub.store, tenant_id="globex", scopes=["admin", "invoke"]))[1],
    )
    http = aiohttp.ClientSession()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{servers.grpc_port}")
    try:
        yield HubUnderTest(hub, servers, settings, tokens, logs, http, channel)
    finally:
        await channel.close()
        await http.close()
        await servers.stop(0.5)
        await hub.close()
        handler.close()


# --- a hub as a separate process ---------------------------------------------------


@dataclass
class HubProcess:
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    log_path: Path

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def hub_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    values = {
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_REDIS_URL": settings.redis_url,
        "HUB_KEYRING_FILE": settings.keyring_file,
        "HUB_HOST": settings.host,
        "HUB_DRAIN_SECONDS": str(settings.drain_seconds),
        "HUB_LOG_LEVEL": "DEBUG",
        "HUB_POLICY_FILE": settings.policy_file,
        "HUB_PUBLIC_URL": settings.public_url,
    }
    env.update({k: v for k, v in values.items() if v})
    env.update(extra)
    return env


def run_cli(
    settings: Settings, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integration_hub.cli", *args],
        env=hub_env(settings, **env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@contextlib.contextmanager
def hub_process(
    settings: Settings, log_path: Path, *, migrate: bool = True, workers: int | None = None, **env_extra: str
) -> Iterator[HubProcess]:
    """`integration-hub serve` as a process; `workers` None is the CLI's default (one per core)."""
    grpc_port, http_port = free_port(), free_port()
    env = hub_env(settings, HUB_GRPC_PORT=str(grpc_port), HUB_HTTP_PORT=str(http_port), **env_extra)
    argv = [sys.executable, "-m", "integration_hub.cli", "serve"] + (["--migrate"] if migrate else [])
    if workers is not None:
        argv += ["--workers", str(workers)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    running = HubProcess(process, grpc_port, http_port, log_path)
    try:
        wait_until_ready(running)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_until_ready(hub: HubProcess, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.process.poll() is not None:
            raise RuntimeError(f"hub exited with {hub.process.returncode}:\n{hub.logs()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{hub.http_base}/readiness/", timeout=1) as response,  # noqa: S310
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"hub not ready within {timeout}s:\n{hub.logs()}")


async def eventually(check: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)
