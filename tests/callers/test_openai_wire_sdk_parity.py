"""Our hand-written wire against the official SDK's, over the same fake server.

The SDK is OpenAI's own reading of its API: the body our encoder sends must equal
the one the SDK sends for the same request, and the fake's answers (JSON and
streams, tool calls included) must be what the SDK parses without complaint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from callers import pools
from callers.openai.chat import CALLER as CHAT
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ImagePart,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolResultMessage,
    UserMessage,
)
from tests.fakes.openai_server import ChatReply, FakeOpenAI, FakeToolCall
from tests.fakes.secret_fields import PlainSecret

openai = pytest.importorskip("openai")  # the SDK is only the yardstick here

KEY = "sk-parity-0123456789"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}

OURS = ChatRequest(
    model="gpt-4o-mini",
    messages=[
        SystemMessage("Be brief."),
        UserMessage(
            [TextPart("Weather here?"), ImagePart(data=b"GIF89a", media_type="image/gif", detail="low")]
        ),
        AssistantMessage(tool_calls=[ToolCall("call_1", "get_weather", '{"city": "Paris"}')]),
        ToolResultMessage("call_1", "18C"),
        UserMessage([TextPart("And as JSON?")]),
    ],
    tools=[Tool("get_weather", "Weather by city", SCHEMA, strict=True)],
    tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_weather"),
    response_format=ResponseFormat(ResponseFormatKind.JSON_SCHEMA, "weather", SCHEMA, strict=True),
    sampling=SamplingParams(
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=64,
        stop=["END"],
        seed=3,
        presence_penalty=0.1,
        frequency_penalty=0.2,
    ),
)

SDK_KWARGS: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/gif;base64,R0lGODlh", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "user", "content": "And as JSON?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": SCHEMA,
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
    },
    "temperature": 0.5,
    "top_p": 0.9,
    "max_completion_tokens": 64,
    "stop": ["END"],
    "seed": 3,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
}


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


async def test_our_bodies_equal_the_sdks() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        options = {"base_url": fake.base_url}
        await CHAT.chat(PlainSecret(api_key=KEY), options, OURS, timeout=5)
        async for _ in CHAT.stream_chat(PlainSecret(api_key=KEY), options, OURS, timeout=5):
            pass
        async with openai.AsyncOpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0) as sdk:
            await sdk.chat.completions.create(**SDK_KWARGS)
            stream = await sdk.chat.completions.create(
                **SDK_KWARGS, stream=True, stream_options={"include_usage": True}
            )
            async for _ in stream:
                pass
    ours, ours_streamed, theirs, theirs_streamed = (request.json() for request in fake.requests)
    assert ours == theirs
    assert ours_streamed == theirs_streamed


async def test_the_sdk_reads_the_fakes_answers() -> None:
    calls = [FakeToolCall("get_weather", '{"city": "Paris"}'), FakeToolCall("get_time", '{"tz": "CET"}')]
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(
            ChatReply(text=None, tool_calls=calls, cached_tokens=4),
            ChatReply(text=None, tool_calls=calls, interleave_tool_calls=True, arguments_chunk_size=3),
        )
        async with openai.AsyncOpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0) as sdk:
            completion = await sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
            stream = await sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[], stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in stream]
    message = completion.choices[0].message
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls or []] == [
        ("get_weather", '{"city": "Paris"}'),
        ("get_time", '{"tz": "CET"}'),
    ]
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    arguments: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert arguments == {0: '{"city": "Paris"}', 1: '{"tz": "CET"}'}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
