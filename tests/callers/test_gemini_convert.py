"""Google (Gemini and Vertex AI) conversions: requests to contents/config and answers back, no network."""

from __future__ import annotations

import json

import pytest
from google.genai import types

from callers.base import InvalidRequest, ProviderUnavailable
from callers.gemini.convert import generate_call
from callers.gemini.ids import split_tool_call_id, tool_call_id
from callers.gemini.parse import StreamState, chat_response, finish_reason, usage
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ChatStreamEnd,
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

MODEL = "gemini-2.5-flash"
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def user(text: str) -> UserMessage:
    return UserMessage(parts=[TextPart(text)])


def wire(request: ChatRequest) -> tuple[list[dict[str, object]], types.GenerateContentConfig]:
    call = generate_call(request)
    return [c.model_dump(exclude_none=True) for c in call.contents], call.config


def test_roles_system_instruction_and_sampling() -> None:
    sampling = SamplingParams(
        temperature=0.2,
        top_p=0.9,
        max_output_tokens=256,
        stop=["END"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.3,
    )
    contents, config = wire(
        ChatRequest(
            model=MODEL,
            messages=[SystemMessage("Be brief."), user("Hi"), AssistantMessage(text="Hello!"), user("Bye")],
            sampling=sampling,
        )
    )
    assert contents == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello!"}]},
        {"role": "user", "parts": [{"text": "Bye"}]},
    ]
    assert config.system_instruction == types.Content(parts=[types.Part(text="Be brief.")])
    assert (config.temperature, config.top_p, config.max_output_tokens) == (0.2, 0.9, 256)
    assert (config.stop_sequences, config.seed) == (["END"], 7)
    assert (config.presence_penalty, config.frequency_penalty) == (0.1, 0.3)
    assert config.automatic_function_calling == types.AutomaticFunctionCallingConfig(disable=True)
    assert config.automatic_continuation is False


def test_tool_results_answer_by_name_in_one_user_turn() -> None:
    calls = [
        ToolCall(
            tool_call_id(0, types.FunctionCall(name="get_weather", args={"city": "Paris"}), None),
            "get_weather",
            '{"city": "Paris"}',
        ),
        ToolCall("provider-id-2", "get_time", ""),
    ]
    contents, _ = wire(
        ChatRequest(
            model=MODEL,
            messages=[
                user("Weather in Paris, and the time?"),
                AssistantMessage(text="Checking.", tool_calls=calls),
                ToolResultMessage(calls[0].id, '{"temp": 18}'),
                ToolResultMessage(calls[1].id, "no clock", is_error=True),
            ],
        )
    )
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"text": "Checking."},
            {"function_call": {"name": "get_weather", "args": {"city": "Paris"}}},  # synthetic id: not sent
            {"function_call": {"id": "provider-id-2", "name": "get_time", "args": {}}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"function_response": {"name": "get_weather", "response": {"output": {"temp": 18}}}},
            {
                "function_response": {
                    "id": "provider-id-2",
                    "name": "get_time",
                    "response": {"error": "no clock"},
                }
            },
        ],
    }


def test_a_result_for_an_unknown_call_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="answers no tool call"):
        generate_call(ChatRequest(model=MODEL, messages=[user("x"), ToolResultMessage("nope", "1")]))


def test_tool_call_ids_are_stable_and_carry_the_thought_signature() -> None:
    call = types.FunctionCall(name="get_weather", args={"city": "Paris"})
    plain = tool_call_id(0, call, None)
    assert plain == tool_call_id(0, types.FunctionCall(name="get_weather", args={"city": "Paris"}), None)
    assert plain != tool_call_id(1, call, None)
    assert split_tool_call_id(plain) == (None, None)
    signed = tool_call_id(0, call, b"\x00\xffsignature")
    assert signed.startswith(plain)
    assert split_tool_call_id(signed) == (None, b"\x00\xffsignature")
    given = tool_call_id(0, types.FunctionCall(id="fc-1", name="f", args={}), b"sig")
    assert split_tool_call_id(given) == ("fc-1", b"sig")
    # The signature goes back on the function call part, where Gemini 3 expects it.
    part = (
        generate_call(
            ChatRequest(
                model=MODEL,
                messages=[user("x"), AssistantMessage(tool_calls=[ToolCall(signed, "get_weather", "{}")])],
            )
        )
        .contents[1]
        .parts
    )
    assert part is not None
    assert part[0].thought_signature == b"\x00\xffsignature"


@pytest.mark.parametrize(
    ("choice", "mode", "allowed"),
    [
        (ToolChoice(ToolChoiceMode.AUTO), "AUTO", None),
        (ToolChoice(ToolChoiceMode.NONE), "NONE", None),
        (ToolChoice(ToolChoiceMode.REQUIRED), "ANY", None),
        (ToolChoice(ToolChoiceMode.TOOL, "get_weather"), "ANY", ["get_weather"]),
    ],
)
def test_tools_and_function_calling_config(choice: ToolChoice, mode: str, allowed: list[str] | None) -> None:
    _, config = wire(ChatRequest(model=MODEL, messages=[user("x")], tools=[WEATHER], tool_choice=choice))
    assert config.tools == [
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(
                    name="get_weather",
                    description="Weather for a city",
                    parameters_json_schema=WEATHER.parameters,
                )
            ]
        )
    ]
    assert config.tool_config is not None
    calling = config.tool_config.function_calling_config
    assert calling is not None
    assert (calling.mode, calling.allowed_function_names) == (mode, allowed)


def test_json_modes() -> None:
    schema: dict[str, JsonValue] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    _, as_object = wire(
        ChatRequest(
            model=MODEL, messages=[user("x")], response_format=ResponseFormat(ResponseFormatKind.JSON_OBJECT)
        )
    )
    assert (as_object.response_mime_type, as_object.response_json_schema) == ("application/json", None)
    rf = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema_name="n", json_schema=schema)
    _, with_schema = wire(ChatRequest(model=MODEL, messages=[user("x")], response_format=rf))
    assert (with_schema.response_mime_type, with_schema.response_json_schema) == ("application/json", schema)


def test_images() -> None:
    contents, _ = wire(
        ChatRequest(
            model=MODEL,
            messages=[
                UserMessage(
                    [
                        ImagePart(data=b"png-bytes", media_type="image/png"),
                        ImagePart(url="gs://bucket/cat.jpg"),
                        ImagePart(url="data:image/webp;base64,AAEC"),
                    ]
                )
            ],
        )
    )
    assert contents[0]["parts"] == [
        {"inline_data": {"data": b"png-bytes", "mime_type": "image/png"}},
        {"file_data": {"file_uri": "gs://bucket/cat.jpg", "mime_type": "image/jpeg"}},
        {"inline_data": {"data": b"\x00\x01\x02", "mime_type": "image/webp"}},
    ]


def test_provider_options_are_a_whitelist() -> None:
    _, config = wire(
        ChatRequest(
            model=MODEL, messages=[user("x")], provider_options={"thinking_config": {"thinking_budget": 0}}
        )
    )
    assert config.thinking_config == types.ThinkingConfig(thinking_budget=0)
    with pytest.raises(InvalidRequest, match="unsupported provider_options: http_options"):
        generate_call(
            ChatRequest(
                model=MODEL,
                messages=[user("x")],
                provider_options={"http_options": {"base_url": "http://evil"}},
            )
        )
    with pytest.raises(InvalidRequest, match="invalid provider_options"):
        generate_call(ChatRequest(model=MODEL, messages=[user("x")], provider_options={"top_k": "many"}))


@pytest.mark.parametrize(
    ("reason", "called", "expected"),
    [
        ("STOP", False, FinishReason.STOP),
        ("STOP", True, FinishReason.TOOL_CALLS),
        ("MAX_TOKENS", False, FinishReason.LENGTH),
        ("SAFETY", False, FinishReason.CONTENT_FILTER),
        ("RECITATION", False, FinishReason.CONTENT_FILTER),
        ("BLOCKLIST", False, FinishReason.CONTENT_FILTER),
        ("PROHIBITED_CONTENT", False, FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", True, FinishReason.ERROR),
        ("OTHER", False, FinishReason.ERROR),
    ],
)
def test_finish_reasons(reason: str, called: bool, expected: FinishReason) -> None:
    assert finish_reason(types.FinishReason(reason), called_tools=called) == expected


def test_usage_counts_thoughts_as_output_and_fills_total() -> None:
    meta = types.GenerateContentResponseUsageMetadata(
        prompt_token_count=100,
        cached_content_token_count=60,
        candidates_token_count=20,
        thoughts_token_count=5,
    )
    assert usage(meta) == Usage(input_tokens=100, output_tokens=25, cached_input_tokens=60, total_tokens=125)


def test_blocked_prompt_is_content_filter() -> None:
    blocked = types.GenerateContentResponse(
        prompt_feedback=types.GenerateContentResponsePromptFeedback(block_reason=types.BlockedReason.SAFETY)
    )
    assert chat_response(blocked, model=MODEL).finish_reason == FinishReason.CONTENT_FILTER
    state = StreamState()
    assert list(state.feed(blocked)) == []
    assert state.end().finish_reason == FinishReason.CONTENT_FILTER


def test_thought_parts_are_not_the_answer() -> None:
    response = types.GenerateContentResponse(
        candidates=[
            types.Candidate(
                content=types.Content(
                    role="model", parts=[types.Part(text="thinking...", thought=True), types.Part(text="42")]
                ),
                finish_reason=types.FinishReason.STOP,
            )
        ]
    )
    assert chat_response(response, model=MODEL).message.text == "42"
    state = StreamState()
    assert list(state.feed(response)) == [TextDelta("42")]
    assert isinstance(state.end(), ChatStreamEnd)


def test_stream_without_finish_reason_raises() -> None:
    state = StreamState()
    chunk = types.GenerateContentResponse(
        candidates=[types.Candidate(content=types.Content(role="model", parts=[types.Part(text="par")]))]
    )
    assert list(state.feed(chunk)) == [TextDelta("par")]
    with pytest.raises(ProviderUnavailable, match="without a finish reason"):
        state.end()


def test_streamed_function_call_is_one_whole_delta() -> None:
    chunk = types.GenerateContentResponse(
        candidates=[
            types.Candidate(
                content=types.Content(
                    role="model",
                    parts=[
                        types.Part(
                            function_call=types.FunctionCall(name="f", args={"a": 1}), thought_signature=b"s"
                        )
                    ],
                ),
                finish_reason=types.FinishReason.STOP,
            )
        ]
    )
    state = StreamState()
    [delta] = list(state.feed(chunk))
    assert isinstance(delta, ToolCallDelta)
    assert (delta.index, delta.name, json.loads(delta.arguments_fragment)) == (0, "f", {"a": 1})
    assert delta.id == chat_response(chunk, model=MODEL).message.tool_calls[0].id
    assert state.end().finish_reason == FinishReason.TOOL_CALLS
