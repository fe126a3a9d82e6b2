"""Replicate chat, streaming and verify over HTTP against a local fake of Replicate's API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import (
    AuthenticationFailed,
    CallerError,
    Capability,
    ChatCaller,
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
    FinishReason,
    SamplingParams,
    SystemMessage,
    TextDelta,
    TextPart,
    Tool,
    Usage,
    UserMessage,
)
from tests.fakes.replicate_server import LLAMA, LLAMA_VERSION, FakeReplicate
from tests.fakes.secret_fields import PlainSecret

TOKEN = "r8_fake0123456789abcdefghijklmnopqrstuvw"
SECRET = PlainSecret(api_token=TOKEN)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate(valid_tokens={TOKEN}) as server:
        yield server


def chat_caller() -> ChatCaller:
    caller = registry.capability("replicate", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def streamer() -> StreamChatCaller:
    caller = registry.capability("replicate", Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    return caller


def hello(model: str = LLAMA, **fields: object) -> ChatRequest:
    return ChatRequest(model=model, messages=[UserMessage([TextPart("Hello?")])], **fields)  # type: ignore[arg-type]


def options(fake: FakeReplicate) -> dict[str, str]:
    return {"base_url": fake.base_url}


async def drain(fake: FakeReplicate, request: ChatRequest, into: list[ChatEvent], timeout: float = 5) -> None:
    async for event in streamer().stream_chat(SECRET, options(fake), request, timeout=timeout):
        into.append(event)


async def test_chat_with_an_official_model_in_sync_mode(fake: FakeReplicate) -> None:
    request = ChatRequest(
        model=LLAMA,
        messages=[SystemMessage("Be kind."), UserMessage([TextPart("Hello?")])],
        sampling=SamplingParams(temperature=0.6, max_output_tokens=128),
    )
    result = await chat_caller().chat(SECRET, options(fake), request, timeout=10)
    assert result.message == AssistantMessage("Hello, world!")
    assert result.finish_reason is FinishReason.STOP
    assert result.usage == Usage(9, 4, 0, 13)
    assert result.request_id in fake.predictions
    [sent] = fake.requests  # the sync answer was final: no polling
    assert (sent.method, sent.path) == ("POST", "/v1/models/meta/meta-llama-3-8b-instruct/predictions")
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Prefer"] == "wait=9"  # within the call's 10 s
    assert sent.headers["Cancel-After"] == "10s"
    assert sent.json() == {
        "input": {"prompt": "Hello?", "system_prompt": "Be kind.", "max_tokens": 128, "temperature": 0.6}
    }


async def test_versioned_model_and_polling_fallback(fake: FakeReplicate) -> None:
    fake.work_seconds, fake.max_sync_wait = 0.6, 0.1  # sync mode gives up before the model is done
    result = await chat_caller().chat(SECRET, options(fake), hello(f"{LLAMA}:{LLAMA_VERSION}"), timeout=5)
    assert result.message.text == "Hello, world!"
    create, *polls = fake.requests
    assert (create.path, create.json()["version"]) == ("/v1/predictions", LLAMA_VERSION)
    assert polls
    assert {(p.method, p.path) for p in polls} == {("GET", f"/v1/predictions/{result.request_id}")}
    assert all(p.headers["Authorization"] == f"Bearer {TOKEN}" for p in polls)


async def test_failed_prediction(fake: FakeReplicate) -> None:
    fake.fail_with = "CUDA error: out of memory"
    with pytest.raises(ProviderUnavailable, match="prediction failed: CUDA error: out of memory"):
        await chat_caller().chat(SECRET, options(fake), hello(), timeout=5)


@pytest.mark.parametrize(
    ("status", "expected", "message"),
    [
        (401, AuthenticationFailed, "You did not pass a valid authentication token"),
        (402, PermissionDenied, "You have insufficient credit"),
        (403, PermissionDenied, "You do not have permission"),
        (404, NotFound, "The requested resource could not be found."),
        (422, InvalidRequest, "- input.max_tokens: Must be less than or equal to 4096"),
        (500, ProviderUnavailable, "An unexpected error occurred."),
        (503, ProviderUnavailable, "Replicate is temporarily unavailable."),
    ],
)
async def test_problem_answers_are_classified(
    fake: FakeReplicate, status: int, expected: type[CallerError], message: str
) -> None:
    fake.force_status = status
    with pytest.raises(expected) as caught:
        await chat_caller().chat(SECRET, options(fake), hello(), timeout=5)
    assert type(caught.value) is expected
    assert caught.value.message.startswith(message)
    assert caught.value.provider_status == status
    assert caught.value.__cause__ is None
    assert len(fake.requests) == 1  # no retries here: the hub owns them


async def test_rate_limited_with_retry_after(fake: FakeReplicate) -> None:
    fake.force_status, fake.retry_after = 429, "7"
    with pytest.raises(RateLimited) as caught:
        await chat_caller().chat(SECRET, options(fake), hello(), timeout=5)
    assert caught.value.retry_after == 7.0
    assert caught.value.message == "Request was throttled. Expected available in 7 seconds."


async def test_real_validation_answers(fake: FakeReplicate) -> None:
    with pytest.raises(NotFound):
        await chat_caller().chat(SECRET, options(fake), hello("meta/no-such-model"), timeout=5)
    with pytest.raises(InvalidRequest, match="Must be less than or equal to 4096"):
        await chat_caller().chat(
            SECRET, options(fake), hello(sampling=SamplingParams(max_output_tokens=10_000)), timeout=5
        )
    with pytest.raises(AuthenticationFailed):
        await chat_caller().chat(PlainSecret(api_token="r8_wrong"), options(fake), hello(), timeout=5)


async def test_unsupported_requests_are_refused_before_sending(fake: FakeReplicate) -> None:
    with pytest.raises(InvalidRequest, match="take no tools"):
        await chat_caller().chat(SECRET, options(fake), hello(tools=[Tool("f")]), timeout=5)
    with pytest.raises(InvalidRequest, match="take no tools"):
        await anext(streamer().stream_chat(SECRET, options(fake), hello(tools=[Tool("f")]), timeout=5))
    assert fake.requests == []


async def test_connection_refused(refused_base_url: str) -> None:
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1"):
        await chat_caller().chat(SECRET, {"base_url": refused_base_url}, hello(), timeout=5)


async def test_timeout_while_waiting_closes_the_request(fake: FakeReplicate) -> None:
    fake.hang = True
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="did not answer within the timeout"):
        await chat_caller().chat(SECRET, options(fake), hello(), timeout=0.4)
    assert time.monotonic() - started < 1.5
    await fake.wait_for_disconnect(timeout=1)


async def test_timeout_while_polling_cancels_the_prediction(fake: FakeReplicate) -> None:
    fake.work_seconds, fake.max_sync_wait = 30, 0.05
    with pytest.raises(ProviderTimeout):
        await chat_caller().chat(SECRET, options(fake), hello(), timeout=0.6)
    canceled = await fake.wait_for_cancel(timeout=2)
    assert fake.predictions[canceled]["status"] == "canceled"
    cancel_request = fake.requests[-1]
    assert cancel_request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_cancel_during_sync_wait_closes_the_connection_promptly(fake: FakeReplicate) -> None:
    fake.hang = True
    task = asyncio.create_task(chat_caller().chat(SECRET, options(fake), hello(), timeout=30))
    await fake.wait_for_request()
    await asyncio.sleep(0.05)
    cancelled_at = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await fake.wait_for_disconnect(timeout=1) - cancelled_at < 0.1
    # The id is not known yet: Cancel-After is what stops the prediction upstream.
    assert fake.requests[0].headers["Cancel-After"] == "30s"


async def test_cancel_while_polling_cancels_upstream(fake: FakeReplicate) -> None:
    fake.work_seconds, fake.max_sync_wait = 30, 0.05
    task = asyncio.create_task(chat_caller().chat(SECRET, options(fake), hello(), timeout=30))
    await asyncio.sleep(0.5)  # created, and polled a few times
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    canceled = await fake.wait_for_cancel(timeout=2)
    assert fake.predictions[canceled]["status"] == "canceled"


async def test_stream_text_and_usage(fake: FakeReplicate) -> None:
    fake.output = ["Hel", "lo", " wor", "ld", "\n", "!"]
    events: list[ChatEvent] = []
    await drain(fake, hello(), events)
    assert events[:-1] == [TextDelta(t) for t in ["Hel", "lo", " wor", "ld", "\n", "!"]]
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert (end.finish_reason, end.usage) == (FinishReason.STOP, Usage(9, 4, 0, 13))
    assert end.request_id in fake.predictions
    create, stream, final = fake.requests
    assert create.json()["stream"] is True
    assert "Prefer" not in create.headers  # a stream is created asynchronously
    assert stream.path == f"/stream/{end.request_id}"
    assert stream.headers["Accept"] == "text/event-stream"
    assert stream.headers["Authorization"] == f"Bearer {TOKEN}"  # same host as the API
    assert (final.method, final.path) == ("GET", f"/v1/predictions/{end.request_id}")


async def test_stream_url_on_a_foreign_host_gets_no_key(fake: FakeReplicate) -> None:
    fake.stream_origin = fake.url.replace("127.0.0.1", "localhost")
    events: list[ChatEvent] = []
    await drain(fake, hello(), events)
    assert isinstance(events[-1], ChatStreamEnd)
    stream = next(r for r in fake.requests if r.path.startswith("/stream/"))
    assert "Authorization" not in stream.headers


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("stream_error", "the model crashed", "failed mid-stream: the model crashed"),
        ("stream_done_reason", "canceled", r"ended early \(canceled\)"),
        ("cut_stream", True, r"broke off the stream \(ClientPayloadError\)"),
        ("skip_done", True, "ended before its done event"),
    ],
)
async def test_stream_failures_raise_after_the_text_so_far(
    fake: FakeReplicate, knob: str, value: object, message: str
) -> None:
    fake.output = ["Hello", " there"]
    setattr(fake, knob, value)
    received: list[ChatEvent] = []
    with pytest.raises(ProviderUnavailable, match=message):
        await drain(fake, hello(), received)
    assert received == [TextDelta("Hello"), TextDelta(" there")]


async def test_model_without_streaming(fake: FakeReplicate) -> None:
    fake.streamable = False
    with pytest.raises(InvalidRequest, match="does not support streaming"):
        await drain(fake, hello(), [])
    assert await fake.wait_for_cancel(timeout=2)


async def test_stream_deadline_and_cancel(fake: FakeReplicate) -> None:
    fake.output, fake.hold_stream, fake.work_seconds = ["Hello"], True, 30
    received: list[ChatEvent] = []
    with pytest.raises(ProviderTimeout):
        await drain(fake, hello(), received, timeout=0.5)
    assert received == [TextDelta("Hello")]
    await fake.wait_for_disconnect(timeout=1)
    await fake.wait_for_cancel(timeout=2)


async def test_cancel_mid_stream_closes_the_connection_promptly(fake: FakeReplicate) -> None:
    fake.output, fake.hold_stream, fake.work_seconds = ["Hello"], True, 30
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in streamer().stream_chat(SECRET, options(fake), hello(), timeout=30):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    await asyncio.sleep(0.05)
    cancelled_at = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await fake.wait_for_disconnect(timeout=1) - cancelled_at < 0.1
    canceled = await fake.wait_for_cancel(timeout=2)
    assert fake.predictions[canceled]["status"] == "canceled"


async def test_verify(fake: FakeReplicate) -> None:
    result = await registry.verify("replicate", SECRET, options(fake), timeout=5)
    assert result.valid is True
    assert result.reason == "ok"
    assert result.detail == {"username": "acme", "type": "organization"}
    assert (fake.requests[0].method, fake.requests[0].path) == ("GET", "/v1/account")

    rejected = await registry.verify(
        "replicate", PlainSecret(api_token="r8_revoked"), options(fake), timeout=5
    )
    assert rejected.valid is False
    assert rejected.reason == "provider rejected the key (401): You did not pass a valid authentication token"


@pytest.mark.parametrize(("status", "expected"), [(429, RateLimited), (503, ProviderUnavailable)])
async def test_verify_cannot_tell(fake: FakeReplicate, status: int, expected: type[CallerError]) -> None:
    fake.force_status = status
    with pytest.raises(expected):
        await registry.verify("replicate", SECRET, options(fake), timeout=5)


async def test_the_token_never_appears_in_urls(fake: FakeReplicate) -> None:
    await chat_caller().chat(SECRET, options(fake), hello(), timeout=5)
    await drain(fake, hello(), [])
    await registry.verify("replicate", SECRET, options(fake), timeout=5)
    assert all(TOKEN not in request.path for request in fake.requests)
