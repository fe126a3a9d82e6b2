"""The chat path end to end: gRPC, REST and the OpenAI-compatible endpoint (with the
official openai SDK as the client), through a stored credential, to a fake OpenAI
upstream on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import openai
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

from integration_hub.v1 import chat_pb2 as pb
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_server import ChatReply, FakeOpenAI, FakeToolCall
from tests.harness import HubUnderTest

KEY = "sk-test-ChatPath0123456789abcd"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}) as server:
        yield server


@pytest.fixture
async def hub_with_openai(hut: HubUnderTest, fake: FakeOpenAI) -> HubUnderTest:
    await hut.credentials_stub().CreateCredential(
        cpb.CreateCredentialRequest(
            provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": fake.base_url}
        ),
        metadata=hut.auth(hut.tokens.admin),
    )
    return hut


def sdk(hut: HubUnderTest, token: str | None = None, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=hut.http_base + "/openai/v1", api_key=token or hut.tokens.invoke_only, max_retries=0, **kw
    )


def user(text: str) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])


def error_reason(error: grpc.aio.AioRpcError) -> tuple[str, list[Any]]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
            status.details[0].Unpack(info)
            extra = [retry] if len(status.details) > 1 and status.details[1].Unpack(retry) else []
            return info.reason, extra
    raise AssertionError("no status details")


async def test_grpc_chat_and_usage(hub_with_openai: HubUnderTest, fake: FakeOpenAI) -> None:
    hut = hub_with_openai
    fake.script(
        ChatReply(
            text="Bonjour!",
            prompt_tokens=20,
            completion_tokens=3,
            cached_tokens=8,
            headers={"x-request-id": "req_123"},
        )
    )
    stub = chat_pb2_grpc.ChatServiceStub(hut.channel)
    response = await stub.Chat(
        pb.ChatRequest(credential="main", model="gpt-4o-mini", messages=[user("Hi")], temperature=0.2),
        metadata=hut.auth(hut.tokens.invoke_only),
    )
    assert response.message.content[0].text == "Bonjour!"
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert (
        response.usage.input_tokens,
        response.usage.output_tokens,
        response.usage.cached_tokens,
        response.usage.total_tokens,
    ) == (20, 3, 8, 23)
    assert response.provider_request_id == "req_123"
    assert response.provider == "openai"
    assert response.timings.total.ToNanoseconds() >= response.timings.upstream.ToNanoseconds() > 0
    sent = fake.requests[-1].json()
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.2
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


async def test_grpc_tool_call_round_trip_and_stream(hub_with_openai: HubUnderTest, fake: FakeOpenAI) -> None:
    hut = hub_with_openai
    stub, md = chat_pb2_grpc.ChatServiceStub(hut.channel), hut.auth(hut.tokens.invoke_only)
    params = struct_pb2.Struct()
    params.update(WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]
    tool = pb.Tool(name="get_weather", description="Weather for a city", parameters=params)
    fake.script(
        ChatReply(
            text=None,
            tool_calls=[
                FakeToolCall("get_weather", '{"city": "Paris"}', id="call_1"),
                FakeToolCall("get_weather", '{"city": "Oslo"}', id="call_2"),
            ],
        )
    )
    first = await stub.Chat(
        pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("Weather?")], tools=[tool]),
        metadata=md,
    )
    assert first.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, json.loads(c.arguments)["city"]) for c in first.message.tool_calls] == [
        ("call_1", "get_weather", "Paris"),
        ("call_2", "get_weather", "Oslo"),
    ]

    history = [
        user("Weather?"),
        first.message,
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="call_1", content=[pb.ContentPart(text="18C")]),
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="call_2", content=[pb.ContentPart(text="2C")]),
    ]
    fake.script(ChatReply(text="Paris 18C, Oslo 2C", text_chunks=["Paris 18C", ", Oslo 2C"]))
    events = [
        e
        async for e in stub.StreamChat(
            pb.ChatRequest(credential="main", model="gpt-4o", messages=history, tools=[tool]), metadata=md
        )
    ]
    sent = fake.requests[-1].json()
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
    assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][2]["tool_call_id"] == "call_1"
    assert "".join(e.text_delta.text for e in events if e.HasField("text_delta")) == "Paris 18C, Oslo 2C"
    end = events[-1]
    assert end.HasField("end")
    assert end.end.finish_reason == pb.FINISH_REASON_STOP
    assert end.end.usage.total_tokens > 0
    assert end.end.timings.time_to_first_token.ToNanoseconds() > 0


async def test_streamed_parallel_tool_calls_are_assembled_by_index(
    hub_with_openai: HubUnderTest, fake: FakeOpenAI
) -> None:
    hut = hub_with_openai
    fake.script(
        ChatReply(
            text=None,
            interleave_tool_calls=True,
            arguments_chunk_size=3,
            tool_calls=[
                FakeToolCall("get_weather", '{"city": "Paris"}', id="call_a"),
                FakeToolCall("get_weather", '{"city": "Rome"}', id="call_b"),
            ],
        )
    )
    stub = chat_pb2_grpc.ChatServiceStub(hut.channel)
    events = [
        e
        async for e in stub.StreamChat(
            pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("Weather?")]),
            metadata=hut.auth(hut.tokens.invoke_only),
        )
    ]
    calls: dict[int, dict[str, str]] = {}
    for event in events:
        if event.HasField("tool_call_delta"):
            delta = event.tool_call_delta
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or delta.id
            call["name"] = call["name"] or delta.name
            call["arguments"] += delta.arguments_fragment
    assert calls == {
        0: {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Rome"}'},
    }
    assert events[-1].end.finish_reason == pb.FINISH_REASON_TOOL_CALLS


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (401, grpc.StatusCode.UNAUTHENTICATED, "PROVIDER_AUTH_FAILED"),
        (403, grpc.StatusCode.PERMISSION_DENIED, "PROVIDER_PERMISSION_DENIED"),
        (404, grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND"),
        (400, grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_INVALID_REQUEST"),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
        (503, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    ],
)
async def test_provider_errors_map_to_hub_codes(
    hub_with_openai: HubUnderTest, fake: FakeOpenAI, status: int, code: grpc.StatusCode, reason: str
) -> None:
    hut = hub_with_openai
    fake.force_status, fake.retry_after = status, "7"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat_pb2_grpc.ChatServiceStub(hut.channel).Chat(
            pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("Hi")]),
            metadata=hut.auth(hut.tokens.invoke_only),
        )
    assert caught.value.code() == code
    found, extra = error_reason(caught.value)
    assert found == reason
    if status == 429:
        assert extra[0].retry_delay.seconds == 7
    assert KEY not in (caught.value.details() or "")


async def test_a_stream_failing_midway_ends_with_the_mapped_status(
    hub_with_openai: HubUnderTest, fake: FakeOpenAI
) -> None:
    hut = hub_with_openai
    fake.script(ChatReply(text="one two three four five", error_after=2))
    stub = chat_pb2_grpc.ChatServiceStub(hut.channel)
    received: list[pb.StreamChatResponse] = []

    async def consume() -> None:
        async for event in stub.StreamChat(
            pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("Hi")]),
            metadata=hut.auth(hut.tokens.invoke_only),
        ):
            received.append(event)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consume()
    assert received
    assert not any(e.HasField("end") for e in received)
    assert caught.value.code() != grpc.StatusCode.OK


async def test_cancelled_grpc_stream_cancels_the_upstream_request(
    hub_with_openai: HubUnderTest, fake: FakeOpenAI
) -> None:
    hut = hub_with_openai
    fake.script(ChatReply(text="never ending", hold_open=True))
    call = chat_pb2_grpc.ChatServiceStub(hut.channel).StreamChat(
        pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("Hi")]),
        metadata=hut.auth(hut.tokens.invoke_only),
    )
    await call.read()  # the stream is flowing
    cancelled_at = time.monotonic()
    call.cancel()
    await fake.wait_for_disconnect(timeout=2.0)
    assert time.monotonic() - cancelled_at < 0.5


async def test_bad_chat_requests_name_the_field(hub_with_openai: HubUnderTest) -> None:
    hut = hub_with_openai
    stub, md = chat_pb2_grpc.ChatServiceStub(hut.channel), hut.auth(hut.tokens.invoke_only)
    cases = [
        (pb.ChatRequest(model="gpt-4o", messages=[user("x")]), "credential"),
        (pb.ChatRequest(credential="main", messages=[user("x")]), "model"),
        (pb.ChatRequest(credential="main", model="gpt-4o"), "messages"),
        (
            pb.ChatRequest(credential="main", model="gpt-4o", messages=[pb.ChatMessage(role=pb.ROLE_USER)]),
            "messages[0].content",
        ),
        (pb.ChatRequest(credential="nope", model="gpt-4o", messages=[user("x")]), None),
    ]
    for request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Chat(request, metadata=md)
        if field is None:
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        else:
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as other_tenant:
        await stub.Chat(
            pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("x")]),
            metadata=hut.auth(hut.tokens.other_tenant),
        )
    assert other_tenant.value.code() == grpc.StatusCode.NOT_FOUND


async def test_rest_chat_stream_is_ndjson(hub_with_openai: HubUnderTest, fake: FakeOpenAI) -> None:
    hut = hub_with_openai
    fake.script(ChatReply(text="a b c"))
    body = {
        "credential": "main",
        "model": "gpt-4o",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "x"}]}],
    }
    async with hut.http.post(
        hut.http_base + "/v1/chat:stream", json=body, headers=hut.headers(hut.tokens.invoke_only)
    ) as response:
        assert response.status == 200
        lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert "".join(line["result"].get("text_delta", {}).get("text", "") for line in lines) == "a b c"
    assert lines[-1]["result"]["end"]["finish_reason"] == "FINISH_REASON_STOP"
    body["credential"] = "nope"
    async with hut.http.post(
        hut.http_base + "/v1/chat:stream", json=body, headers=hut.headers(hut.tokens.invoke_only)
    ) as response:
        assert response.status == 404


async def test_embeddings_over_grpc(hub_with_openai: HubUnderTest, fake: FakeOpenAI) -> None:
    hut = hub_with_openai
    response = await chat_pb2_grpc.ChatServiceStub(hut.channel).Embed(
        pb.EmbedRequest(
            credential="main", model="text-embedding-3-small", inputs=["a", "b", "c"], dimensions=8
        ),
        metadata=hut.auth(hut.tokens.invoke_only),
    )
    assert [e.index for e in response.embeddings] == [0, 1, 2]
    assert all(len(e.values) == 8 for e in response.embeddings)
    assert fake.requests[-1].json()["dimensions"] == 8


async def test_rerank_is_refused_cleanly_for_a_provider_without_it(hub_with_openai: HubUnderTest) -> None:
    hut = hub_with_openai
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat_pb2_grpc.ChatServiceStub(hut.channel).Rerank(
            pb.RerankRequest(credential="main", model="x", query="q", documents=["a"]),
            metadata=hut.auth(hut.tokens.invoke_only),
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value)[0] == "CAPABILITY_NOT_SUPPORTED"
    # Over REST the same refusal is a client error (400), not a server one (5xx).
    body = {"credential": "main", "model": "x", "query": "q", "documents": ["a"]}
    async with hut.http.post(
        hut.http_base + "/v1/rerank", json=body, headers=hut.headers(hut.tokens.invoke_only)
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert (error["status"], error["details"][0]["reason"]) == (
        "FAILED_PRECONDITION",
        "CAPABILITY_NOT_SUPPORTED",
    )


# --- the OpenAI-compatible endpoint, with the openai SDK as the client ------------------------


async def test_openai_sdk_chat_with_tools(hub_with_openai: HubUnderTest, fake: FakeOpenAI) -> None:
    client = sdk(hub_with_openai)
    fake.script(
        ChatReply(text=None, tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}', id="call_9")])
    )
    first = await client.chat.completions.create(
        model="main/gpt-4o-mini",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name) == ("call_9", "get_weather")  # type: ignore[union-attr]
    assert fake.requests[-1].json()["model"] == "gpt-4o-mini"
    assert fake.requests[-1].json()["tools"][0]["function"]["name"] == "get_weather"

    fake.script(ChatReply(text="18C and sunny"))
    second = await client.chat.completions.create(
        model="main/gpt-4o-mini",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_9", "content": "18C"},
        ],
    )
    assert second.choices[0].message.content == "18C and sunny"
    assert second.model == "main/gpt-4o-mini"
    assert second.usage is not None
    assert second.usage.total_tokens == second.usage.prompt_tokens + second.usage.completion_tokens
    await client.close()


async def test_openai_sdk_stream_with_usage(hub_with_openai: HubUnderTest, fake: FakeOpenAI) -> None:
    client = sdk(hub_with_openai)
    fake.script(ChatReply(text="one two three", prompt_tokens=5, completion_tokens=3))
    stream = await client.chat.completions.create(
        model="main/gpt-4o-mini",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count"}],
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "one two three"
    assert finish == "stop"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 3)
    await client.close()


async def test_openai_sdk_stream_with_tool_calls(hub_with_openai: HubUnderTest, fake: FakeOpenAI) -> None:
    client = sdk(hub_with_openai)
    fake.script(
        ChatReply(text=None, tool_calls=[FakeToolCall("get_weather", '{"city": "Lima"}', id="call_x")])
    )
    stream = await client.chat.completions.create(
        model="main/gpt-4o",
        stream=True,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Lima?"}],
    )
    arguments, name, call_id = "", "", ""
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                call_id = call.id or call_id
                name = (call.function.name if call.function else None) or name
                arguments += (call.function.arguments if call.function else None) or ""
    assert (call_id, name, json.loads(arguments)) == ("call_x", "get_weather", {"city": "Lima"})
    await client.close()


async def test_openai_sdk_embeddings_json_mode_models_and_errors(
    hub_with_openai: HubUnderTest, fake: FakeOpenAI
) -> None:
    hut = hub_with_openai
    client = sdk(hut)
    embedded = await client.embeddings.create(
        model="main/text-embedding-3-small", input=["x", "y"], dimensions=4
    )
    assert [len(d.embedding) for d in embedded.data] == [4, 4]
    encoded = await client.embeddings.create(
        model="main/text-embedding-3-small", input="x", dimensions=4, encoding_format="base64"
    )
    raw = base64.b64decode(encoded.data[0].embedding)  # type: ignore[arg-type]
    assert struct.unpack("<4f", raw) == pytest.approx(embedded.data[0].embedding)  # float32, little-endian

    fake.script(ChatReply(text='{"ok": true}'))
    await client.chat.completions.create(
        model="main/gpt-4o",
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "json please"}],
    )
    assert fake.requests[-1].json()["response_format"] == {"type": "json_object"}

    models = await client.models.list()
    assert [m.id for m in models.data] == ["main"]

    with pytest.raises(openai.BadRequestError) as bad_model:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "credential name" in str(bad_model.value)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="missing/gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.AuthenticationError):
        await sdk(hut, token="ihub_" + "x" * 43).models.list()
    fake.force_status, fake.retry_after = 429, "3"
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="main/gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "3"
    await client.close()


async def test_openai_stream_error_midway_is_an_error_event(
    hub_with_openai: HubUnderTest, fake: FakeOpenAI
) -> None:
    client = sdk(hub_with_openai)
    fake.script(ChatReply(text="one two three four", error_after=2))
    stream = await client.chat.completions.create(
        model="main/gpt-4o", stream=True, messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    await client.close()


async def test_closing_the_http_stream_cancels_the_upstream(
    hub_with_openai: HubUnderTest, fake: FakeOpenAI
) -> None:
    hut = hub_with_openai
    fake.script(ChatReply(text="forever", hold_open=True))
    body = {"model": "main/gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    response = await hut.http.post(
        hut.http_base + "/openai/v1/chat/completions", json=body, headers=hut.headers(hut.tokens.invoke_only)
    )
    await response.content.readline()
    closed_at = time.monotonic()
    response.close()
    await fake.wait_for_disconnect(timeout=2.0)
    assert time.monotonic() - closed_at < 0.5
    await asyncio.sleep(0)


class _Records:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def observe(self, record: Any) -> None:
        self.records.append(record)


async def test_every_call_leaves_one_record_for_the_observers(
    hub_with_openai: HubUnderTest, fake: FakeOpenAI
) -> None:
    hut = hub_with_openai
    seen = _Records()
    hut.hub.llm.add_observer(seen)
    stub, md = chat_pb2_grpc.ChatServiceStub(hut.channel), hut.auth(hut.tokens.invoke_only)
    fake.script(ChatReply(text="ok", prompt_tokens=11, completion_tokens=2, cached_tokens=4))
    await stub.Chat(pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("x")]), metadata=md)
    fake.script(ChatReply(text="a b", prompt_tokens=5, completion_tokens=2))
    _ = [
        e
        async for e in stub.StreamChat(
            pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("x")]), metadata=md
        )
    ]
    fake.force_status = 503
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Chat(pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("x")]), metadata=md)
    chat, stream, failed = seen.records
    assert (chat.operation, chat.provider, chat.credential_name, chat.model) == (
        "chat",
        "openai",
        "main",
        "gpt-4o",
    )
    assert (chat.input_tokens, chat.output_tokens, chat.cached_tokens, chat.status) == (11, 2, 4, "OK")
    assert chat.latency_seconds >= chat.upstream_seconds > 0
    assert (stream.operation, stream.input_tokens, stream.output_tokens, stream.status) == (
        "stream_chat",
        5,
        2,
        "OK",
    )
    assert (failed.status, failed.reason) == ("UNAVAILABLE", "PROVIDER_UNAVAILABLE")
    assert all(r.tenant_id == "acme" for r in seen.records)
