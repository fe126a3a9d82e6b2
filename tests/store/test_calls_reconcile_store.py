"""CallStore, on both backends: what reconciliation needs. Silent calls are leased to one
worker at a time (also to concurrent claimers), a call's provider id is adopted once, a
call is found by its provider id, and a call the provider never had is failed only while
nothing else came of it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from callers.types import CallStatus
from integration_hub.store.base import Store
from integration_hub.store.calls import CallPlaced
from tests.store.test_calls_store import T0, call, event

LEASE = timedelta(seconds=300)


async def test_silent_calls_are_leased_once_until_the_lease_runs_out(store: Store) -> None:
    await store.insert_call(call("quiet", at=T0))
    await store.insert_call(call("recent", at=T0 + timedelta(minutes=9)))
    await store.insert_call(call("ended", at=T0, status="completed", status_rank=3))
    await store.insert_call(call("unplaced", at=T0))  # no provider id: found by its numbers
    await store.mark_call_placed("quiet", CallPlaced("CA1", "queued", None, None, T0))
    now = T0 + timedelta(minutes=10)
    silent_before = now - timedelta(minutes=5)

    async def claim(at: datetime = now) -> list[str]:
        rows = await store.claim_silent_calls(
            now=at, silent_before=silent_before, lease_until=at + LEASE, limit=10
        )
        return sorted(r.id for r in rows)

    assert await claim() == ["quiet", "unplaced"]
    assert await claim() == []  # leased
    assert await claim(now + LEASE + timedelta(seconds=1)) == ["quiet", "unplaced"]


async def test_concurrent_claimers_take_different_calls(store: Store) -> None:
    for i in range(20):
        await store.insert_call(call(f"c{i:02d}", at=T0))
    now = T0 + timedelta(hours=1)
    batches = await asyncio.gather(
        *(
            store.claim_silent_calls(now=now, silent_before=now, lease_until=now + LEASE, limit=5)
            for _ in range(4)
        )
    )
    taken = [r.id for batch in batches for r in batch]
    assert len(taken) == len(set(taken)) == 20


async def test_a_provider_id_is_adopted_once_and_finds_its_call(store: Store) -> None:
    await store.insert_call(call("lost-answer"))
    assert await store.call_by_provider_id("twilio", "CA9") is None
    assert await store.adopt_provider_call_id("lost-answer", "CA9")
    assert not await store.adopt_provider_call_id("lost-answer", "CA-other")  # has one already
    await store.insert_call(call("another"))
    assert not await store.adopt_provider_call_id("another", "CA9")  # another call has it
    row = await store.call_by_provider_id("twilio", "CA9")
    assert row is not None
    assert (row.id, row.provider_call_id) == ("lost-answer", "CA9")
    assert await store.call_by_provider_id("vonage", "CA9") is None


async def test_only_a_call_nothing_came_of_is_failed_as_unplaced(store: Store) -> None:
    await store.insert_call(call("never"))
    await store.insert_call(call("evented"))
    await store.insert_call(call("placed"))
    await store.add_call_event(event("evented", CallStatus.RINGING, "e1"))
    await store.mark_call_placed("placed", CallPlaced("CA1", "queued", None, None, T0))
    at = T0 + timedelta(minutes=1)
    assert await store.fail_unplaced_call("never", "never reached the provider: x", at)
    assert not await store.fail_unplaced_call("never", "again", at)  # ended already
    assert not await store.fail_unplaced_call("evented", "x", at)
    assert not await store.fail_unplaced_call("placed", "x", at)
    never = await store.get_call("t1", "never")
    assert never is not None
    assert (never.status, never.status_rank, never.error) == ("failed", 3, "never reached the provider: x")
    evented = await store.get_call("t1", "evented")
    assert evented is not None
    assert evented.status == "ringing"
