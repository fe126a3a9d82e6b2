"""The OpenAI wire's conversions, without a network: request bodies, answers, SSE, errors."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import orjson
import pytest

from callers.base import (
    AuthenticationFailed,
    InvalidRequest,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
)
from callers.openai.transport import SSEParser, error_message, http_error, stream_error
from callers.openai.wire import StreamDecoder, chat_payload, embed_body, parse_chat, parse_embeddings
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ChatStreamEnd,
    EmbedInputType,
    EmbedRequest,
    FinishReason,
    ImagePart,
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


def user(text: str) -> UserMessage:
    return UserMessage(parts=[TextPart(text)])


def payload(request: ChatRequest, *, field: str = "max_tokens", stream: bool = False) -> dict[str, Any]:
    # Through orjson and back: what goes on the wire, not the intermediate dict.
    return json.loads(orjson.dumps(chat_payload(request, field, stream=stream)))


# --- request bodies ----------------------------------------------------------------


def test_minimal_request_sends_only_what_was_set() -> None:
    body = payload(ChatRequest(model="gpt-4o-mini", messages=[user("Hi")]))
    assert body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def test_every_message_kind_in_openais_shape() -> None:
    messages = [
        SystemMessage("Be brief."),
        UserMessage(
            parts=[
                TextPart("What is in these?"),
                ImagePart(url="https://example.com/cat.jpg", detail="low"),
                ImagePart(data=b"\x89PNG\r\n", media_type="image/png"),
            ]
        ),
        AssistantMessage(
            text=None,
            tool_calls=[
                ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
                ToolCall(id="call_2", name="get_time", arguments='{"tz": "CET"}'),
            ],
        ),
        ToolResultMessage(tool_call_id="call_1", content="18C, cloudy"),
        ToolResultMessage(tool_call_id="call_2", content="no such zone", is_error=True),
        AssistantMessage(text="It is 18C."),
        AssistantMessage(),
    ]
    body = payload(ChatRequest(model="m", messages=messages))
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
                {
                    "type": "image_url",
                    "image_url": {
                        "url": "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n").decode()
                    },
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
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, cloudy"},
        {"role": "tool", "tool_call_id": "call_2", "content": "no such zone"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "assistant", "content": ""},
    ]


def test_tools_tool_choice_and_response_formats() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    request = ChatRequest(
        model="m",
        messages=[user("weather?")],
        tools=[
            Tool(name="get_weather", description="Weather by city", parameters=schema, strict=True),
            Tool(name="ping"),
        ],
        tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_weather"),
        response_format=ResponseFormat(
            ResponseFormatKind.JSON_SCHEMA, "answer", {"type": "object"}, strict=True
        ),
    )
    body = payload(request)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": schema,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "ping"}},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    for mode, wire in (("auto", "auto"), ("none", "none"), ("required", "required")):
        request.tool_choice = ToolChoice(ToolChoiceMode(mode))
        assert payload(request)["tool_choice"] == wire
    request.response_format = ResponseFormat(ResponseFormatKind.JSON_OBJECT)
    assert payload(request)["response_format"] == {"type": "json_object"}
    request.response_format = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, json_schema={"type": "object"})
    assert payload(request)["response_format"]["json_schema"] == {
        "name": "response",
        "schema": {"type": "object"},
    }
    request.response_format = ResponseFormat(ResponseFormatKind.TEXT)
    assert "response_format" not in payload(request)


def test_sampling_stream_and_the_length_field_per_vendor() -> None:
    request = ChatRequest(
        model="m",
        messages=[user("x")],
        sampling=SamplingParams(
            temperature=0.0,  # zero is a value, not "unset"
            top_p=0.9,
            max_output_tokens=50,
            stop=["\n\n", "END"],
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
        ),
    )
    body = payload(request, field="max_completion_tokens", stream=True)
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.0,
        "top_p": 0.9,
        "max_completion_tokens": 50,
        "stop": ["\n\n", "END"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert payload(request)["max_tokens"] == 50


def test_provider_options_pass_through_and_win() -> None:
    request = ChatRequest(
        model="m",
        messages=[user("x")],
        sampling=SamplingParams(temperature=1.0),
        provider_options={"temperature": 0.2, "logit_bias": {"50256": -100}, "provider": {"order": ["groq"]}},
    )
    body = payload(request)
    assert body["temperature"] == 0.2
    assert body["logit_bias"] == {"50256": -100}
    assert body["provider"] == {"order": ["groq"]}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ChatRequest(model="m", messages=[UserMessage([ImagePart(data=b"x")])]), "media_type"),
        (ChatRequest(model="m", messages=[UserMessage([ImagePart()])]), "url or data"),
        (
            ChatRequest(model="m", messages=[user("x")], tool_choice=ToolChoice(ToolChoiceMode.TOOL)),
            "tool_name",
        ),
        (
            ChatRequest(
                model="m",
                messages=[user("x")],
                response_format=ResponseFormat(ResponseFormatKind.JSON_SCHEMA),
            ),
            "json_schema",
        ),
    ],
)
def test_impossible_requests_are_invalid_before_sending(request_: ChatRequest, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        chat_payload(request_, "max_tokens", stream=False)


def test_embed_body() -> None:
    request = EmbedRequest(
        model="text-embedding-3-small", inputs=["a", "b"], dimensions=256, input_type=EmbedInputType.QUERY
    )
    assert json.loads(embed_body(request)) == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 256,
    }
    request.provider_options = {"user": "u-1"}
    assert json.loads(embed_body(request))["user"] == "u-1"


# --- answers -----------------------------------------------------------------------


COMPLETION = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 20,
        "completion_tokens": 5,
        "total_tokens": 25,
        "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
    "system_fingerprint": "fp_x",
}


def test_parse_completion() -> None:
    response = parse_chat(COMPLETION, "req_123")
    assert response.message == AssistantMessage(text="Hi there", tool_calls=[])
    assert response.finish_reason is FinishReason.STOP
    assert response.usage == Usage(input_tokens=20, output_tokens=5, cached_input_tokens=16, total_tokens=25)
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.request_id == "req_123"
    assert parse_chat(COMPLETION, None).request_id == "chatcmpl-abc"  # no header: the completion id


def test_parse_tool_calls_and_finish_reasons() -> None:
    data = json.loads(json.dumps(COMPLETION))
    data["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1'}},
            {"type": "function", "function": {"name": "g", "arguments": {"y": 2}}},  # a lax server
        ],
    }
    data["choices"][0]["finish_reason"] = "stop"  # OpenAI does this for a forced tool choice
    response = parse_chat(data, None)
    assert response.message.text is None
    assert response.message.tool_calls == [
        ToolCall(id="call_a", name="f", arguments='{"x": 1'),  # invalid JSON kept verbatim
        ToolCall(id="call_1", name="g", arguments='{"y":2}'),
    ]
    assert response.finish_reason is FinishReason.TOOL_CALLS
    for wire, expected in [
        ("length", FinishReason.LENGTH),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("function_call", FinishReason.TOOL_CALLS),
        ("error", FinishReason.ERROR),
        ("eos_token", FinishReason.STOP),
        ("something_new", FinishReason.STOP),
        (None, FinishReason.STOP),
    ]:
        data = json.loads(json.dumps(COMPLETION))
        data["choices"][0]["finish_reason"] = wire
        assert parse_chat(data, None).finish_reason is expected, wire


def test_usage_without_details_and_without_total() -> None:
    data = {**COMPLETION, "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    assert parse_chat(data, None).usage == Usage(3, 4, 0, 7)
    assert parse_chat({**COMPLETION, "usage": None}, None).usage == Usage()


@pytest.mark.parametrize(
    "data",
    [{}, {"choices": []}, {"choices": [{}]}, {"choices": [{"message": {"tool_calls": [{}]}}]}, [], "x"],
)
def test_malformed_completion_is_provider_unavailable(data: Any) -> None:
    with pytest.raises(ProviderUnavailable):
        parse_chat(data, None)


def test_error_inside_a_200_body_is_raised() -> None:
    with pytest.raises(RateLimited, match="slow down"):
        parse_chat({"error": {"code": 429, "message": "slow down"}}, None)


def test_parse_embeddings_orders_by_index_and_reads_base64() -> None:
    packed = base64.b64encode(struct.pack("<2f", 0.5, -0.25)).decode()
    data = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 1, "embedding": packed},
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    response = parse_embeddings(data, "req_e", "asked-model")
    assert response.vectors == [[0.1, 0.2], [0.5, -0.25]]
    assert response.usage == Usage(input_tokens=4, total_tokens=4)
    assert (response.model, response.request_id) == ("text-embedding-3-small", "req_e")
    with pytest.raises(ProviderUnavailable):
        parse_embeddings({"data": [{"index": 0}]}, None, "m")


# --- server-sent events ----------------------------------------------------------


def test_sse_parser_joins_lines_split_anywhere() -> None:
    stream = (
        b": OPENROUTER PROCESSING\n\n"
        b'data: {"a": 1}\n\n'
        b"event: message\r\n"
        b'data:{"b": 2}\r\n\r\n'
        b"id: 7\nretry: 100\n"
        b'data: {"c":\ndata: 3}\n\n'
        b"data: [DONE]\n\n"
    )
    expected = [b'{"a": 1}', b'{"b": 2}', b'{"c":\n3}', b"[DONE]"]
    for size in (1, 2, 3, 7, 64, len(stream)):
        parser = SSEParser()
        events: list[bytes] = []
        for start in range(0, len(stream), size):
            events += parser.feed(stream[start : start + size])
        events += parser.finish()
        assert events == expected, size


def test_sse_parser_flushes_an_unterminated_last_event() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"a": 1}\n\ndata: {"b"') == [b'{"a": 1}']
    assert parser.feed(b": 2}") == []
    assert parser.finish() == [b'{"b": 2}']


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "m", **extra}
    if "choices" not in extra:
        body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return orjson.dumps(body)


def test_stream_decoder_text_interleaved_parallel_tool_calls_and_usage() -> None:
    decoder = StreamDecoder("req_s")
    events = []
    for payload_ in [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me "}),
        chunk({"content": "check."}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c0", "type": "function", "function": {"name": "a", "arguments": ""}}
                ]
            }
        ),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "c1", "type": "function", "function": {"name": "b", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x"'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"y": 2}'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        chunk({}, "tool_calls"),
        chunk(
            choices=[],
            usage={
                "prompt_tokens": 9,
                "completion_tokens": 3,
                "total_tokens": 12,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
        ),
    ]:
        events += decoder.feed(payload_)
    assert events == [
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCallDelta(0, "c0", "a", ""),
        ToolCallDelta(1, "c1", "b", ""),
        ToolCallDelta(0, None, None, '{"x"'),
        ToolCallDelta(1, None, None, '{"y": 2}'),
        ToolCallDelta(0, None, None, ": 1}"),
    ]
    assert decoder.end() == ChatStreamEnd(FinishReason.TOOL_CALLS, Usage(9, 3, 8, 12), "req_s")


def test_stream_decoder_infers_missing_tool_call_indexes() -> None:
    decoder = StreamDecoder()
    events = []
    for call in [
        {"id": "c0", "function": {"name": "a", "arguments": "{}"}},
        {"id": "c1", "function": {"name": "b", "arguments": "{"}},
        {"function": {"arguments": "}"}},
    ]:
        events += decoder.feed(chunk({"tool_calls": [call]}))
    assert [e.index for e in events if isinstance(e, ToolCallDelta)] == [0, 1, 1]
    assert decoder.end().request_id == "chatcmpl-s"


def test_stream_decoder_errors() -> None:
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        StreamDecoder().feed(b'{"choices": [')
    with pytest.raises(ProviderUnavailable, match="unexpected shape"):
        StreamDecoder().feed(b'{"choices": [{"delta": {"tool_calls": [{"function": 5}]}}]}')
    openrouter = chunk({"content": ""}, "error", error={"code": 502, "message": "Provider returned error"})
    with pytest.raises(ProviderUnavailable, match="Provider returned error") as caught:
        StreamDecoder().feed(openrouter)
    assert caught.value.provider_status == 502
    with pytest.raises(ProviderUnavailable, match="boom"):
        StreamDecoder().feed(b'{"error": {"code": "server_error", "message": "boom"}}')
    with pytest.raises(InvalidRequest, match="too long"):  # vLLM's shape
        StreamDecoder().feed(b'{"object": "error", "message": "prompt too long", "code": 400}')
    decoder = StreamDecoder()
    decoder.feed(chunk({"content": "half an ans"}))
    with pytest.raises(ProviderUnavailable, match="before the answer was complete"):
        decoder.end_without_done()
    decoder.feed(chunk({}, "stop"))
    assert decoder.end_without_done().finish_reason is FinishReason.STOP


# --- error answers -----------------------------------------------------------------


def test_error_messages_from_every_vendor_shape() -> None:
    assert error_message(b'{"error": {"message": "bad model", "type": "x"}}') == "bad model"
    assert error_message(b'{"error": "Model is loading"}') == "Model is loading"
    assert error_message(b'{"object": "error", "message": "vllm says"}') == "vllm says"
    assert error_message(b'{"detail": "Not Found"}') == "Not Found"
    assert error_message(b"<html>502 Bad Gateway</html>") == "<html>502 Bad Gateway</html>"
    assert error_message(b"") == "(empty body)"
    assert error_message(b'{"error": {"code": 5}}') == '{"code":5}'


def test_http_errors_are_classified_with_vendor_refinements() -> None:
    quota = b'{"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}'
    assert type(http_error(429, quota, {})) is PermissionDenied
    throttled = http_error(
        429, b'{"error": {"message": "slow", "code": "rate_limit_exceeded"}}', {"Retry-After": "3"}
    )
    assert type(throttled) is RateLimited
    assert throttled.retry_after == 3.0
    assert type(http_error(402, b'{"error": {"code": 402, "message": "no credits"}}', {})) is PermissionDenied
    assert type(http_error(401, b"{}", {})) is AuthenticationFailed
    assert type(stream_error("plain text")) is ProviderUnavailable
