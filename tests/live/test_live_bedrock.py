"""The Bedrock callers against real Amazon Bedrock.

Skipped unless AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set (AWS_SESSION_TOKEN
for temporary keys; AWS_REGION, default us-east-1). The keys are read here and handed
to the callers explicitly, as the vault would; the callers themselves never read the
environment. Costs a few thousand tokens per run. Models can be overridden with
BEDROCK_LIVE_CHAT_MODEL (must support tool use and streaming), BEDROCK_LIVE_TITAN_MODEL
and BEDROCK_LIVE_COHERE_MODEL; the key needs model access to all three.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from callers import registry
from callers.base import (
    CallerError,
    Capability,
    ChatCaller,
    Embedder,
    InvalidRequest,
    NotFound,
    ProviderTimeout,
    StreamChatCaller,
)
from callers.types import (
    ChatRequest,
    ChatStreamEnd,
    EmbedInputType,
    EmbedRequest,
    FinishReason,
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

KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID", "")
SECRET_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
TOKEN = os.environ.get("AWS_SESSION_TOKEN", "")
OPTIONS = {"region": os.environ.get("AWS_REGION", "us-east-1")}
CHAT_MODEL = os.environ.get("BEDROCK_LIVE_CHAT_MODEL", "amazon.nova-micro-v1:0")
TITAN_MODEL = os.environ.get("BEDROCK_LIVE_TITAN_MODEL", "amazon.titan-embed-text-v2:0")
COHERE_MODEL = os.environ.get("BEDROCK_LIVE_COHERE_MODEL", "cohere.embed-english-v3")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (KEY_ID and SECRET_KEY), reason="AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY not set"
    ),
]

WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def secret() -> PlainSecret:
    fields = {"access_key_id": KEY_ID, "secret_access_key": SECRET_KEY}
    if TOKEN:
        fields["session_token"] = TOKEN
    return PlainSecret(**fields)


def chat_caller() -> ChatCaller:
    caller = registry.capability("bedrock", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def streamer() -> StreamChatCaller:
    caller = registry.capability("bedrock", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    return caller


def embedder() -> Embedder:
    caller = registry.capability("bedrock", Capability.EMBED)
    assert isinstance(caller, Embedder)
    return caller


def ask(text: str, **fields: object) -> ChatRequest:
    sampling = SamplingParams(max_output_tokens=200, temperature=0)
    return ChatRequest(CHAT_MODEL, [UserMessage([TextPart(text)])], sampling=sampling, **fields)  # type: ignore[arg-type]


async def test_verify_valid_and_rejected() -> None:
    result = await registry.verify("bedrock", secret(), OPTIONS, timeout=20)
    assert result.valid, result.reason
    assert int(result.detail["models"]) > 0
    wrong = PlainSecret(access_key_id=KEY_ID, secret_access_key="not-the-secret")
    rejected = await registry.verify("bedrock", wrong, OPTIONS, timeout=20)
    assert rejected.valid is False
    assert rejected.reason.startswith("provider rejected the key (403): ")


async def test_text_chat() -> None:
    result = await chat_caller().chat(secret(), OPTIONS, ask("Reply with exactly the word: pong"), timeout=60)
    assert "pong" in (result.message.text or "").lower()
    assert result.finish_reason is FinishReason.STOP
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0
    assert result.request_id


async def test_tool_call_round_trip() -> None:
    request = ask(
        "What is the weather in Paris? Use the tool.",
        tools=[WEATHER],
        tool_choice=ToolChoice(ToolChoiceMode.REQUIRED),
    )
    first = await chat_caller().chat(secret(), OPTIONS, request, timeout=60)
    assert first.finish_reason is FinishReason.TOOL_CALLS
    [call] = first.message.tool_calls
    assert call.name == "get_weather"
    assert "paris" in json.loads(call.arguments)["city"].lower()
    follow_up = ask("What is the weather in Paris? Use the tool.", tools=[WEATHER])
    follow_up.messages += [first.message, ToolResultMessage(call.id, "18 degrees Celsius and sunny")]
    final = await chat_caller().chat(secret(), OPTIONS, follow_up, timeout=60)
    assert "18" in (final.message.text or "")


async def test_streaming_text() -> None:
    events = [
        e async for e in streamer().stream_chat(secret(), OPTIONS, ask("Count from 1 to 5."), timeout=60)
    ]
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.usage.output_tokens > 0
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "5" in text


async def test_streaming_tool_call() -> None:
    request = ask(
        "Weather in Rome? Use the tool.", tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)
    )
    events = [e async for e in streamer().stream_chat(secret(), OPTIONS, request, timeout=60)]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id
    assert deltas[0].name == "get_weather"
    assert "rome" in json.loads("".join(d.arguments_fragment for d in deltas))["city"].lower()
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason is FinishReason.TOOL_CALLS


async def test_embeddings_titan_and_cohere() -> None:
    titan = await embedder().embed(
        secret(), OPTIONS, EmbedRequest(TITAN_MODEL, ["a cat", "a dog"], 256), timeout=60
    )
    assert [len(v) for v in titan.vectors] == [256, 256]
    assert titan.usage.input_tokens > 0
    cohere = await embedder().embed(
        secret(),
        OPTIONS,
        EmbedRequest(COHERE_MODEL, ["a cat", "a dog"], input_type=EmbedInputType.DOCUMENT),
        timeout=60,
    )
    assert len(cohere.vectors) == 2


async def test_unknown_model_and_invalid_request() -> None:
    with pytest.raises((NotFound, InvalidRequest)):
        await chat_caller().chat(
            secret(), OPTIONS, ChatRequest("amazon.no-such-model-v9:0", ask("x").messages), timeout=30
        )
    with pytest.raises(CallerError):
        await chat_caller().chat(
            secret(), OPTIONS, ask("x", sampling=SamplingParams(max_output_tokens=-5)), timeout=30
        )


async def test_timeout_and_cancel() -> None:
    with pytest.raises(ProviderTimeout):
        await chat_caller().chat(secret(), OPTIONS, ask("Write a long story about the sea."), timeout=0.05)
    task = asyncio.create_task(chat_caller().chat(secret(), OPTIONS, ask("Write a long story."), timeout=60))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
