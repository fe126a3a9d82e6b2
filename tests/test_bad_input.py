"""Bad input on every transport: each is a clear error naming what is wrong, the service
keeps serving, and no secret (the provider key, any hub token) reaches a log line.

What tests/test_api_credentials.py and tests/test_api_chat.py already cover is not
repeated here (413 and malformed JSON on /v1/credentials, an unknown REST path, missing
and wrong tokens on ListCredentials, a revoked token and the invoke scope over REST,
unknown credentials and another tenant's on gRPC Chat, unknown providers on
CreateCredential). The cases below cover the rest: the chat paths of every transport,
protobuf bytes that do not decode, unknown models, methods, paths and routes, tokens and
scopes on gRPC and on the OpenAI-compatible endpoint, and a tenant's credential being
indistinguishable from a missing one.

Each case is one function asserting its own error. The first test runs each on a fresh
hub and checks that a normal call succeeds after it; the last runs all of them on one hub
of each store backend, then checks every transport still serves and greps the logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from integration_hub.auth import hash_token, mint_token, revoke_token
from integration_hub.v1 import chat_pb2 as pb
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import HubUnderTest, running_hub, settings_for

KEY = "sk-test-BadInput0123456789abcdefgh"
MAX_BYTES = 64 * 1024
WRONG_TOKEN = "ihub_" + "W" * 43  # shaped like a token, but no such token exists

pytestmark = pytest.mark.timeout(60)


@dataclass
class Ctx:
    hut: HubUnderTest
    fake: FakeOpenAI
    credential_id: str  # acme's "main"
    admin_only: str  # acme, scope admin only: no invoke
    revoked: str  # acme, admin + invoke, revoked

    def secrets(self) -> list[str]:
        tokens = self.hut.tokens
        return [
            KEY,
            tokens.admin,
            tokens.invoke_only,
            tokens.other_tenant,
            self.admin_only,
            self.revoked,
            WRONG_TOKEN,
        ]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    # strict_models: a model the account does not have is OpenAI's 404 model_not_found.
    async with FakeOpenAI(valid_keys={KEY}, strict_models=True) as server:
        yield server


async def prepare(hut: HubUnderTest, fake: FakeOpenAI) -> Ctx:
    created = await hut.credentials_stub().CreateCredential(
        cpb.CreateCredentialRequest(
            provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": fake.base_url}
        ),
        metadata=hut.auth(hut.tokens.admin),
    )
    store = hut.hub.store
    admin_only = (await mint_token(store, tenant_id="acme", scopes=["admin"]))[1]
    revoked = (await mint_token(store, tenant_id="acme", scopes=["admin", "invoke"]))[1]
    row = await store.get_token_by_hash(hash_token(revoked))
    assert row is not None
    await revoke_token(store, hut.hub.token_cache, row.id)
    return Ctx(hut, fake, created.credential.id, admin_only, revoked)


@pytest.fixture
async def ctx(tmp_path: Path, fake: FakeOpenAI) -> AsyncIterator[Ctx]:
    settings = settings_for(tmp_path, database_url=None, max_request_bytes=MAX_BYTES)
    async with running_hub(settings) as hut:
        yield await prepare(hut, fake)


# --- how errors are read, per transport ------------------------------------------------------


@dataclass
class Err:
    code: str  # gRPC status name
    reason: str
    message: str
    field: str | None = None
    http_status: int | None = None


def grpc_err(error: grpc.aio.AioRpcError) -> Err:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            assert status.details[0].Unpack(info)
            assert info.domain == "integration-hub"
            return Err(error.code().name, info.reason, error.details() or "", info.metadata.get("field"))
    # Refused by gRPC itself before any handler (an oversized message): no hub details.
    return Err(error.code().name, "", error.details() or "")


async def grpc_call(call: Awaitable[Any]) -> Err:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return grpc_err(caught.value)


async def grpc_stream_call(responses: Any) -> Err:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in responses:
            pass
    return grpc_err(caught.value)


async def http(
    ctx: Ctx, method: str, path: str, *, token: str | None = "", data: bytes | None = None, body: Any = None
) -> tuple[int, Any]:
    hut = ctx.hut
    headers = {"Content-Type": "application/json"}
    token = hut.tokens.invoke_only if token == "" else token
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    async with hut.http.request(method, hut.http_base + path, data=payload, headers=headers) as response:
        return response.status, await response.json()


def rest_err(status: int, body: Any) -> Err:
    """The Google-style JSON error of the REST API."""
    error = body["error"]
    assert error["code"] == status, body  # the body's code is the HTTP status it came with
    info = error["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    return Err(error["status"], info["reason"], error["message"], info["metadata"].get("field"), status)


def openai_err(status: int, body: Any) -> Err:
    """OpenAI's error shape, as the OpenAI-compatible endpoint must answer every error."""
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["type"], str)
    assert isinstance(error["code"], str)
    return Err("", error["code"].upper(), error["message"], error["param"], status)


def chat_message() -> list[pb.ChatMessage]:
    return [pb.ChatMessage(role=pb.ROLE_USER, content=[pb.ContentPart(text="Hi")])]


def chat(**fields: Any) -> pb.ChatRequest:
    return pb.ChatRequest(**{"credential": "main", "model": "gpt-4o", "messages": chat_message(), **fields})


def rest_chat(**fields: Any) -> dict[str, Any]:
    return {
        "credential": "main",
        "model": "gpt-4o",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "Hi"}]}],
        **fields,
    }


def openai_chat(**fields: Any) -> dict[str, Any]:
    return {"model": "main/gpt-4o", "messages": [{"role": "user", "content": "Hi"}], **fields}


def stub(ctx: Ctx) -> chat_pb2_grpc.ChatServiceStub:
    return chat_pb2_grpc.ChatServiceStub(ctx.hut.channel)


def md(ctx: Ctx, token: str | None = "") -> list[tuple[str, str]]:
    token = ctx.hut.tokens.invoke_only if token == "" else token
    return [] if token is None else ctx.hut.auth(token)


def identity(data: bytes) -> bytes:
    return data


CASES: dict[str, Callable[[Ctx], Awaitable[None]]] = {}


def case(function: Callable[[Ctx], Awaitable[None]]) -> Callable[[Ctx], Awaitable[None]]:
    CASES[function.__name__] = function
    return function


# --- oversized bodies ----------------------------------------------------------------------


@case
async def rest_chat_too_large(ctx: Ctx) -> None:
    huge = json.dumps(rest_chat(messages=[{"role": "ROLE_USER", "content": [{"text": "x" * MAX_BYTES}]}]))
    err = rest_err(*await http(ctx, "POST", "/v1/chat", data=huge.encode()))
    assert (err.http_status, err.code, err.reason) == (413, "RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")
    assert f"larger than the {MAX_BYTES} bytes" in err.message


@case
async def openai_chat_too_large(ctx: Ctx) -> None:
    huge = json.dumps(openai_chat(messages=[{"role": "user", "content": "x" * MAX_BYTES}]))
    err = openai_err(*await http(ctx, "POST", "/openai/v1/chat/completions", data=huge.encode()))
    assert (err.http_status, err.reason) == (413, "REQUEST_TOO_LARGE")
    assert f"larger than the {MAX_BYTES} bytes" in err.message


@case
async def grpc_chat_too_large(ctx: Ctx) -> None:
    request = chat(
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content=[pb.ContentPart(text="x" * MAX_BYTES)])]
    )
    err = await grpc_call(stub(ctx).Chat(request, metadata=md(ctx)))
    assert err.code == "RESOURCE_EXHAUSTED"
    assert re.search(r"larger than max \(\d+ vs\. 65536\)", err.message), err.message


# --- malformed JSON --------------------------------------------------------------------------


@case
async def rest_chat_malformed_json(ctx: Ctx) -> None:
    err = rest_err(*await http(ctx, "POST", "/v1/chat", data=b'{"credential": "main", "model": '))
    assert (err.http_status, err.reason, err.field) == (400, "INVALID_FIELD", "body")
    assert err.message.startswith("body: malformed JSON")


@case
async def rest_chat_body_not_an_object(ctx: Ctx) -> None:
    err = rest_err(*await http(ctx, "POST", "/v1/chat:stream", data=b"[1, 2]"))
    assert (err.http_status, err.reason, err.message) == (400, "INVALID_FIELD", "body: must be a JSON object")


@case
async def rest_chat_field_of_the_wrong_type(ctx: Ctx) -> None:
    err = rest_err(*await http(ctx, "POST", "/v1/chat", body=rest_chat(messages="hi")))
    assert (err.http_status, err.reason) == (400, "INVALID_FIELD")
    assert "messages" in err.message


@case
async def rest_chat_unknown_field(ctx: Ctx) -> None:
    err = rest_err(*await http(ctx, "POST", "/v1/chat", body=rest_chat(temprature=0.2)))
    assert (err.http_status, err.reason) == (400, "INVALID_FIELD")
    assert 'no field named "temprature"' in err.message


@case
async def openai_chat_malformed_json(ctx: Ctx) -> None:
    err = openai_err(
        *await http(ctx, "POST", "/openai/v1/chat/completions", data=b'{"model": "main/gpt-4o",')
    )
    assert (err.http_status, err.reason, err.field) == (400, "INVALID_FIELD", "body")
    assert err.message.startswith("body: malformed JSON")


@case
async def openai_chat_body_not_an_object(ctx: Ctx) -> None:
    err = openai_err(*await http(ctx, "POST", "/openai/v1/chat/completions", data=b'"hello"'))
    assert (err.http_status, err.field, err.message) == (400, "body", "body: must be a JSON object")


@case
async def openai_embeddings_malformed_json(ctx: Ctx) -> None:
    err = openai_err(*await http(ctx, "POST", "/openai/v1/embeddings", data=b"{input: [}"))
    assert (err.http_status, err.reason, err.field) == (400, "INVALID_FIELD", "body")
    assert err.message.startswith("body: malformed JSON")


# --- protobuf bytes that do not decode ---------------------------------------------------------


async def raw_unary(ctx: Ctx, method: str, data: bytes, token: str | None = "") -> Err:
    call = ctx.hut.channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)
    return await grpc_call(call(data, metadata=md(ctx, token), timeout=10))


@case
async def grpc_chat_corrupt_protobuf(ctx: Ctx) -> None:
    err = await raw_unary(ctx, "/integration_hub.v1.ChatService/Chat", b"\xff\xff\xff\xff")
    assert (err.code, err.reason, err.field) == ("INVALID_ARGUMENT", "INVALID_FIELD", "body")
    assert "not a valid integration_hub.v1.ChatRequest" in err.message
    assert "malformed protobuf" in err.message


@case
async def grpc_chat_truncated_protobuf(ctx: Ctx) -> None:
    valid = chat().SerializeToString()
    err = await raw_unary(ctx, "/integration_hub.v1.ChatService/Chat", valid[: len(valid) - 3])
    assert (err.code, err.reason, err.field) == ("INVALID_ARGUMENT", "INVALID_FIELD", "body")
    assert "not a valid integration_hub.v1.ChatRequest" in err.message


@case
async def grpc_stream_chat_corrupt_protobuf(ctx: Ctx) -> None:
    call = ctx.hut.channel.unary_stream(
        "/integration_hub.v1.ChatService/StreamChat",
        request_serializer=identity,
        response_deserializer=identity,
    )
    err = await grpc_stream_call(call(b"\x0a\x05ab", metadata=md(ctx), timeout=10))
    assert (err.code, err.reason) == ("INVALID_ARGUMENT", "INVALID_FIELD")
    assert "not a valid integration_hub.v1.ChatRequest" in err.message


@case
async def grpc_create_credential_bad_utf8_in_protobuf(ctx: Ctx) -> None:
    # Field 2 (name), a string, holding bytes that are not UTF-8.
    err = await raw_unary(
        ctx,
        "/integration_hub.v1.CredentialService/CreateCredential",
        b"\x12\x02\xff\xfe",
        ctx.hut.tokens.admin,
    )
    assert (err.code, err.reason) == ("INVALID_ARGUMENT", "INVALID_FIELD")
    assert "not a valid integration_hub.v1.CreateCredentialRequest" in err.message
    assert "UTF-8" in err.message


@case
async def grpc_corrupt_protobuf_without_a_token_is_unauthenticated_first(ctx: Ctx) -> None:
    err = await raw_unary(ctx, "/integration_hub.v1.ChatService/Chat", b"\xff\xff\xff\xff", token=None)
    assert (err.code, err.reason) == ("UNAUTHENTICATED", "UNAUTHENTICATED")


# --- unknown provider ------------------------------------------------------------------------


@case
async def grpc_list_credentials_of_an_unknown_provider(ctx: Ctx) -> None:
    err = await grpc_call(
        ctx.hut.credentials_stub().ListCredentials(
            cpb.ListCredentialsRequest(provider="nope"), metadata=md(ctx)
        )
    )
    assert (err.code, err.reason, err.field) == ("INVALID_ARGUMENT", "UNKNOWN_PROVIDER", "provider")
    assert "unknown provider 'nope'" in err.message


@case
async def rest_verify_a_secret_of_an_unknown_provider(ctx: Ctx) -> None:
    status, body = await http(
        ctx,
        "POST",
        "/v1/credentials:verify",
        token=ctx.hut.tokens.admin,
        body={"provider": "nope", "secret": {"api_key": KEY}},
    )
    err = rest_err(status, body)
    assert (err.http_status, err.reason, err.field) == (400, "UNKNOWN_PROVIDER", "provider")
    assert "unknown provider 'nope'" in err.message


# --- a model the provider does not have ------------------------------------------------------


@case
async def grpc_chat_unknown_model(ctx: Ctx) -> None:
    err = await grpc_call(stub(ctx).Chat(chat(model="gpt-9-imaginary"), metadata=md(ctx)))
    assert (err.code, err.reason) == ("NOT_FOUND", "PROVIDER_NOT_FOUND")
    assert "gpt-9-imaginary" in err.message


@case
async def grpc_stream_chat_unknown_model(ctx: Ctx) -> None:
    err = await grpc_stream_call(stub(ctx).StreamChat(chat(model="gpt-9-imaginary"), metadata=md(ctx)))
    assert (err.code, err.reason) == ("NOT_FOUND", "PROVIDER_NOT_FOUND")
    assert "gpt-9-imaginary" in err.message


@case
async def grpc_embed_unknown_model(ctx: Ctx) -> None:
    request = pb.EmbedRequest(credential="main", model="embed-9-imaginary", inputs=["a"])
    err = await grpc_call(stub(ctx).Embed(request, metadata=md(ctx)))
    assert (err.code, err.reason) == ("NOT_FOUND", "PROVIDER_NOT_FOUND")
    assert "embed-9-imaginary" in err.message


@case
async def rest_stream_unknown_model(ctx: Ctx) -> None:
    err = rest_err(*await http(ctx, "POST", "/v1/chat:stream", body=rest_chat(model="gpt-9-imaginary")))
    assert (err.http_status, err.reason) == (404, "PROVIDER_NOT_FOUND")
    assert "gpt-9-imaginary" in err.message


@case
async def openai_chat_unknown_model(ctx: Ctx) -> None:
    body = openai_chat(model="main/gpt-9-imaginary", stream=True)
    err = openai_err(*await http(ctx, "POST", "/openai/v1/chat/completions", body=body))
    assert (err.http_status, err.reason) == (404, "PROVIDER_NOT_FOUND")
    assert "gpt-9-imaginary" in err.message


# --- unknown methods, paths and routes -----------------------------------------------------------


@case
async def grpc_unknown_method(ctx: Ctx) -> None:
    err = await raw_unary(ctx, "/integration_hub.v1.ChatService/Summarize", b"")
    assert (err.code, err.reason) == ("UNIMPLEMENTED", "ROUTE_NOT_FOUND")
    assert "unknown method /integration_hub.v1.ChatService/Summarize" in err.message
    assert "integration_hub.v1.ChatService" in err.message.split(";", 1)[1]  # what there is instead
    # The catch-all answers only what no service serves: health and reflection still answer.
    health = await health_pb2_grpc.HealthStub(ctx.hut.channel).Check(
        health_pb2.HealthCheckRequest(service="integration_hub.v1.ChatService"), timeout=5
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    listing = reflection_pb2_grpc.ServerReflectionStub(ctx.hut.channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name async for answer in listing for s in answer.list_services_response.service}
    assert "integration_hub.v1.ChatService" in names


@case
async def grpc_unknown_service(ctx: Ctx) -> None:
    err = await raw_unary(ctx, "/acme.Billing/Charge", b"\x01\x02")
    assert (err.code, err.reason) == ("UNIMPLEMENTED", "ROUTE_NOT_FOUND")
    assert "unknown method /acme.Billing/Charge" in err.message


@case
async def openai_unknown_path(ctx: Ctx) -> None:
    err = openai_err(*await http(ctx, "POST", "/openai/v1/completions", body={"model": "main/gpt-4o"}))
    assert (err.http_status, err.reason) == (404, "ROUTE_NOT_FOUND")
    assert "/openai/v1/completions" in err.message


@case
async def grpc_chat_unknown_policy_route(ctx: Ctx) -> None:
    err = await grpc_call(stub(ctx).Chat(chat(credential="", model="fast-lane"), metadata=md(ctx)))
    assert (err.code, err.reason, err.field) == ("INVALID_ARGUMENT", "UNKNOWN_ROUTE", "credential")
    assert "'fast-lane' is not a route of this tenant" in err.message


@case
async def openai_chat_unknown_policy_route(ctx: Ctx) -> None:
    err = openai_err(
        *await http(ctx, "POST", "/openai/v1/chat/completions", body=openai_chat(model="fast-lane"))
    )
    assert (err.http_status, err.reason) == (400, "UNKNOWN_ROUTE")
    assert "'fast-lane' is not a route of this tenant" in err.message


# --- unknown credential, and another tenant's --------------------------------------------------


@case
async def rest_chat_unknown_credential(ctx: Ctx) -> None:
    err = rest_err(*await http(ctx, "POST", "/v1/chat", body=rest_chat(credential="nope")))
    assert (err.http_status, err.reason) == (404, "CREDENTIAL_NOT_FOUND")
    assert "no credential 'nope' in this tenant" in err.message


@case
async def grpc_embed_unknown_credential(ctx: Ctx) -> None:
    request = pb.EmbedRequest(credential="nope", model="text-embedding-3-small", inputs=["a"])
    err = await grpc_call(stub(ctx).Embed(request, metadata=md(ctx)))
    assert (err.code, err.reason) == ("NOT_FOUND", "CREDENTIAL_NOT_FOUND")
    assert "'nope'" in err.message


@case
async def openai_embeddings_unknown_credential(ctx: Ctx) -> None:
    body = {"model": "nope/text-embedding-3-small", "input": "a"}
    err = openai_err(*await http(ctx, "POST", "/openai/v1/embeddings", body=body))
    assert (err.http_status, err.reason) == (404, "CREDENTIAL_NOT_FOUND")
    assert "'nope'" in err.message


async def _other_tenant_sees(ctx: Ctx, ref: str) -> list[tuple[str, str, str]]:
    """What globex gets for credential `ref`, on each transport, with `ref` blanked out."""
    token = ctx.hut.tokens.other_tenant
    seen = [await grpc_call(stub(ctx).Chat(chat(credential=ref), metadata=md(ctx, token)))]
    seen.append(rest_err(*await http(ctx, "POST", "/v1/chat", token=token, body=rest_chat(credential=ref))))
    status, body = await http(
        ctx, "POST", "/openai/v1/chat/completions", token=token, body=openai_chat(model=f"{ref}/gpt-4o")
    )
    seen.append(openai_err(status, body))
    return [(e.code, e.reason, e.message.replace(ref, "<ref>")) for e in seen]


@case
async def another_tenants_credential_is_not_found_like_a_missing_one(ctx: Ctx) -> None:
    requests_before = len(ctx.fake.requests)
    by_name = await _other_tenant_sees(ctx, "main")
    by_id = await _other_tenant_sees(ctx, ctx.credential_id)
    missing_name = await _other_tenant_sees(ctx, "main-x")
    missing_id = await _other_tenant_sees(ctx, "0" * 32)
    assert by_name == missing_name
    assert by_id == missing_id
    assert by_name[0][:2] == ("NOT_FOUND", "CREDENTIAL_NOT_FOUND")
    assert len(ctx.fake.requests) == requests_before  # nothing reached the provider


# --- tokens and scopes -----------------------------------------------------------------------


@case
async def grpc_chat_without_a_token(ctx: Ctx) -> None:
    err = await grpc_call(stub(ctx).Chat(chat(), metadata=md(ctx, None)))
    assert (err.code, err.reason) == ("UNAUTHENTICATED", "UNAUTHENTICATED")
    assert "Authorization: Bearer" in err.message


@case
async def grpc_chat_with_a_wrong_token(ctx: Ctx) -> None:
    err = await grpc_call(stub(ctx).Chat(chat(), metadata=md(ctx, WRONG_TOKEN)))
    assert (err.code, err.reason) == ("UNAUTHENTICATED", "UNAUTHENTICATED")
    assert WRONG_TOKEN not in err.message


@case
async def grpc_stream_chat_with_a_revoked_token(ctx: Ctx) -> None:
    err = await grpc_stream_call(stub(ctx).StreamChat(chat(), metadata=md(ctx, ctx.revoked)))
    assert (err.code, err.reason) == ("UNAUTHENTICATED", "UNAUTHENTICATED")
    assert "revoked" in err.message


@case
async def rest_chat_with_a_wrong_token(ctx: Ctx) -> None:
    err = rest_err(*await http(ctx, "POST", "/v1/chat", token=WRONG_TOKEN, body=rest_chat()))
    assert (err.http_status, err.reason) == (401, "UNAUTHENTICATED")


@case
async def openai_chat_without_a_token(ctx: Ctx) -> None:
    err = openai_err(*await http(ctx, "POST", "/openai/v1/chat/completions", token=None, body=openai_chat()))
    assert (err.http_status, err.reason) == (401, "UNAUTHENTICATED")


@case
async def openai_chat_with_a_revoked_token(ctx: Ctx) -> None:
    status, body = await http(
        ctx, "POST", "/openai/v1/chat/completions", token=ctx.revoked, body=openai_chat()
    )
    err = openai_err(status, body)
    assert (err.http_status, err.reason) == (401, "UNAUTHENTICATED")
    assert "revoked" in err.message


@case
async def grpc_chat_without_the_invoke_scope(ctx: Ctx) -> None:
    err = await grpc_call(stub(ctx).Chat(chat(), metadata=md(ctx, ctx.admin_only)))
    assert (err.code, err.reason) == ("PERMISSION_DENIED", "MISSING_SCOPE")
    assert "Chat needs one of the scopes ['invoke']" in err.message


@case
async def rest_stream_without_the_invoke_scope(ctx: Ctx) -> None:
    err = rest_err(*await http(ctx, "POST", "/v1/chat:stream", token=ctx.admin_only, body=rest_chat()))
    assert (err.http_status, err.reason) == (403, "MISSING_SCOPE")
    assert "'invoke'" in err.message


@case
async def openai_chat_without_the_invoke_scope(ctx: Ctx) -> None:
    status, body = await http(
        ctx, "POST", "/openai/v1/chat/completions", token=ctx.admin_only, body=openai_chat()
    )
    err = openai_err(status, body)
    assert (err.http_status, err.reason) == (403, "MISSING_SCOPE")
    assert "'invoke'" in err.message


@case
async def grpc_create_credential_without_the_admin_scope(ctx: Ctx) -> None:
    request = cpb.CreateCredentialRequest(provider="openai", name="sneaky", secret={"api_key": KEY})
    err = await grpc_call(ctx.hut.credentials_stub().CreateCredential(request, metadata=md(ctx)))
    assert (err.code, err.reason) == ("PERMISSION_DENIED", "MISSING_SCOPE")
    assert "'admin'" in err.message


# --- the tests -----------------------------------------------------------------------------------


async def serves_every_transport(ctx: Ctx) -> None:
    """A normal chat on gRPC, REST and the OpenAI-compatible endpoint; a normal stream on gRPC."""
    ctx.fake.script(*[ChatReply(text="fine") for _ in range(4)])
    response = await stub(ctx).Chat(chat(), metadata=md(ctx), timeout=10)
    assert response.message.content[0].text == "fine"
    events = [e async for e in stub(ctx).StreamChat(chat(), metadata=md(ctx), timeout=10)]
    assert events[-1].HasField("end")
    status, body = await http(ctx, "POST", "/v1/chat", body=rest_chat())
    assert (status, body["message"]["content"][0]["text"]) == (200, "fine")
    status, body = await http(ctx, "POST", "/openai/v1/chat/completions", body=openai_chat())
    assert (status, body["choices"][0]["message"]["content"]) == (200, "fine")


def assert_clean_logs(ctx: Ctx) -> None:
    logs = ctx.hut.logs.getvalue()
    for secret in ctx.secrets():
        assert secret not in logs
    assert "Traceback" not in logs  # a bad request is never a crash
    assert '"level":"ERROR"' not in logs


@pytest.mark.parametrize("name", list(CASES))
async def test_bad_input_is_a_clear_error(ctx: Ctx, name: str) -> None:
    await CASES[name](ctx)
    await serves_every_transport(ctx)
    assert_clean_logs(ctx)


async def test_the_service_keeps_serving_and_logs_no_secret_after_all_of_these(
    backend_url: str, tmp_path: Path, fake: FakeOpenAI
) -> None:
    """Every case above against one hub (on each store backend), then every transport serves."""
    settings = settings_for(tmp_path, database_url=backend_url, max_request_bytes=MAX_BYTES)
    async with running_hub(settings) as hut:
        ctx = await prepare(hut, fake)
        for name, run in CASES.items():
            try:
                await run(ctx)
            except AssertionError as failure:
                raise AssertionError(f"{name}: {failure}") from failure
        await serves_every_transport(ctx)
        assert_clean_logs(ctx)
