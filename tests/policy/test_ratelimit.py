"""Sliding-window rate limits: in-process with an injected clock, and shared through real Redis."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from integration_hub.policy.ratelimit import WINDOW_MS, RateLimiter
from tests.harness import free_port

pytestmark = pytest.mark.timeout(30)
MINUTE = WINDOW_MS / 1000
START = 28_000_000 * MINUTE  # a window boundary, so window arithmetic in the tests is exact


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_requests_are_counted_up_to_the_limit() -> None:
    limiter = RateLimiter(clock=Clock())
    verdicts = [await limiter.take_request("tenant:acme", 3) for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert all(v.retry_after > 0 for v in verdicts[3:])
    # Keys are counted apart.
    assert (await limiter.take_request("tenant:globex", 3)).allowed


async def test_the_window_slides_and_retry_after_is_when_a_request_really_passes() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    for _ in range(3):
        assert (await limiter.take_request("k", 3)).allowed
    refused = await limiter.take_request("k", 3)
    # Not "when this minute ends" (60 s): then the previous minute still weighs 3 in full.
    # 3 * (60 - e) / 60 + 1 <= 3 from e = 20 s into the next minute: 80 s from now.
    assert refused.retry_after == pytest.approx(80.0)
    clock.now = START + MINUTE
    assert not (await limiter.take_request("k", 3)).allowed
    clock.now = START + 80.0 - 0.002
    assert not (await limiter.take_request("k", 3)).allowed
    clock.now = START + 80.0
    assert (await limiter.take_request("k", 3)).allowed


async def test_retry_after_is_exact_for_any_state() -> None:
    """Whatever the counts and the moment: refused just before retry_after, allowed at it."""
    rng = random.Random(7)
    for case in range(200):
        limit = rng.randint(1, 20)
        key = f"case-{case}"
        clock = Clock(START + rng.uniform(0, MINUTE))
        limiter = RateLimiter(clock=clock)
        for _ in range(rng.randint(0, 2 * limit)):  # some traffic in one minute ...
            await limiter.take_request(key, limit)
        clock.now += rng.uniform(0, 1.5 * MINUTE)  # ... and more, later
        clock.now = int(clock.now * 1000) / 1000 + 0.0005  # mid-millisecond: no float edge in the checks
        while (verdict := await limiter.take_request(key, limit)).allowed:
            pass
        assert 0 < verdict.retry_after <= 2 * MINUTE
        refused_at = clock.now
        clock.now = refused_at + verdict.retry_after - 0.002
        assert not (await limiter.take_request(key, limit)).allowed, case
        clock.now = refused_at + verdict.retry_after
        assert (await limiter.take_request(key, limit)).allowed, case


async def test_tokens_refuse_once_the_window_is_over_its_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert (await limiter.tokens_available("t", 100)).allowed
    await limiter.add_tokens("t", 60)
    assert (await limiter.tokens_available("t", 100)).allowed  # under: the next call may go
    await limiter.add_tokens("t", 60)  # counted even beyond the limit: the tokens were spent
    refused = await limiter.tokens_available("t", 100)
    assert not refused.allowed
    clock.now += refused.retry_after
    assert (await limiter.tokens_available("t", 100)).allowed
    await limiter.add_tokens("t", 0)  # nothing to count


# --- shared through Redis --------------------------------------------------------------------------


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[tuple[RateLimiter, RateLimiter]]:
    """Two limiters with their own Redis clients: what two hub replicas hold."""
    clients = [aioredis.from_url(redis_url) for _ in range(2)]
    try:
        yield RateLimiter(clients[0]), RateLimiter(clients[1])
    finally:
        for client in clients:
            await client.aclose()


async def test_two_replicas_share_one_request_limit(replicas: tuple[RateLimiter, RateLimiter]) -> None:
    first, second = replicas
    assert first.shared
    assert second.shared
    verdicts = [await (first if n % 2 else second).take_request("tenant:acme", 5) for n in range(8)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 3
    assert all(0 < v.retry_after <= 2 * MINUTE for v in verdicts[5:])
    assert (await first.take_request("tenant:globex", 5)).allowed


async def test_concurrent_requests_through_two_replicas_never_pass_the_limit(
    replicas: tuple[RateLimiter, RateLimiter],
) -> None:
    first, second = replicas
    verdicts = await asyncio.gather(
        *(limiter.take_request("credential:acme/main", 10) for limiter in (first, second) for _ in range(25))
    )
    assert sum(v.allowed for v in verdicts) == 10


async def test_two_replicas_share_token_windows(replicas: tuple[RateLimiter, RateLimiter]) -> None:
    first, second = replicas
    assert (await second.tokens_available("tenant:acme", 100)).allowed
    await first.add_tokens("tenant:acme", 150)
    refused = await second.tokens_available("tenant:acme", 100)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 2 * MINUTE


async def test_without_redis_limits_fail_open_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        limiter = RateLimiter(client)
        with caplog.at_level(logging.WARNING, logger="integration_hub.policy"):
            verdicts = [await limiter.take_request("k", 1) for _ in range(3)]
        assert all(v.allowed for v in verdicts)
        assert "allowing the call" in caplog.text
    finally:
        await client.aclose()
