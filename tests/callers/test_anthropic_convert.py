"""Anthropic request conversion: ChatRequest -> Messages API body, no network."""

from __future__ import annotations

import base64

import pytest

from callers.anthropic.convert import DEFAULT_MAX_TOKENS, JSON_TOOL_NAME, messages_call
from callers.base import InvalidRequest
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    ImagePart,
    JsonValue,
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

MODEL = "claude-sonnet-4-6"
WEATHER = Tool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def user(text: str) -> UserMessage:
    return UserMessage(parts=[TextPart(text)])


def test_system_messages_become_the_top_level_system_and_max_tokens_defaults() -> None:
    call = messages_call(
        ChatRequest(
            model=MODEL, messages=[SystemMessage("Be brief."), user("Hi"), SystemMessage("In French.")]
        )
    )
    assert call.params == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": "Be brief.\n\nIn French.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert call.api_version == "2026-10-21"
    assert call.json_tool is None
    assert call.extra_body == {}


def test_tool_results_are_grouped_into_one_user_turn_before_the_next_user_text() -> None:
    calls = [ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'), ToolCall("toolu_2", "get_weather", "")]
    request = ChatRequest(
        model=MODEL,
        messages=[
            user("Weather in Paris and Rome?"),
            AssistantMessage(text="Checking.", tool_calls=calls),
            ToolResultMessage("toolu_1", "18 C"),
            ToolResultMessage("toolu_2", "city not found", is_error=True),
            user("Thanks"),
        ],
    )
    turns = messages_call(request).params["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
    ]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "city not found", "is_error": True},
        {"type": "text", "text": "Thanks"},
    ]


def test_tool_results_go_first_even_after_user_text() -> None:
    request = ChatRequest(
        model=MODEL,
        messages=[
            user("q"),
            AssistantMessage(tool_calls=[ToolCall("toolu_1", "f", "{}")]),
            user("note"),
            ToolResultMessage("toolu_1", "done"),
        ],
    )
    content = messages_call(request).params["messages"][2]["content"]
    assert [block["type"] for block in content] == ["tool_result", "text"]


def test_images_inline_url_and_data_url() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    encoded = base64.b64encode(png).decode()
    parts: list[ContentPart] = [
        ImagePart(data=png, media_type="image/png"),
        ImagePart(url="https://example.com/cat.jpg"),
        ImagePart(url=f"data:image/png;base64,{encoded}"),
    ]
    content = messages_call(ChatRequest(model=MODEL, messages=[UserMessage(parts)])).params["messages"][0][
        "content"
    ]
    assert content == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": encoded}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": encoded}},
    ]
    with pytest.raises(InvalidRequest, match="media_type"):
        messages_call(ChatRequest(model=MODEL, messages=[UserMessage([ImagePart(data=png)])]))


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoice(ToolChoiceMode.AUTO), {"type": "auto"}),
        (ToolChoice(ToolChoiceMode.NONE), {"type": "none"}),
        (ToolChoice(ToolChoiceMode.REQUIRED), {"type": "any"}),
        (ToolChoice(ToolChoiceMode.TOOL, "get_weather"), {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tools_and_tool_choice(choice: ToolChoice, wire: dict[str, str]) -> None:
    strict = Tool(name="noop", strict=True)
    call = messages_call(
        ChatRequest(model=MODEL, messages=[user("x")], tools=[WEATHER, strict], tool_choice=choice)
    )
    assert call.params["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER.parameters},
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}, "strict": True},
    ]
    assert call.params["tool_choice"] == wire


def test_sampling_and_stop_sequences() -> None:
    sampling = SamplingParams(max_output_tokens=100, stop=["END"])
    params = messages_call(ChatRequest(model=MODEL, messages=[user("x")], sampling=sampling)).params
    assert (params["max_tokens"], params["stop_sequences"]) == (100, ["END"])


def test_temperature_is_refused_on_the_current_version_and_sent_on_the_legacy_one() -> None:
    sampling = SamplingParams(temperature=0.2, top_p=0.9)
    with pytest.raises(InvalidRequest, match=r"2026-10-21 does not accept temperature or top_p"):
        messages_call(ChatRequest(model=MODEL, messages=[user("x")], sampling=sampling))
    legacy = messages_call(
        ChatRequest(
            model=MODEL,
            messages=[user("x")],
            sampling=sampling,
            provider_options={"anthropic_version": "2023-06-01", "top_k": 5},
        )
    )
    assert legacy.api_version == "2023-06-01"
    assert legacy.extra_body == {"top_k": 5, "temperature": 0.2, "top_p": 0.9}


def test_default_sampling_values_pass_and_unsupported_ones_are_refused() -> None:
    defaults = SamplingParams(temperature=1.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0)
    call = messages_call(ChatRequest(model=MODEL, messages=[user("x")], sampling=defaults))
    assert call.extra_body == {}
    assert "temperature" not in call.params
    for sampling, name in (
        (SamplingParams(seed=1), "seed"),
        (SamplingParams(presence_penalty=0.5), "presence_penalty"),
        (SamplingParams(frequency_penalty=-1.0), "frequency_penalty"),
    ):
        with pytest.raises(InvalidRequest, match=f"Anthropic does not support {name}"):
            messages_call(ChatRequest(model=MODEL, messages=[user("x")], sampling=sampling))


def test_provider_options_may_not_override_the_request() -> None:
    with pytest.raises(InvalidRequest, match="provider_options may not set model"):
        messages_call(ChatRequest(model=MODEL, messages=[user("x")], provider_options={"model": "other"}))
    with pytest.raises(InvalidRequest, match="anthropic_version must be"):
        messages_call(
            ChatRequest(model=MODEL, messages=[user("x")], provider_options={"anthropic_version": "1"})
        )


def test_json_schema_uses_structured_outputs() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
    }
    rf = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema_name="n", json_schema=schema)
    call = messages_call(ChatRequest(model=MODEL, messages=[user("x")], response_format=rf, tools=[WEATHER]))
    assert call.params["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert call.json_tool is None
    assert [t["name"] for t in call.params["tools"]] == ["get_weather"]  # tools still usable


def test_json_object_forces_the_json_tool_and_refuses_other_tools() -> None:
    rf = ResponseFormat(ResponseFormatKind.JSON_OBJECT)
    call = messages_call(ChatRequest(model=MODEL, messages=[user("x")], response_format=rf))
    assert call.json_tool == JSON_TOOL_NAME
    assert call.params["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}
    assert call.params["tools"][0]["input_schema"] == {"type": "object"}
    with pytest.raises(InvalidRequest, match="cannot combine json_object with tools"):
        messages_call(ChatRequest(model=MODEL, messages=[user("x")], response_format=rf, tools=[WEATHER]))


def test_invalid_tool_arguments_are_refused() -> None:
    bad = AssistantMessage(tool_calls=[ToolCall("toolu_1", "f", "[1, 2]")])
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        messages_call(ChatRequest(model=MODEL, messages=[user("x"), bad]))
