"""IdentityService.WhoAmI: the caller's tenant and scopes from its token, over gRPC and REST."""

from __future__ import annotations

import grpc
import pytest

from integration_hub.v1 import common_pb2, identity_pb2, identity_pb2_grpc
from tests.harness import HubUnderTest


async def test_whoami_names_the_tokens_tenant_and_scopes(hut: HubUnderTest) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub(hut.channel)
    admin = await stub.WhoAmI(identity_pb2.WhoAmIRequest(), metadata=hut.auth(hut.tokens.admin))
    assert admin.tenant_id == "acme"
    assert list(admin.scopes) == [common_pb2.SCOPE_ADMIN, common_pb2.SCOPE_INVOKE]
    assert admin.token_id
    other = await stub.WhoAmI(identity_pb2.WhoAmIRequest(), metadata=hut.auth(hut.tokens.other_tenant))
    assert other.tenant_id == "globex"
    invoke = await stub.WhoAmI(identity_pb2.WhoAmIRequest(), metadata=hut.auth(hut.tokens.invoke_only))
    assert list(invoke.scopes) == [common_pb2.SCOPE_INVOKE]


async def test_whoami_refuses_a_bad_token(hut: HubUnderTest) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub(hut.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.WhoAmI(identity_pb2.WhoAmIRequest(), metadata=hut.auth("not-a-token"))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_whoami_over_rest(hut: HubUnderTest) -> None:
    async with hut.http.get(
        f"{hut.http_base}/v1/whoami", headers=hut.headers(hut.tokens.invoke_only)
    ) as response:
        assert response.status == 200
        body = await response.json()
    assert body["tenant_id"] == "acme"
    assert body["scopes"] == ["SCOPE_INVOKE"]
