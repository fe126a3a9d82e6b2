"""The called parties of a campaign test: every call the loopback FakeTwilio receives is
answered, after a while, with the status a test chooses, through the fake's signed status
callbacks (retried while the hub is down, as a provider retries a failed callback), and
what the provider saw is measured: calls per number, the rate, the live calls at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

import aiohttp

from callers.types import CallStatus
from tests.fakes.twilio_server import FakeCall, FakeTwilio

Outcome = Callable[[FakeCall, int], CallStatus]  # (the call, how many times its number was called)


def completed(call: FakeCall, nth: int) -> CallStatus:
    return CallStatus.COMPLETED


@dataclass
class Ended:
    sid: str
    to: str
    started: datetime  # when the fake created the call
    ended: datetime  # when its final callback was accepted by the hub
    status: CallStatus


@dataclass
class CalledParties:
    fake: FakeTwilio
    outcome: Outcome = completed
    duration: float = 0.0  # seconds from the call's creation to its final callback
    ended: list[Ended] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)  # callbacks the hub refused
    _seen: set[str] = field(default_factory=set)
    _per_number: Counter[str] = field(default_factory=Counter)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks = [t for t in [self._watcher, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            for sid, call in list(self.fake.calls.items()):
                if sid not in self._seen:
                    self._seen.add(sid)
                    self._per_number[call.to] += 1
                    task = asyncio.create_task(self._answer(call, self._per_number[call.to]))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.005)

    async def _answer(self, call: FakeCall, nth: int) -> None:
        await asyncio.sleep(max(0.0, self.duration - (datetime.now(UTC) - call.date_created).total_seconds()))
        status = self.outcome(call, nth)
        while True:
            try:
                answered = await self.fake.send_status(call.sid, status)
            except (aiohttp.ClientError, OSError, TimeoutError):
                answered = 0  # the hub is down: send again, as the provider would
            if answered == 200:
                self.ended.append(Ended(call.sid, call.to, call.date_created, datetime.now(UTC), status))
                return
            if answered not in (0, 502, 503):
                self.refused.append((call.sid, answered))
                return
            await asyncio.sleep(0.1)

    # --- what the provider saw -----------------------------------------------------

    def calls_per_number(self) -> Counter[str]:
        return Counter(call.to for call in self.fake.calls.values())

    def starts(self) -> list[datetime]:
        return sorted(call.date_created for call in self.fake.calls.values())

    def max_live(self) -> int:
        """The most calls live at once at the provider: from creation to the final callback
        (calls still live count as live until now)."""
        moments: list[tuple[datetime, int]] = []
        ended = {e.sid: e.ended for e in self.ended}
        for sid, call in self.fake.calls.items():
            moments.append((call.date_created, 1))
            moments.append((ended.get(sid, datetime.now(UTC)), -1))
        live = peak = 0
        for _, step in sorted(moments, key=lambda m: (m[0], m[1])):
            live += step
            peak = max(peak, live)
        return peak

    async def settled(self, count: int, timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.ended) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return len(self.ended) >= count


def rate(starts: list[datetime]) -> float:
    """Calls per second over the span of the given call starts."""
    span = (starts[-1] - starts[0]).total_seconds()
    return (len(starts) - 1) / span


def fitted_rate(starts: list[datetime]) -> float:
    """Calls per second as the least-squares slope of start time over call number: the
    schedule's rate, not thrown off by the jitter of the first and last call."""
    n = len(starts)
    xs = range(n)
    ys = [(s - starts[0]).total_seconds() for s in starts]
    mean_x, mean_y = (n - 1) / 2, sum(ys) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    return 1 / slope


def fastest(starts: list[datetime], window: int) -> float:
    """The highest rate over any `window` consecutive calls."""
    return max(window / (starts[i + window] - starts[i]).total_seconds() for i in range(len(starts) - window))
