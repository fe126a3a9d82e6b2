"""Replicate's conversions, server-sent event parsing and error classification, without a network."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callers.base import InvalidRequest, PermissionDenied, ProviderUnavailable, RateLimited
from callers.replicate.api import http_error
from callers.replicate.convert import (
    chat_response,
    output_text,
    prediction_body,
    prediction_input,
    prediction_target,
)
from callers.replicate.events import ServerSentEvent, done_failure, server_sent_events, stream_error
from callers.types import (
    AssistantMessage,
    ChatRequest,
    FinishReason,
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
    Usage,
    UserMessage,
)

VERSION = "5a6809ca6288247d06daf6365557e5e429063f32a21146b2a807c682652136b8"


def user(text: str) -> UserMessage:
    return UserMessage([TextPart(text)])


@pytest.mark.parametrize(
    ("model", "path", "version"),
    [
        ("meta/meta-llama-3-8b-instruct", "/models/meta/meta-llama-3-8b-instruct/predictions", None),
        (f"meta/meta-llama-3-8b-instruct:{VERSION}", "/predictions", VERSION),
        (VERSION, "/predictions", VERSION),
    ],
)
def test_model_names_choose_the_endpoint(model: str, path: str, version: str | None) -> None:
    target = prediction_target(model)
    assert (target.path, target.version) == (path, version)


@pytest.mark.parametrize("model", ["llama", "meta/llama/../../account", "meta/llama:notahash", "a b/c"])
def test_model_names_that_are_not_replicate_models(model: str) -> None:
    with pytest.raises(InvalidRequest, match="not a Replicate model"):
        prediction_target(model)


def test_single_turn_input_mapping() -> None:
    request = ChatRequest(
        model="meta/meta-llama-3-8b-instruct",
        messages=[SystemMessage("Be terse."), user("Name a colour.")],
        sampling=SamplingParams(
            temperature=0.5, top_p=0.9, max_output_tokens=20, stop=["\n", "END"], seed=7, presence_penalty=0.1
        ),
        provider_options={"top_k": 50, "max_tokens": 30},  # provider_options win
    )
    assert prediction_input(request) == {
        "prompt": "Name a colour.",
        "system_prompt": "Be terse.",
        "max_tokens": 30,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 7,
        "presence_penalty": 0.1,
        "stop_sequences": "\n,END",
        "top_k": 50,
    }
    assert prediction_body(request, stream=True)["stream"] is True
    assert "version" not in prediction_body(request, stream=False)


def test_conversation_is_written_out_as_a_transcript() -> None:
    request = ChatRequest(
        model="meta/meta-llama-3-8b-instruct",
        messages=[user("Hi"), AssistantMessage("Hello!"), user("Tell me a joke.")],
    )
    assert prediction_input(request)["prompt"] == "User: Hi\n\nAssistant: Hello!\n\nUser: Tell me a joke."


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"tools": [Tool("f")]}, "take no tools"),
        ({"tool_choice": ToolChoice(ToolChoiceMode.REQUIRED)}, "take no tools"),
        ({"response_format": ResponseFormat(ResponseFormatKind.JSON_OBJECT)}, "no JSON mode"),
        ({"messages": [user("x"), AssistantMessage(tool_calls=[ToolCall("t", "f", "{}")])]}, "tool calls"),
        ({"messages": [user("x"), ToolResultMessage("t", "r")]}, "tool calls or tool results"),
        ({"messages": [UserMessage([ImagePart(url="https://x/y.png")])]}, "images"),
        ({"messages": [user("x"), AssistantMessage("y")]}, "must end with a user message"),
        ({"sampling": SamplingParams(stop=["a,b"])}, "comma"),
    ],
)
def test_what_replicate_cannot_take_is_refused(request_fields: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"model": "meta/meta-llama-3-8b-instruct", "messages": [user("x")]}
    fields.update(request_fields)
    with pytest.raises(InvalidRequest, match=message):
        prediction_input(ChatRequest(**fields))  # type: ignore[arg-type]


def test_output_shapes() -> None:
    assert output_text({"output": ["Hel", "lo"]}) == "Hello"
    assert output_text({"output": "Hello"}) == "Hello"
    assert output_text({"output": None}) == ""
    with pytest.raises(InvalidRequest, match="not a language model"):
        output_text({"output": ["https://replicate.delivery/out.png", {"x": 1}]})


def test_response_usage_and_length_finish() -> None:
    request = ChatRequest(model="a/b", messages=[user("x")], sampling=SamplingParams(max_output_tokens=4))
    prediction = {
        "id": "abc123",
        "status": "succeeded",
        "output": ["a", "b", "c", "d"],
        "metrics": {"input_token_count": 5, "output_token_count": 4, "predict_time": 0.2},
    }
    result = chat_response(request, prediction)
    assert result.message.text == "abcd"
    assert result.usage == Usage(5, 4, 0, 9)
    assert result.finish_reason is FinishReason.LENGTH  # it produced its whole budget
    assert result.request_id == "abc123"
    with pytest.raises(ProviderUnavailable, match="prediction failed: CUDA out of memory"):
        chat_response(request, {"id": "abc123", "status": "failed", "error": "CUDA out of memory"})


async def _lines(text: bytes) -> AsyncIterator[bytes]:
    for line in text.splitlines(keepends=True):
        yield line


async def test_server_sent_events_parsing() -> None:
    raw = (
        b": keep-alive\n\n"
        b"event: output\nid: 1:0\ndata: Hello\n\n"
        b"event: output\nid: 1:1\ndata:  world\n\n"  # a token's own leading space is kept
        b"event: output\nid: 1:2\ndata: line one\ndata: line two\n\n"
        b"event: output\r\ndata: crlf\r\n\r\n"
        b"event: done\ndata: {}\n\n"
    )
    events = [event async for event in server_sent_events(_lines(raw))]
    assert events == [
        ServerSentEvent("output", "Hello"),
        ServerSentEvent("output", " world"),
        ServerSentEvent("output", "line one\nline two"),
        ServerSentEvent("output", "crlf"),
        ServerSentEvent("done", "{}"),
    ]


def test_stream_error_and_done_reasons() -> None:
    assert "the model crashed" in stream_error('{"detail": "the model crashed"}').message
    assert done_failure("{}") is None
    assert done_failure("") is None
    failed = done_failure('{"reason": "canceled"}')
    assert failed is not None
    assert "canceled" in failed.message


def test_problem_documents_are_classified_by_status() -> None:
    billing = http_error(402, b'{"title": "Insufficient credit", "detail": "Buy credit.", "status": 402}', {})
    assert isinstance(billing, PermissionDenied)
    assert billing.message == "Buy credit."
    throttled = http_error(429, b'{"detail": "Slow down."}', {"Retry-After": "4"})
    assert isinstance(throttled, RateLimited)
    assert throttled.retry_after == 4.0
    assert http_error(502, b"<html>Bad gateway</html>", {}).message == "<html>Bad gateway</html>"
