"""Bedrock's conversions and error classification, without a network."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError

from callers.base import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from callers.bedrock import embedding_formats
from callers.bedrock.convert import (
    converse_messages,
    converse_request,
    inference_config,
    output_config,
    tool_config,
)
from callers.bedrock.errors import client_error
from callers.bedrock.responses import chat_response, finish_reason, usage
from callers.bedrock.stream import StreamAssembler
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
    return UserMessage([TextPart(text)])


def test_tool_results_and_following_user_text_merge_into_one_user_turn() -> None:
    messages = converse_messages(
        [
            SystemMessage("be brief"),
            user("weather in Paris and Rome?"),
            AssistantMessage(
                text="Checking.",
                tool_calls=[
                    ToolCall("t1", "weather", '{"city": "Paris"}'),
                    ToolCall("t2", "weather", '{"city": "Rome"}'),
                ],
            ),
            ToolResultMessage("t1", "18C"),
            ToolResultMessage("t2", "boom", is_error=True),
            user("and be quick"),
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "t2", "name": "weather", "input": {"city": "Rome"}}},
    ]
    assert messages[2]["content"] == [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "18C"}]}},
        {"toolResult": {"toolUseId": "t2", "content": [{"text": "boom"}], "status": "error"}},
        {"text": "and be quick"},
    ]


def test_tool_call_arguments_must_be_a_json_object() -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        converse_messages([user("x"), AssistantMessage(tool_calls=[ToolCall("t", "f", "{oops")])])
    with pytest.raises(InvalidRequest, match="JSON object"):
        converse_messages([user("x"), AssistantMessage(tool_calls=[ToolCall("t", "f", "[1, 2]")])])


def test_images_as_bytes_or_s3_only() -> None:
    [turn] = converse_messages([UserMessage([ImagePart(data=b"\x89PNG", media_type="image/png")])])
    assert turn["content"] == [{"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}]
    [turn] = converse_messages([UserMessage([ImagePart(url="s3://bucket/cat.jpg")])])
    assert turn["content"][0]["image"] == {
        "format": "jpeg",
        "source": {"s3Location": {"uri": "s3://bucket/cat.jpg"}},
    }
    with pytest.raises(InvalidRequest, match="bytes or s3:// locations"):
        converse_messages([UserMessage([ImagePart(url="https://example.com/cat.png")])])
    with pytest.raises(InvalidRequest, match="png, jpeg, gif or webp"):
        converse_messages([UserMessage([ImagePart(data=b"x", media_type="image/tiff")])])


def test_sampling_maps_to_inference_config_and_refuses_what_converse_lacks() -> None:
    sampling = SamplingParams(temperature=0.2, top_p=0.9, max_output_tokens=64, stop=["END"])
    assert inference_config(sampling) == {
        "maxTokens": 64,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert inference_config(SamplingParams()) == {}
    with pytest.raises(InvalidRequest, match="Converse has no seed, frequency_penalty"):
        inference_config(SamplingParams(seed=1, frequency_penalty=0.5))


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"auto": {}}),
        (ToolChoice(ToolChoiceMode.AUTO), {"auto": {}}),
        (ToolChoice(ToolChoiceMode.REQUIRED), {"any": {}}),
        (ToolChoice(ToolChoiceMode.TOOL, "lookup"), {"tool": {"name": "lookup"}}),
    ],
)
def test_tool_choice(choice: ToolChoice | None, expected: dict[str, Any]) -> None:
    config = tool_config([Tool("lookup", "", {"type": "object"})], choice)
    assert config["toolChoice"] == expected
    # An empty description is left out: Converse requires it non-empty when present.
    assert config["tools"] == [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object"}}}}]


def test_tool_choice_none_is_refused_rather_than_ignored() -> None:
    with pytest.raises(InvalidRequest, match="no tool_choice 'none'"):
        tool_config([Tool("lookup")], ToolChoice(ToolChoiceMode.NONE))


def test_json_schema_becomes_output_config_and_json_object_is_refused() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}}
    config = output_config(ResponseFormat(ResponseFormatKind.JSON_SCHEMA, "answer", schema))
    assert config == {
        "textFormat": {
            "type": "json_schema",
            "structure": {
                "jsonSchema": {
                    "schema": '{"type": "object", "properties": {"a": {"type": "integer"}}}',
                    "name": "answer",
                }
            },
        }
    }
    with pytest.raises(InvalidRequest, match="only with a JSON schema"):
        output_config(ResponseFormat(ResponseFormatKind.JSON_OBJECT))


def test_full_request_and_provider_options() -> None:
    request = ChatRequest(
        model="amazon.nova-micro-v1:0",
        messages=[SystemMessage("one"), SystemMessage("two"), user("hi")],
        provider_options={"top_k": 20},
    )
    assert converse_request(request) == {
        "modelId": "amazon.nova-micro-v1:0",
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "system": [{"text": "one"}, {"text": "two"}],
        "additionalModelRequestFields": {"top_k": 20},
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("guardrail_intervened", FinishReason.CONTENT_FILTER),
        ("content_filtered", FinishReason.CONTENT_FILTER),
        ("malformed_tool_use", FinishReason.ERROR),
        ("something_new", FinishReason.ERROR),
    ],
)
def test_finish_reasons(reason: str, expected: FinishReason) -> None:
    assert finish_reason(reason) is expected


def test_usage_counts_cache_reads_and_writes_as_input() -> None:
    raw = {
        "inputTokens": 10,
        "outputTokens": 5,
        "totalTokens": 45,
        "cacheReadInputTokens": 20,
        "cacheWriteInputTokens": 10,
    }
    assert usage(raw) == Usage(input_tokens=40, output_tokens=5, cached_input_tokens=20, total_tokens=45)
    assert usage(None) == Usage()


def test_chat_response_with_text_and_tool_use() -> None:
    response = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm"}}},
                    {"text": "Let me look."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "lookup", "input": {"q": "x"}}},
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
        "ResponseMetadata": {"RequestId": "req-1", "HTTPStatusCode": 200},
    }
    result = chat_response(response, "m")
    assert result.message == AssistantMessage("Let me look.", [ToolCall("tooluse_1", "lookup", '{"q": "x"}')])
    assert (result.finish_reason, result.request_id, result.usage.total_tokens) == (
        FinishReason.TOOL_CALLS,
        "req-1",
        7,
    )


def test_stream_assembler_indexes_tool_calls_by_order_of_appearance() -> None:
    assembler = StreamAssembler()
    events: list[dict[str, Any]] = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Hi"}}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "a", "name": "f"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"x":'}}}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 2,
                "start": {"toolUse": {"toolUseId": "b", "name": "g"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}}},
        {"messageStop": {"stopReason": "tool_use"}},
        {"metadata": {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}},
    ]
    out = [chat_event for event in events for chat_event in assembler.feed(event)]
    assert out == [
        TextDelta("Hi"),
        ToolCallDelta(0, "a", "f"),
        ToolCallDelta(0, arguments_fragment='{"x":'),
        ToolCallDelta(1, "b", "g"),
        ToolCallDelta(1, arguments_fragment="{}"),
        ToolCallDelta(0, arguments_fragment="1}"),
    ]
    assert assembler.end("r") == ChatStreamEnd(FinishReason.TOOL_CALLS, Usage(1, 2, 0, 3), "r")


def test_stream_that_ends_early_is_an_error() -> None:
    assembler = StreamAssembler()
    assembler.feed({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Hi"}}})
    with pytest.raises(ProviderUnavailable, match="before its messageStop"):
        assembler.end(None)
    assembler.feed({"messageStop": {"stopReason": "end_turn"}})
    with pytest.raises(ProviderUnavailable, match="before its metadata"):
        assembler.end(None)


def _client_error(code: str, status: int | None, message: str = "msg") -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status, "HTTPHeaders": {}}
    return ClientError(response, "Converse")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("UnrecognizedClientException", 403, AuthenticationFailed),
        ("InvalidSignatureException", 403, AuthenticationFailed),
        ("ExpiredTokenException", 400, AuthenticationFailed),  # 400, yet the key is the problem
        ("AccessDeniedException", 403, PermissionDenied),
        ("ResourceNotFoundException", 404, NotFound),
        ("ThrottlingException", 429, RateLimited),
        ("ServiceQuotaExceededException", 400, RateLimited),
        ("ValidationException", 400, InvalidRequest),
        ("ModelTimeoutException", 408, ProviderTimeout),
        ("ModelNotReadyException", 429, ProviderUnavailable),  # 429, yet not our rate
        ("ServiceUnavailableException", 503, ProviderUnavailable),
        ("InternalServerException", 500, ProviderUnavailable),
        ("SomethingNewException", 409, InvalidRequest),  # unknown code: the status decides
        ("SomethingNewException", 502, ProviderUnavailable),
    ],
)
def test_aws_error_codes_decide_before_statuses(code: str, status: int, expected: type[Exception]) -> None:
    error = client_error(_client_error(code, status))
    assert type(error) is expected
    assert error.provider_status == status
    assert error.message == "msg"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("throttlingException", RateLimited),
        ("validationException", InvalidRequest),
        ("modelStreamErrorException", ProviderUnavailable),
        ("internalServerException", ProviderUnavailable),
        ("serviceUnavailableException", ProviderUnavailable),
        ("brandNewException", ProviderUnavailable),
    ],
)
def test_mid_stream_exception_names(code: str, expected: type[Exception]) -> None:
    event_error = EventStreamError({"Error": {"Code": code, "Message": "oh no"}}, "ConverseStream")
    assert type(client_error(event_error)) is expected


def test_embedding_families_and_batches() -> None:
    titan = embedding_formats.batches(
        EmbedRequest("amazon.titan-embed-text-v2:0", ["a", "b"], dimensions=256)
    )
    assert [b.body for b in titan] == [
        b'{"inputText": "a", "dimensions": 256}',
        b'{"inputText": "b", "dimensions": 256}',
    ]
    cohere = embedding_formats.batches(
        EmbedRequest("us.cohere.embed-v4:0", [str(i) for i in range(200)], 512, EmbedInputType.DOCUMENT)
    )
    assert [(b.first_input, b.count) for b in cohere] == [(0, 96), (96, 96), (192, 8)]
    assert b'"input_type": "search_document"' in cohere[0].body
    assert b'"output_dimension": 512' in cohere[0].body
    with pytest.raises(InvalidRequest, match="needs an input type"):
        embedding_formats.batches(EmbedRequest("cohere.embed-english-v3", ["a"]))
    with pytest.raises(InvalidRequest, match="fixed number of dimensions"):
        embedding_formats.batches(EmbedRequest("cohere.embed-english-v3", ["a"], 256, EmbedInputType.QUERY))
    with pytest.raises(InvalidRequest, match=r"implemented for amazon\.titan-embed"):
        embedding_formats.family("meta.llama3-8b-instruct-v1:0")
