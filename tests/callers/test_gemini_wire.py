"""Gemini API callers (chat, stream, embed, verify): the real google-genai SDK against a local fake."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from callers import pools, registry
from callers.base import (
    AuthenticationFailed,
    CallerError,
    Capability,
    ChatCaller,
    Embedder,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamChatCaller,
)
from callers.types import (
    AssistantMessage,
    ChatEvent,
    ChatRequest,
    ChatStreamEnd,
    EmbedInputType,
    EmbedRequest,
    FinishReason,
    JsonValue,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
    SystemMessage,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from tests.fakes.gemini_server import (
    FakeGoogle,
    embedding_values,
    function_call_part,
    generate_response,
    stream_chunks,
    text_part,
)
from tests.fakes.secret_fields import PlainSecret

GOOD = "AIzaSyGood-0123456789abcdefghijklmnopq"
BAD = "AIzaSyBad-0123456789abcdefghijklmnopqr"
MODEL = "gemini-2.5-flash"
WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def chat() -> Any:
    caller = registry.capability("gemini", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    assert isinstance(caller, StreamChatCaller)
    return caller


def embedder() -> Embedder:
    caller = registry.capability("gemini", Capability.EMBED)
    assert isinstance(caller, Embedder)
    return caller


def ask(text: str = "Weather in Paris?", **kwargs: Any) -> ChatRequest:
    return ChatRequest(
        model=MODEL, messages=[SystemMessage("Be brief."), UserMessage([TextPart(text)])], **kwargs
    )


def key(value: str = GOOD) -> PlainSecret:
    return PlainSecret(api_key=value)


def options(fake: FakeGoogle) -> dict[str, str]:
    return {"base_url": fake.url}


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


async def collect_into(received: list[ChatEvent], events: AsyncIterator[ChatEvent]) -> None:
    async for event in events:
        received.append(event)


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


# --- chat ------------------------------------------------------------------------------


async def test_text_chat() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(
            generate_response([text_part("Sunny, 18 C.")], cached_tokens=4, response_id="r-42")
        )
        sampling = SamplingParams(temperature=0.5, max_output_tokens=64, stop=["END"], seed=3)
        response = await chat().chat(key(), options(fake), ask(sampling=sampling), timeout=5)
    assert response.message == AssistantMessage(text="Sunny, 18 C.")
    assert response.finish_reason == FinishReason.STOP
    assert response.usage == Usage(input_tokens=20, output_tokens=10, cached_input_tokens=4, total_tokens=30)
    assert (response.model, response.request_id) == ("gemini-2.5-flash", "r-42")
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", f"/v1beta/models/{MODEL}:generateContent")
    assert sent.headers["x-goog-api-key"] == GOOD
    assert "key" not in sent.query  # the key is a header, never in the URL
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 64, "stopSequences": ["END"], "seed": 3},
    }


async def test_tool_call_round_trip() -> None:
    signature = b"\x12\x34opaque-thought-signature"
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(
            generate_response(
                [
                    function_call_part("get_weather", {"city": "Paris"}, signature=signature),
                    function_call_part("get_weather", {"city": "Rome"}),
                ]
            )
        )
        fake.replies.append(generate_response([text_part("Paris 18 C, Rome 24 C.")]))
        first_request = ask("Paris and Rome?", tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.AUTO))
        first = await chat().chat(key(), options(fake), first_request, timeout=5)
        assert first.finish_reason == FinishReason.TOOL_CALLS
        paris, rome = first.message.tool_calls
        assert (paris.name, json.loads(paris.arguments)) == ("get_weather", {"city": "Paris"})
        assert (rome.name, json.loads(rome.arguments)) == ("get_weather", {"city": "Rome"})
        assert paris.id != rome.id
        history = [
            *first_request.messages,
            first.message,
            ToolResultMessage(paris.id, '{"temp_c": 18}'),
            ToolResultMessage(rome.id, "24 C"),
        ]
        second = await chat().chat(
            key(), options(fake), ChatRequest(model=MODEL, messages=history, tools=[WEATHER]), timeout=5
        )
    assert second.message.text == "Paris 18 C, Rome 24 C."
    first_body, second_body = (r.json for r in fake.requests)
    assert first_body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    # The proto field's own name: Google's JSON parsing takes it as well as the camelCase one.
                    "parameters_json_schema": WEATHER.parameters,
                }
            ]
        }
    ]
    assert first_body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert second_body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": base64.b64encode(signature).decode(),
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": {"temp_c": 18}}}},
                {"functionResponse": {"name": "get_weather", "response": {"output": "24 C"}}},
            ],
        },
    ]


async def test_json_schema_mode() -> None:
    schema: dict[str, JsonValue] = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(generate_response([text_part('{"city": "Paris"}')]))
        fake.replies.append(generate_response([text_part("{}")]))
        rf = ResponseFormat(ResponseFormatKind.JSON_SCHEMA, schema_name="place", json_schema=schema)
        response = await chat().chat(key(), options(fake), ask(response_format=rf), timeout=5)
        await chat().chat(
            key(),
            options(fake),
            ask(response_format=ResponseFormat(ResponseFormatKind.JSON_OBJECT)),
            timeout=5,
        )
    assert json.loads(response.message.text or "") == {"city": "Paris"}
    with_schema, as_object = (r.json["generationConfig"] for r in fake.requests)
    assert with_schema == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert as_object == {"responseMimeType": "application/json"}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", FinishReason.ERROR),
    ],
)
async def test_finish_reasons_over_the_wire(reason: str, finish: FinishReason) -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(generate_response([text_part("...")], finish_reason=reason))
        response = await chat().chat(key(), options(fake), ask(), timeout=5)
    assert response.finish_reason == finish


# --- streaming ---------------------------------------------------------------------------


async def test_streaming_text_ends_with_one_end_event_carrying_usage() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(
            generate_response(
                [text_part("Sunny and warm today.")], thoughts_tokens=7, cached_tokens=2, response_id="r-7"
            )
        )
        events = await collect(chat().stream_chat(key(), options(fake), ask(), timeout=5))
    *deltas, end = events
    assert len(deltas) > 1
    assert all(isinstance(e, TextDelta) for e in deltas)
    assert "".join(e.text for e in deltas if isinstance(e, TextDelta)) == "Sunny and warm today."
    assert end == ChatStreamEnd(
        finish_reason=FinishReason.STOP,
        usage=Usage(input_tokens=20, output_tokens=17, cached_input_tokens=2, total_tokens=37),
        request_id="r-7",
    )
    [sent] = fake.requests
    assert (sent.path, sent.query) == (f"/v1beta/models/{MODEL}:streamGenerateContent", {"alt": "sse"})


async def test_streaming_tool_calls() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(
            generate_response(
                [
                    text_part("Checking."),
                    function_call_part("get_weather", {"city": "Paris"}),
                    function_call_part("get_time", {}, id_="fc-77"),
                ]
            )
        )
        events = await collect(chat().stream_chat(key(), options(fake), ask(tools=[WEATHER]), timeout=5))
        fake.replies.append(
            generate_response(
                [
                    text_part("Checking."),
                    function_call_part("get_weather", {"city": "Paris"}),
                    function_call_part("get_time", {}, id_="fc-77"),
                ]
            )
        )
        unary = await chat().chat(key(), options(fake), ask(tools=[WEATHER]), timeout=5)
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.index, c.name) for c in calls] == [(0, "get_weather"), (1, "get_time")]
    assert [json.loads(c.arguments_fragment) for c in calls] == [{"city": "Paris"}, {}]
    assert calls[1].id == "fc-77"
    assert [c.id for c in calls] == [c.id for c in unary.message.tool_calls]  # same ids streamed or not
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason == FinishReason.TOOL_CALLS
    assert end.usage.total_tokens == 30
    assert sum(isinstance(e, ChatStreamEnd) for e in events) == 1


@pytest.mark.parametrize(("code", "expected"), [(503, ProviderUnavailable), (429, RateLimited)])
async def test_error_chunk_mid_stream_raises(code: int, expected: type[CallerError]) -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(generate_response([text_part("A long answer that will not finish.")]))
        fake.stream_error = (2, code)
        received: list[ChatEvent] = []
        with pytest.raises(expected) as caught:
            await collect_into(received, chat().stream_chat(key(), options(fake), ask(), timeout=5))
    assert len(received) == 2
    assert caught.value.provider_status == code
    assert caught.value.__cause__ is None


async def test_stream_cut_mid_way_raises() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(generate_response([text_part("A long answer that will not finish.")]))
        fake.cut_after = 2
        with pytest.raises(ProviderUnavailable, match="broke off"):
            await collect(chat().stream_chat(key(), options(fake), ask(), timeout=5))


async def test_stream_ending_without_finish_reason_raises() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        reply = generate_response([text_part("A long answer, cut short by a proxy.")])
        fake.replies.append(reply)
        fake.end_after = len(stream_chunks(reply)) - 1
        with pytest.raises(ProviderUnavailable, match="without a finish reason"):
            await collect(chat().stream_chat(key(), options(fake), ask(), timeout=5))


# --- embeddings --------------------------------------------------------------------------


async def test_batch_embeddings_with_dimensions_and_input_type() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        request = EmbedRequest(
            model="gemini-embedding-001",
            inputs=["first text", "second text", "third"],
            dimensions=16,
            input_type=EmbedInputType.DOCUMENT,
        )
        response = await embedder().embed(key(), options(fake), request, timeout=5)
        query = EmbedRequest(model="gemini-embedding-001", inputs=["q"], input_type=EmbedInputType.QUERY)
        await embedder().embed(key(), options(fake), query, timeout=5)
    assert response.vectors == [embedding_values(text, 16) for text in request.inputs]
    assert response.model == "gemini-embedding-001"
    documents, queries = fake.requests
    assert documents.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert documents.json["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "content": {"role": "user", "parts": [{"text": "second text"}]},
        "taskType": "RETRIEVAL_DOCUMENT",
        "outputDimensionality": 16,
    }
    assert queries.json["requests"][0]["taskType"] == "RETRIEVAL_QUERY"


async def test_embedding_task_type_from_provider_options() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        request = EmbedRequest(
            model="gemini-embedding-001", inputs=["a"], provider_options={"task_type": "SEMANTIC_SIMILARITY"}
        )
        await embedder().embed(key(), options(fake), request, timeout=5)
        with pytest.raises(InvalidRequest, match="unsupported provider_options: http_options"):
            await embedder().embed(
                key(),
                options(fake),
                EmbedRequest(model="m", inputs=["a"], provider_options={"http_options": {}}),
                timeout=5,
            )
    assert fake.requests[0].json["requests"][0]["taskType"] == "SEMANTIC_SIMILARITY"


# --- errors ------------------------------------------------------------------------------


async def test_bad_key_400_is_authentication_failed() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        with pytest.raises(AuthenticationFailed) as caught:
            await chat().chat(key(BAD), options(fake), ask(), timeout=5)
        with pytest.raises(AuthenticationFailed):
            await embedder().embed(
                key(BAD), options(fake), EmbedRequest(model="gemini-embedding-001", inputs=["a"]), timeout=5
            )
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    assert caught.value.provider_status == 400
    assert BAD not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("status", "expected", "text"),
    [
        (403, PermissionDenied, "forced status 403"),
        (404, NotFound, "models/gemini-nonexistent is not found"),
        (400, InvalidRequest, "forced status 400"),
        (500, ProviderUnavailable, "An internal error has occurred"),
        (503, ProviderUnavailable, "The model is overloaded"),
    ],
)
async def test_status_errors_are_classified(status: int, expected: type[CallerError], text: str) -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.force_status = status
        with pytest.raises(expected) as caught:
            await chat().chat(key(), options(fake), ask(), timeout=5)
        with pytest.raises(expected):
            await collect(chat().stream_chat(key(), options(fake), ask(), timeout=5))
    assert caught.value.provider_status == status
    assert caught.value.message.startswith(text)
    assert len(fake.requests) == 2  # no SDK retries


async def test_rate_limit_retry_delay_from_retry_info_or_header() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.force_status, fake.retry_delay = 429, "37s"
        with pytest.raises(RateLimited) as from_body:
            await chat().chat(key(), options(fake), ask(), timeout=5)
        fake.retry_delay, fake.retry_after = None, "5"
        with pytest.raises(RateLimited) as from_header:
            await chat().chat(key(), options(fake), ask(), timeout=5)
    assert from_body.value.retry_after == 37.0
    assert from_body.value.message.startswith("You exceeded your current quota")
    assert from_header.value.retry_after == 5.0
    assert len(fake.requests) == 2


async def test_connection_refused_is_provider_unavailable(refused_base_url: str) -> None:
    base = refused_base_url.removesuffix("/v1")
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable):
        await chat().chat(key(), {"base_url": base}, ask(), timeout=5)
    with pytest.raises(ProviderUnavailable):
        await collect(chat().stream_chat(key(), {"base_url": base}, ask(), timeout=5))
    assert time.monotonic() - started < 1.0  # the SDK's hidden reconnect-after-sleep is off


# --- timeouts and cancellation -------------------------------------------------------------


async def test_slow_answer_times_out_within_bound() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.delay = 5.0
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await chat().chat(key(), options(fake), ask(), timeout=0.3)
        assert time.monotonic() - started < 1.5


async def test_stalled_stream_times_out_at_the_call_deadline() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(generate_response([text_part("A long answer that stalls half way.")]))
        fake.hang_after = 2
        received: list[ChatEvent] = []
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await collect_into(received, chat().stream_chat(key(), options(fake), ask(), timeout=0.4))
        assert time.monotonic() - started < 1.5
        await until(lambda: fake.disconnects)
    assert len(received) == 2


async def test_cancelling_a_call_closes_the_connection_promptly() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.delay = 10.0
        task = asyncio.create_task(chat().chat(key(), options(fake), ask(), timeout=30))
        await until(lambda: fake.requests)
        await asyncio.sleep(0.05)
        cancelled_at = asyncio.get_running_loop().time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: fake.disconnects)
    assert fake.disconnects[0] - cancelled_at < 0.1


async def test_cancelling_a_stream_closes_the_connection_promptly() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(generate_response([text_part("A long answer that stalls half way.")]))
        fake.hang_after = 2
        received: list[ChatEvent] = []
        task = asyncio.create_task(
            collect_into(received, chat().stream_chat(key(), options(fake), ask(), timeout=30))
        )
        await until(lambda: len(received) == 2)
        await asyncio.sleep(0.05)
        cancelled_at = asyncio.get_running_loop().time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: fake.disconnects)
    assert fake.disconnects[0] - cancelled_at < 0.1


async def test_a_consumer_that_stops_early_closes_the_stream() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.replies.append(generate_response([text_part("A long answer that stalls half way.")]))
        fake.hang_after = 2
        stream = chat().stream_chat(key(), options(fake), ask(), timeout=30)
        await anext(stream)
        closed_at = asyncio.get_running_loop().time()
        await stream.aclose()
        await until(lambda: fake.disconnects)
    assert fake.disconnects[0] - closed_at < 0.1


# --- verify ---------------------------------------------------------------------------------


async def test_verify_valid_key_lists_models() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        result = await registry.verify("gemini", key(), options(fake), timeout=5)
    assert (result.valid, result.reason, result.detail) == (True, "ok", {"models": "3"})
    [sent] = fake.requests
    assert (sent.method, sent.path, sent.headers["x-goog-api-key"]) == ("GET", "/v1beta/models", GOOD)


async def test_verify_rejected_key() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        result = await registry.verify("gemini", key(BAD), options(fake), timeout=5)
        fake.force_status = 403
        forbidden = await registry.verify("gemini", key(), options(fake), timeout=5)
    assert result.valid is False
    assert result.reason == "provider rejected the key (400): API key not valid. Please pass a valid API key."
    assert forbidden.valid is False
    assert forbidden.reason == "provider rejected the key (403): forced status 403"


async def test_verify_cannot_tell_when_throttled_or_down() -> None:
    async with FakeGoogle(api_keys={GOOD}) as fake:
        fake.force_status, fake.retry_delay = 429, "2s"
        with pytest.raises(RateLimited):
            await registry.verify("gemini", key(), options(fake), timeout=5)
        fake.force_status = 503
        with pytest.raises(ProviderUnavailable):
            await registry.verify("gemini", key(), options(fake), timeout=5)
        fake.force_status, fake.delay = None, 5.0
        with pytest.raises(ProviderTimeout):
            await registry.verify("gemini", key(), options(fake), timeout=0.3)


# --- the hub's environment ----------------------------------------------------------------


async def test_hub_environment_never_reaches_the_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-from-environment")
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-from-environment")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "v1alpha")
    monkeypatch.setenv("GOOGLE_GENAI_CLIENT_MODE", "record")  # would write requests to disk
    monkeypatch.setenv("GOOGLE_GENAI_REPLAYS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("GOOGLE_GENAI_REPLAY_ID", "leak")
    async with FakeGoogle(api_keys={GOOD}) as fake:
        await chat().chat(key(), options(fake), ask(), timeout=5)
    [sent] = fake.requests
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == GOOD
    assert list(tmp_path.iterdir()) == []
