"""Bulkheads: a cap on calls in flight per key, a bounded queue behind it, FIFO hand-off."""

from __future__ import annotations

import asyncio

import pytest

from integration_hub.policy.bulkhead import Bulkheads, Overloaded

pytestmark = pytest.mark.timeout(10)
KEY = "acme/main"


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_max_in_flight_and_no_queue_means_refused_at_once() -> None:
    bulkheads = Bulkheads()
    first = await bulkheads.acquire(KEY, 2, 0)
    second = await bulkheads.acquire(KEY, 2, 0)
    assert bulkheads.in_flight(KEY) == 2
    with pytest.raises(Overloaded, match="2 calls in flight"):
        await bulkheads.acquire(KEY, 2, 0)
    # Other keys are other compartments.
    other = await bulkheads.acquire("acme/other", 2, 0)
    first()
    assert bulkheads.in_flight(KEY) == 1
    third = await bulkheads.acquire(KEY, 2, 0)
    for release in (second, third, other):
        release()
    assert bulkheads.in_flight(KEY) == 0


async def test_the_queue_is_bounded_and_waiters_are_woken_in_order() -> None:
    bulkheads = Bulkheads()
    held = await bulkheads.acquire(KEY, 1, 2)
    order: list[str] = []

    async def wait_then_run(name: str) -> None:
        async with bulkheads.slot(KEY, 1, 2):
            order.append(name)
            await asyncio.sleep(0.01)

    waiters = [asyncio.create_task(wait_then_run(name)) for name in ("a", "b")]
    await settle()
    assert bulkheads.waiting(KEY) == 2
    with pytest.raises(Overloaded, match="2 waiting"):
        await bulkheads.acquire(KEY, 1, 2)  # no room to wait: back-pressure, not a longer queue
    held()
    async with asyncio.timeout(2):
        await asyncio.gather(*waiters)
    assert order == ["a", "b"]
    assert (bulkheads.in_flight(KEY), bulkheads.waiting(KEY)) == (0, 0)


async def test_a_new_arrival_does_not_overtake_the_queue() -> None:
    bulkheads = Bulkheads()
    held = await bulkheads.acquire(KEY, 1, 5)
    waiter = asyncio.create_task(bulkheads.acquire(KEY, 1, 5))
    await settle()
    held()  # the slot goes to the waiter, not to whoever asks next
    late = asyncio.create_task(bulkheads.acquire(KEY, 1, 5))
    await settle()
    assert waiter.done()
    assert not late.done()
    waiter.result()()
    async with asyncio.timeout(2):
        (await late)()
    assert bulkheads.in_flight(KEY) == 0


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    bulkheads = Bulkheads()
    held = await bulkheads.acquire(KEY, 1, 5)
    first = asyncio.create_task(bulkheads.acquire(KEY, 1, 5))
    second = asyncio.create_task(bulkheads.acquire(KEY, 1, 5))
    await settle()
    held()  # hands the slot to `first` ...
    first.cancel()  # ... which gives up before it runs again
    async with asyncio.timeout(2):
        release = await second  # the slot was not lost with it
    with pytest.raises(asyncio.CancelledError):
        await first
    assert bulkheads.in_flight(KEY) == 1
    release()
    assert (bulkheads.in_flight(KEY), bulkheads.waiting(KEY)) == (0, 0)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    bulkheads = Bulkheads()
    held = await bulkheads.acquire(KEY, 1, 1)
    waiter = asyncio.create_task(bulkheads.acquire(KEY, 1, 1))
    await settle()
    assert bulkheads.waiting(KEY) == 1
    waiter.cancel()
    await settle()
    assert bulkheads.waiting(KEY) == 0
    queued = asyncio.create_task(bulkheads.acquire(KEY, 1, 1))  # its place in the queue is free again
    await settle()
    held()
    async with asyncio.timeout(2):
        (await queued)()
    assert bulkheads.in_flight(KEY) == 0


async def test_release_counts_once_and_a_raised_limit_admits_the_waiters() -> None:
    bulkheads = Bulkheads()
    release = await bulkheads.acquire(KEY, 1, 5)
    waiters = [asyncio.create_task(bulkheads.acquire(KEY, 1, 5)) for _ in range(2)]
    await settle()
    # The policy file now allows 4: the next arrival lets the queue in first, then itself.
    newcomer = asyncio.create_task(bulkheads.acquire(KEY, 4, 5))
    await settle()
    assert all(w.done() for w in waiters)
    assert newcomer.done()
    assert bulkheads.in_flight(KEY) == 4
    release()
    release()  # a second call is a no-op, never a slot too many
    assert bulkheads.in_flight(KEY) == 3
    for task in (*waiters, newcomer):
        task.result()()
    assert bulkheads.in_flight(KEY) == 0


async def test_the_slot_context_manager_releases_on_error() -> None:
    bulkheads = Bulkheads()
    with pytest.raises(RuntimeError):
        async with bulkheads.slot(KEY, 1, 0):
            raise RuntimeError("the call failed")
    assert bulkheads.in_flight(KEY) == 0
