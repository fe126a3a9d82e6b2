"""`integration-hub serve` as a real process: start-up refusals, probes, health,
reflection, readiness when a dependency fails, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from integration_hub.v1 import credentials_pb2 as pb
from integration_hub.v1 import credentials_pb2_grpc
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import REPO, free_port, hub_env, hub_process, run_cli, settings_for

KEY = "sk-test-Drain1234567890abcd"


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_and_fail(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integration_hub.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )


def test_refuses_to_start_without_a_keyring(tmp_path: Path) -> None:
    env = hub_env(
        settings_for(tmp_path, database_url=None),
        HUB_GRPC_PORT=str(free_port()),
        HUB_HTTP_PORT=str(free_port()),
    )
    del env["HUB_KEYRING_FILE"]
    result = start_and_fail(env)
    assert result.returncode != 0
    assert "HUB_KEYRING_FILE is not set" in result.stderr
    assert "no default key" in result.stderr


def test_refuses_a_keyring_readable_by_others(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    os.chmod(settings.keyring_file, 0o644)  # type: ignore[arg-type]
    result = start_and_fail(hub_env(settings, HUB_GRPC_PORT=str(free_port()), HUB_HTTP_PORT=str(free_port())))
    assert result.returncode != 0
    assert "0644" in result.stderr or "0o644" in result.stderr


def test_probes_health_and_reflection(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    # One worker: with two, the second may still be starting when the keyring is loosened
    # below, and a worker that cannot start stops the supervisor (tests/test_workers.py).
    with hub_process(settings, tmp_path / "hub.log", workers=1) as hub:
        assert get_json(hub.http_base + "/healthz/")[0] == 200
        status, body = get_json(hub.http_base + "/readiness/")
        assert (status, body["status"]) == (200, "ready")
        with grpc.insecure_channel(hub.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "integration_hub.v1.CredentialService"):
                answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            responses = reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            names = {s.name for r in responses for s in r.list_services_response.service}
            assert {"integration_hub.v1.CredentialService", "grpc.health.v1.Health"} <= names
        # The keyring file loosened on disk: readiness says so, the process keeps running.
        os.chmod(settings.keyring_file, 0o644)  # type: ignore[arg-type]
        time.sleep(1.2)
        status, body = get_json(hub.http_base + "/readiness/")
        assert status == 503
        assert "keyring" in str(body["checks"])
        os.chmod(settings.keyring_file, 0o600)  # type: ignore[arg-type]
        deadline = time.monotonic() + 5
        while get_json(hub.http_base + "/readiness/")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert get_json(hub.http_base + "/readiness/")[0] == 200
        assert hub.terminate() == 0


def test_readiness_fails_while_redis_is_unreachable(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    grpc_port, http_port = free_port(), free_port()
    env = hub_env(settings, HUB_GRPC_PORT=str(grpc_port), HUB_HTTP_PORT=str(http_port))
    with open(tmp_path / "hub.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "integration_hub.cli", "serve", "--migrate"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        deadline, status, body = time.monotonic() + 20, 0, {}
        while time.monotonic() < deadline:
            try:
                status, body = get_json(f"http://127.0.0.1:{http_port}/readiness/")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 503
        assert "redis unavailable" in str(body["checks"])
        assert get_json(f"http://127.0.0.1:{http_port}/healthz/")[0] == 200
    finally:
        process.terminate()
        assert process.wait(15) == 0


async def test_sigterm_drains_in_flight_calls_and_exits_zero(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        with hub_process(settings, tmp_path / "hub.log") as hub:
            token = run_cli(
                settings, "tokens", "create", "--tenant", "acme", "--scope", "admin"
            ).stdout.strip()
            md = [("authorization", f"Bearer {token}")]
            async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
                stub = credentials_pb2_grpc.CredentialServiceStub(channel)
                created = await stub.CreateCredential(
                    pb.CreateCredentialRequest(
                        provider="openai",
                        name="slow",
                        secret={"api_key": KEY},
                        options={"base_url": fake.base_url},
                    ),
                    metadata=md,
                )
                fake.delay = 1.0  # the provider takes a second: the call is in flight at SIGTERM
                call = asyncio.ensure_future(
                    stub.VerifyCredential(
                        pb.VerifyCredentialRequest(id=created.credential.id), metadata=md, timeout=10
                    )
                )
                await asyncio.sleep(0.4)
                hub.process.terminate()
                answer = await call
            assert answer.valid is True
            exit_code = await asyncio.to_thread(hub.process.wait, 15)
            assert exit_code == 0
            assert "stopped" in hub.logs()
