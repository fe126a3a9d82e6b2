"""Two hub processes on one Postgres and one Redis: a write on one replica is seen
by the other at once (pub/sub invalidation), not after the cache TTL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from integration_hub.v1 import credentials_pb2 as pb
from integration_hub.v1 import credentials_pb2_grpc
from tests.harness import eventually, hub_process, run_cli, settings_for


async def test_update_delete_and_revoke_reach_the_other_replica_at_once(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    # A long TTL: anything seen before the cache expires proves the invalidation worked.
    settings = settings_for(tmp_path, database_url=postgres_url, redis_url=redis_url)
    with hub_process(settings, tmp_path / "a.log") as a, hub_process(settings, tmp_path / "b.log") as b:
        created = run_cli(settings, "tokens", "create", "--tenant", "acme", "--scope", "admin")
        token = created.stdout.split()[-1]
        md = [("authorization", f"Bearer {token}")]
        async with (
            grpc.aio.insecure_channel(a.grpc_target) as ca,
            grpc.aio.insecure_channel(b.grpc_target) as cb,
        ):
            on_a, on_b = (
                credentials_pb2_grpc.CredentialServiceStub(ca),
                credentials_pb2_grpc.CredentialServiceStub(cb),
            )
            await on_a.CreateCredential(
                pb.CreateCredentialRequest(
                    provider="openai", name="main", secret={"api_key": "sk-test-Replica0123456789ab"}
                ),
                metadata=md,
            )
            before = (await on_b.GetCredential(pb.GetCredentialRequest(id="main"), metadata=md)).credential
            assert before.hint.endswith("89ab")  # B now caches the row

            # Pub/sub delivery to B is asynchronous: allow it a moment, far below the 30 s TTL.
            await on_a.UpdateCredential(
                pb.UpdateCredentialRequest(id="main", secret={"api_key": "sk-test-Replica9876543210zz"}),
                metadata=md,
            )

            async def b_sees_new_hint() -> bool:
                seen = (await on_b.GetCredential(pb.GetCredentialRequest(id="main"), metadata=md)).credential
                return seen.hint.endswith("10zz") and seen.revision == before.revision + 1

            assert await eventually(b_sees_new_hint, timeout=1.0)

            await on_a.DeleteCredential(pb.DeleteCredentialRequest(id="main"), metadata=md)

            async def b_sees_it_gone() -> bool:
                try:
                    await on_b.GetCredential(pb.GetCredentialRequest(id="main"), metadata=md)
                except grpc.aio.AioRpcError as error:
                    return error.code() == grpc.StatusCode.NOT_FOUND
                return False

            assert await eventually(b_sees_it_gone, timeout=1.0)

            token_id = run_cli(settings, "tokens", "list").stdout.split()[0]
            assert run_cli(settings, "tokens", "revoke", token_id).returncode == 0
            await asyncio.sleep(0.2)
            for stub in (on_a, on_b):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ListCredentials(pb.ListCredentialsRequest(), metadata=md)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert a.terminate() == 0
        assert b.terminate() == 0
