"""The Anthropic callers against the real api.anthropic.com.

Skipped unless ANTHROPIC_API_KEY is set; costs a few thousand tokens per run. The model
can be overridden with ANTHROPIC_LIVE_MODEL (it must support structured outputs).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callers import pools, registry
from callers.base import Capability, ChatCaller, NotFound, StreamChatCaller
from callers.types import (
    ChatRequest,
    ChatStreamEnd,
    FinishReason,
    JsonValue,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    ToolResultMessage,
    UserMessage,
)
from tests.fakes.secret_fields import PlainSecret

KEY = os.environ.get("ANTHROPIC_API_KEY", "")
MODEL = os.environ.get("ANTHROPIC_LIVE_MODEL", "claude-haiku-4-5")
OPTIONS = {"base_url": "https://api.anthropic.com"}

pytestmark = [pytest.mark.live, pytest.mark.skipif(not KEY, reason="ANTHROPIC_API_KEY is not set")]

WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def caller() -> Any:
    implementation = registry.capability("anthropic", Capability.CHAT)
    assert isinstance(implementation, ChatCaller)
    assert isinstance(implementation, StreamChatCaller)
    return implementation


def ask(text: str, **kwargs: Any) -> ChatRequest:
    sampling = kwargs.pop("sampling", SamplingParams(max_output_tokens=300))
    return ChatRequest(model=MODEL, messages=[UserMessage([TextPart(text)])], sampling=sampling, **kwargs)


async def test_verify_valid_and_rejected() -> None:
    valid = await registry.verify("anthropic", PlainSecret(api_key=KEY), OPTIONS, timeout=20)
    rejected = await registry.verify(
        "anthropic", PlainSecret(api_key="sk-ant-api03-invalid"), OPTIONS, timeout=20
    )
    assert valid.valid
    assert int(valid.detail["models"]) > 0
    assert rejected.valid is False
    assert rejected.reason.startswith("provider rejected the key (401)")


async def test_text_chat() -> None:
    response = await caller().chat(
        PlainSecret(api_key=KEY), OPTIONS, ask("Say just the word: pong"), timeout=60
    )
    assert "pong" in (response.message.text or "").lower()
    assert response.finish_reason == FinishReason.STOP
    assert response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert (response.request_id or "").startswith("req_")


async def test_tool_round_trip() -> None:
    request = ask(
        "What is the weather in Paris? Use the tool.",
        tools=[WEATHER],
        tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_weather"),
    )
    first = await caller().chat(PlainSecret(api_key=KEY), OPTIONS, request, timeout=60)
    [call] = first.message.tool_calls
    assert json.loads(call.arguments)["city"].lower().startswith("paris")
    history = [*request.messages, first.message, ToolResultMessage(call.id, "Sunny, 18 degrees Celsius")]
    second = await caller().chat(
        PlainSecret(api_key=KEY),
        OPTIONS,
        ChatRequest(model=MODEL, messages=history, tools=[WEATHER]),
        timeout=60,
    )
    assert "18" in (second.message.text or "")


async def test_streaming_text_and_tool_calls() -> None:
    text_events = [
        e
        async for e in caller().stream_chat(
            PlainSecret(api_key=KEY), OPTIONS, ask("Count to five."), timeout=60
        )
    ]
    assert any(isinstance(e, TextDelta) for e in text_events)
    end = text_events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.usage.output_tokens > 0
    tool_request = ask(
        "Weather in Rome? Use the tool.", tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)
    )
    tool_events = [
        e async for e in caller().stream_chat(PlainSecret(api_key=KEY), OPTIONS, tool_request, timeout=60)
    ]
    arguments = "".join(
        e.arguments_fragment for e in tool_events if isinstance(e, ToolCallDelta) and e.index == 0
    )
    assert "rome" in json.loads(arguments)["city"].lower()
    assert isinstance(tool_events[-1], ChatStreamEnd)
    assert tool_events[-1].finish_reason == FinishReason.TOOL_CALLS


async def test_json_modes() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"capital": {"type": "string"}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    rf = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema_name="capital", json_schema=schema)
    structured = await caller().chat(
        PlainSecret(api_key=KEY), OPTIONS, ask("Capital of France?", response_format=rf), timeout=60
    )
    assert json.loads(structured.message.text or "")["capital"] == "Paris"
    as_object = await caller().chat(
        PlainSecret(api_key=KEY),
        OPTIONS,
        ask(
            'Give the capital of Italy as {"capital": ...}',
            response_format=ResponseFormat(ResponseFormatKind.JSON_OBJECT),
        ),
        timeout=60,
    )
    assert isinstance(json.loads(as_object.message.text or ""), dict)


async def test_unknown_model_is_not_found() -> None:
    with pytest.raises(NotFound):
        await caller().chat(
            PlainSecret(api_key=KEY),
            OPTIONS,
            ChatRequest(model="claude-does-not-exist", messages=ask("hi").messages),
            timeout=30,
        )
