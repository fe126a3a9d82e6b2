"""Mistral's conversions to and from the chat and embeddings wire JSON, without a network."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from callers import registry
from callers.base import Capability, InvalidRequest, MissingExtra, ProviderUnavailable
from callers.mistral import convert, convert_embed
from callers.mistral.client import server_url
from callers.mistral.events import StreamState
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ChatStreamEnd,
    EmbedInputType,
    EmbedRequest,
    FinishReason,
    ImagePart,
    JsonValue,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
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

WEATHER = Tool(
    "get_weather", "Weather in a city", {"type": "object", "properties": {"city": {"type": "string"}}}
)


def test_messages_of_a_tool_round_trip_in_mistral_shape() -> None:
    request = ChatRequest(
        model="mistral-small-latest",
        messages=[
            SystemMessage("Be brief."),
            UserMessage([TextPart("Weather in Paris?")]),
            AssistantMessage(tool_calls=[ToolCall("D681PevKs", "get_weather", '{"city": "Paris"}')]),
            ToolResultMessage("D681PevKs", '{"temp_c": 21}'),
        ],
        tools=[WEATHER],
    )
    body = convert.chat_body(request)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "D681PevKs",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "D681PevKs", "content": '{"temp_c": 21}', "name": "get_weather"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice(ToolChoiceMode.AUTO), "auto"),
        (ToolChoice(ToolChoiceMode.NONE), "none"),
        (ToolChoice(ToolChoiceMode.REQUIRED), "any"),
        (
            ToolChoice(ToolChoiceMode.TOOL, "get_weather"),
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(choice: ToolChoice, wire: object) -> None:
    body = convert.chat_body(ChatRequest(model="m", messages=[], tools=[WEATHER], tool_choice=choice))
    assert body["tool_choice"] == wire


def test_named_tool_choice_needs_a_name() -> None:
    with pytest.raises(InvalidRequest, match="needs a tool_name"):
        convert.chat_body(ChatRequest(model="m", messages=[], tool_choice=ToolChoice(ToolChoiceMode.TOOL)))


def test_images_response_formats_and_sampling() -> None:
    schema: dict[str, JsonValue] = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = ChatRequest(
        model="pixtral-12b-latest",
        messages=[
            UserMessage(
                [
                    TextPart("What is it?"),
                    ImagePart(url="https://example.com/a.png"),
                    ImagePart(data=b"\xff\xd8", media_type="image/jpeg", detail="high"),
                ]
            )
        ],
        response_format=ResponseFormat(ResponseFormatKind.JSON_SCHEMA, "answer", schema, strict=True),
        sampling=SamplingParams(temperature=0.1, top_p=0.5, max_output_tokens=9, stop=["X"], seed=42),
    )
    body = convert.chat_body(request)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": "https://example.com/a.png"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9g=", "detail": "high"}},
    ]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.1, 0.5, 9)
    assert (body["stop"], body["random_seed"]) == (["X"], 42)
    json_mode = ChatRequest(
        model="m", messages=[], response_format=ResponseFormat(ResponseFormatKind.JSON_OBJECT)
    )
    assert convert.chat_body(json_mode)["response_format"] == {"type": "json_object"}


def test_answer_with_tool_call_object_arguments_chunks_and_cached_usage() -> None:
    body = {
        "id": "cmpl-1",
        "model": "mistral-large-latest",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": []},
                        {"type": "text", "text": "Let me check."},
                    ],
                    "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": {"a": 1}}}],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "total_tokens": 105,
            "prompt_tokens_details": {"cached_tokens": 64},
        },
    }
    response = convert.chat_response(body, request_id=None)
    assert response.message == AssistantMessage(
        text="Let me check.", tool_calls=[ToolCall("t1", "f", '{"a": 1}')]
    )
    assert response.finish_reason is FinishReason.TOOL_CALLS
    assert response.usage == Usage(100, 5, 64, 105)
    assert (response.model, response.request_id) == ("mistral-large-latest", "cmpl-1")
    with pytest.raises(ProviderUnavailable, match="no choices"):
        convert.chat_response({"choices": []}, request_id=None)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("stop", FinishReason.STOP),
        ("length", FinishReason.LENGTH),
        ("model_length", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("error", FinishReason.ERROR),
        ("brand_new", FinishReason.ERROR),
    ],
)
def test_finish_reasons(wire: str, reason: FinishReason) -> None:
    assert convert.finish_reason(wire) is reason


def test_stream_state() -> None:
    state = StreamState(request_id="corr-1")
    chunks: list[dict[str, Any]] = [
        {
            "id": "c",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        },
        {"id": "c", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}, "index": 0}]
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
    ]
    out = [event for chunk in chunks for event in state.feed(chunk)]
    assert out == [TextDelta("Hi"), ToolCallDelta(0, "t", "f", "{}")]
    assert state.finish() == ChatStreamEnd(FinishReason.TOOL_CALLS, Usage(3, 2, 0, 5), request_id="corr-1")


def test_stream_state_raises_on_error_and_missing_finish() -> None:
    with pytest.raises(ProviderUnavailable, match="finish_reason error"):
        StreamState(None).feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]})
    state = StreamState(None)
    state.feed({"id": "c", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]})
    with pytest.raises(ProviderUnavailable, match="without a finish reason"):
        state.finish()


def test_embeddings_arguments_and_answer_order() -> None:
    request = EmbedRequest(
        model="codestral-embed", inputs=["a", "b"], dimensions=256, input_type=EmbedInputType.QUERY
    )
    assert convert_embed.embed_arguments(request) == {
        "model": "codestral-embed",
        "inputs": ["a", "b"],
        "output_dimension": 256,
    }
    body = {
        "id": "e1",
        "model": "codestral-embed",
        "data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    response = convert_embed.embed_response(body, request_id="corr")
    assert response.vectors == [[1.0], [2.0]]
    assert response.usage == Usage(input_tokens=2, total_tokens=2)
    assert response.request_id == "corr"


@pytest.mark.parametrize(
    ("base_url", "server"),
    [
        ("https://api.mistral.ai/v1", "https://api.mistral.ai"),
        ("https://api.mistral.ai/v1/", "https://api.mistral.ai"),
        ("https://proxy.example.com/mistral/v1", "https://proxy.example.com/mistral"),
        ("https://api.mistral.ai", "https://api.mistral.ai"),
    ],
)
def test_server_url_drops_the_version(base_url: str, server: str) -> None:
    assert server_url(base_url) == server


@pytest.mark.parametrize("capability", [Capability.CHAT, Capability.EMBED, Capability.VERIFY])
def test_missing_sdk_is_missing_extra(monkeypatch: pytest.MonkeyPatch, capability: Capability) -> None:
    for name in [m for m in sys.modules if m.startswith("callers.mistral.")]:
        monkeypatch.delitem(sys.modules, name)
    for sdk_module in ("mistralai", "mistralai.client"):
        monkeypatch.setitem(sys.modules, sdk_module, None)  # how Python marks a module unimportable
    with pytest.raises(MissingExtra, match=r"pip install 'integration-hub\[mistral\]'"):
        registry.capability("mistral", capability)
