"""Cohere CHAT and STREAM_CHAT through the real cohere SDK against a local fake of the v2 API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import Capability, ChatCaller, InvalidRequest, ProviderUnavailable, StreamChatCaller
from callers.types import (
    AssistantMessage,
    ChatEvent,
    ChatRequest,
    ChatStreamEnd,
    FinishReason,
    JsonValue,
    Message,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
    SystemMessage,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from tests.fakes.cohere_server import CohereReply, FakeCohere
from tests.fakes.secret_fields import PlainSecret

GOOD = "co-good-0123456789"
MODEL = "command-a-03-2025"
WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
async def close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def chat_caller() -> ChatCaller:
    caller = registry.capability("cohere", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def stream_caller() -> StreamChatCaller:
    caller = registry.capability("cohere", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    return caller


def ask(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[UserMessage([TextPart(text)])], **kwargs)  # type: ignore[arg-type]


async def collect(fake: FakeCohere, request: ChatRequest) -> list[ChatEvent]:
    stream = stream_caller().stream_chat(
        PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
    )
    return [event async for event in stream]


async def test_text_chat_sends_cohere_v2_and_normalizes_the_answer() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.replies.append(CohereReply(text="Bonjour!", input_tokens=20, output_tokens=3, cached_tokens=8))
        request = ChatRequest(
            model=MODEL,
            messages=[SystemMessage("Answer in French."), UserMessage([TextPart("Hello")])],
            sampling=SamplingParams(temperature=0.2, max_output_tokens=64, stop=["\n\n"]),
        )
        response = await chat_caller().chat(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
        )
    assert response.message == AssistantMessage(text="Bonjour!")
    assert response.finish_reason is FinishReason.STOP
    assert response.usage == Usage(input_tokens=20, output_tokens=3, cached_input_tokens=8, total_tokens=23)
    assert response.model == MODEL
    assert response.request_id is not None
    assert response.request_id.startswith("chat-")
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v2/chat")
    assert sent.headers["Authorization"] == f"Bearer {GOOD}"
    assert sent.json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        "temperature": 0.2,
        "max_tokens": 64,
        "stop_sequences": ["\n\n"],
        "stream": False,
    }


async def test_tool_call_round_trip() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.replies += [
            CohereReply(
                tool_plan="I will look up the weather in Paris.",
                tool_calls=[("get_weather_k3v", "get_weather", '{"city": "Paris"}')],
                finish_reason="TOOL_CALL",
            ),
            CohereReply(text="It is 21 °C and sunny in Paris."),
        ]
        secret, options = PlainSecret(api_key=GOOD), {"base_url": fake.base_url}
        history: list[Message] = [UserMessage([TextPart("What's the weather in Paris?")])]
        first = await chat_caller().chat(
            secret, options, ChatRequest(model=MODEL, messages=list(history), tools=[WEATHER]), timeout=5
        )
        assert first.finish_reason is FinishReason.TOOL_CALLS
        assert first.message == AssistantMessage(
            text="I will look up the weather in Paris.",
            tool_calls=[ToolCall("get_weather_k3v", "get_weather", '{"city": "Paris"}')],
        )
        history += [first.message, ToolResultMessage("get_weather_k3v", '{"temp_c": 21, "sky": "sunny"}')]
        final = await chat_caller().chat(
            secret, options, ChatRequest(model=MODEL, messages=history, tools=[WEATHER]), timeout=5
        )
    assert final.message.text == "It is 21 °C and sunny in Paris."
    assert final.finish_reason is FinishReason.STOP
    second = fake.requests[1].json
    assert second["messages"] == [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "get_weather_k3v",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
            "tool_plan": "I will look up the weather in Paris.",
        },
        {"role": "tool", "tool_call_id": "get_weather_k3v", "content": '{"temp_c": 21, "sky": "sunny"}'},
    ]
    assert second["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }


async def test_json_schema_and_provider_options_reach_the_wire() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
    }
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.replies.append(CohereReply(text='{"name": "Ada"}'))
        request = ask(
            "Who wrote the first program? Answer in JSON.",
            response_format=ResponseFormat(ResponseFormatKind.JSON_SCHEMA, json_schema=schema),
            provider_options={"safety_mode": "STRICT", "k": 5},
        )
        response = await chat_caller().chat(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
        )
    assert json.loads(response.message.text or "") == {"name": "Ada"}
    sent = fake.requests[0].json
    assert sent["response_format"] == {"type": "json_object", "json_schema": schema}
    assert (sent["safety_mode"], sent["k"]) == ("STRICT", 5)


async def test_unknown_provider_option_is_refused_before_sending() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        request = ask("hi", provider_options={"temprature": 0.5})
        with pytest.raises(InvalidRequest, match=r"unknown Cohere parameter\(s\): temprature"):
            await chat_caller().chat(
                PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
            )
    assert fake.requests == []


async def test_stream_text_ends_with_usage() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.replies.append(CohereReply(text="Streaming works fine.", input_tokens=9, output_tokens=4))
        events = await collect(fake, ask("Say something"))
    *deltas, end = events
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "Streaming works fine."
    assert len(deltas) > 1
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason is FinishReason.STOP
    assert end.usage == Usage(input_tokens=9, output_tokens=4, total_tokens=13)
    assert end.request_id is not None
    assert end.request_id.startswith("chat-")
    assert fake.requests[0].json["stream"] is True


async def test_stream_tool_calls_assemble_by_index() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.replies.append(
            CohereReply(
                tool_plan="Checking both.",
                tool_calls=[
                    ("c_1", "get_weather", '{"city": "Paris"}'),
                    ("c_2", "get_weather", '{"city": "Oslo"}'),
                ],
                finish_reason="TOOL_CALL",
            )
        )
        events = await collect(fake, ask("Weather in Paris and Oslo?", tools=[WEATHER]))
    calls: dict[int, dict[str, str]] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = event.id or call["id"]
            call["name"] = event.name or call["name"]
            call["arguments"] += event.arguments_fragment
    assert calls == {
        0: {"id": "c_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "c_2", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Checking both."
    ends = [e for e in events if isinstance(e, ChatStreamEnd)]
    assert len(ends) == 1
    assert events[-1] is ends[0]
    assert ends[0].finish_reason is FinishReason.TOOL_CALLS
    assert ends[0].usage.total_tokens == 19


async def test_stream_cut_midway_raises() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.replies.append(CohereReply(text="This answer will never be finished, sadly."))
        fake.cut_stream_after = 4
        with pytest.raises(
            ProviderUnavailable, match=r"connection to 127\.0\.0\.1 failed \(RemoteProtocolError: "
        ) as caught:
            await collect(fake, ask("hi"))
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_stream_error_event_raises_with_the_providers_message() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.stream_error = "internal error: generation failed"
        with pytest.raises(
            ProviderUnavailable, match="cohere stream failed: internal error: generation failed"
        ):
            await collect(fake, ask("hi"))


async def test_stream_without_message_end_is_not_a_normal_end() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.omit_message_end = True
        with pytest.raises(ProviderUnavailable, match="ended before message-end"):
            await collect(fake, ask("hi"))


async def test_hub_environment_never_reaches_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CO_API_KEY", "co-from-environment")
    monkeypatch.setenv("CO_API_URL", "http://127.0.0.1:9")
    async with FakeCohere(valid_keys={GOOD}) as fake:
        response = await chat_caller().chat(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, ask("hi"), timeout=5
        )
    assert response.message.text == "Hello from Cohere."
    assert fake.requests[0].headers["Authorization"] == f"Bearer {GOOD}"
