"""Bedrock ConverseStream through the real botocore client: the fake encodes AWS event-stream frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from callers import registry
from callers.base import (
    CallerError,
    Capability,
    InvalidRequest,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamChatCaller,
)
from callers.types import (
    ChatEvent,
    ChatRequest,
    ChatStreamEnd,
    FinishReason,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    Usage,
    UserMessage,
)
from tests.fakes.bedrock_server import AwsError, FakeBedrock, text_stream, tool_stream
from tests.fakes.secret_fields import PlainSecret

KEY_ID = "AKIAFAKEKEY000000001"
SECRET_KEY = "fakeSecretKey/0123456789abcdefghijklmnop"
SECRET = PlainSecret(access_key_id=KEY_ID, secret_access_key=SECRET_KEY)
MODEL = "amazon.nova-micro-v1:0"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock({KEY_ID: SECRET_KEY}) as server:
        yield server


def streamer() -> StreamChatCaller:
    caller = registry.capability("bedrock", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    return caller


def hello(**fields: object) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[UserMessage([TextPart("Hello?")])], **fields)  # type: ignore[arg-type]


async def collect(fake: FakeBedrock, request: ChatRequest, timeout: float = 5) -> list[ChatEvent]:
    return [event async for event in streamer().stream_chat(SECRET, fake.options(), request, timeout=timeout)]


async def drain(fake: FakeBedrock, request: ChatRequest, into: list[ChatEvent], timeout: float = 5) -> None:
    """Consume the stream, keeping what arrived before an error."""
    async for event in streamer().stream_chat(SECRET, fake.options(), request, timeout=timeout):
        into.append(event)


async def test_streamed_text_ends_with_usage(fake: FakeBedrock) -> None:
    fake.stream_events = text_stream("Hel", "lo", " there", input_tokens=7, output_tokens=3)
    events = await collect(fake, hello())
    assert events[:-1] == [TextDelta("Hel"), TextDelta("lo"), TextDelta(" there")]
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert (end.finish_reason, end.usage) == (FinishReason.STOP, Usage(7, 3, 0, 10))
    assert end.request_id is not None
    [sent] = fake.requests
    assert sent.raw_path == "/model/amazon.nova-micro-v1%3A0/converse-stream"
    assert sent.json()["messages"] == [{"role": "user", "content": [{"text": "Hello?"}]}]


async def test_streamed_tool_call_is_assembled_by_index(fake: FakeBedrock) -> None:
    fake.stream_events = tool_stream("tooluse_xyz", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])
    events = await collect(fake, hello(tools=[Tool("get_weather", "weather", {"type": "object"})]))
    assert events[0] == TextDelta("Let me check.")
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(index=0, id="tooluse_xyz", name="get_weather")
    assert {d.index for d in deltas} == {0}
    assert json.loads("".join(d.arguments_fragment for d in deltas)) == {"city": "Paris"}
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert end.finish_reason is FinishReason.TOOL_CALLS
    assert end.usage == Usage(40, 25, 0, 65)
    assert fake.requests[0].json()["toolConfig"]["toolChoice"] == {"auto": {}}


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (("throttlingException", {"message": "Too many tokens, please wait."}), RateLimited),
        (
            (
                "modelStreamErrorException",
                {"message": "Model failed", "originalStatusCode": 500, "originalMessage": "boom"},
            ),
            ProviderUnavailable,
        ),
        (("validationException", {"message": "Input too long."}), InvalidRequest),
        (("internalServerException", {"message": "Internal error."}), ProviderUnavailable),
    ],
)
async def test_exception_event_mid_stream_raises(
    fake: FakeBedrock, exception: tuple[str, dict[str, object]], expected: type[CallerError]
) -> None:
    fake.stream_events = text_stream("partial")[:2]  # messageStart, one delta
    fake.stream_exception = exception
    received: list[ChatEvent] = []
    with pytest.raises(expected) as caught:
        await drain(fake, hello(), received)
    assert received == [TextDelta("partial")]
    assert caught.value.message == exception[1]["message"]
    assert caught.value.__cause__ is None


async def test_stream_cut_mid_frame_raises(fake: FakeBedrock) -> None:
    fake.stream_events = text_stream("partial")[:2]
    fake.cut_stream = True
    with pytest.raises(ProviderUnavailable):
        await collect(fake, hello())


async def test_stream_ending_without_stop_and_usage_raises(fake: FakeBedrock) -> None:
    fake.stream_events = text_stream("partial")[:3]  # a clean end of the HTTP body, but no messageStop
    with pytest.raises(ProviderUnavailable, match="before its messageStop"):
        await collect(fake, hello())


async def test_error_answer_before_the_stream(fake: FakeBedrock) -> None:
    fake.force_error = AwsError(429, "ThrottlingException", "Too many requests.", {"Retry-After": "2"})
    with pytest.raises(RateLimited) as caught:
        await collect(fake, hello())
    assert caught.value.retry_after == 2.0


async def test_stream_deadline_covers_the_whole_stream(fake: FakeBedrock) -> None:
    fake.stream_events = text_stream("a", "b")[:2]
    fake.hold_stream = True
    received: list[ChatEvent] = []
    with pytest.raises(ProviderTimeout):
        await drain(fake, hello(), received, timeout=0.5)
    assert received == [TextDelta("a")]
    await fake.wait_for_disconnect(timeout=1)


async def test_cancel_mid_stream_closes_the_connection_promptly(fake: FakeBedrock) -> None:
    fake.stream_events = text_stream("first")[:2]
    fake.hold_stream = True
    first_event = asyncio.Event()

    async def consume() -> None:
        async for _ in streamer().stream_chat(SECRET, fake.options(), hello(), timeout=30):
            first_event.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_event.wait(), 5)
    await asyncio.sleep(0.05)  # the worker thread is now blocked reading the next frame
    cancelled_at = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnected_at = await fake.wait_for_disconnect(timeout=1)
    assert disconnected_at - cancelled_at < 0.1


async def test_consumer_that_stops_early_releases_the_connection(fake: FakeBedrock) -> None:
    fake.stream_events = text_stream("first", "second")[:2]
    fake.hold_stream = True
    stream = streamer().stream_chat(SECRET, fake.options(), hello(), timeout=30)
    assert await anext(stream) == TextDelta("first")
    await stream.aclose()  # type: ignore[attr-defined]
    await fake.wait_for_disconnect(timeout=1)
