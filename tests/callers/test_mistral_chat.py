"""Mistral CHAT, STREAM_CHAT and EMBED through the real mistralai SDK against a local fake."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import (
    Capability,
    ChatCaller,
    Embedder,
    InvalidRequest,
    ProviderUnavailable,
    StreamChatCaller,
)
from callers.types import (
    AssistantMessage,
    ChatEvent,
    ChatRequest,
    ChatStreamEnd,
    EmbedRequest,
    FinishReason,
    JsonValue,
    Message,
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
from tests.fakes.mistral_server import FakeMistral, MistralReply
from tests.fakes.secret_fields import PlainSecret

GOOD = "m-good-0123456789"
MODEL = "mistral-small-latest"
WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
async def close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def chat_caller() -> ChatCaller:
    caller = registry.capability("mistral", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def ask(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[UserMessage([TextPart(text)])], **kwargs)  # type: ignore[arg-type]


async def collect(fake: FakeMistral, request: ChatRequest) -> list[ChatEvent]:
    caller = registry.capability("mistral", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    stream = caller.stream_chat(PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5)
    return [event async for event in stream]


async def test_text_chat_normalizes_the_answer_and_its_request_id() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.replies.append(
            MistralReply(text="Bonjour !", prompt_tokens=80, completion_tokens=4, cached_tokens=64)
        )
        request = ChatRequest(
            model=MODEL,
            messages=[SystemMessage("Answer in French."), UserMessage([TextPart("Hello")])],
            sampling=SamplingParams(temperature=0.2, max_output_tokens=64, seed=1, frequency_penalty=0.5),
        )
        response = await chat_caller().chat(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
        )
    assert response.message == AssistantMessage(text="Bonjour !")
    assert response.finish_reason is FinishReason.STOP
    assert response.usage == Usage(input_tokens=80, output_tokens=4, cached_input_tokens=64, total_tokens=84)
    assert response.model == MODEL
    assert response.request_id == fake.correlation_ids[0]  # the mistral-correlation-id header
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["Authorization"] == f"Bearer {GOOD}"
    assert sent.json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        "temperature": 0.2,
        "max_tokens": 64,
        "random_seed": 1,
        "frequency_penalty": 0.5,
        "stream": False,
    }


async def test_tool_call_round_trip() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.replies += [
            MistralReply(
                tool_calls=[("D681PevKs", "get_weather", '{"city": "Paris"}')], finish_reason="tool_calls"
            ),
            MistralReply(text="It is 21 °C in Paris."),
        ]
        secret, options = PlainSecret(api_key=GOOD), {"base_url": fake.base_url}
        history: list[Message] = [UserMessage([TextPart("Weather in Paris?")])]
        choice = ToolChoice(ToolChoiceMode.TOOL, "get_weather")
        first = await chat_caller().chat(
            secret,
            options,
            ChatRequest(model=MODEL, messages=list(history), tools=[WEATHER], tool_choice=choice),
            timeout=5,
        )
        assert first.finish_reason is FinishReason.TOOL_CALLS
        assert first.message == AssistantMessage(
            text=None, tool_calls=[ToolCall("D681PevKs", "get_weather", '{"city": "Paris"}')]
        )
        history += [first.message, ToolResultMessage("D681PevKs", '{"temp_c": 21}')]
        final = await chat_caller().chat(
            secret, options, ChatRequest(model=MODEL, messages=history, tools=[WEATHER]), timeout=5
        )
    assert final.message.text == "It is 21 °C in Paris."
    assert fake.requests[0].json["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    messages = fake.requests[1].json["messages"]
    assert messages[1]["role"] == "assistant"
    assert messages[1]["tool_calls"][0]["id"] == "D681PevKs"
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "D681PevKs",
        "name": "get_weather",
        "content": '{"temp_c": 21}',
    }
    assert fake.requests[1].json["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("kind", [ResponseFormatKind.JSON_OBJECT, ResponseFormatKind.JSON_SCHEMA])
async def test_json_modes_reach_the_wire(kind: ResponseFormatKind) -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
    }
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.replies.append(MistralReply(text='{"name": "Ada"}'))
        request = ask(
            "Who? Answer in JSON.", response_format=ResponseFormat(kind, "person", schema, strict=True)
        )
        response = await chat_caller().chat(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
        )
    assert json.loads(response.message.text or "") == {"name": "Ada"}
    sent = fake.requests[0].json["response_format"]
    if kind is ResponseFormatKind.JSON_OBJECT:
        assert sent == {"type": "json_object"}
    else:
        assert sent == {
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        }


async def test_provider_options_pass_and_unknown_ones_are_refused() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        secret, options = PlainSecret(api_key=GOOD), {"base_url": fake.base_url}
        await chat_caller().chat(
            secret, options, ask("hi", provider_options={"safe_prompt": True}), timeout=5
        )
        with pytest.raises(InvalidRequest, match=r"unknown Mistral parameter\(s\): safeprompt"):
            await chat_caller().chat(
                secret, options, ask("hi", provider_options={"safeprompt": True}), timeout=5
            )
    assert fake.requests[0].json["safe_prompt"] is True
    assert len(fake.requests) == 1


async def test_stream_text_ends_with_usage() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.replies.append(MistralReply(text="Streaming works fine.", prompt_tokens=9, completion_tokens=4))
        events = await collect(fake, ask("Say something"))
    *deltas, end = events
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "Streaming works fine."
    assert len(deltas) > 1
    assert end == ChatStreamEnd(FinishReason.STOP, Usage(9, 4, 0, 13), request_id=fake.correlation_ids[0])
    assert fake.requests[0].json["stream"] is True
    assert fake.requests[0].headers["Accept"] == "text/event-stream"


async def test_stream_tool_calls_come_whole_with_their_index() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.replies.append(
            MistralReply(
                tool_calls=[
                    ("a1b2c3d4e", "get_weather", '{"city": "Paris"}'),
                    ("f5g6h7i8j", "get_weather", '{"city": "Oslo"}'),
                ],
                finish_reason="tool_calls",
            )
        )
        events = await collect(fake, ask("Paris and Oslo?", tools=[WEATHER]))
    assert events[:-1] == [
        ToolCallDelta(0, "a1b2c3d4e", "get_weather", '{"city": "Paris"}'),
        ToolCallDelta(1, "f5g6h7i8j", "get_weather", '{"city": "Oslo"}'),
    ]
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason is FinishReason.TOOL_CALLS
    assert end.usage.total_tokens == 17


async def test_stream_cut_midway_raises() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.replies.append(MistralReply(text="This answer will never be finished."))
        fake.cut_stream_after = 3
        with pytest.raises(ProviderUnavailable, match=r"connection to 127\.0\.0\.1 failed") as caught:
            await collect(fake, ask("hi"))
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_stream_finish_reason_error_raises() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.stream_finish_error = True
        with pytest.raises(ProviderUnavailable, match="mistral stream failed: finish_reason error"):
            await collect(fake, ask("hi"))


async def test_stream_error_object_raises_with_its_message() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.stream_error_object = "Service unavailable, please retry"
        with pytest.raises(
            ProviderUnavailable, match="mistral stream failed: Service unavailable, please retry"
        ):
            await collect(fake, ask("hi"))


async def test_stream_without_finish_reason_is_not_a_normal_end() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        fake.omit_finish = True
        with pytest.raises(ProviderUnavailable, match="without a finish reason"):
            await collect(fake, ask("hi"))


async def test_embeddings_batch_with_dimensions() -> None:
    async with FakeMistral(valid_keys={GOOD}) as fake:
        embedder = registry.capability("mistral", Capability.EMBED)
        assert isinstance(embedder, Embedder)
        request = EmbedRequest(
            model="codestral-embed", inputs=["def f(): pass", "x = 1", "print(x)"], dimensions=256
        )
        response = await embedder.embed(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
        )
        mistral_embed = await embedder.embed(
            PlainSecret(api_key=GOOD),
            {"base_url": fake.base_url},
            EmbedRequest("mistral-embed", ["a"]),
            timeout=5,
        )
    assert [vector[0] for vector in response.vectors] == [
        pytest.approx(0.1),
        pytest.approx(0.2),
        pytest.approx(0.3),
    ]
    assert all(len(vector) == 256 for vector in response.vectors)
    assert response.usage == Usage(input_tokens=7, total_tokens=7)
    assert response.model == "codestral-embed"
    assert response.request_id == fake.correlation_ids[0]
    assert (fake.requests[0].method, fake.requests[0].path) == ("POST", "/v1/embeddings")
    assert fake.requests[0].json == {
        "model": "codestral-embed",
        "input": ["def f(): pass", "x = 1", "print(x)"],
        "output_dimension": 256,
    }
    assert len(mistral_embed.vectors[0]) == 1024


class Recording(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_hub_environment_never_reaches_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "m-from-environment")
    monkeypatch.setenv("MISTRAL_DEBUG", "1")  # would log every request and body
    sdk_logger = logging.getLogger("mistralai.client")
    recording = Recording()
    sdk_logger.addHandler(recording)
    monkeypatch.setattr(sdk_logger, "level", logging.DEBUG)
    try:
        async with FakeMistral(valid_keys={GOOD}) as fake:
            await chat_caller().chat(
                PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, ask("hi"), timeout=5
            )
    finally:
        sdk_logger.removeHandler(recording)
    assert fake.requests[0].headers["Authorization"] == f"Bearer {GOOD}"
    assert recording.records == []
