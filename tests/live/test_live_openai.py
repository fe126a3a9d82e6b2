"""The OpenAI-wire callers against the real api.openai.com.

Skipped unless OPENAI_API_KEY is set; costs a few hundred tokens per run. The
model names can be overridden with OPENAI_LIVE_CHAT_MODEL / OPENAI_LIVE_EMBED_MODEL.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import AuthenticationFailed, Capability, ChatCaller, Embedder, StreamChatCaller
from callers.types import (
    ChatRequest,
    ChatStreamEnd,
    EmbedRequest,
    FinishReason,
    SamplingParams,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    UserMessage,
)
from tests.fakes.secret_fields import PlainSecret

KEY = os.environ.get("OPENAI_API_KEY", "")
CHAT_MODEL = os.environ.get("OPENAI_LIVE_CHAT_MODEL", "gpt-4o-mini")
EMBED_MODEL = os.environ.get("OPENAI_LIVE_EMBED_MODEL", "text-embedding-3-small")
OPTIONS = {"base_url": os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")}

pytestmark = [pytest.mark.live, pytest.mark.skipif(not KEY, reason="OPENAI_API_KEY is not set")]

WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    strict=True,
)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def ask(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(model=CHAT_MODEL, messages=[UserMessage([TextPart(text)])], **kwargs)  # type: ignore[arg-type]


async def test_live_chat() -> None:
    caller = registry.capability("openai", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    response = await caller.chat(
        PlainSecret(api_key=KEY),
        OPTIONS,
        ask("Reply with the single word: pong", sampling=SamplingParams(max_output_tokens=10, temperature=0)),
        timeout=30,
    )
    assert "pong" in (response.message.text or "").lower()
    assert response.finish_reason is FinishReason.STOP
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.request_id


async def test_live_stream_with_tool_call_and_usage() -> None:
    caller = registry.capability("openai", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    request = ask(
        "What is the weather in Paris?", tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)
    )
    events = [e async for e in caller.stream_chat(PlainSecret(api_key=KEY), OPTIONS, request, timeout=60)]
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls
    assert calls[0].name == "get_weather"
    assert calls[0].id
    arguments = json.loads("".join(c.arguments_fragment for c in calls if c.index == 0))
    assert "paris" in arguments["city"].lower()
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason is FinishReason.TOOL_CALLS
    assert end.usage.input_tokens > 0


async def test_live_stream_text() -> None:
    caller = registry.capability("openai", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    request = ask("Count from 1 to 5, separated by spaces.", sampling=SamplingParams(max_output_tokens=20))
    events = [e async for e in caller.stream_chat(PlainSecret(api_key=KEY), OPTIONS, request, timeout=60)]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "3" in text
    assert isinstance(events[-1], ChatStreamEnd)
    assert events[-1].usage.output_tokens > 0


async def test_live_embeddings() -> None:
    caller = registry.capability("openai", Capability.EMBED)
    assert isinstance(caller, Embedder)
    response = await caller.embed(
        PlainSecret(api_key=KEY),
        OPTIONS,
        EmbedRequest(model=EMBED_MODEL, inputs=["a", "b"], dimensions=64),
        timeout=30,
    )
    assert [len(v) for v in response.vectors] == [64, 64]
    assert response.usage.input_tokens > 0


async def test_live_rejected_key() -> None:
    caller = registry.capability("openai", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    with pytest.raises(AuthenticationFailed):
        await caller.chat(PlainSecret(api_key="sk-invalid-0000000000000000"), OPTIONS, ask("hi"), timeout=30)
