"""CHAT, STREAM_CHAT and EMBED for OpenAI over the wire (no SDK), against the local fake."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callers import pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    ChatCaller,
    Embedder,
    InvalidRequest,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamChatCaller,
)
from callers.types import (
    ChatEvent,
    ChatRequest,
    ChatStreamEnd,
    EmbedRequest,
    FinishReason,
    SamplingParams,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    Usage,
    UserMessage,
)
from tests.fakes.openai_server import ChatReply, FakeOpenAI, FakeToolCall, fake_vector
from tests.fakes.secret_fields import PlainSecret

KEY = "sk-good-0123456789abcdef"
SECRET = PlainSecret(api_key=KEY)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def chat_caller(provider: str = "openai") -> ChatCaller:
    caller = registry.capability(provider, Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def stream_caller(provider: str = "openai") -> StreamChatCaller:
    caller = registry.capability(provider, Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    return caller


def embedder(provider: str = "openai") -> Embedder:
    caller = registry.capability(provider, Capability.EMBED)
    assert isinstance(caller, Embedder)
    return caller


def ask(text: str = "Hi", **kwargs: Any) -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=[UserMessage([TextPart(text)])], **kwargs)


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


async def collect_into(received: list[ChatEvent], events: AsyncIterator[ChatEvent]) -> None:
    """Like `collect`, keeping what arrived before an error."""
    async for event in events:
        received.append(event)


def text_of(events: list[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def assembled_calls(events: list[ChatEvent]) -> list[ToolCall]:
    calls: dict[int, ToolCall] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, ToolCall(id="", name="", arguments=""))
            call.id = event.id or call.id
            call.name = event.name or call.name
            call.arguments += event.arguments_fragment
    return [calls[i] for i in sorted(calls)]


# --- chat --------------------------------------------------------------------------


async def test_chat_round_trip() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="Bonjour!", prompt_tokens=30, completion_tokens=3, cached_tokens=16))
        response = await chat_caller().chat(
            SECRET,
            {"base_url": fake.base_url, "organization": "org-1", "project": "proj_1"},
            ask("Say hi in French", sampling=SamplingParams(max_output_tokens=20, temperature=0)),
            timeout=5,
        )
    assert response.message.text == "Bonjour!"
    assert response.message.tool_calls == []
    assert response.finish_reason is FinishReason.STOP
    assert response.usage == Usage(input_tokens=30, output_tokens=3, cached_input_tokens=16, total_tokens=33)
    assert response.model == "gpt-4o-mini"
    assert response.request_id is not None
    assert response.request_id.startswith("req_fake")
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["OpenAI-Organization"] == "org-1"
    assert request.headers["OpenAI-Project"] == "proj_1"
    assert request.json() == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hi in French"}],
        "temperature": 0,
        "max_completion_tokens": 20,  # OpenAI's current field
    }


async def test_chat_answering_with_tool_calls() -> None:
    weather = Tool(
        name="get_weather",
        description="Weather in a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(
            ChatReply(
                text=None,
                tool_calls=[
                    FakeToolCall("get_weather", '{"city": "Paris"}', id="call_p"),
                    FakeToolCall("get_weather", '{"city": "Rome"}', id="call_r"),
                ],
            )
        )
        response = await chat_caller().chat(
            SECRET,
            {"base_url": fake.base_url},
            ask(
                "Weather in Paris and Rome?", tools=[weather], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED)
            ),
            timeout=5,
        )
    assert response.finish_reason is FinishReason.TOOL_CALLS
    assert response.message.text is None
    assert response.message.tool_calls == [
        ToolCall("call_p", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_r", "get_weather", '{"city": "Rome"}'),
    ]
    sent = fake.requests[0].json()
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "required"


async def test_connection_is_reused_across_calls_and_streams() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        options = {"base_url": fake.base_url}
        for _ in range(3):
            await chat_caller().chat(SECRET, options, ask(), timeout=5)
            await collect(stream_caller().stream_chat(SECRET, options, ask(), timeout=5))
        await embedder().embed(SECRET, options, EmbedRequest(model="m", inputs=["x"]), timeout=5)
    # One pooled keep-alive connection served every call: a finished stream is read
    # to its end, so its connection goes back to the pool instead of being closed.
    assert len(fake.requests) == 7
    assert len({request.peer for request in fake.requests}) == 1


# --- errors ------------------------------------------------------------------------


async def test_rejected_key_is_authentication_failed() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        with pytest.raises(AuthenticationFailed, match="Incorrect API key provided") as caught:
            await chat_caller().chat(
                PlainSecret(api_key="sk-wrong-0123456789"), {"base_url": fake.base_url}, ask(), timeout=5
            )
    assert caught.value.provider_status == 401
    assert "sk-wrong-0123456789" not in str(caught.value)
    assert caught.value.__cause__ is None  # nothing chained
    assert caught.value.__context__ is None


async def test_status_errors_are_classified() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        options = {"base_url": fake.base_url}
        fake.force_status, fake.retry_after = 429, "7"
        with pytest.raises(RateLimited) as throttled:
            await chat_caller().chat(SECRET, options, ask(), timeout=5)
        fake.force_status, fake.retry_after = 503, None
        with pytest.raises(ProviderUnavailable, match="The server had an error"):
            await chat_caller().chat(SECRET, options, ask(), timeout=5)
        with pytest.raises(ProviderUnavailable, match="The server had an error"):
            await collect(stream_caller().stream_chat(SECRET, options, ask(), timeout=5))
        fake.force_status = None
        fake.script(
            ChatReply(status=400, error_code="context_length_exceeded"),
            ChatReply(status=429, error_code="insufficient_quota"),
        )
        with pytest.raises(InvalidRequest, match="scripted status 400"):
            await chat_caller().chat(SECRET, options, ask(), timeout=5)
        with pytest.raises(PermissionDenied):
            await chat_caller().chat(SECRET, options, ask(), timeout=5)
    assert throttled.value.retry_after == 7.0
    assert throttled.value.message.startswith("Rate limit reached")


async def test_malformed_json_answer_is_provider_unavailable() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(malformed=True))
        with pytest.raises(ProviderUnavailable, match="not JSON"):
            await chat_caller().chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5)


async def test_slow_provider_raises_timeout_within_bound() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.delay = 3.0
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="did not answer within the timeout"):
            await chat_caller().chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=0.3)
        assert time.monotonic() - started < 1.5


async def test_connection_refused_is_provider_unavailable(refused_base_url: str) -> None:
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1"):
        await chat_caller().chat(SECRET, {"base_url": refused_base_url}, ask(), timeout=5)
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1"):
        await collect(stream_caller().stream_chat(SECRET, {"base_url": refused_base_url}, ask(), timeout=5))


async def test_hub_environment_never_reaches_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-environment")
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        await chat_caller().chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5)
    headers = fake.requests[0].headers
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert "OpenAI-Organization" not in headers


# --- streaming ---------------------------------------------------------------------


async def test_stream_text_and_final_usage() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="One two three.", prompt_tokens=10, completion_tokens=4, cached_tokens=2))
        events = await collect(
            stream_caller().stream_chat(
                SECRET, {"base_url": fake.base_url}, ask(sampling=SamplingParams(seed=1)), timeout=5
            )
        )
    assert events[:-1] == [TextDelta("One "), TextDelta("two "), TextDelta("three.")]
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason is FinishReason.STOP
    assert end.usage == Usage(input_tokens=10, output_tokens=4, cached_input_tokens=2, total_tokens=14)
    assert end.request_id is not None
    assert end.request_id.startswith("req_fake")
    sent = fake.requests[0].json()
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["seed"] == 1


async def test_stream_parallel_tool_calls_interleaved() -> None:
    calls = [
        FakeToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}', id="call_1"),
        FakeToolCall("get_time", '{"timezone": "Europe/Rome"}', id="call_2"),
    ]
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(
            ChatReply(text=None, tool_calls=calls, arguments_chunk_size=5, interleave_tool_calls=True)
        )
        events = await collect(
            stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5)
        )
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(deltas) > 4  # really fragmented
    assert [d.index for d in deltas[:2]] == [0, 1]  # interleaved
    assert (deltas[0].id, deltas[0].name) == ("call_1", "get_weather")
    assert all(d.id is None and d.name is None for d in deltas[2:])
    assert assembled_calls(events) == [
        ToolCall("call_1", "get_weather", '{"city": "Paris", "unit": "celsius"}'),
        ToolCall("call_2", "get_time", '{"timezone": "Europe/Rome"}'),
    ]
    assert isinstance(events[-1], ChatStreamEnd)
    assert events[-1].finish_reason is FinishReason.TOOL_CALLS


async def test_stream_survives_lines_split_across_tcp_chunks_and_comments() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="Split across many tiny writes.", split_writes=7, comments=True))
        events = await collect(
            stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5)
        )
    assert text_of(events) == "Split across many tiny writes."
    assert isinstance(events[-1], ChatStreamEnd)
    assert events[-1].usage.total_tokens == 19


async def test_stream_cut_mid_answer_raises() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="a b c d e f", cut_after=3))
        received: list[ChatEvent] = []
        with pytest.raises(ProviderUnavailable, match="closed the connection mid-answer"):
            await collect_into(
                received,
                stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5),
            )
    assert received == [TextDelta("a "), TextDelta("b ")]  # delivered before the cut, then the error


async def test_stream_without_done_is_complete_only_with_a_finish_reason() -> None:
    async def truncated(request: web.Request) -> web.StreamResponse:
        # A well-terminated HTTP body that nevertheless stops mid-answer.
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"index": 0, "delta": {"content": "half"}}]}\n\n')
        await response.write_eof()
        return response

    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="a b c", send_done=False))  # finish_reason and usage, no [DONE]
        events = await collect(
            stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5)
        )
    assert text_of(events) == "a b c"
    assert isinstance(events[-1], ChatStreamEnd)
    assert events[-1].usage.total_tokens == 19

    other = FakeOpenAI(valid_keys=None)
    other.add_route("POST", "/v1/chat/completions", truncated)
    async with other:
        with pytest.raises(ProviderUnavailable, match="before the answer was complete"):
            await collect(stream_caller().stream_chat(SECRET, {"base_url": other.base_url}, ask(), timeout=5))


async def test_stream_error_event_mid_stream_raises() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="a b c d", error_after=3))
        received: list[ChatEvent] = []
        with pytest.raises(ProviderUnavailable, match="Provider returned error") as caught:
            await collect_into(
                received,
                stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5),
            )
    assert caught.value.provider_status == 502
    assert text_of(received) == "a b "


async def test_stream_malformed_event_raises() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="a b", malformed_after=2))
        with pytest.raises(ProviderUnavailable, match="malformed stream event"):
            await collect(stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5))


async def test_stream_timeout_covers_the_whole_stream() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        # Every event arrives well within the timeout; the stream as a whole does not.
        fake.script(ChatReply(text="w " * 40, chunk_delay=0.05))
        received: list[ChatEvent] = []
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await collect_into(
                received,
                stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=0.5),
            )
        assert 0.4 < time.monotonic() - started < 1.5
    assert 0 < len(received) < 40


async def test_cancelling_the_consumer_closes_the_upstream_connection() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="first", hold_open=True, send_done=False))
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in stream_caller().stream_chat(
                SECRET, {"base_url": fake.base_url}, ask(), timeout=30
            ):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        assert fake.disconnects == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await fake.wait_for_disconnect(timeout=5)
    assert fake.disconnects == 1


async def test_abandoning_the_stream_early_closes_the_upstream_connection() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="first", hold_open=True, send_done=False))
        stream = stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=30)
        assert isinstance(await anext(stream), TextDelta)
        await stream.aclose()  # type: ignore[attr-defined]
        await fake.wait_for_disconnect(timeout=5)


# --- embeddings --------------------------------------------------------------------


async def test_embeddings() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        request = EmbedRequest(model="text-embedding-3-small", inputs=["alpha beta", "gamma"], dimensions=4)
        response = await embedder().embed(SECRET, {"base_url": fake.base_url}, request, timeout=5)
    assert response.vectors == [fake_vector("alpha beta", 4), fake_vector("gamma", 4)]
    assert response.usage == Usage(input_tokens=3, total_tokens=3)
    assert response.model == "text-embedding-3-small"
    assert response.request_id is not None
    [sent] = fake.requests
    assert sent.path == "/v1/embeddings"
    assert sent.json() == {
        "model": "text-embedding-3-small",
        "input": ["alpha beta", "gamma"],
        "encoding_format": "float",
        "dimensions": 4,
    }


async def test_embeddings_base64_through_provider_options() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        request = EmbedRequest(
            model="text-embedding-3-small", inputs=["x"], provider_options={"encoding_format": "base64"}
        )
        response = await embedder().embed(SECRET, {"base_url": fake.base_url}, request, timeout=5)
    assert response.vectors[0] == pytest.approx(fake_vector("x", fake.embedding_dimensions), rel=1e-6)


async def test_embeddings_rejected_key() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        with pytest.raises(AuthenticationFailed):
            await embedder().embed(
                PlainSecret(api_key="sk-nope-000000000"),
                {"base_url": fake.base_url},
                EmbedRequest(model="m", inputs=["x"]),
                timeout=5,
            )


async def test_stream_answered_with_a_whole_json_completion() -> None:
    # Some compatible servers ignore "stream": the answer then arrives whole, as JSON.
    async def not_streaming(request: web.Request) -> web.Response:
        body = await request.json()
        if body["messages"][0]["content"] == "fail":
            return web.json_response({"error": {"code": 503, "message": "No provider available"}})
        return web.json_response(
            {
                "id": "chatcmpl-whole",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "Checking.",
                            "tool_calls": [
                                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            }
        )

    fake = FakeOpenAI(valid_keys=None)
    fake.add_route("POST", "/v1/chat/completions", not_streaming)
    async with fake:
        options = {"base_url": fake.base_url}
        events = await collect(
            stream_caller("openai_compatible").stream_chat(SECRET, options, ask(), timeout=5)
        )
        with pytest.raises(ProviderUnavailable, match="No provider available"):
            await collect(
                stream_caller("openai_compatible").stream_chat(SECRET, options, ask("fail"), timeout=5)
            )
    assert events == [
        TextDelta("Checking."),
        ToolCallDelta(0, "c1", "f", "{}"),
        ChatStreamEnd(FinishReason.TOOL_CALLS, Usage(5, 2, 0, 7), "chatcmpl-whole"),
    ]


def test_the_hot_path_needs_no_openai_sdk(tmp_path: Path) -> None:
    # Chat, streaming and embeddings work where the SDK cannot even be imported.
    shadow = tmp_path / "shadow"
    (shadow / "openai").mkdir(parents=True)
    (shadow / "openai" / "__init__.py").write_text('raise ImportError("simulated: no openai")\n')
    root = Path(__file__).resolve().parents[2]
    code = textwrap.dedent(
        """
        import sys
        from callers import registry
        from callers.base import Capability
        for name in ("openai", "azure_openai", "openrouter", "openai_compatible", "huggingface"):
            for cap in (Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED):
                registry.capability(name, cap)
        print(sorted(m for m in sys.modules if m == "openai" or m.startswith("openai.")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={"PYTHONPATH": f"{shadow}:{root}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
