"""One call's spend against its budgets: which counters it falls under, what it
reserves before the provider is called, and its settlement when it ends.

What a call reserves (its maximum cost, as far as the request tells):
  chat: an input estimate (characters / 4, the usual rule of thumb, plus a few tokens
    per message) + max_output_tokens, or, when the request sets none, the policy's
    `reserve_output_tokens` ([defaults] or per credential; 1024 unless set);
  embed, rerank: the input estimate; transcribe: the probed seconds of audio;
  synthesize: its characters; live speech streams: nothing up front (their size is not
    known); each is still refused once a budget it falls under is full.
Money is reserved from the same estimate and the credential's price for the model.
The estimate is not a bound on the provider's count: a cap can be passed by what the
calls in flight at that moment use beyond their reservations, never by more calls than
there was room for.

A stream is settled when it ends, however it ends (cancelled included), with the usage
its end event reported (none if it was cut before it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import grpc

from integration_hub.errors import HubError
from integration_hub.policy.budget import (
    NOTHING,
    Amounts,
    BudgetConfig,
    Price,
    Scope,
    TenantBudgets,
    amount_in,
    period_bounds,
)
from integration_hub.policy.budget_ledger import (
    BudgetExceeded,
    BudgetLedger,
    Counter,
    Reservation,
    Settled,
)

log = logging.getLogger("integration_hub.policy")
# A reservation outlives its call's time bound by this much before it is presumed lost.
RESERVATION_MARGIN = 300.0


@runtime_checkable
class BudgetEvents(Protocol):
    def budget_refused(self, counter: Counter) -> None: ...

    def budget_warned(self, counter: Counter) -> None: ...

    def budget_used(self, counter: Counter, spent: int) -> None: ...


@dataclass(slots=True)
class Spend:
    """A call's side of its budgets: who spends (the hub token), what it may spend at most,
    and (between the engine's reservation and the end of the call) its reservation."""

    token_id: str
    # Called only when a budget applies: calls under none do not pay for the estimate.
    estimate: Callable[[], Amounts]
    # False: the request set no bound on its output; the policy's reserve_output_tokens is reserved.
    output_bounded: bool = True
    reservation: Reservation | None = None
    price: Price | None = None


def estimate_tokens(characters: int, messages: int = 1) -> int:
    return -(-characters // 4) + 4 * messages


def _counters(
    budgets: TenantBudgets, tenant_id: str, token_id: str, credential: str, now: float
) -> list[Counter]:
    configs: list[tuple[Scope, str, BudgetConfig | None]] = [
        ("tenant", tenant_id, budgets.tenant),
        ("credential", credential, budgets.credentials.get(credential)),
        ("token", token_id, budgets.tokens.get(token_id)),
    ]
    found = []
    for scope, owner, config in configs:
        if config is None:
            continue
        for limit in config.limits:
            label, ends_at = period_bounds(limit.period, now)
            found.append(
                Counter(
                    scope,
                    owner,
                    tenant_id,
                    limit.unit,
                    limit.period,
                    label,
                    limit.limit,
                    config.warn_at,
                    ends_at,
                )
            )
    return found


def budget_exceeded(exc: BudgetExceeded, now: float) -> HubError:
    counter = exc.counter
    return HubError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "BUDGET_EXCEEDED",
        f"the {counter.name} budget ({counter.label}, UTC) has no room for this call: "
        f"{exc.used:,} of {counter.limit:,} {_unit_words(counter)} used or held",
        {"scope": counter.scope, "id": counter.owner, "period": counter.period, "unit": counter.unit},
        retry_after=max(1.0, counter.ends_at - now),
    )


def _unit_words(counter: Counter) -> str:
    return "tokens" if counter.unit == "tokens" else "micro-units of money"


class Budgets:
    """Reserve and settle a call's spend on the ledger, and report what crossed a threshold."""

    def __init__(self, ledger: BudgetLedger, events: BudgetEvents | None = None) -> None:
        self.ledger = ledger
        self._events = events

    async def reserve(
        self,
        budgets: TenantBudgets,
        tenant_id: str,
        credential: str,
        model: str,
        spend: Spend,
        reserve_output_tokens: int,
        hold_for: float,
    ) -> Reservation | None:
        """Reserve the call's maximum cost on every budget it falls under (None: none applies);
        BUDGET_EXCEEDED naming the first budget without room, nothing held."""
        counters = _counters(budgets, tenant_id, spend.token_id, credential, self.ledger.clock())
        if not counters:
            return None
        estimate = spend.estimate()
        if not spend.output_bounded:
            estimate = Amounts(
                estimate.input_tokens,
                reserve_output_tokens,
                estimate.cached_tokens,
                estimate.audio_seconds,
                estimate.characters,
            )
        price = budgets.price(credential, model)
        reservation = Reservation(
            tuple(counters), tuple(amount_in(counter.unit, estimate, price) for counter in counters)
        )
        try:
            await self.ledger.reserve(reservation, hold_for + RESERVATION_MARGIN)
        except BudgetExceeded as exc:
            if self._events is not None:
                self._events.budget_refused(exc.counter)
            log.info(
                "budget exceeded: %s",
                exc,
                extra={"event": "budget_exceeded", "budget": exc.counter.name, "period": exc.counter.label},
            )
            raise budget_exceeded(exc, self.ledger.clock()) from None
        spend.price = price
        return reservation

    async def settle(self, reservation: Reservation, actual: Amounts, price: Price | None) -> None:
        amounts = [amount_in(counter.unit, actual, price) for counter in reservation.counters]
        for settled in await self.ledger.settle(reservation, amounts):
            self._report(settled)

    async def release(self, reservation: Reservation) -> None:
        """The call ended without using anything (it failed, or moves to another target)."""
        await self.settle(reservation, NOTHING, None)

    def _report(self, settled: Settled) -> None:
        counter = settled.counter
        if self._events is not None:
            self._events.budget_used(counter, settled.after)
        threshold = counter.warn_at * counter.limit
        # Spent only grows within a period, and each settlement's step is atomic: exactly one
        # call (on one replica) sees the crossing, so the warning comes once per period.
        if settled.before < threshold <= settled.after:
            if self._events is not None:
                self._events.budget_warned(counter)
            log.warning(
                "budget %s (%s, UTC) is %.0f%% spent: %s of %s",
                counter.name,
                counter.label,
                100 * settled.after / counter.limit,
                settled.after,
                counter.limit,
                extra={"event": "budget_warning", "budget": counter.name, "period": counter.label},
            )
