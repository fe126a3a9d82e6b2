"""Rate limits in requests and tokens per minute, per tenant and per credential.

A sliding-window counter (the current minute's count plus the previous minute's,
weighted by how much of it still overlaps the last 60 s): smooth at window edges,
two integers per key. With Redis the counters are shared by every replica and
updated atomically by one Lua script using Redis's own clock (so replicas with
skewed clocks agree); without Redis they live in this process.

Requests are checked and counted before the call. Tokens are known only after it:
the call is refused while the window is already over its token limit, and its
actual tokens are added when it ends.

If Redis fails, limits fail open (the call proceeds, a warning is logged): losing
the limiter must not take every provider call down with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("integration_hub.policy")
WINDOW_MS = 60_000

# KEYS[1]: the counter's base key. ARGV: limit, cost, check_only (1: refuse if the
# window is already full, add nothing). Returns {1} when allowed, else {0, previous,
# current, elapsed_ms}: the state the refusal was decided on, from which the caller
# works out when it would pass (the same code as without Redis: _retry_after_ms).
_SLIDING_WINDOW_LUA = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = math.floor(now_ms / 60000)
local elapsed = now_ms - window * 60000
local current_key = KEYS[1] .. ':' .. window
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (window - 1)) or '0')
local current = tonumber(redis.call('GET', current_key) or '0')
local limit, cost, check_only = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local estimated = previous * (60000 - elapsed) / 60000 + current
if (check_only == 1 and estimated >= limit) or (check_only == 0 and estimated + cost > limit) then
  return {0, previous, current, elapsed}
end
if check_only == 0 and cost > 0 then
  redis.call('INCRBY', current_key, cost)
  redis.call('PEXPIRE', current_key, 120000)
end
return {1}
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0


def _allows(previous: int, current: int, elapsed: int, limit: int, cost: int, check_only: bool) -> bool:
    estimated = previous * (WINDOW_MS - elapsed) / WINDOW_MS + current
    return estimated < limit if check_only else estimated + cost <= limit


def _retry_after_ms(
    previous: int, current: int, elapsed: int, limit: int, cost: int, check_only: bool
) -> int:
    """How long until the refused request would pass, if nothing else were counted meanwhile.

    Not "until this minute ends": the sliding estimate still weighs this minute's count
    in full when the next one starts, so a client told that would be refused again.
    Without new traffic the estimate only falls (continuously, across the window edge,
    to zero within two windows), so the first passing millisecond is found by bisection.
    """

    def passes_after(wait: int) -> bool:
        at = elapsed + wait
        if at < WINDOW_MS:
            return _allows(previous, current, at, limit, cost, check_only)
        if at < 2 * WINDOW_MS:
            return _allows(current, 0, at - WINDOW_MS, limit, cost, check_only)
        return _allows(0, 0, 0, limit, cost, check_only)

    low, high = 0, 2 * WINDOW_MS - elapsed
    if not passes_after(high):
        return WINDOW_MS  # more than the whole limit at once: never; a minute is as good a hint as any
    while low < high:
        middle = (low + high) // 2
        if passes_after(middle):
            high = middle
        else:
            low = middle + 1
    return max(low, 1)


class _LocalWindows:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._clock = clock

    def apply(self, key: str, limit: int, cost: int, check_only: bool) -> Verdict:
        now_ms = int(self._clock() * 1000)
        window, elapsed = divmod(now_ms, WINDOW_MS)
        previous = self._counts.get((key, window - 1), 0)
        current = self._counts.get((key, window), 0)
        if not _allows(previous, current, elapsed, limit, cost, check_only):
            wait = _retry_after_ms(previous, current, elapsed, limit, cost, check_only)
            return Verdict(False, wait / 1000)
        if not check_only and cost:
            self._counts[(key, window)] = current + cost
            self._forget_before(window - 1)
        return Verdict(True)

    def _forget_before(self, window: int) -> None:
        if len(self._counts) > 10_000:
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}


class RateLimiter:
    def __init__(self, redis_client: Any | None = None, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis_client
        self._script = redis_client.register_script(_SLIDING_WINDOW_LUA) if redis_client is not None else None
        self._local = _LocalWindows(clock)

    @property
    def shared(self) -> bool:
        return self._redis is not None

    @property
    def client(self) -> Any | None:
        """The Redis client (None: in-process); the budget ledger shares it."""
        return self._redis

    async def _apply(self, key: str, limit: int, cost: int, check_only: bool) -> Verdict:
        if self._script is None:
            return self._local.apply(key, limit, cost, check_only)
        try:
            answer = await self._script(
                keys=[f"integration-hub:rl:{key}"], args=[limit, cost, int(check_only)]
            )
        except Exception as exc:
            log.warning("rate limiter: Redis failed (%s); allowing the call", type(exc).__name__)
            return Verdict(True)
        if int(answer[0]):
            return Verdict(True)
        previous, current, elapsed = (int(value) for value in answer[1:4])
        return Verdict(False, _retry_after_ms(previous, current, elapsed, limit, cost, check_only) / 1000)

    async def take_request(self, key: str, limit: int) -> Verdict:
        """Count one request against `key`, unless that would pass `limit` per minute."""
        return await self._apply(f"req:{key}", limit, 1, check_only=False)

    async def tokens_available(self, key: str, limit: int) -> Verdict:
        """Whether `key`'s token window still has room (nothing is counted)."""
        return await self._apply(f"tok:{key}", limit, 0, check_only=True)

    async def add_tokens(self, key: str, tokens: int) -> None:
        if tokens > 0:
            # Counted unconditionally: the tokens were spent whatever the limit says now.
            await self._apply(f"tok:{key}", 2**62, tokens, check_only=False)
