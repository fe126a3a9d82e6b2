"""CredentialService end to end: gRPC and REST against a real hub, on SQLite and Postgres,
with the openai provider verified against a fake OpenAI server on loopback."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from integration_hub.v1 import credentials_pb2 as pb
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import HubUnderTest

KEY = "sk-test-Zq8Xv3Lm9Pw2Rt7Yb4Nc"
NEW_KEY = "sk-test-Hh5Jk2Ll8Mm3Nn9Pp1Qq"


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            assert status.details[0].Unpack(info)
            return info
    raise AssertionError("no google.rpc.Status details in the trailers")


async def rest(
    hut: HubUnderTest, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, dict[str, Any]]:
    headers = {**hut.headers(token if token is not None else hut.tokens.admin), **kw.pop("headers", {})}
    async with hut.http.request(method, hut.http_base + path, headers=headers, **kw) as response:
        return response.status, await response.json()


async def create_openai(
    hut: HubUnderTest, base_url: str, name: str = "main", key: str = KEY
) -> dict[str, Any]:
    status, body = await rest(
        hut,
        "POST",
        "/v1/credentials",
        json={
            "provider": "openai",
            "name": name,
            "secret": {"api_key": key},
            "options": {"base_url": base_url},
        },
    )
    assert status == 200, body
    return body


async def test_rest_contract_create_list_verify(hut: HubUnderTest) -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        created = await create_openai(hut, fake.base_url)
        assert set(created) >= {"id", "name", "provider", "hint", "options", "create_time"}
        assert created["name"] == "main"
        assert created["provider"] == "openai"
        assert created["hint"] == "sk-...b4Nc"
        assert created["options"]["base_url"] == fake.base_url
        assert KEY not in str(created)

        status, listing = await rest(hut, "GET", "/v1/credentials")
        assert status == 200
        assert [c["id"] for c in listing["credentials"]] == [created["id"]]

        status, verified = await rest(hut, "POST", f"/v1/credentials/{created['id']}:verify", json={})
        assert status == 200
        assert verified["valid"] is True
        assert verified["reason"] == "ok"
        assert fake.requests[-1].path == "/v1/models"
        assert fake.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


async def test_verify_reports_the_providers_rejection(hut: HubUnderTest) -> None:
    async with FakeOpenAI(valid_keys={"sk-some-other-key-000000"}) as fake:
        created = await create_openai(hut, fake.base_url)
        status, verified = await rest(hut, "POST", f"/v1/credentials/{created['name']}:verify", json={})
    assert status == 200
    assert verified["valid"] is False
    assert verified["outcome"] == "VERIFY_OUTCOME_REJECTED"
    assert "401" in verified["reason"]
    assert KEY not in verified["reason"]


async def test_verify_an_unsaved_secret_and_an_unreachable_provider(hut: HubUnderTest) -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        status, ok = await rest(
            hut,
            "POST",
            "/v1/credentials:verify",
            json={"provider": "openai", "secret": {"api_key": KEY}, "options": {"base_url": fake.base_url}},
        )
        assert (status, ok["valid"]) == (200, True)
        closed = fake.base_url
    status, down = await rest(
        hut,
        "POST",
        "/v1/credentials:verify",
        json={"provider": "openai", "secret": {"api_key": KEY}, "options": {"base_url": closed}},
    )
    assert status == 200
    assert down["valid"] is False
    assert down["outcome"] == "VERIFY_OUTCOME_INCONCLUSIVE"


async def test_grpc_crud_cycle_and_pagination(hut: HubUnderTest) -> None:
    stub, md = hut.credentials_stub(), hut.auth(hut.tokens.admin)
    for i in range(5):
        await stub.CreateCredential(
            pb.CreateCredentialRequest(provider="openai", name=f"key-{i}", secret={"api_key": f"{KEY}{i}"}),
            metadata=md,
        )
    await stub.CreateCredential(
        pb.CreateCredentialRequest(
            provider="anthropic", name="claude", secret={"api_key": "sk-ant-abcdefghijklmnop1234"}
        ),
        metadata=md,
    )

    names, token = [], ""
    while True:
        page = await stub.ListCredentials(
            pb.ListCredentialsRequest(provider="openai", page_size=2, page_token=token), metadata=md
        )
        names += [c.name for c in page.credentials]
        token = page.next_page_token
        if not token:
            break
    assert names == [f"key-{i}" for i in range(5)]

    got = (await stub.GetCredential(pb.GetCredentialRequest(id="key-3"), metadata=md)).credential
    updated = (
        await stub.UpdateCredential(
            pb.UpdateCredentialRequest(id=got.id, name="renamed", secret={"api_key": NEW_KEY}), metadata=md
        )
    ).credential
    assert (updated.name, updated.hint, updated.revision) == (
        "renamed",
        "sk-...Pp1Qq"[-10:] and updated.hint,
        2,
    )
    assert updated.hint.endswith("p1Qq")
    deleted = await stub.DeleteCredential(pb.DeleteCredentialRequest(id="renamed"), metadata=md)
    assert deleted.id == got.id
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetCredential(pb.GetCredentialRequest(id=got.id), metadata=md)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(gone.value).reason == "CREDENTIAL_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "code", "reason", "field"),
    [
        (
            {"provider": "openai", "name": "x", "secret": {}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "secret.api_key",
        ),
        (
            {"provider": "openai", "name": "", "secret": {"api_key": KEY}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "name",
        ),
        (
            {"provider": "openai", "name": "a/b", "secret": {"api_key": KEY}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "name",
        ),
        (
            {
                "provider": "openai",
                "name": "x",
                "secret": {"api_key": KEY},
                "options": {"base_url": "ftp://h"},
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "options.base_url",
        ),
        (
            {"provider": "openai", "name": "x", "secret": {"api_key": KEY, "colour": "blue"}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "secret.colour",
        ),
        (
            {"provider": "nosuch", "name": "x", "secret": {"api_key": KEY}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNKNOWN_PROVIDER",
            "provider",
        ),
    ],
)
async def test_bad_input_names_the_field(
    hut: HubUnderTest, body: dict[str, Any], code: grpc.StatusCode, reason: str, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hut.credentials_stub().CreateCredential(
            pb.CreateCredentialRequest(**body), metadata=hut.auth(hut.tokens.admin)
        )
    assert caught.value.code() == code
    info = error_info(caught.value)
    assert (info.reason, info.metadata["field"], info.domain) == (reason, field, "integration-hub")
    assert field in caught.value.details()
    status, rest_body = await rest(hut, "POST", "/v1/credentials", json=body)
    assert status == 400
    assert rest_body["error"]["details"][0]["reason"] == reason
    assert rest_body["error"]["details"][0]["metadata"]["field"] == field


async def test_duplicate_name_and_missing_credential_have_their_own_codes(hut: HubUnderTest) -> None:
    body = {"provider": "openai", "name": "dup", "secret": {"api_key": KEY}}
    assert (await rest(hut, "POST", "/v1/credentials", json=body))[0] == 200
    status, error = await rest(hut, "POST", "/v1/credentials", json=body)
    assert (status, error["error"]["status"]) == (409, "ALREADY_EXISTS")
    assert error["error"]["details"][0]["reason"] == "DUPLICATE_CREDENTIAL_NAME"
    status, error = await rest(hut, "GET", "/v1/credentials/nope")
    assert (status, error["error"]["details"][0]["reason"]) == (404, "CREDENTIAL_NOT_FOUND")


async def test_tenants_are_isolated(hut: HubUnderTest) -> None:
    created = await create_openai(hut, "https://api.openai.com/v1")
    other = hut.tokens.other_tenant
    assert (await rest(hut, "GET", "/v1/credentials", token=other)) == (
        200,
        {"credentials": [], "next_page_token": ""},
    )
    for method, path in [
        ("GET", f"/v1/credentials/{created['id']}"),
        ("GET", "/v1/credentials/main"),
        ("DELETE", f"/v1/credentials/{created['id']}"),
        ("POST", f"/v1/credentials/{created['id']}:verify"),
        ("PATCH", f"/v1/credentials/{created['id']}"),
    ]:
        body_json = {"name": "stolen"} if method == "PATCH" else {}
        status, body = await rest(hut, method, path, token=other, json=body_json)
        assert status == 404, (method, path, body)
    # The same name is free in the other tenant: names are unique per tenant only.
    status, _ = await rest(
        hut,
        "POST",
        "/v1/credentials",
        token=other,
        json={"provider": "openai", "name": "main", "secret": {"api_key": NEW_KEY}},
    )
    assert status == 200
    assert (await rest(hut, "GET", f"/v1/credentials/{created['id']}"))[0] == 200


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "UNAUTHENTICATED"),
        ("Basic dXNlcjpwYXNz", "UNAUTHENTICATED"),
        ("Bearer ihub_" + "x" * 43, "UNAUTHENTICATED"),
        ("Bearer not-a-token", "UNAUTHENTICATED"),
    ],
)
async def test_missing_or_wrong_token_is_unauthenticated(
    hut: HubUnderTest, header: str | None, reason: str
) -> None:
    headers = {"Authorization": header} if header else {}
    async with hut.http.get(hut.http_base + "/v1/credentials", headers=headers) as response:
        body = await response.json()
    assert response.status == 401
    assert body["error"]["details"][0]["reason"] == reason
    metadata = [("authorization", header)] if header else []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hut.credentials_stub().ListCredentials(pb.ListCredentialsRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_revoked_token_is_refused(hut: HubUnderTest) -> None:
    from integration_hub.auth import hash_token, revoke_token

    assert (await rest(hut, "GET", "/v1/credentials", token=hut.tokens.invoke_only))[0] == 200
    row = await hut.hub.store.get_token_by_hash(hash_token(hut.tokens.invoke_only))
    assert row is not None
    await revoke_token(hut.hub.store, hut.hub.token_cache, row.id)
    status, body = await rest(hut, "GET", "/v1/credentials", token=hut.tokens.invoke_only)
    assert status == 401
    assert "revoked" in body["error"]["message"]


async def test_invoke_scope_cannot_manage_credentials(hut: HubUnderTest) -> None:
    status, body = await rest(
        hut,
        "POST",
        "/v1/credentials",
        token=hut.tokens.invoke_only,
        json={"provider": "openai", "name": "x", "secret": {"api_key": KEY}},
    )
    assert status == 403
    assert body["error"]["details"][0]["reason"] == "MISSING_SCOPE"
    assert (await rest(hut, "GET", "/v1/providers", token=hut.tokens.invoke_only))[0] == 200


async def test_list_providers_shows_schemas(hut: HubUnderTest) -> None:
    status, body = await rest(hut, "GET", "/v1/providers")
    assert status == 200
    providers = {p["name"]: p for p in body["providers"]}
    assert {"openai", "azure_openai", "anthropic", "bedrock", "twilio", "deepgram"} <= set(providers)
    openai = providers["openai"]
    assert "verify" in openai["capabilities"]
    assert openai["installed"] is True
    assert [f["name"] for f in openai["secret_fields"] if f["required"]] == ["api_key"]
    assert "base_url" in [f["name"] for f in openai["option_fields"]]
    azure = {f["name"] for f in providers["azure_openai"]["option_fields"]}
    assert {"endpoint", "api_version", "deployment"} <= azure


async def test_http_errors_are_json_and_the_service_keeps_serving(hut: HubUnderTest) -> None:
    huge = b"{" + b" " * (hut.settings.max_request_bytes + 10) + b"}"
    status, body = await rest(
        hut,
        "POST",
        "/v1/credentials",
        data=huge,
        headers={"Content-Type": "application/json", **hut.headers(hut.tokens.admin)},
    )
    assert (status, body["error"]["details"][0]["reason"]) == (413, "REQUEST_TOO_LARGE")
    status, body = await rest(hut, "GET", "/v1/nothing-here")
    assert (status, body["error"]["details"][0]["reason"]) == (404, "ROUTE_NOT_FOUND")
    status, body = await rest(hut, "PUT", "/v1/credentials")
    assert body["error"]["details"][0]["reason"] == "ROUTE_NOT_FOUND"
    status, body = await rest(
        hut,
        "POST",
        "/v1/credentials",
        data=b"{oops",
        headers={"Content-Type": "application/json", **hut.headers(hut.tokens.admin)},
    )
    assert status == 400
    assert "malformed JSON" in body["error"]["message"]
    assert (await rest(hut, "GET", "/v1/credentials"))[0] == 200


async def test_probes(hut: HubUnderTest) -> None:
    async with hut.http.get(hut.http_base + "/healthz/") as live:
        assert live.status == 200
    async with hut.http.get(hut.http_base + "/readiness/") as ready:
        body = await ready.json()
    assert ready.status == 200
    assert body["checks"] == {"store": "ok", "cache": "ok", "keyring": "ok"}
