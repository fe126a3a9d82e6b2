"""The Replicate callers against the real api.replicate.com.

Skipped unless REPLICATE_API_TOKEN is set; runs a few small predictions (billed by
Replicate per token). The model can be overridden with REPLICATE_LIVE_MODEL (an
official language model that streams).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import Capability, ChatCaller, InvalidRequest, NotFound, ProviderTimeout, StreamChatCaller
from callers.types import (
    ChatRequest,
    ChatStreamEnd,
    SamplingParams,
    SystemMessage,
    TextDelta,
    TextPart,
    Tool,
    UserMessage,
)
from tests.fakes.secret_fields import PlainSecret

TOKEN = os.environ.get("REPLICATE_API_TOKEN", "")
MODEL = os.environ.get("REPLICATE_LIVE_MODEL", "meta/meta-llama-3-8b-instruct")
OPTIONS: dict[str, str] = {}  # the default base_url, https://api.replicate.com/v1

pytestmark = [pytest.mark.live, pytest.mark.skipif(not TOKEN, reason="REPLICATE_API_TOKEN is not set")]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def chat_caller() -> ChatCaller:
    caller = registry.capability("replicate", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def streamer() -> StreamChatCaller:
    caller = registry.capability("replicate", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    return caller


def ask(text: str, model: str = MODEL) -> ChatRequest:
    return ChatRequest(
        model,
        [SystemMessage("You are terse."), UserMessage([TextPart(text)])],
        sampling=SamplingParams(max_output_tokens=64, temperature=0.1),
    )


async def test_verify_valid_and_rejected() -> None:
    result = await registry.verify("replicate", PlainSecret(api_token=TOKEN), OPTIONS, timeout=20)
    assert result.valid, result.reason
    assert result.detail.get("username")
    rejected = await registry.verify("replicate", PlainSecret(api_token="r8_invalid"), OPTIONS, timeout=20)
    assert rejected.valid is False
    assert rejected.reason.startswith("provider rejected the key (401): ")


async def test_text_chat() -> None:
    result = await chat_caller().chat(PlainSecret(api_token=TOKEN), OPTIONS, ask("Say pong."), timeout=120)
    assert "pong" in (result.message.text or "").lower()
    assert result.request_id
    assert result.usage.output_tokens > 0


async def test_streaming_text() -> None:
    stream = streamer().stream_chat(
        PlainSecret(api_token=TOKEN), OPTIONS, ask("Count from 1 to 5."), timeout=120
    )
    events = [event async for event in stream]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "5" in text
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.request_id


async def test_errors() -> None:
    secret = PlainSecret(api_token=TOKEN)
    with pytest.raises(NotFound):
        await chat_caller().chat(
            secret, OPTIONS, ask("x", model="replicate/no-such-model-anywhere"), timeout=60
        )
    tools_request = ask("x")
    tools_request.tools = [Tool("f")]
    with pytest.raises(InvalidRequest):
        await chat_caller().chat(secret, OPTIONS, tools_request, timeout=60)


async def test_timeout_and_cancel() -> None:
    secret = PlainSecret(api_token=TOKEN)
    with pytest.raises(ProviderTimeout):
        await chat_caller().chat(secret, OPTIONS, ask("Write a long story."), timeout=0.05)
    task = asyncio.create_task(chat_caller().chat(secret, OPTIONS, ask("Write a long story."), timeout=60))
    await asyncio.sleep(1.0)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
