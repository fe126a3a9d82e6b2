"""The Mistral callers against the real api.mistral.ai.

Skipped unless MISTRAL_API_KEY is set; costs a few hundred tokens per run. Models
can be overridden with MISTRAL_LIVE_CHAT_MODEL and MISTRAL_LIVE_EMBED_MODEL.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import Capability, ChatCaller, Embedder, NotFound, StreamChatCaller
from callers.types import (
    ChatRequest,
    ChatStreamEnd,
    EmbedRequest,
    FinishReason,
    JsonValue,
    Message,
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

KEY = os.environ.get("MISTRAL_API_KEY", "")
CHAT_MODEL = os.environ.get("MISTRAL_LIVE_CHAT_MODEL", "mistral-small-latest")
EMBED_MODEL = os.environ.get("MISTRAL_LIVE_EMBED_MODEL", "mistral-embed")
OPTIONS = {"base_url": os.environ.get("MISTRAL_BASE_URL", "https://api.mistral.ai/v1")}

pytestmark = [pytest.mark.live, pytest.mark.skipif(not KEY, reason="MISTRAL_API_KEY is not set")]

WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def ask(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(model=CHAT_MODEL, messages=[UserMessage([TextPart(text)])], **kwargs)  # type: ignore[arg-type]


def chat_caller() -> ChatCaller:
    caller = registry.capability("mistral", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


async def test_live_chat() -> None:
    request = ask(
        "Reply with the single word: pong", sampling=SamplingParams(max_output_tokens=10, temperature=0)
    )
    response = await chat_caller().chat(PlainSecret(api_key=KEY), OPTIONS, request, timeout=30)
    assert "pong" in (response.message.text or "").lower()
    assert response.finish_reason is FinishReason.STOP
    assert response.usage.input_tokens > 0
    assert response.request_id


async def test_live_tool_round_trip() -> None:
    secret = PlainSecret(api_key=KEY)
    history: list[Message] = [UserMessage([TextPart("What is the weather in Paris?")])]
    first = await chat_caller().chat(
        secret,
        OPTIONS,
        ChatRequest(
            CHAT_MODEL, list(history), tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)
        ),
        timeout=60,
    )
    assert first.finish_reason is FinishReason.TOOL_CALLS
    [call] = first.message.tool_calls
    assert json.loads(call.arguments)["city"].lower().startswith("paris")
    history += [first.message, ToolResultMessage(call.id, '{"temp_c": 21, "sky": "sunny"}')]
    final = await chat_caller().chat(
        secret, OPTIONS, ChatRequest(CHAT_MODEL, history, tools=[WEATHER]), timeout=60
    )
    assert final.finish_reason is FinishReason.STOP
    assert "21" in (final.message.text or "")


async def test_live_stream_text_and_tool_call() -> None:
    caller = registry.capability("mistral", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    text_events = [
        e
        async for e in caller.stream_chat(
            PlainSecret(api_key=KEY), OPTIONS, ask("Count: 1, 2, 3"), timeout=60
        )
    ]
    assert any(isinstance(e, TextDelta) for e in text_events)
    assert isinstance(text_events[-1], ChatStreamEnd)
    assert text_events[-1].usage.output_tokens > 0
    request = ask(
        "Weather in Oslo?", tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_weather")
    )
    events = [e async for e in caller.stream_chat(PlainSecret(api_key=KEY), OPTIONS, request, timeout=60)]
    arguments = "".join(e.arguments_fragment for e in events if isinstance(e, ToolCallDelta) and e.index == 0)
    assert json.loads(arguments)["city"].lower().startswith("oslo")
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason is FinishReason.TOOL_CALLS


async def test_live_json_schema() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"capital": {"type": "string"}},
        "required": ["capital"],
    }
    request = ask(
        "Give the capital of France as JSON.",
        response_format=ResponseFormat(ResponseFormatKind.JSON_SCHEMA, "answer", schema, strict=True),
    )
    response = await chat_caller().chat(PlainSecret(api_key=KEY), OPTIONS, request, timeout=60)
    assert json.loads(response.message.text or "")["capital"].lower() == "paris"


async def test_live_embeddings() -> None:
    embedder = registry.capability("mistral", Capability.EMBED)
    assert isinstance(embedder, Embedder)
    response = await embedder.embed(
        PlainSecret(api_key=KEY), OPTIONS, EmbedRequest(EMBED_MODEL, ["a", "b"]), timeout=30
    )
    assert len(response.vectors) == 2
    assert response.usage.input_tokens > 0


async def test_live_unknown_model_is_not_found() -> None:
    with pytest.raises(NotFound):
        await chat_caller().chat(
            PlainSecret(api_key=KEY),
            OPTIONS,
            ChatRequest("no-such-model-xyz", [UserMessage([TextPart("hi")])]),
            timeout=30,
        )


async def test_live_verify() -> None:
    valid = await registry.verify("mistral", PlainSecret(api_key=KEY), OPTIONS, timeout=30)
    assert valid.valid is True
    rejected = await registry.verify(
        "mistral", PlainSecret(api_key="not-a-real-mistral-key"), OPTIONS, timeout=30
    )
    assert rejected.valid is False
    assert rejected.reason.startswith("provider rejected the key (401): ")
