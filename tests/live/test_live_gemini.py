"""The Gemini and Vertex AI callers against the real Google APIs.

Gemini: skipped unless GEMINI_LIVE_API_KEY (or GEMINI_API_KEY) is set. Vertex AI: skipped
unless VERTEX_LIVE_SERVICE_ACCOUNT_JSON (the key file's path) and VERTEX_LIVE_PROJECT are
set (VERTEX_LIVE_LOCATION defaults to us-central1). Each run costs a few thousand tokens.
Models: GEMINI_LIVE_MODEL, GEMINI_LIVE_EMBED_MODEL.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callers import pools, registry
from callers.base import Capability, ChatCaller, Embedder, SecretFields, StreamChatCaller
from callers.types import (
    ChatRequest,
    ChatStreamEnd,
    EmbedInputType,
    EmbedRequest,
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

GEMINI_KEY = os.environ.get("GEMINI_LIVE_API_KEY") or os.environ.get("GEMINI_API_KEY", "")
VERTEX_KEY_FILE = os.environ.get("VERTEX_LIVE_SERVICE_ACCOUNT_JSON", "")
VERTEX_PROJECT = os.environ.get("VERTEX_LIVE_PROJECT", "")
VERTEX_LOCATION = os.environ.get("VERTEX_LIVE_LOCATION", "us-central1")
MODEL = os.environ.get("GEMINI_LIVE_MODEL", "gemini-2.5-flash")
EMBED_MODEL = os.environ.get("GEMINI_LIVE_EMBED_MODEL", "gemini-embedding-001")

BACKENDS = [
    pytest.param(
        "gemini",
        marks=pytest.mark.skipif(not GEMINI_KEY, reason="GEMINI_LIVE_API_KEY / GEMINI_API_KEY is not set"),
    ),
    pytest.param(
        "vertex_ai",
        marks=pytest.mark.skipif(
            not (VERTEX_KEY_FILE and VERTEX_PROJECT),
            reason="VERTEX_LIVE_SERVICE_ACCOUNT_JSON and VERTEX_LIVE_PROJECT are not set",
        ),
    ),
]
pytestmark = [pytest.mark.live, pytest.mark.parametrize("provider", BACKENDS)]

WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def credential(provider: str) -> tuple[SecretFields, dict[str, str]]:
    if provider == "gemini":
        return PlainSecret(api_key=GEMINI_KEY), {}
    key_file = Path(VERTEX_KEY_FILE).read_text()
    return PlainSecret(service_account_json=key_file), {
        "project": VERTEX_PROJECT,
        "location": VERTEX_LOCATION,
    }


def chat(provider: str) -> Any:
    caller = registry.capability(provider, Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    assert isinstance(caller, StreamChatCaller)
    return caller


def ask(text: str, **kwargs: Any) -> ChatRequest:
    # Thinking off: the answers asked for here are short, and thinking would spend the budget.
    options = kwargs.pop("provider_options", {"thinking_config": {"thinking_budget": 0}})
    sampling = kwargs.pop("sampling", SamplingParams(max_output_tokens=300))
    return ChatRequest(
        model=MODEL,
        messages=[UserMessage([TextPart(text)])],
        sampling=sampling,
        provider_options=options,
        **kwargs,
    )


async def test_verify(provider: str) -> None:
    secret, options = credential(provider)
    result = await registry.verify(provider, secret, options, timeout=30)
    assert result.valid, result.reason
    if provider == "gemini":
        rejected = await registry.verify(
            provider, PlainSecret(api_key="AIzaSy-not-a-real-key"), options, timeout=30
        )
        assert rejected.valid is False
        assert rejected.reason.startswith("provider rejected the key (400)")


async def test_text_chat(provider: str) -> None:
    secret, options = credential(provider)
    response = await chat(provider).chat(secret, options, ask("Say just the word: pong"), timeout=60)
    assert "pong" in (response.message.text or "").lower()
    assert response.finish_reason == FinishReason.STOP
    assert response.usage.input_tokens > 0
    assert response.request_id


async def test_tool_round_trip(provider: str) -> None:
    secret, options = credential(provider)
    request = ask(
        "What is the weather in Paris?", tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)
    )
    first = await chat(provider).chat(secret, options, request, timeout=60)
    assert first.finish_reason == FinishReason.TOOL_CALLS
    [call] = first.message.tool_calls
    assert "paris" in json.loads(call.arguments)["city"].lower()
    history = [*request.messages, first.message, ToolResultMessage(call.id, "Sunny, 18 degrees Celsius")]
    second = await chat(provider).chat(
        secret, options, ChatRequest(model=MODEL, messages=history, tools=[WEATHER]), timeout=60
    )
    assert "18" in (second.message.text or "")


async def test_streaming_text_and_tool_calls(provider: str) -> None:
    secret, options = credential(provider)
    events = [
        e
        async for e in chat(provider).stream_chat(
            secret, options, ask("Count from one to twenty."), timeout=60
        )
    ]
    assert sum(isinstance(e, TextDelta) for e in events) >= 1
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.usage.output_tokens > 0
    request = ask("Weather in Rome?", tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED))
    tool_events = [e async for e in chat(provider).stream_chat(secret, options, request, timeout=60)]
    [call] = [e for e in tool_events if isinstance(e, ToolCallDelta)]
    assert "rome" in json.loads(call.arguments_fragment)["city"].lower()
    assert isinstance(tool_events[-1], ChatStreamEnd)
    assert tool_events[-1].finish_reason == FinishReason.TOOL_CALLS


async def test_json_schema(provider: str) -> None:
    secret, options = credential(provider)
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"capital": {"type": "string"}},
        "required": ["capital"],
    }
    rf = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema_name="capital", json_schema=schema)
    response = await chat(provider).chat(
        secret, options, ask("Capital of France?", response_format=rf), timeout=60
    )
    assert json.loads(response.message.text or "")["capital"] == "Paris"


async def test_embeddings(provider: str) -> None:
    secret, options = credential(provider)
    embedder = registry.capability(provider, Capability.EMBED)
    assert isinstance(embedder, Embedder)
    request = EmbedRequest(
        model=EMBED_MODEL,
        inputs=["a cat", "a dog", "a car"],
        dimensions=256,
        input_type=EmbedInputType.DOCUMENT,
    )
    response = await embedder.embed(secret, options, request, timeout=60)
    assert len(response.vectors) == 3
    assert all(len(vector) == 256 for vector in response.vectors)
