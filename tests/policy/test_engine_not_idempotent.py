"""The PolicyEngine with an attempt that is not idempotent (placing a phone call): a timeout,
its own backstop's or the attempt's, is final, on its target and along a route; what the
attempt itself raises as retryable (the provider said it did not take the request) is
still retried."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from callers.base import ProviderTimeout, RateLimited
from tests.policy.test_engine import FAST, ROUTE, TENANT, A, B, Upstream, engine_for, single

pytestmark = pytest.mark.timeout(20)


async def test_the_backstop_timeout_of_an_attempt_that_overruns_is_never_retried(tmp_path: Path) -> None:
    # A caller that does not keep to its bound (an SDK with per-phase timeouts): the
    # engine's backstop ends it. The request may have been carried out: not again.
    engine, events = engine_for(
        tmp_path, FAST + "max_attempts = 3\ntotal_timeout = 0.2\nbreaker_failures = 100\n"
    )
    upstream = Upstream(asyncio.Event(), asyncio.Event(), asyncio.Event())  # never answers
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await engine.run(TENANT, single(), 5, upstream, idempotent=False)
    assert time.monotonic() - started < 1.0
    assert [call[0] for call in upstream.calls] == [A]
    assert not [e for e in events.seen if e[0] == "retried"]


async def test_a_timeout_is_not_fallen_back_from_along_a_route(tmp_path: Path) -> None:
    engine, events = engine_for(tmp_path, FAST + "max_attempts = 2\nbreaker_failures = 100\n" + ROUTE)
    upstream = Upstream(ProviderTimeout("slow"))
    with pytest.raises(ProviderTimeout):
        await engine.run(TENANT, engine.plan(TENANT, "", "r"), 5, upstream, idempotent=False)
    assert [call[0] for call in upstream.calls] == [A]
    assert not [e for e in events.seen if e[0] == "fell_back"]


async def test_what_the_provider_says_it_did_not_take_is_still_retried(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, FAST + "max_attempts = 2\nbreaker_failures = 100\n" + ROUTE)
    upstream = Upstream(RateLimited("429"), RateLimited("429"))
    _, target = await engine.run(TENANT, engine.plan(TENANT, "", "r"), 5, upstream, idempotent=False)
    assert target == B
    assert [call[0] for call in upstream.calls] == [A, A, B]


async def test_an_idempotent_attempt_is_retried_after_a_timeout_as_before(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, FAST + "max_attempts = 2\nbreaker_failures = 100\n")
    upstream = Upstream(ProviderTimeout("slow"))
    answer, _ = await engine.run(TENANT, single(), 5, upstream)
    assert answer == "answer from a"
    assert [call[0] for call in upstream.calls] == [A, A]
