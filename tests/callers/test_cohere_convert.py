"""Cohere's conversions to and from the v2 wire JSON, without a network."""

from __future__ import annotations

from typing import Any

import pytest

from callers.base import InvalidRequest, ProviderTimeout, ProviderUnavailable
from callers.cohere import convert, retrieval
from callers.cohere.events import StreamState
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
TIME = Tool("get_time", "Time in a city", {"type": "object", "properties": {"city": {"type": "string"}}})


def test_messages_of_a_tool_round_trip_in_cohere_shape() -> None:
    request = ChatRequest(
        model="command-a-03-2025",
        messages=[
            SystemMessage("Be brief."),
            UserMessage([TextPart("Weather in Paris?")]),
            AssistantMessage(
                text="I will look it up.", tool_calls=[ToolCall("call_1", "get_weather", '{"city":"Paris"}')]
            ),
            ToolResultMessage(tool_call_id="call_1", content='{"temp_c": 21}'),
        ],
        tools=[WEATHER],
    )
    body = convert.chat_body(request)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
            "tool_plan": "I will look it up.",
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
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
    assert "tool_choice" not in body  # auto is Cohere's default


def test_images_become_image_url_parts_and_inline_bytes_a_data_url() -> None:
    message = UserMessage(
        [
            TextPart("What is this?"),
            ImagePart(url="https://example.com/cat.png", detail="low"),
            ImagePart(data=b"\x89PNG", media_type="image/png"),
        ]
    )
    body = convert.chat_body(ChatRequest(model="command-a-vision", messages=[message]))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
    ]
    with pytest.raises(InvalidRequest, match="needs both data and media_type"):
        convert.chat_body(ChatRequest(model="m", messages=[UserMessage([ImagePart(data=b"x")])]))


@pytest.mark.parametrize(
    ("mode", "expected"), [(ToolChoiceMode.REQUIRED, "REQUIRED"), (ToolChoiceMode.NONE, "NONE")]
)
def test_tool_choice_modes(mode: ToolChoiceMode, expected: str) -> None:
    body = convert.chat_body(
        ChatRequest(model="m", messages=[], tools=[WEATHER, TIME], tool_choice=ToolChoice(mode))
    )
    assert body["tool_choice"] == expected
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]


def test_a_named_tool_is_forced_by_offering_only_it() -> None:
    choice = ToolChoice(ToolChoiceMode.TOOL, tool_name="get_time")
    body = convert.chat_body(ChatRequest(model="m", messages=[], tools=[WEATHER, TIME], tool_choice=choice))
    assert body["tool_choice"] == "REQUIRED"
    assert [t["function"]["name"] for t in body["tools"]] == ["get_time"]
    missing = ToolChoice(ToolChoiceMode.TOOL, tool_name="nope")
    with pytest.raises(InvalidRequest, match="'nope', which is not among the request's tools"):
        convert.chat_body(ChatRequest(model="m", messages=[], tools=[WEATHER], tool_choice=missing))


def test_strict_tools_switch_on_for_the_whole_request() -> None:
    strict = Tool("f", parameters={"type": "object"}, strict=True)
    body = convert.chat_body(ChatRequest(model="m", messages=[], tools=[strict, WEATHER]))
    assert body["strict_tools"] is True


def test_response_formats_and_sampling() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
    }
    request = ChatRequest(
        model="m",
        messages=[],
        response_format=ResponseFormat(
            ResponseFormatKind.JSON_SCHEMA, schema_name="thing", json_schema=schema
        ),
        sampling=SamplingParams(
            temperature=0.3, top_p=0.9, max_output_tokens=50, stop=["END"], seed=7, presence_penalty=0.1
        ),
    )
    body = convert.chat_body(request)
    assert body["response_format"] == {"type": "json_object", "json_schema": schema}
    assert body["temperature"] == 0.3
    assert body["p"] == 0.9
    assert body["max_tokens"] == 50
    assert body["stop_sequences"] == ["END"]
    assert body["seed"] == 7
    assert body["presence_penalty"] == 0.1
    assert "frequency_penalty" not in body  # unset means the provider's default
    json_object = ChatRequest(
        model="m", messages=[], response_format=ResponseFormat(ResponseFormatKind.JSON_OBJECT)
    )
    assert convert.chat_body(json_object)["response_format"] == {"type": "json_object"}
    text = ChatRequest(model="m", messages=[], response_format=ResponseFormat(ResponseFormatKind.TEXT))
    assert "response_format" not in convert.chat_body(text)


def test_tool_call_answer_and_usage() -> None:
    body = {
        "id": "c0ffee",
        "finish_reason": "TOOL_CALL",
        "message": {
            "role": "assistant",
            "tool_plan": "I will check the weather.",
            "tool_calls": [
                {
                    "id": "get_weather_x1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        "usage": {
            "billed_units": {"input_tokens": 5.0, "output_tokens": 9.0},
            "tokens": {"input_tokens": 805.0, "output_tokens": 9.0},
            "cached_tokens": 512.0,
        },
    }
    response = convert.chat_response(body, model="command-a", request_id=None)
    assert response.message == AssistantMessage(
        text="I will check the weather.", tool_calls=[ToolCall("get_weather_x1", "get_weather", "{}")]
    )
    assert response.finish_reason is FinishReason.TOOL_CALLS
    assert response.usage == Usage(
        input_tokens=805, output_tokens=9, cached_input_tokens=512, total_tokens=814
    )
    assert (response.model, response.request_id) == ("command-a", "c0ffee")


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("COMPLETE", FinishReason.STOP),
        ("STOP_SEQUENCE", FinishReason.STOP),
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("TOOL_CALL", FinishReason.TOOL_CALLS),
        ("ERROR", FinishReason.ERROR),
        ("TIMEOUT", FinishReason.ERROR),
        ("SOMETHING_NEW", FinishReason.ERROR),
    ],
)
def test_finish_reasons(wire: str, reason: FinishReason) -> None:
    assert convert.finish_reason(wire) is reason


def test_billed_units_are_the_fallback_for_usage() -> None:
    assert convert.usage({"billed_units": {"input_tokens": 3, "output_tokens": 4}}) == Usage(3, 4, 0, 7)
    assert convert.usage(None) == Usage()


def test_stream_state_assembles_events_and_ends_once() -> None:
    state = StreamState(request_id=None)
    events: list[dict[str, Any]] = [
        {"type": "message-start", "id": "m-1", "delta": {"message": {"role": "assistant"}}},
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "Let me"}}},
        {
            "type": "tool-call-start",
            "index": 1,
            "delta": {"message": {"tool_calls": {"id": "c1", "type": "function", "function": {"name": "f"}}}},
        },
        {
            "type": "tool-call-delta",
            "index": 1,
            "delta": {"message": {"tool_calls": {"function": {"arguments": "{}"}}}},
        },
        {"type": "tool-call-end", "index": 1},
        {"type": "citation-start", "index": 0, "delta": {}},
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "TOOL_CALL",
                "usage": {"tokens": {"input_tokens": 3, "output_tokens": 2}},
            },
        },
    ]
    out = [item for event in events for item in state.feed(event)]
    assert out == [
        TextDelta("Let me"),
        ToolCallDelta(index=1, id="c1", name="f", arguments_fragment=""),
        ToolCallDelta(index=1, arguments_fragment="{}"),
    ]
    assert state.finish() == ChatStreamEnd(FinishReason.TOOL_CALLS, Usage(3, 2, 0, 5), request_id="m-1")


def test_stream_state_raises_on_error_timeout_and_missing_end() -> None:
    with pytest.raises(ProviderUnavailable, match="cohere stream failed: overloaded"):
        StreamState(None).feed(
            {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "overloaded"}}
        )
    with pytest.raises(ProviderTimeout, match="cohere stopped the generation"):
        StreamState(None).feed({"type": "message-end", "delta": {"finish_reason": "TIMEOUT"}})
    state = StreamState(None)
    state.feed({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hi"}}}})
    with pytest.raises(ProviderUnavailable, match="ended before message-end"):
        state.finish()


def test_thinking_is_not_text() -> None:
    event = {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"thinking": "hmm"}}}}
    assert StreamState(None).feed(event) == []


def test_embed_body_input_types() -> None:
    request = EmbedRequest(
        model="embed-v4.0", inputs=["a"], dimensions=256, input_type=EmbedInputType.DOCUMENT
    )
    assert retrieval.embed_body(request) == {
        "model": "embed-v4.0",
        "texts": ["a"],
        "embedding_types": ["float"],
        "input_type": "search_document",
        "output_dimension": 256,
    }
    clustering = EmbedRequest(model="embed-v4.0", inputs=["a"], provider_options={"input_type": "clustering"})
    assert retrieval.embed_body(clustering)["input_type"] == "clustering"
    with pytest.raises(InvalidRequest, match="Cohere embeddings need an input type"):
        retrieval.embed_body(EmbedRequest(model="embed-v4.0", inputs=["a"]))


def test_rerank_answer_is_best_first() -> None:
    body = {
        "id": "r1",
        "results": [{"index": 2, "relevance_score": 0.2}, {"index": 0, "relevance_score": 0.9}],
        "meta": {"billed_units": {"search_units": 1}},
    }
    response = retrieval.rerank_response(body, request_id=None)
    assert [(r.index, r.score) for r in response.results] == [(0, 0.9), (2, 0.2)]
    assert response.request_id == "r1"
    assert response.usage == Usage()
