"""Cohere's error statuses, timeouts, cancellation and VERIFY, through the real SDK and a fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any

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
from callers.types import ChatRequest, TextDelta, TextPart, UserMessage
from tests.fakes.cohere_server import CohereReply, FakeCohere
from tests.fakes.secret_fields import PlainSecret

GOOD = "co-good-0123456789"
REQUEST = ChatRequest(model="command-a-03-2025", messages=[UserMessage([TextPart("hi")])])


@pytest.fixture(autouse=True)
async def close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def chat_caller() -> ChatCaller:
    caller = registry.capability("cohere", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


async def chat(fake: FakeCohere, *, timeout: float = 5) -> object:
    return await chat_caller().chat(
        PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, REQUEST, timeout=timeout
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, AuthenticationFailed),
        (403, PermissionDenied),
        (404, NotFound),
        (422, InvalidRequest),
        (498, InvalidRequest),
        (499, ProviderUnavailable),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (504, ProviderTimeout),
    ],
)
async def test_status_classification_keeps_cohere_message(status: int, kind: type[CallerError]) -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.force_status, fake.force_message = status, f"cohere says {status}"
        with pytest.raises(kind) as caught:
            await chat(fake)
    assert type(caught.value) is kind
    assert caught.value.message == f"cohere says {status}"
    assert caught.value.provider_status == status
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True
    assert len(fake.requests) == 1  # max_retries=0: the hub decides on retries


async def test_rate_limited_carries_retry_after() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.force_status, fake.retry_after = 429, "7"
        fake.force_message = "You are using a Trial key, which is limited to 10 API calls / minute."
        with pytest.raises(RateLimited) as caught:
            await chat(fake)
    assert caught.value.retry_after == 7.0
    assert caught.value.message.startswith("You are using a Trial key")
    assert len(fake.requests) == 1


async def test_wrong_key_is_authentication_failed_without_the_key() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        with pytest.raises(AuthenticationFailed) as caught:
            await chat_caller().chat(
                PlainSecret(api_key="co-wrong-key"), {"base_url": fake.base_url}, REQUEST, timeout=5
            )
    assert caught.value.message == "invalid api token"
    assert "co-wrong-key" not in str(caught.value)


async def test_connection_refused_is_provider_unavailable(refused_base_url: str) -> None:
    base_url = refused_base_url.removesuffix("/v1")
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1") as caught:
        await chat_caller().chat(PlainSecret(api_key=GOOD), {"base_url": base_url}, REQUEST, timeout=5)
    assert caught.value.provider_status is None
    assert caught.value.__cause__ is None


async def test_slow_provider_times_out_within_bound() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.delay = 3.0
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match=r"did not answer within the timeout \(0\.3 s\)"):
            await chat(fake, timeout=0.3)
        assert time.monotonic() - started < 1.5


async def test_slow_stream_times_out_mid_stream() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.event_delay = 0.2
        stream = registry.capability("cohere", Capability.STREAM_CHAT)
        assert isinstance(stream, StreamChatCaller)
        received: list[object] = []

        async def consume() -> None:
            async for event in stream.stream_chat(
                PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, REQUEST, timeout=0.5
            ):
                received.append(event)

        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await consume()
        assert time.monotonic() - started < 1.5
    assert received  # some events arrived before the deadline


async def cancel_when_waiting(fake: FakeCohere, call: Callable[[], Coroutine[Any, Any, object]]) -> float:
    """Start `call`, cancel it once the fake is handling its request; the cancel-to-hangup time."""
    task = asyncio.create_task(call())
    await asyncio.wait_for(fake.received.wait(), timeout=5)
    await asyncio.sleep(0.05)  # let the request settle into waiting for the answer
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while fake.disconnected_at is None and loop.time() - cancelled_at < 2:
        await asyncio.sleep(0.005)
    assert fake.disconnected_at is not None, "the server never saw the client hang up"
    return fake.disconnected_at - cancelled_at


async def test_cancelled_chat_closes_the_connection_promptly() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.delay = 10.0
        assert await cancel_when_waiting(fake, lambda: chat(fake, timeout=30)) < 0.1


async def test_cancelled_stream_closes_the_connection_promptly() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.event_delay = 10.0
        stream = registry.capability("cohere", Capability.STREAM_CHAT)
        assert isinstance(stream, StreamChatCaller)

        async def consume() -> None:
            async for _ in stream.stream_chat(
                PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, REQUEST, timeout=30
            ):
                pass

        assert await cancel_when_waiting(fake, consume) < 0.1


async def test_stream_closed_early_by_the_consumer_hangs_up() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.replies.append(CohereReply(text="word " * 60))
        fake.event_delay = 0.02
        caller = registry.capability("cohere", Capability.STREAM_CHAT)
        assert isinstance(caller, StreamChatCaller)
        stream = caller.stream_chat(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, REQUEST, timeout=30
        )
        assert isinstance(stream, AsyncGenerator)
        first = await anext(stream)
        assert isinstance(first, TextDelta)
        loop = asyncio.get_running_loop()
        closed_at = loop.time()
        await stream.aclose()  # what `async with aclosing(...)` or a `break` in the hub does
        while fake.disconnected_at is None and loop.time() - closed_at < 2:
            await asyncio.sleep(0.005)
    assert fake.disconnected_at is not None
    assert fake.disconnected_at - closed_at < 0.1


async def test_verify_valid_key_lists_models() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        result = await registry.verify(
            "cohere", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid is True
    assert result.reason == "ok"
    assert result.detail == {"models": "3"}
    [request] = fake.requests
    assert (request.method, request.path, request.query) == ("GET", "/v1/models", {"page_size": "1000"})
    assert request.headers["Authorization"] == f"Bearer {GOOD}"


async def test_verify_rejected_key_is_an_answer() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        result = await registry.verify(
            "cohere", PlainSecret(api_key="co-bad"), {"base_url": fake.base_url}, timeout=5
        )
        assert result.valid is False
        assert result.reason == "provider rejected the key (401): invalid api token"
        fake.force_status, fake.force_message = 403, "key has no access to this organization"
        forbidden = await registry.verify(
            "cohere", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5
        )
    assert forbidden.valid is False
    assert forbidden.reason == "provider rejected the key (403): key has no access to this organization"


@pytest.mark.parametrize(("status", "kind"), [(429, RateLimited), (500, ProviderUnavailable)])
async def test_verify_that_cannot_tell_raises(status: int, kind: type[CallerError]) -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.force_status = status
        with pytest.raises(kind):
            await registry.verify("cohere", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5)


async def test_verify_timeout_raises() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        fake.delay = 3.0
        with pytest.raises(ProviderTimeout):
            await registry.verify(
                "cohere", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=0.3
            )
