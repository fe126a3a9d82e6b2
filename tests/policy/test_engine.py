"""The PolicyEngine with its real parts (a policy file, breakers, bulkheads, an in-process
limiter); the provider calls are plain async functions that answer or fail as each test says."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from callers.base import InvalidRequest, ProviderTimeout, ProviderUnavailable, RateLimited
from callers.timeouts import DEFAULT_CONNECT_TIMEOUT, connect_timeout
from integration_hub.errors import HubError
from integration_hub.policy import Plan, PolicyEngine, PolicySource, RateLimiter, Target
from integration_hub.policy.breaker import Breakers, BreakerState

pytestmark = pytest.mark.timeout(20)
TENANT = "acme"
A, B = Target("a", "m1"), Target("b", "m2")
ROUTE = (
    "[tenants.acme.routes.r]\n"
    'targets = [{credential = "a", model = "m1"}, {credential = "b", model = "m2"}]\n'
)
FAST = "[defaults]\nbackoff_base = 0.001\nbackoff_max = 0.002\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def retried(self, target: Target, reason: str) -> None:
        self.seen.append(("retried", target, reason))

    def fell_back(self, route: str, from_target: Target, to_target: Target) -> None:
        self.seen.append(("fell_back", route, from_target, to_target))

    def breaker_changed(self, credential: str, model: str, state: BreakerState) -> None:
        self.seen.append(("breaker", credential, model, state))

    def rate_limited(self, scope: str, kind: str) -> None:
        self.seen.append(("rate_limited", scope, kind))


def engine_for(tmp_path: Path, policy: str, clock: Clock | None = None) -> tuple[PolicyEngine, Events]:
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    events = Events()
    engine = PolicyEngine(PolicySource(str(path)), RateLimiter(), events)
    if clock is not None:
        engine.breakers = Breakers(on_change=events.breaker_changed, clock=clock)
    return engine, events


def single(target: Target = A) -> Plan:
    return Plan(None, (target,))


class Upstream:
    """A scripted provider: each call takes the next outcome (an exception to raise, an
    awaitable to wait on, or a value to return) and records what it was given."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[Target, float]] = []

    async def __call__(self, target: Target, budget: float) -> Any:
        self.calls.append((target, budget))
        outcome = self.outcomes.pop(0) if self.outcomes else f"answer from {target.credential}"
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, asyncio.Event):
            await outcome.wait()
            return "finally"
        if callable(outcome):
            return outcome(target)
        return outcome


async def open_circuit(engine: PolicyEngine, target: Target = A) -> None:
    with pytest.raises(ProviderUnavailable):
        await engine.run(TENANT, single(target), 5, Upstream(ProviderUnavailable("503")))
    assert engine.breakers.state(f"{TENANT}/{target.credential}", target.model) is BreakerState.OPEN


# --- the half-open trial always ends (the regression) ------------------------------------------------

BREAKER = "[defaults]\nmax_attempts = 1\nbreaker_failures = 1\nbreaker_cooldown = 30\n"


async def test_a_non_retryable_answer_to_the_trial_closes_the_circuit(tmp_path: Path) -> None:
    clock = Clock()
    engine, _ = engine_for(tmp_path, BREAKER, clock)
    await open_circuit(engine)
    clock.now += 30
    with pytest.raises(InvalidRequest):  # the provider answered: it is up
        await engine.run(TENANT, single(), 5, Upstream(InvalidRequest("400")))
    assert engine.breakers.state("acme/a", "m1") is BreakerState.CLOSED
    assert (await engine.run(TENANT, single(), 5, Upstream()))[0] == "answer from a"


async def test_a_cancelled_trial_lets_the_next_call_try(tmp_path: Path) -> None:
    clock = Clock()
    engine, _ = engine_for(tmp_path, BREAKER, clock)
    await open_circuit(engine)
    clock.now += 30
    trial = asyncio.create_task(engine.run(TENANT, single(), 5, Upstream(asyncio.Event())))
    await asyncio.sleep(0.05)
    assert engine.breakers.state("acme/a", "m1") is BreakerState.HALF_OPEN
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    upstream = Upstream()
    assert (await engine.run(TENANT, single(), 5, upstream))[0] == "answer from a"
    assert len(upstream.calls) == 1
    assert engine.breakers.state("acme/a", "m1") is BreakerState.CLOSED


async def test_a_trial_refused_by_the_credential_limit_lets_the_next_call_try(tmp_path: Path) -> None:
    clock = Clock()
    engine, _ = engine_for(
        tmp_path, BREAKER + "[tenants.acme.credentials.a]\nrequests_per_minute = 1\n", clock
    )
    await open_circuit(engine)  # spends the one request of this minute
    clock.now += 30
    with pytest.raises(HubError) as limited:
        await engine.run(TENANT, single(), 5, Upstream())
    assert limited.value.reason == "RATE_LIMITED"
    # Still half-open, with no trial in flight: the next call (once the limit allows) is the trial.
    assert engine.breakers.state("acme/a", "m1") is BreakerState.HALF_OPEN
    assert engine.breakers.allow("acme/a", "m1", 30)


async def test_a_trial_that_never_reached_the_provider_lets_the_next_call_try(tmp_path: Path) -> None:
    clock = Clock()
    engine, _ = engine_for(tmp_path, BREAKER, clock)
    await open_circuit(engine)
    clock.now += 30
    with pytest.raises(HubError):  # e.g. the credential's row could not be read
        await engine.run(
            TENANT, single(), 5, Upstream(HubError(grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE", "down"))
        )
    assert engine.breakers.allow("acme/a", "m1", 30)


# --- timeouts ---------------------------------------------------------------------------------------


async def test_each_attempt_runs_with_the_policy_connect_timeout(tmp_path: Path) -> None:
    engine, _ = engine_for(
        tmp_path, "[defaults]\nconnect_timeout = 0.75\n[tenants.acme.credentials.b]\nconnect_timeout = 0.25\n"
    )
    seen: list[float] = []

    def record(target: Target) -> str:
        seen.append(connect_timeout())
        return "ok"

    await engine.run(TENANT, single(A), 5, Upstream(record))
    await engine.run(TENANT, single(B), 5, Upstream(record))
    assert seen == [0.75, 0.25]
    assert connect_timeout() == DEFAULT_CONNECT_TIMEOUT  # outside a call: the default


async def test_an_attempt_is_bounded_by_total_timeout(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, "[defaults]\nmax_attempts = 1\ntotal_timeout = 0.2\n")
    upstream = Upstream(asyncio.Event())  # never answers
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await engine.run(TENANT, single(), 30, upstream)
    assert 0.2 <= time.monotonic() - started < 1.0
    assert upstream.calls[0][1] <= 0.2  # and the caller was told so


async def test_the_whole_call_is_bounded_by_total_timeout_despite_retries(tmp_path: Path) -> None:
    engine, _ = engine_for(
        tmp_path, FAST + "max_attempts = 50\ntotal_timeout = 0.3\nbreaker_failures = 100\n"
    )

    async def slow_failure(target: Target, budget: float) -> str:
        await asyncio.sleep(0.05)
        raise ProviderUnavailable("503")

    started = time.monotonic()
    with pytest.raises((ProviderUnavailable, ProviderTimeout)):  # the last attempt is cut short
        await engine.run(TENANT, single(), 30, slow_failure)
    assert time.monotonic() - started < 0.6


async def test_a_request_may_ask_for_less_than_total_timeout(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, "[defaults]\nmax_attempts = 1\ntotal_timeout = 60\n")
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await engine.run(TENANT, single(), 0.2, Upstream(asyncio.Event()))
    assert time.monotonic() - started < 1.0


async def test_a_retry_after_beyond_the_budget_falls_back_at_once(tmp_path: Path) -> None:
    engine, events = engine_for(tmp_path, FAST + ROUTE)
    upstream = Upstream(RateLimited("429", retry_after=60.0))
    started = time.monotonic()
    answer, target = await engine.run(TENANT, engine.plan(TENANT, "", "r"), 5, upstream)
    assert (answer, target) == ("answer from b", B)
    assert time.monotonic() - started < 0.5
    assert [call[0] for call in upstream.calls] == [A, B]
    assert ("fell_back", "r", A, B) in events.seen


# --- retries, fallback, breakers along a route -----------------------------------------------------------


async def test_retryable_failures_are_retried_then_the_route_falls_back(tmp_path: Path) -> None:
    engine, events = engine_for(tmp_path, FAST + "max_attempts = 2\nbreaker_failures = 100\n" + ROUTE)
    upstream = Upstream(ProviderUnavailable("503"), ProviderTimeout("slow"))
    _, target = await engine.run(TENANT, engine.plan(TENANT, "", "r"), 5, upstream)
    assert target == B
    assert [call[0] for call in upstream.calls] == [A, A, B]
    assert [e for e in events.seen if e[0] != "breaker"] == [
        ("retried", A, "ProviderUnavailable"),
        ("fell_back", "r", A, B),
    ]


async def test_a_non_retryable_failure_is_neither_retried_nor_fallen_back_from(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, FAST + ROUTE)
    upstream = Upstream(InvalidRequest("400"))
    with pytest.raises(InvalidRequest):
        await engine.run(TENANT, engine.plan(TENANT, "", "r"), 5, upstream)
    assert [call[0] for call in upstream.calls] == [A]


async def test_an_open_circuit_is_skipped_and_the_last_real_error_is_the_answer(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, FAST + "max_attempts = 1\nbreaker_failures = 1\n" + ROUTE)
    await open_circuit(engine, A)
    upstream = Upstream(ProviderUnavailable("b is down too"))
    with pytest.raises(ProviderUnavailable, match="b is down too"):  # not "circuit open"
        await engine.run(TENANT, engine.plan(TENANT, "", "r"), 5, upstream)
    assert [call[0] for call in upstream.calls] == [B]  # a was not touched
    with pytest.raises(HubError) as every_circuit_open:
        await engine.run(TENANT, engine.plan(TENANT, "", "r"), 5, Upstream())
    assert every_circuit_open.value.reason == "CIRCUIT_OPEN"
    assert "route 'r'" in every_circuit_open.value.message


async def test_an_unknown_route_is_invalid(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, ROUTE)
    with pytest.raises(HubError) as caught:
        engine.plan(TENANT, "", "nope")
    assert (caught.value.reason, caught.value.code.name) == ("UNKNOWN_ROUTE", "INVALID_ARGUMENT")
    with pytest.raises(HubError):
        engine.plan("globex", "", "r")  # another tenant's route


# --- bulkheads in the engine ------------------------------------------------------------------------------


async def test_an_overloaded_credential_falls_back_along_the_route(tmp_path: Path) -> None:
    engine, _ = engine_for(
        tmp_path, ROUTE + "[tenants.acme.credentials.a]\nmax_in_flight = 1\nmax_queued = 0\n"
    )
    busy = asyncio.Event()
    holder = asyncio.create_task(engine.run(TENANT, single(A), 5, Upstream(busy)))
    await asyncio.sleep(0.05)
    assert engine.bulkheads.in_flight("acme/a") == 1
    _, target = await engine.run(TENANT, engine.plan(TENANT, "", "r"), 5, Upstream())
    assert target == B
    with pytest.raises(HubError) as overloaded:  # with nowhere to fall back to: refused at once
        await engine.run(TENANT, single(A), 5, Upstream())
    assert (overloaded.value.reason, overloaded.value.retry_after) == ("OVERLOADED", 1.0)
    busy.set()
    await holder
    assert engine.bulkheads.in_flight("acme/a") == 0


def stream_of(*items: Any, fail_after: BaseException | None = None) -> Callable[[Target], AsyncIterator[Any]]:
    def make(target: Target) -> AsyncIterator[Any]:
        async def events() -> AsyncIterator[Any]:
            for item in items:
                yield item
            if fail_after is not None:
                raise fail_after

        return events()

    return make


async def test_a_stream_holds_its_slot_until_it_ends_however_it_ends(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, "")
    stream, _ = await engine.run_stream(TENANT, single(), 5, Upstream(stream_of(1, 2, 3)))
    assert engine.bulkheads.in_flight("acme/a") == 1  # past its first event, still in flight
    assert [event async for event in stream] == [1, 2, 3]
    assert engine.bulkheads.in_flight("acme/a") == 0

    closed_early, _ = await engine.run_stream(TENANT, single(), 5, Upstream(stream_of(1, 2, 3)))
    assert await anext(closed_early) == 1
    await closed_early.aclose()  # aclose is on the async generator the engine returns
    assert engine.bulkheads.in_flight("acme/a") == 0

    never_read, _ = await engine.run_stream(TENANT, single(), 5, Upstream(stream_of(1, 2, 3)))
    assert engine.bulkheads.in_flight("acme/a") == 1
    del never_read  # a client gone before the first write
    gc.collect()
    assert engine.bulkheads.in_flight("acme/a") == 0


async def test_a_stream_is_retried_before_its_first_event_and_never_after(tmp_path: Path) -> None:
    engine, _ = engine_for(tmp_path, FAST + "max_attempts = 3\n")
    upstream = Upstream(stream_of(fail_after=ProviderUnavailable("before")), stream_of("a", "b"))
    stream, _ = await engine.run_stream(TENANT, single(), 5, upstream)
    assert [event async for event in stream] == ["a", "b"]
    assert len(upstream.calls) == 2

    upstream = Upstream(stream_of("a", fail_after=ProviderUnavailable("midway")))
    stream, _ = await engine.run_stream(TENANT, single(), 5, upstream)
    assert await anext(stream) == "a"
    with pytest.raises(ProviderUnavailable, match="midway"):
        await anext(stream)
    assert len(upstream.calls) == 1


async def test_first_byte_timeout_bounds_a_silent_stream(tmp_path: Path) -> None:
    engine, _ = engine_for(
        tmp_path, "[defaults]\nmax_attempts = 2\nfirst_byte_timeout = 0.2\nbackoff_max = 0.01\n"
    )
    silent = asyncio.Event()

    def never(target: Target) -> AsyncIterator[Any]:
        async def events() -> AsyncIterator[Any]:
            await silent.wait()
            yield "too late"

        return events()

    upstream = Upstream(never, never)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="first event"):
        await engine.run_stream(TENANT, single(), 30, upstream)
    assert 0.4 <= time.monotonic() - started < 1.2  # two attempts of 0.2 s
    assert len(upstream.calls) == 2
    assert engine.bulkheads.in_flight("acme/a") == 0
