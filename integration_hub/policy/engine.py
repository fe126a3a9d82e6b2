"""The one wrapper around every provider call: limits, breaker, bulkhead, retries,
fallback along a route, and the time budget.

For a call to targets [t1, t2, ...] (one target, or a route's):
  tenant limits (requests, tokens) -> for each target: its circuit, its credential's
  limits, a bulkhead slot, then attempts with full-jitter backoff (Retry-After as
  a floor) on retryable failures only -> next target on a retryable failure or an
  open circuit -> the last error, mapped.
A stream is retried only until its first event has been received: once a byte can
have reached the client, a failure ends the stream with the mapped status.

Bounds: the call's deadline is min(the request's budget, total_timeout); each attempt
is bounded by min(what is left, total_timeout) and runs with the policy's
connect_timeout (callers.timeouts, read by the aiohttp transports); a stream's first
event by first_byte_timeout. A credential at its concurrency limit (bulkhead) or its
rate limit is passed over like an open circuit; a stream holds its slot until it ends.
The breaker hears every attempt's outcome: a retryable failure counts against it, any
other provider answer is a success, and an attempt that never reached the provider
(cancelled, refused first) releases a half-open trial without a verdict. A stream's
verdict is given when it ends, so that one cut mid-way counts as a failure.

An attempt that is not idempotent (run(..., idempotent=False): placing a phone call) is
never repeated after a timeout, on its target or another: the provider may have carried
it out and only its answer was lost. The attempt itself decides which of its other
failures say the provider did not take the request (it raises only those as retryable);
the engine's own backstop timeout, which the attempt cannot see, is raised as it is.

Budgets (policy/budget*.py): a call given a Spend reserves its maximum cost on every
budget it falls under (tenant, the target's credential, the token) when a target is
tried, after that target's rate limits and before its first attempt; a full credential
budget passes the route on to its next target, a full tenant or token budget fails the
call (BUDGET_EXCEEDED), with no provider called either way. A target that fails gives its
reservation back; the one that answers leaves it in the Spend, for the caller to settle
with the actual use when the call (or stream) ends: `settle`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc

from callers.base import CallerError, MissingExtra, NotSupported, ProviderTimeout
from callers.timeouts import connect_timeout_of
from integration_hub.errors import HubError
from integration_hub.policy.breaker import Breakers, BreakerState
from integration_hub.policy.budget import Amounts
from integration_hub.policy.budget_ledger import BudgetLedger, Reservation
from integration_hub.policy.budget_spend import BudgetEvents, Budgets, Spend
from integration_hub.policy.bulkhead import Bulkheads, Overloaded, Release
from integration_hub.policy.config import Policy, PolicySource, Route, Target
from integration_hub.policy.ratelimit import RateLimiter
from integration_hub.policy.retry import backoff_delay, is_retryable, retry_after_of

T = TypeVar("T")
Attempt = Callable[[Target, float], Awaitable[T]]


class PolicyEvents(Protocol):
    """What the engine reports (metrics implement it)."""

    def retried(self, target: Target, reason: str) -> None: ...

    def fell_back(self, route: str, from_target: Target, to_target: Target) -> None: ...

    def breaker_changed(self, credential: str, model: str, state: BreakerState) -> None: ...

    def rate_limited(self, scope: str, kind: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Plan:
    route: Route | None
    targets: tuple[Target, ...]


def rate_limited(scope: str, kind: str, retry_after: float) -> HubError:
    return HubError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
        f"the {scope}'s limit of {kind} per minute is reached; retry in {retry_after:.1f}s",
        {"scope": scope, "kind": kind},
        retry_after=retry_after,
    )


def _circuit_open(target: Target, route: Route | None) -> HubError:
    where = f"every target of route {route.name!r} is" if route else f"{target.credential}/{target.model} is"
    return HubError(
        grpc.StatusCode.UNAVAILABLE,
        "CIRCUIT_OPEN",
        f"{where} failing; its circuit is open, retry later",
        {"credential": target.credential},
    )


class PolicyEngine:
    def __init__(
        self,
        source: PolicySource,
        limiter: RateLimiter,
        events: PolicyEvents | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self._source = source
        self._limiter = limiter
        self._events = events
        self.breakers = Breakers(on_change=self._breaker_changed)
        self.bulkheads = Bulkheads()
        # Budgets share the rate limiter's Redis (or, without it, live in this process).
        self.budgets = budgets or Budgets(
            BudgetLedger(limiter.client), events if isinstance(events, BudgetEvents) else None
        )

    def _breaker_changed(self, credential: str, model: str, state: BreakerState) -> None:
        if self._events is not None:
            self._events.breaker_changed(credential, model, state)

    # --- planning -------------------------------------------------------------------

    def plan(self, tenant_id: str, credential_ref: str, model: str) -> Plan:
        """Targets for a call: the named credential's model, or (no credential) the route named by model."""
        if credential_ref:
            return Plan(None, (Target(credential_ref, model),))
        route = self._source.current().tenant(tenant_id).routes.get(model)
        if route is None:
            raise HubError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "UNKNOWN_ROUTE",
                f"credential: required, unless the model names a route, and {model!r} is not a route of this "
                "tenant (on the OpenAI-compatible API, use '<credential name>/<model>')",
                {"field": "credential", "route": model},
            )
        return Plan(route, route.targets)

    def policy(self, tenant_id: str, target: Target, route: Route | None) -> Policy:
        return self._source.current().policy_for(tenant_id, target.credential, route)

    # --- limits -----------------------------------------------------------------------

    async def admit(self, tenant_id: str) -> None:
        """The tenant's limits, checked once per call (not per attempt)."""
        limits = self._source.current().tenant(tenant_id).limits
        await self._check(
            f"tenant:{tenant_id}", "tenant", limits.requests_per_minute, limits.tokens_per_minute
        )

    async def _check(self, key: str, scope: str, requests: int | None, tokens: int | None) -> None:
        if tokens is not None:
            verdict = await self._limiter.tokens_available(key, tokens)
            if not verdict.allowed:
                self._report_limit(scope, "tokens")
                raise rate_limited(scope, "tokens", verdict.retry_after)
        if requests is not None:
            verdict = await self._limiter.take_request(key, requests)
            if not verdict.allowed:
                self._report_limit(scope, "requests")
                raise rate_limited(scope, "requests", verdict.retry_after)

    def _report_limit(self, scope: str, kind: str) -> None:
        if self._events is not None:
            self._events.rate_limited(scope, kind)

    async def account(self, tenant_id: str, credential: str, tokens: int) -> None:
        """Add a finished call's tokens to the tenant's and the credential's windows."""
        config = self._source.current().tenant(tenant_id)
        if config.limits.tokens_per_minute is not None:
            await self._limiter.add_tokens(f"tenant:{tenant_id}", tokens)
        credential_limits = config.credential_limits.get(credential)
        if credential_limits is not None and credential_limits.tokens_per_minute is not None:
            await self._limiter.add_tokens(f"credential:{tenant_id}/{credential}", tokens)

    async def _check_credential(self, tenant_id: str, target: Target) -> None:
        limits = self._source.current().tenant(tenant_id).credential_limits.get(target.credential)
        if limits is not None:
            await self._check(
                f"credential:{tenant_id}/{target.credential}",
                "credential",
                limits.requests_per_minute,
                limits.tokens_per_minute,
            )

    # --- budgets -----------------------------------------------------------------------

    async def _reserve(
        self, tenant_id: str, target: Target, policy: Policy, deadline: float, spend: Spend | None
    ) -> Reservation | None:
        if spend is None:
            return None
        budgets = self._source.current().tenant(tenant_id).budgets
        if not budgets.any:
            return None
        try:
            return await self.budgets.reserve(
                budgets,
                tenant_id,
                target.credential,
                target.model,
                spend,
                policy.reserve_output_tokens,
                max(0.0, deadline - time.monotonic()),
            )
        except HubError as refused:
            if refused.reason == "BUDGET_EXCEEDED" and refused.metadata.get("scope") == "credential":
                raise _TryNextTarget(refused) from None  # another target of a route may have room
            raise

    async def settle(self, spend: Spend | None, actual: Amounts) -> None:
        """Replace the call's reservation (if any) by what it actually used; once."""
        if spend is None or spend.reservation is None:
            return
        reservation, spend.reservation = spend.reservation, None
        # Shielded: a call cancelled while settling still settles (else its room is held
        # until the reservation expires).
        await asyncio.shield(self.budgets.settle(reservation, actual, spend.price))

    # --- running -------------------------------------------------------------------------

    async def run(
        self,
        tenant_id: str,
        plan: Plan,
        budget: float,
        attempt: Attempt[T],
        *,
        idempotent: bool = True,
        spend: Spend | None = None,
    ) -> tuple[T, Target]:
        """Run `attempt` along the plan's targets within `budget` seconds; return its result and
        target. With idempotent=False a timeout is final (see the module docstring). With a
        `spend`, the answering target's budget reservation is left in it: `settle` it."""
        result, target, _, _ = await self._run(
            tenant_id, plan, budget, attempt, hold_slot=False, idempotent=idempotent, spend=spend
        )
        return result, target

    async def _run(
        self,
        tenant_id: str,
        plan: Plan,
        budget: float,
        attempt: Attempt[T],
        *,
        hold_slot: bool,
        idempotent: bool = True,
        spend: Spend | None = None,
    ) -> tuple[T, Target, Release, bool]:
        """The result, the target that gave it, its slot's release and whether it was the
        target's half-open trial."""
        policies = [self.policy(tenant_id, target, plan.route) for target in plan.targets]
        # total_timeout is the operator's bound on the whole call (a request may ask for less,
        # never more); along a route, the most generous of its targets' bounds.
        deadline = time.monotonic() + min(budget, max(policy.total_timeout for policy in policies))
        errors: list[BaseException] = []
        for index, (target, policy) in enumerate(zip(plan.targets, policies, strict=True)):
            if index and self._events is not None and plan.route is not None:
                self._events.fell_back(plan.route.name, plan.targets[index - 1], target)
            try:
                result, release, trial = await self._run_target(
                    tenant_id, target, policy, deadline, attempt, hold_slot, idempotent, spend
                )
                return result, target, release, trial
            except _TryNextTarget as skip:
                errors.append(skip.cause)
        raise _final_error(errors, plan)

    async def _run_target(
        self,
        tenant_id: str,
        target: Target,
        policy: Policy,
        deadline: float,
        attempt: Attempt[T],
        hold_slot: bool,
        idempotent: bool = True,
        spend: Spend | None = None,
    ) -> tuple[T, Release, bool]:
        key = f"{tenant_id}/{target.credential}"
        if not self.breakers.allow(key, target.model, policy.breaker_cooldown):
            raise _TryNextTarget(_circuit_open(target, None))
        # While half-open, only the one trial call is allowed through: this is it.
        trial = self.breakers.state(key, target.model) is BreakerState.HALF_OPEN
        try:
            try:
                await self._check_credential(tenant_id, target)
            except HubError as limited:
                raise _TryNextTarget(limited) from None
            reservation = await self._reserve(tenant_id, target, policy, deadline, spend)
            try:
                result, release = await self._attempts(
                    key, target, policy, deadline, attempt, hold_slot, idempotent
                )
            except BaseException:
                if reservation is not None:  # nothing was used on this target
                    await asyncio.shield(self.budgets.release(reservation))
                raise
            if spend is not None:
                spend.reservation = reservation
            return result, release, trial
        except BaseException:
            # A verdict (succeeded / failed) has already ended the trial. Anything else (a
            # cancelled call, a refusal before the provider was reached, a store error) says
            # nothing about the target, and must not leave the circuit half-open forever.
            if trial:
                self.breakers.released(key, target.model)
            raise

    async def _attempts(
        self,
        key: str,
        target: Target,
        policy: Policy,
        deadline: float,
        attempt: Attempt[T],
        hold_slot: bool,
        idempotent: bool = True,
    ) -> tuple[T, Release]:
        for number in range(policy.max_attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _budget_spent()
            try:
                result = await self._attempt_once(key, target, policy, remaining, attempt, hold_slot)
            except _NOT_AN_ANSWER:
                raise  # the provider was never reached: no verdict on it
            except CallerError as exc:
                if not idempotent and isinstance(exc, ProviderTimeout):
                    # It may have been carried out (a call placed, ringing): repeating it,
                    # here or on the next target, could do it twice.
                    self.breakers.failed(key, target.model, policy.breaker_failures)
                    raise
                if not is_retryable(exc):
                    # The provider answered (a bad request, a rejected key): it is up.
                    self.breakers.succeeded(key, target.model)
                    raise
                self.breakers.failed(key, target.model, policy.breaker_failures)
                delay = self._retry_delay(number, policy, key, target, exc, deadline)
                if delay is None:
                    raise _TryNextTarget(exc) from None
                if self._events is not None:
                    self._events.retried(target, type(exc).__name__)
                await asyncio.sleep(delay)
                continue
            if not hold_slot:  # a stream's verdict waits for its end (run_stream)
                self.breakers.succeeded(key, target.model)
            return result
        raise AssertionError("unreachable: the last attempt either returns or raises")

    async def _attempt_once(
        self,
        key: str,
        target: Target,
        policy: Policy,
        remaining: float,
        attempt: Attempt[T],
        hold_slot: bool,
    ) -> tuple[T, Release]:
        """One attempt in a bulkhead slot, bounded by min(remaining budget, total_timeout), with
        the policy's connect timeout for the transports (callers.timeouts). With `hold_slot`
        (a stream) the slot outlives the attempt; the caller releases it."""
        bound = min(remaining, policy.total_timeout)
        started = time.monotonic()
        # The caller is given `bound` and is the first to enforce it (its error names the host);
        # this is the backstop for one that overruns it (an SDK with per-phase timeouts).
        limit = asyncio.timeout(bound + _BACKSTOP_GRACE)
        release: Release | None = None
        try:
            async with limit:
                try:
                    release = await self.bulkheads.acquire(key, policy.max_in_flight, policy.max_queued)
                except Overloaded as exc:
                    # Like a credential's rate limit: another target of a route may have room.
                    raise _TryNextTarget(_overloaded(target, exc)) from None
                with connect_timeout_of(policy.connect_timeout):
                    # What is left of the bound after waiting for the slot.
                    result = await attempt(target, bound - (time.monotonic() - started))
        except BaseException as exc:
            if release is not None:
                release()
            if isinstance(exc, TimeoutError) and limit.expired():
                if release is None:  # the bound ran out while queued for a slot: the budget is gone
                    raise _budget_spent(f"waiting for a concurrency slot of {target.credential!r}") from None
                raise ProviderTimeout(f"no answer from the provider within {bound:g}s") from None
            raise
        if not hold_slot:
            release()
        return result, release

    def _retry_delay(
        self, number: int, policy: Policy, key: str, target: Target, exc: CallerError, deadline: float
    ) -> float | None:
        """How long to wait before the next attempt on this target, or None: move on."""
        if number + 1 >= policy.max_attempts or self.breakers.state(key, target.model) is BreakerState.OPEN:
            return None
        delay = backoff_delay(number, policy.backoff_base, policy.backoff_max, retry_after_of(exc))
        # Waiting past the budget (a long Retry-After) would only end in a timeout: fall back now.
        return delay if time.monotonic() + delay < deadline else None

    async def run_stream(
        self,
        tenant_id: str,
        plan: Plan,
        budget: float,
        attempt: Attempt[AsyncIterator[T]],
        spend: Spend | None = None,
    ) -> tuple[AsyncIterator[T], Target]:
        """Like run, retrying and falling back only until the stream's first event has arrived.
        The caller settles `spend` when the stream ends.

        The stream keeps its concurrency slot until it ends, however it ends (a stream is a
        call in flight for all of its life), or until it is dropped without being read.
        """

        async def first_event(target: Target, timeout: float) -> tuple[T, AsyncIterator[T]]:
            stream = await attempt(target, timeout)
            wait = min(timeout, self.policy(tenant_id, target, plan.route).first_byte_timeout)
            try:
                async with asyncio.timeout(wait) as limit:
                    first = await anext(stream)
            except TimeoutError:
                await _close(stream)
                if limit.expired():
                    raise ProviderTimeout(f"no first event from the provider within {wait:g}s") from None
                raise
            except BaseException:
                await _close(stream)
                raise
            return first, stream

        (first, stream), target, release, trial = await self._run(
            tenant_id, plan, budget, first_event, hold_slot=True, spend=spend
        )
        key = f"{tenant_id}/{target.credential}"

        async def events() -> AsyncIterator[T]:
            # The breaker's verdict on a stream comes at its end: one cut mid-way (too late to
            # retry) is a failure like any other, so a provider that keeps cutting its streams
            # has its circuit opened; a stream the client gave up says nothing.
            verdict: bool | None = None
            try:
                yield first
                async for event in stream:
                    yield event
                verdict = True
            except CallerError as exc:
                verdict = not is_retryable(exc)  # an error the provider chose to send: it is up
                raise
            finally:
                if verdict is True:
                    self.breakers.succeeded(key, target.model)
                elif verdict is False:
                    policy = self.policy(tenant_id, target, plan.route)
                    self.breakers.failed(key, target.model, policy.breaker_failures)
                elif trial:
                    self.breakers.released(key, target.model)
                release()
                await _close(stream)

        iterator = events()

        # Never started, an async generator never runs its `finally`: give the slot back when
        # it is dropped (a client gone before the first write).
        def abandoned() -> None:
            release()
            if trial:
                self.breakers.released(key, target.model)

        weakref.finalize(iterator, abandoned)
        return iterator, target


# How long after its own timeout a caller is given before the engine cuts the attempt.
_BACKSTOP_GRACE = 0.05
# Raised before any provider was reached: neither a success nor a failure of the target.
_NOT_AN_ANSWER = (MissingExtra, NotSupported)


def _budget_spent(while_doing: str = "before the provider answered") -> HubError:
    return HubError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "PROVIDER_TIMEOUT",
        f"the call's time budget ran out {while_doing}",
    )


def _overloaded(target: Target, exc: Overloaded) -> HubError:
    return HubError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "OVERLOADED",
        f"credential {target.credential!r} is at its concurrency limit: {exc}",
        {"credential": target.credential},
        retry_after=1.0,
    )


def _final_error(errors: list[BaseException], plan: Plan) -> BaseException:
    """What a call that found no target answering fails with: the last real error (a provider's
    answer, a limit) says more than "circuit open"; with every circuit open, say so for the route."""
    real = [error for error in errors if not _is_circuit_open(error)]
    if real:
        return real[-1]
    return _circuit_open(plan.targets[-1], plan.route)


def _is_circuit_open(error: BaseException) -> bool:
    return isinstance(error, HubError) and error.reason == "CIRCUIT_OPEN"


class _TryNextTarget(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class TargetUnusable(_TryNextTarget):
    """Raised by an attempt for a target that cannot be called at all (a route naming a
    credential that has been deleted): the route moves on to its next target, and with no
    target left the call fails with `cause`. Says nothing about the provider's health."""


async def _close(stream: AsyncIterator[object]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
