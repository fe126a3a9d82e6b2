"""Bounded concurrency per credential, with back-pressure instead of unbounded queues.

At most `max_in_flight` calls per credential run at once in a worker; up to
`max_queued` more wait for a slot (within their own deadline); beyond that a call
is refused at once with RESOURCE_EXHAUSTED, so overload turns into fast, clear
errors rather than memory growth and timeouts for everyone.

A freed slot is handed to the longest waiter directly (FIFO), never put back for
whoever asks next: a new arrival cannot overtake the queue, and a waiter that is
cancelled after being handed a slot passes it on, so a slot is never lost while
someone waits. Releasing is synchronous, so a stream can hold its slot for its whole
life and give it back from wherever it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


class Overloaded(Exception):
    """No slot and no room to wait for one."""


@dataclass(slots=True)
class _Compartment:
    in_flight: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


Release = Callable[[], None]


class Bulkheads:
    def __init__(self) -> None:
        self._compartments: dict[str, _Compartment] = {}

    async def acquire(self, key: str, max_in_flight: int, max_queued: int) -> Release:
        """A slot of `key`'s compartment (waiting for one if there is room to wait); returns
        its release, which may be called any number of times (only the first counts)."""
        compartment = self._compartments.setdefault(key, _Compartment())
        # Room the waiters have not taken (the policy file raised max_in_flight) goes to them first.
        while compartment.waiters and compartment.in_flight < max_in_flight:
            compartment.in_flight += 1
            self._free(compartment)
        if compartment.in_flight < max_in_flight:
            compartment.in_flight += 1
        else:
            await self._wait(compartment, max_queued)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._free(compartment)

        return release

    async def _wait(self, compartment: _Compartment, max_queued: int) -> None:
        if len(compartment.waiters) >= max_queued:
            raise Overloaded(
                f"{compartment.in_flight} calls in flight and {len(compartment.waiters)} waiting"
            )
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        compartment.waiters.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._free(compartment)  # handed a slot just as we gave up: pass it on
            else:
                # Already dropped if a release skipped it (a cancelled waiter is done).
                with contextlib.suppress(ValueError):
                    compartment.waiters.remove(granted)
            raise

    def _free(self, compartment: _Compartment) -> None:
        while compartment.waiters:
            waiter = compartment.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter: in_flight is unchanged
                return
        compartment.in_flight -= 1

    @contextlib.asynccontextmanager
    async def slot(self, key: str, max_in_flight: int, max_queued: int) -> AsyncIterator[None]:
        release = await self.acquire(key, max_in_flight, max_queued)
        try:
            yield
        finally:
            release()

    def in_flight(self, key: str) -> int:
        compartment = self._compartments.get(key)
        return compartment.in_flight if compartment else 0

    def waiting(self, key: str) -> int:
        compartment = self._compartments.get(key)
        return len(compartment.waiters) if compartment else 0
