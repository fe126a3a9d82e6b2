"""The budget counters: reserve before a call, settle after it, atomically over every
budget the call falls under, shared by all replicas through Redis (or in this process).

A counter is one budget in one period (tenant acme, tokens, 2026-12-04). It holds what
was spent (settled calls) and what is held (reservations of calls in flight). A call
reserves its maximum cost on all of its counters at once, all or nothing: it is refused
if any counter's spent + held + this call's reservation would pass its limit (or the
counter is already full). So N concurrent calls against room for 10 let at most 10
through, whichever replica each lands on. When the call ends its reservation is replaced
by its actual cost (spent is spent: added even if it passes the limit, which a call
whose real use beat its estimate can do).

With Redis, one Lua script does each step over all the call's keys, so no other
replica's step interleaves. Without Redis the counters live in this process: each step
is plain synchronous code on the event loop (no await inside), which no other task can
interleave, so it needs no lock. Without Redis every worker process has its own
counters: run several workers or replicas with HUB_REDIS_URL.

Reservations of a worker that crashed (or a stream dropped unread) must not hold room
forever: each has an expiry (the call's time bound plus a margin) and every reserve
first drops the expired reservations of the counters it touches. A settlement after
its reservation expired still adds the actual cost. Counters themselves expire a day
after their period ends.

If Redis is unreachable, calls under a budget are refused (UNAVAILABLE, STORE_UNAVAILABLE):
a spend cap that silently stopped holding would be worse than a refused call. A
failed settlement is logged; its reservation then expires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from integration_hub.errors import HubError
from integration_hub.ids import unique_id
from integration_hub.policy.budget import Period, Scope, Unit

log = logging.getLogger("integration_hub.policy")
# Counters outlive their period by this much (seconds): a settlement of a call that
# started just before the edge still finds its counter.
COUNTER_GRACE = 86_400.0

# KEYS: per counter, a hash (fields spent, held, r:<reservation id>) and a sorted set of
# reservation ids by expiry (ms). ARGV: now_ms, expires_ms, reservation id, then per
# counter: limit, amount, counter ttl (ms). Returns {1}, or {0, index, spent, held} for
# the first counter (1-based) that has no room.
_RESERVE_LUA = """
local now, expires, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local n = #KEYS / 2
for i = 1, n do
  local hash, zset = KEYS[2 * i - 1], KEYS[2 * i]
  local stale = redis.call('ZRANGEBYSCORE', zset, '-inf', now)
  for _, old in ipairs(stale) do
    local held = redis.call('HGET', hash, 'r:' .. old)
    if held then
      redis.call('HINCRBY', hash, 'held', -tonumber(held))
      redis.call('HDEL', hash, 'r:' .. old)
    end
  end
  if #stale > 0 then redis.call('ZREMRANGEBYSCORE', zset, '-inf', now) end
end
for i = 1, n do
  local hash = KEYS[2 * i - 1]
  local limit, amount = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  local spent = tonumber(redis.call('HGET', hash, 'spent') or '0')
  local held = tonumber(redis.call('HGET', hash, 'held') or '0')
  if spent + held >= limit or spent + held + amount > limit then
    return {0, i, spent, held}
  end
end
for i = 1, n do
  local hash, zset = KEYS[2 * i - 1], KEYS[2 * i]
  local amount, ttl = ARGV[3 * i + 2], tonumber(ARGV[3 * i + 3])
  redis.call('HINCRBY', hash, 'held', amount)
  redis.call('HSET', hash, 'r:' .. id, amount)
  redis.call('ZADD', zset, expires, id)
  redis.call('PEXPIRE', hash, ttl)
  redis.call('PEXPIRE', zset, ttl)
end
return {1}
"""

# KEYS as above. ARGV: reservation id, then per counter: actual amount, counter ttl (ms).
# Returns each counter's spent after the settlement.
_SETTLE_LUA = """
local id = ARGV[1]
local result = {}
for i = 1, #KEYS / 2 do
  local hash, zset = KEYS[2 * i - 1], KEYS[2 * i]
  local held = redis.call('HGET', hash, 'r:' .. id)
  if held then
    redis.call('HINCRBY', hash, 'held', -tonumber(held))
    redis.call('HDEL', hash, 'r:' .. id)
    redis.call('ZREM', zset, id)
  end
  result[i] = redis.call('HINCRBY', hash, 'spent', ARGV[2 * i])
  redis.call('PEXPIRE', hash, tonumber(ARGV[2 * i + 1]))
end
return result
"""


@dataclass(frozen=True, slots=True)
class Counter:
    """One budget in one period."""

    scope: Scope
    owner: str  # the tenant id, the credential's name or the token's id
    tenant_id: str
    unit: Unit
    period: Period
    label: str  # the period: 2026-12-04 or 2026-12
    limit: int
    warn_at: float
    ends_at: float  # when the period ends (epoch seconds)

    @property
    def key(self) -> str:
        owner = self.tenant_id if self.scope == "tenant" else f"{self.tenant_id}/{self.owner}"
        return f"integration-hub:budget:{self.scope}:{owner}:{self.unit}:{self.label}"

    @property
    def name(self) -> str:
        """How errors, logs and metrics name the budget (never a secret: names from the policy file)."""
        return f"{self.scope} {self.owner} {self.unit} per {self.period}"


@dataclass(slots=True)
class Reservation:
    counters: tuple[Counter, ...]
    amounts: tuple[int, ...]
    id: str = field(default_factory=unique_id)


@dataclass(frozen=True, slots=True)
class Settled:
    """A counter's spent before and after a settlement."""

    counter: Counter
    before: int
    after: int


class BudgetExceeded(Exception):
    def __init__(self, counter: Counter, used: int, asked: int) -> None:
        super().__init__(f"{counter.name}: {used} of {counter.limit} used, {asked} more asked")
        self.counter, self.used, self.asked = counter, used, asked


def ledger_unavailable() -> HubError:
    return HubError(
        grpc.StatusCode.UNAVAILABLE,
        "STORE_UNAVAILABLE",
        "the budget ledger (Redis) is unreachable; calls under a budget are refused until it is back",
    )


@dataclass(slots=True)
class _LocalCounter:
    expires_at: float
    spent: int = 0
    held: int = 0
    reservations: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (amount, expiry)

    def drop_expired(self, now: float) -> None:
        for rid, (amount, expiry) in list(self.reservations.items()):
            if expiry <= now:
                del self.reservations[rid]
                self.held -= amount


class _LocalLedger:
    def __init__(self) -> None:
        self._counters: dict[str, _LocalCounter] = {}

    def _counter(self, counter: Counter, now: float) -> _LocalCounter:
        found = self._counters.get(counter.key)
        if found is None or found.expires_at <= now:
            found = self._counters[counter.key] = _LocalCounter(counter.ends_at + COUNTER_GRACE)
        return found

    def reserve(self, reservation: Reservation, now: float, expires: float) -> None:
        states = [self._counter(counter, now) for counter in reservation.counters]
        for state in states:
            state.drop_expired(now)
        for counter, state, amount in zip(reservation.counters, states, reservation.amounts, strict=True):
            used = state.spent + state.held
            if used >= counter.limit or used + amount > counter.limit:
                raise BudgetExceeded(counter, used, amount)
        for state, amount in zip(states, reservation.amounts, strict=True):
            state.held += amount
            state.reservations[reservation.id] = (amount, expires)
        if len(self._counters) > 10_000:  # past periods' counters
            self._counters = {k: v for k, v in self._counters.items() if v.expires_at > now}

    def settle(self, reservation: Reservation, actual: Sequence[int], now: float) -> list[int]:
        after = []
        for counter, amount in zip(reservation.counters, actual, strict=True):
            state = self._counter(counter, now)
            held = state.reservations.pop(reservation.id, None)
            if held is not None:
                state.held -= held[0]
            state.spent += amount
            after.append(state.spent)
        return after


class BudgetLedger:
    def __init__(self, redis_client: Any | None = None, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis_client
        self._reserve_script = redis_client.register_script(_RESERVE_LUA) if redis_client else None
        self._settle_script = redis_client.register_script(_SETTLE_LUA) if redis_client else None
        self._local = _LocalLedger()
        # The wall clock (UTC periods, reservation expiry); tests set it to cross a period.
        self.clock = clock

    @property
    def shared(self) -> bool:
        return self._redis is not None

    def _keys(self, counters: Sequence[Counter]) -> list[str]:
        return [key for counter in counters for key in (counter.key, counter.key + ":held")]

    def _ttl_ms(self, counter: Counter, now: float) -> int:
        return max(1000, int((counter.ends_at + COUNTER_GRACE - now) * 1000))

    async def reserve(self, reservation: Reservation, hold_for: float) -> None:
        """Hold the reservation's amounts on all its counters, or raise BudgetExceeded
        naming the first counter without room (nothing is then held)."""
        now = self.clock()
        if self._reserve_script is None:
            self._local.reserve(reservation, now, now + hold_for)
            return
        args: list[Any] = [int(now * 1000), int((now + hold_for) * 1000), reservation.id]
        for counter, amount in zip(reservation.counters, reservation.amounts, strict=True):
            args += [counter.limit, amount, self._ttl_ms(counter, now)]
        try:
            answer = await self._reserve_script(keys=self._keys(reservation.counters), args=args)
        except Exception as exc:
            log.warning("budget ledger: Redis failed (%s); refusing the call", type(exc).__name__)
            raise ledger_unavailable() from None
        if not int(answer[0]):
            index, spent, held = (int(value) for value in answer[1:4])
            raise BudgetExceeded(
                reservation.counters[index - 1], spent + held, reservation.amounts[index - 1]
            )

    async def settle(self, reservation: Reservation, actual: Sequence[int]) -> list[Settled]:
        """Replace the reservation by the actual amounts (per counter, in its unit)."""
        now = self.clock()
        if self._settle_script is None:
            after = self._local.settle(reservation, actual, now)
        else:
            args: list[Any] = [reservation.id]
            for counter, amount in zip(reservation.counters, actual, strict=True):
                args += [amount, self._ttl_ms(counter, now)]
            try:
                answer = await self._settle_script(keys=self._keys(reservation.counters), args=args)
            except Exception as exc:
                # The reservation expires by itself; the call's actual cost is not counted.
                log.warning(
                    "budget ledger: Redis failed settling a call (%s); its cost is not counted",
                    type(exc).__name__,
                )
                return []
            after = [int(value) for value in answer]
        return [
            Settled(counter, spent - amount, spent)
            for counter, amount, spent in zip(reservation.counters, actual, after, strict=True)
        ]

    async def spent(self, counter: Counter) -> tuple[int, int]:
        """A counter's (spent, held) now: for tests and operators' tools."""
        if self._redis is None:
            state = self._local._counter(counter, self.clock())
            state.drop_expired(self.clock())
            return state.spent, state.held
        values = await self._redis.hmget(counter.key, ["spent", "held"])
        return int(values[0] or 0), int(values[1] or 0)
