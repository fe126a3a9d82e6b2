"""CHAT and STREAM_CHAT for Anthropic: the real anthropic SDK against a local fake Messages API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from callers import pools, registry
from callers.base import (
    AuthenticationFailed,
    CallerError,
    Capability,
    ChatCaller,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamChatCaller,
)
from callers.types import (
    AssistantMessage,
    ChatEvent,
    ChatRequest,
    ChatStreamEnd,
    FinishReason,
    JsonValue,
    ResponseFormat,
    ResponseFormatKind,
    SystemMessage,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from tests.fakes.anthropic_server import FakeAnthropic, message, stream_events, text_block, tool_use_block
from tests.fakes.secret_fields import PlainSecret

GOOD = "sk-ant-api03-good-0123456789abcdef"
BAD = "sk-ant-api03-bad-0123456789abcdef"
MODEL = "claude-sonnet-4-6"
WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def caller() -> Any:
    implementation = registry.capability("anthropic", Capability.CHAT)
    assert isinstance(implementation, ChatCaller)
    assert isinstance(implementation, StreamChatCaller)
    assert registry.capability("anthropic", Capability.STREAM_CHAT) is implementation
    return implementation


def ask(text: str = "What is the weather in Paris?", **kwargs: Any) -> ChatRequest:
    return ChatRequest(
        model=MODEL, messages=[SystemMessage("Be brief."), UserMessage([TextPart(text)])], **kwargs
    )


def options(fake: FakeAnthropic) -> dict[str, str]:
    return {"base_url": fake.url}


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


async def collect_into(received: list[ChatEvent], events: AsyncIterator[ChatEvent]) -> None:
    """Like collect, but what arrived before a failure stays in `received`."""
    async for event in events:
        received.append(event)


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


def joined_arguments(events: list[ChatEvent], index: int) -> str:
    return "".join(e.arguments_fragment for e in events if isinstance(e, ToolCallDelta) and e.index == index)


# --- unary chat ----------------------------------------------------------------------


async def test_text_chat_sends_the_messages_format_and_reads_the_answer() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(
            message([text_block("Sunny, 18 C.")], input_tokens=30, output_tokens=6, cache_read=100)
        )
        response = await caller().chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5)
    assert response.message == AssistantMessage(text="Sunny, 18 C.")
    assert response.finish_reason == FinishReason.STOP
    assert response.usage == Usage(
        input_tokens=130, output_tokens=6, cached_input_tokens=100, total_tokens=136
    )
    assert response.model == MODEL
    assert response.request_id == "req_011Fake0000000000000001"
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["Authorization"] == f"Bearer {GOOD}"
    assert "x-api-key" not in sent.headers
    assert sent.headers["anthropic-version"] == "2026-10-21"
    assert sent.json == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]}
        ],
    }


async def test_tool_call_round_trip() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(
            message(
                [
                    text_block("Let me check both."),
                    tool_use_block("toolu_01A", "get_weather", {"city": "Paris"}),
                    tool_use_block("toolu_01B", "get_weather", {"city": "Rome"}),
                ],
                stop_reason="tool_use",
            )
        )
        fake.replies.append(message([text_block("Paris 18 C, Rome 24 C.")]))
        first_request = ask("Paris and Rome?", tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.AUTO))
        first = await caller().chat(PlainSecret(api_key=GOOD), options(fake), first_request, timeout=5)
        assert first.finish_reason == FinishReason.TOOL_CALLS
        assert first.message.text == "Let me check both."
        assert first.message.tool_calls == [
            ToolCall("toolu_01A", "get_weather", '{"city": "Paris"}'),
            ToolCall("toolu_01B", "get_weather", '{"city": "Rome"}'),
        ]
        history = [
            *first_request.messages,
            first.message,
            ToolResultMessage("toolu_01A", "18 C"),
            ToolResultMessage("toolu_01B", "24 C"),
        ]
        second_request = ChatRequest(model=MODEL, messages=history, tools=[WEATHER])
        second = await caller().chat(PlainSecret(api_key=GOOD), options(fake), second_request, timeout=5)
    assert second.message.text == "Paris 18 C, Rome 24 C."
    assert second.finish_reason == FinishReason.STOP
    first_body, second_body = (r.json for r in fake.requests)
    assert first_body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER.parameters,
        }
    ]
    assert first_body["tool_choice"] == {"type": "auto"}
    # The fake checks, as the API does, that each tool_use is answered in the very next turn.
    assert second_body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check both."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18 C"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "24 C"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("model_context_window_exceeded", FinishReason.LENGTH),
    ],
)
async def test_stop_reasons(stop_reason: str, finish: FinishReason) -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(message([text_block("...")], stop_reason=stop_reason))
        response = await caller().chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5)
    assert response.finish_reason == finish


async def test_json_schema_is_sent_as_structured_output() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(message([text_block('{"city": "Paris"}')]))
        rf = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema_name="place", json_schema=schema)
        response = await caller().chat(
            PlainSecret(api_key=GOOD), options(fake), ask(response_format=rf), timeout=5
        )
    assert json.loads(response.message.text or "") == {"city": "Paris"}
    assert fake.requests[0].json["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_json_object_comes_back_as_text_from_the_forced_tool() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(
            message(
                [
                    text_block("Here it is:"),
                    tool_use_block("toolu_9", "json_response", {"city": "Paris", "temp": 18}),
                ],
                stop_reason="tool_use",
            )
        )
        fake.replies.append(
            message(
                [
                    text_block("Here it is:"),
                    tool_use_block("toolu_9", "json_response", {"city": "Paris", "temp": 18}),
                ],
                stop_reason="tool_use",
            )
        )
        rf = ResponseFormat(ResponseFormatKind.JSON_OBJECT)
        unary = await caller().chat(
            PlainSecret(api_key=GOOD), options(fake), ask(response_format=rf), timeout=5
        )
        events = await collect(
            caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(response_format=rf), timeout=5)
        )
    assert unary.message.tool_calls == []
    assert json.loads(unary.message.text or "") == {"city": "Paris", "temp": 18}
    assert unary.finish_reason == FinishReason.STOP
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert json.loads(streamed) == {"city": "Paris", "temp": 18}
    assert not any(isinstance(e, ToolCallDelta) for e in events)
    assert isinstance(events[-1], ChatStreamEnd)
    assert events[-1].finish_reason == FinishReason.STOP
    body = fake.requests[0].json
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}


async def test_legacy_version_carries_sampling_parameters() -> None:
    from callers.types import SamplingParams

    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        request = ask(
            sampling=SamplingParams(temperature=0.3, top_p=0.8, stop=["###"]),
            provider_options={"anthropic_version": "2023-06-01"},
        )
        await caller().chat(PlainSecret(api_key=GOOD), options(fake), request, timeout=5)
    [sent] = fake.requests
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert (sent.json["temperature"], sent.json["top_p"], sent.json["stop_sequences"]) == (0.3, 0.8, ["###"])


# --- streaming -------------------------------------------------------------------------


async def test_streaming_text_ends_with_one_end_event_carrying_usage() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(
            message([text_block("Sunny and warm today.")], input_tokens=40, output_tokens=9, cache_creation=7)
        )
        events = await collect(
            caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5)
        )
    *deltas, end = events
    assert all(isinstance(e, TextDelta) for e in deltas)
    assert len(deltas) > 1
    assert "".join(e.text for e in deltas if isinstance(e, TextDelta)) == "Sunny and warm today."
    assert end == ChatStreamEnd(
        finish_reason=FinishReason.STOP,
        usage=Usage(input_tokens=47, output_tokens=9, cached_input_tokens=0, total_tokens=56),
        request_id="req_011Fake0000000000000001",
    )
    assert fake.requests[0].json["stream"] is True


async def test_streaming_tool_calls_are_assembled_by_index() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(
            message(
                [
                    text_block("Checking."),
                    tool_use_block("toolu_01A", "get_weather", {"city": "Paris", "unit": "celsius"}),
                    tool_use_block("toolu_01B", "get_time", {}),
                ],
                stop_reason="tool_use",
                output_tokens=33,
            )
        )
        events = await collect(
            caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(tools=[WEATHER]), timeout=5)
        )
    starts = [e for e in events if isinstance(e, ToolCallDelta) and e.id is not None]
    assert [(e.index, e.id, e.name) for e in starts] == [
        (0, "toolu_01A", "get_weather"),
        (1, "toolu_01B", "get_time"),
    ]
    assert json.loads(joined_arguments(events, 0)) == {"city": "Paris", "unit": "celsius"}
    assert joined_arguments(events, 1) == "{}"
    assert len([e for e in events if isinstance(e, ToolCallDelta) and e.index == 0]) > 2  # really fragmented
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason == FinishReason.TOOL_CALLS
    assert end.usage.output_tokens == 33
    assert sum(isinstance(e, ChatStreamEnd) for e in events) == 1


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", ProviderUnavailable),
        ("rate_limit_error", RateLimited),
        ("api_error", ProviderUnavailable),
    ],
)
async def test_error_event_mid_stream_raises(error_type: str, expected: type[CallerError]) -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(message([text_block("A long answer that will not finish.")]))
        fake.stream_error = (4, error_type, "Overloaded" if error_type == "overloaded_error" else "try later")
        received: list[ChatEvent] = []
        with pytest.raises(expected) as caught:
            await collect_into(
                received, caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5)
            )
    assert received
    assert all(isinstance(e, TextDelta) for e in received)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_stream_cut_mid_way_raises_provider_unavailable() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(message([text_block("A long answer that will not finish.")]))
        fake.cut_after = 4
        with pytest.raises(ProviderUnavailable, match="stream broke off"):
            await collect(caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5))


async def test_stream_ending_without_message_stop_raises() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.replies.append(message([text_block("Short.")]))
        fake.end_after = len(stream_events(message([text_block("Short.")]))) - 1  # all but message_stop
        with pytest.raises(ProviderUnavailable, match="before message_stop"):
            await collect(caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5))


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "text"),
    [
        (403, PermissionDenied, "Your API key does not have permission"),
        (404, NotFound, "model: claude-nonexistent"),
        (500, ProviderUnavailable, "Internal server error"),
        (529, ProviderUnavailable, "Overloaded"),
    ],
)
async def test_status_errors_are_classified(status: int, expected: type[CallerError], text: str) -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.force_status = status
        with pytest.raises(expected) as caught:
            await caller().chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5)
        with pytest.raises(expected):
            await collect(caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5))
    assert caught.value.provider_status == status
    assert caught.value.message.startswith(text)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert len(fake.requests) == 2  # max_retries=0


async def test_bad_key_is_authentication_failed_without_the_key_in_the_message() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        with pytest.raises(AuthenticationFailed) as caught:
            await caller().chat(PlainSecret(api_key=BAD), options(fake), ask(), timeout=5)
    assert caught.value.message == "invalid x-api-key"
    assert caught.value.provider_status == 401
    assert BAD not in str(caught.value)


async def test_rate_limited_carries_retry_after() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.force_status, fake.retry_after = 429, "7"
        with pytest.raises(RateLimited) as caught:
            await caller().chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5)
    assert caught.value.retry_after == 7.0
    assert caught.value.message.startswith("Number of request tokens has exceeded")


async def test_invalid_request_carries_the_provider_message() -> None:
    # A tool result that answers no tool call: the API (and the fake) refuse the body.
    orphan = ChatRequest(
        model=MODEL, messages=[UserMessage([TextPart("hi")]), ToolResultMessage("toolu_x", "42")]
    )
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        with pytest.raises(InvalidRequest) as caught:
            await caller().chat(PlainSecret(api_key=GOOD), options(fake), orphan, timeout=5)
    assert caught.value.provider_status == 400
    assert "unexpected `tool_use_id` found in `tool_result` blocks: toolu_x" in caught.value.message


async def test_connection_refused_is_provider_unavailable(refused_base_url: str) -> None:
    base = refused_base_url.removesuffix("/v1")
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1"):
        await caller().chat(PlainSecret(api_key=GOOD), {"base_url": base}, ask(), timeout=5)
    with pytest.raises(ProviderUnavailable):
        await collect(caller().stream_chat(PlainSecret(api_key=GOOD), {"base_url": base}, ask(), timeout=5))


# --- timeouts and cancellation -----------------------------------------------------------


async def test_slow_answer_times_out_within_bound() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.delay = 5.0
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await caller().chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=0.3)
        assert time.monotonic() - started < 1.5


async def test_stalled_stream_times_out_at_the_call_deadline() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.hang_after = 3
        started = time.monotonic()
        received: list[ChatEvent] = []
        with pytest.raises(ProviderTimeout):
            await collect_into(
                received, caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=0.4)
            )
        assert time.monotonic() - started < 1.5
        await until(lambda: fake.disconnects)  # and the connection was closed
    assert received


async def test_cancelling_a_call_closes_the_connection_promptly() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.delay = 10.0
        task = asyncio.create_task(caller().chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=30))
        await until(lambda: fake.requests)
        await asyncio.sleep(0.05)
        cancelled_at = asyncio.get_running_loop().time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: fake.disconnects)
    assert fake.disconnects[0] - cancelled_at < 0.1


async def test_cancelling_a_stream_closes_the_connection_promptly() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.hang_after = 4
        received: list[ChatEvent] = []

        async def consume() -> None:
            await collect_into(
                received, caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=30)
            )

        task = asyncio.create_task(consume())
        await until(lambda: received)
        await asyncio.sleep(0.05)
        cancelled_at = asyncio.get_running_loop().time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: fake.disconnects)
    assert fake.disconnects[0] - cancelled_at < 0.1


async def test_a_consumer_that_stops_early_closes_the_stream() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.hang_after = 4
        stream = caller().stream_chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=30)
        await anext(stream)
        closed_at = asyncio.get_running_loop().time()
        await stream.aclose()
        await until(lambda: fake.disconnects)
    assert fake.disconnects[0] - closed_at < 0.1


# --- the hub's environment -------------------------------------------------------------


async def test_hub_environment_never_reaches_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-environment")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "token-from-environment")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv(
        "ANTHROPIC_CUSTOM_HEADERS",
        "X-Api-Key: sk-ant-from-environment\nAuthorization: Bearer env\nanthropic-beta: env-beta",
    )
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        await caller().chat(PlainSecret(api_key=GOOD), options(fake), ask(), timeout=5)
    headers = fake.requests[0].headers
    assert headers["Authorization"] == f"Bearer {GOOD}"
    assert "x-api-key" not in headers
    assert "anthropic-beta" not in headers
