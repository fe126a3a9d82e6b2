"""The foundation's promise, end to end: a create, verify, update, rotate, rewrap
and retire cycle through real hub processes, the CLI, Postgres (or SQLite) and
Redis; then the database files, Redis, every log line and every response are
searched for the provider keys, which must appear nowhere."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import HubProcess, hub_process, run_cli, settings_for

OLD_KEY = "sk-proj-LeakCheckOld7Hq2Wm9Zx4Rv"
NEW_KEY = "sk-proj-LeakCheckNew3Jp8Kd5Ty1Ub"
PG_DATA = Path("/var/lib/postgresql")


class Client:
    """A REST client that keeps every response body it saw."""

    def __init__(self, hub: HubProcess, token: str) -> None:
        self.hub, self.token, self.seen = hub, token, []  # type: ignore[var-annotated]

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        # Blocking urllib in a thread: the fake provider runs on this test's event loop.
        return await asyncio.to_thread(self._call, method, path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - loopback only
            self.hub.http_base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            raw = response.read()
        self.seen.append(raw)
        return json.loads(raw)  # type: ignore[no-any-return]


def cli(settings: Any, *args: str, outputs: list[str]) -> subprocess.CompletedProcess[str]:
    result = run_cli(settings, *args)
    outputs += [result.stdout, result.stderr]
    assert result.returncode == 0, result.stderr
    return result


async def redis_dump(url: str) -> bytes:
    client = aioredis.from_url(url)
    try:
        blob = b""
        async for key in client.scan_iter():
            kind = await client.type(key)
            blob += key + (await client.get(key) or b"" if kind == b"string" else b"")
        return blob
    finally:
        await client.aclose()


async def postgres_dump(url: str) -> bytes:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CHECKPOINT")  # flush WAL to the data files we are about to read
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ]
        text = ""
        for table in tables:
            text += str(await conn.fetch(f'SELECT * FROM "{table}"'))  # noqa: S608 - names from the catalog
        return text.encode()
    finally:
        await conn.close()


def files_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_full_key_cycle_leaves_no_trace_of_the_secret(
    backend: str, postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path, database_url=postgres_url if backend == "postgres" else None, redis_url=redis_url
    )
    outputs: list[str] = []
    async with FakeOpenAI(valid_keys={OLD_KEY}) as fake:
        with (
            hub_process(settings, tmp_path / "a.log") as hub_a,
            hub_process(settings, tmp_path / "b.log") as hub_b,
        ):
            token = (
                cli(
                    settings,
                    "tokens",
                    "create",
                    "--tenant",
                    "acme",
                    "--scope",
                    "admin",
                    "--scope",
                    "invoke",
                    outputs=outputs,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            a, b = Client(hub_a, token), Client(hub_b, token)

            created = await a.call(
                "POST",
                "/v1/credentials",
                {
                    "provider": "openai",
                    "name": "main",
                    "secret": {"api_key": OLD_KEY},
                    "options": {"base_url": fake.base_url},
                },
            )
            assert (await b.call("POST", f"/v1/credentials/{created['id']}:verify", {}))["valid"] is True

            # The provider's own key rotation, on replica A; replica B must use the new key at once.
            fake.valid_keys = {NEW_KEY}
            await a.call("PATCH", f"/v1/credentials/{created['id']}", {"secret": {"api_key": NEW_KEY}})
            assert (await b.call("POST", "/v1/credentials/main:verify", {}))["valid"] is True

            # The hub's key rotation: new primary, rewrap online, retire the old key.
            cli(settings, "keys", "rotate", outputs=outputs)
            rewrap = cli(settings, "keys", "rewrap", outputs=outputs)
            assert "rewrapped 1 row(s) under k2" in rewrap.stdout
            cli(settings, "keys", "retire", "k1", outputs=outputs)
            status = json.loads(cli(settings, "keys", "status", "--json", outputs=outputs).stdout)
            assert {(s["id"], s["state"], s["rows"]) for s in status} == {
                ("k1", "retired", 0),
                ("k2", "primary", 1),
            }
            # Both replicas open the rewrapped row (their keyrings follow the file).
            for client in (a, b):
                assert (await client.call("POST", "/v1/credentials/main:verify", {}))["valid"] is True
            await a.call("GET", "/v1/credentials")
            assert hub_a.terminate() == 0
            assert hub_b.terminate() == 0
            logs = hub_a.logs() + hub_b.logs()

    assert "credential.decrypt" in logs  # the audit trail was written, without the value
    haystacks: dict[str, bytes] = {
        "logs": logs.encode(),
        "cli output": "".join(outputs).encode(),
        "responses": b"".join(a.seen + b.seen),
        "redis": await redis_dump(redis_url),
    }
    if backend == "postgres":
        haystacks["postgres rows"] = await postgres_dump(postgres_url)
        haystacks["postgres data files"] = files_under(PG_DATA)
    else:
        haystacks["sqlite files"] = b"".join(p.read_bytes() for p in tmp_path.glob("hub.db*"))
    assert haystacks["logs"]
    assert haystacks["responses"]
    for secret in (OLD_KEY, NEW_KEY):
        for where, blob in haystacks.items():
            assert secret.encode() not in blob, f"{secret[:12]}... found in {where}"
