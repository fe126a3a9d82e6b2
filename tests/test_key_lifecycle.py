"""Key lifecycle against a running hub: stale caches after a retire, tampered rows,
the nonce-bound warning, and a rewrap that crashes half-way and is resumed."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from integration_hub.audit import AuditLog
from integration_hub.cache import RowCache
from integration_hub.key_admin import key_status, retire_key, rewrap, rotate_keyring
from integration_hub.store import open_store
from integration_hub.store.base import CredentialRow
from integration_hub.v1 import credentials_pb2 as pb
from integration_hub.vault import ENCRYPTION_WARNING_THRESHOLD, Keyring, SealContext, open_sealed, seal
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import REPO, HubUnderTest, hub_env, run_cli, settings_for

KEY = "sk-test-Lifecycle0123456789xyz"


async def test_a_replica_without_redis_survives_rewrap_and_retire_by_another_process(
    hut: HubUnderTest,
) -> None:
    """The hub's in-process cache still holds the row sealed under k1 when k1 is retired."""
    stub, md = hut.credentials_stub(), hut.auth(hut.tokens.admin)
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        await stub.CreateCredential(
            pb.CreateCredentialRequest(
                provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": fake.base_url}
            ),
            metadata=md,
        )
        assert (await stub.VerifyCredential(pb.VerifyCredentialRequest(id="main"), metadata=md)).valid

        # An operator's CLI: its own store connection and a cache that cannot reach the hub's.
        path = hut.settings.keyring_file
        assert path is not None
        store = open_store(hut.settings.database_url)
        await store.connect()
        audit = AuditLog(store)
        rotate_keyring(path, audit)
        report = await rewrap(path, store, RowCache(), audit)
        assert report.rewrapped == 1
        await retire_key(path, 1, store, audit)
        await audit.flush()
        await store.close()

        answer = await stub.VerifyCredential(pb.VerifyCredentialRequest(id="main"), metadata=md)
        assert answer.valid, answer.reason


async def test_a_tampered_row_gives_one_generic_error_and_an_audit_event(hut: HubUnderTest) -> None:
    stub, md = hut.credentials_stub(), hut.auth(hut.tokens.admin)
    created = (
        await stub.CreateCredential(
            pb.CreateCredentialRequest(provider="openai", name="main", secret={"api_key": KEY}), metadata=md
        )
    ).credential
    row = await hut.hub.store.get_credential("acme", created.id)
    assert row is not None
    flipped = bytearray(row.ciphertext)
    flipped[-1] ^= 0x01
    await hut.hub.store.update_credential(
        CredentialRow(**{**{f: getattr(row, f) for f in row.__slots__}, "ciphertext": bytes(flipped)}),
        expected_version=row.version,
    )
    await hut.hub.credential_cache.invalidate([f"cred:acme:id:{created.id}", "cred:acme:name:main"])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.VerifyCredential(pb.VerifyCredentialRequest(id="main"), metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "could not be opened" in (caught.value.details() or "")
    assert "AUTHENTICATION_FAILED" not in (
        caught.value.details() or ""
    )  # the cause is not told to the caller

    await hut.hub.audit.flush()
    events = await hut.hub.store.list_audit_events(tenant_id="acme", action="credential.decrypt")
    assert events[0].outcome == "denied"
    assert events[0].detail["cause"] == "AUTHENTICATION_FAILED"
    assert events[0].credential_id == created.id


async def test_key_status_warns_well_before_the_nonce_bound(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    store = open_store(settings.database_url)
    await store.connect()
    await store.migrate()
    await store.add_encryptions(1, ENCRYPTION_WARNING_THRESHOLD)
    assert settings.keyring_file is not None
    statuses = await key_status(settings.keyring_file, store)
    await store.close()
    assert statuses[0].encryptions == ENCRYPTION_WARNING_THRESHOLD
    assert "2^32" in statuses[0].warning
    cli = run_cli(settings, "keys", "status")
    assert cli.returncode == 0
    assert "WARNING k1" in cli.stderr


async def test_rewrap_killed_half_way_is_resumed_by_running_it_again(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, database_url=postgres_url)
    assert settings.keyring_file is not None
    store = open_store(postgres_url)
    await store.connect()
    await store.migrate()
    keyring = Keyring.load(settings.keyring_file)
    now = datetime.now(UTC)
    rows = 600
    for i in range(rows):
        row_id = uuid.uuid4().hex
        blob = seal(
            keyring,
            json.dumps({"api_key": f"sk-row-{i:04d}-abcdefgh"}).encode(),
            SealContext("acme", row_id, "openai"),
        )
        await store.insert_credential(
            CredentialRow(
                id=row_id,
                tenant_id="acme",
                name=f"c{i:04d}",
                provider="openai",
                options={},
                ciphertext=blob,
                key_id=1,
                hint="****",
                secret_fields=("api_key",),
                created_at=now,
                updated_at=now,
            )
        )
    assert run_cli(settings, "keys", "rotate").returncode == 0

    process = subprocess.Popen(
        [sys.executable, "-m", "integration_hub.cli", "keys", "rewrap", "--batch-size", "10"],
        env=hub_env(settings),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for _ in range(400):  # kill it once some, but not all, rows have moved
        moved = (await store.count_credentials_by_key()).get(2, 0)
        if moved >= 50:
            break
        await asyncio.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    partial = await store.count_credentials_by_key()
    assert 0 < partial.get(2, 0) < rows, partial

    resumed = run_cli(settings, "keys", "rewrap")
    assert resumed.returncode == 0, resumed.stderr
    assert await store.count_credentials_by_key() == {2: rows}
    fresh = Keyring.load(settings.keyring_file)
    for row in await store.list_credentials("acme", provider=None, after_name=None, limit=rows):
        plaintext = open_sealed(fresh, row.ciphertext, SealContext(row.tenant_id, row.id, row.provider))
        assert json.loads(plaintext)["api_key"] == f"sk-row-{row.name[1:]}-abcdefgh"
    assert run_cli(settings, "keys", "retire", "k1").returncode == 0
    await store.close()
