"""CallStore contract, on both backends: calls, idempotency, events applied once and
only forward, the tenant's event order, and paging."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from callers.types import CallStatus
from integration_hub.store.base import Store
from integration_hub.store.calls import CallEventRow, CallPlaced, CallQuery, CallRow

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def call(call_id: str, *, tenant: str = "t1", at: datetime = T0, **overrides: object) -> CallRow:
    row = CallRow(
        id=call_id,
        tenant_id=tenant,
        credential_id="cred-1",
        credential_name="phone",
        provider="twilio",
        to_number="+14155550100",
        from_number="+14155550199",
        status=CallStatus.QUEUED.value,
        status_rank=0,
        token_hash="ab" * 32,
        created_at=at,
        updated_at=at,
        action={"kind": "say", "text": "Hello {name}"},
        metadata={"order": "42"},
    )
    return replace(row, **overrides)  # type: ignore[arg-type]


def event(
    call_id: str, status: CallStatus | None, event_id: str, *, tenant: str = "t1", **kw: object
) -> CallEventRow:
    return CallEventRow(
        call_id=call_id,
        tenant_id=tenant,
        event_id=event_id,
        received_at=T0 + timedelta(seconds=1),
        status="" if status is None else status.value,
        status_rank=None if status is None else status.rank,
        provider_status="" if status is None else status.value,
        **kw,  # type: ignore[arg-type]
    )


async def test_insert_and_get_within_the_tenant_only(store: Store) -> None:
    row = call("call-1")
    assert await store.insert_call(row) == row
    assert await store.get_call("t1", "call-1") == row
    assert await store.get_call("t2", "call-1") is None
    assert await store.get_call_by_id("call-1") == row
    assert await store.get_call_by_id("nope") is None


async def test_an_idempotency_key_answers_the_first_call(store: Store) -> None:
    first = call("call-1", idempotency_key="k1")
    assert await store.insert_call(first) == first
    again = await store.insert_call(call("call-2", idempotency_key="k1"))
    assert again.id == "call-1"
    assert await store.get_call("t1", "call-2") is None
    # The same key in another tenant is another call.
    other = call("call-3", tenant="t2", idempotency_key="k1")
    assert (await store.insert_call(other)).id == "call-3"


async def test_placed_sets_the_provider_id_and_only_moves_forward(store: Store) -> None:
    await store.insert_call(call("call-1"))
    await store.add_call_event(event("call-1", CallStatus.RINGING, "e1"))  # the callback came first
    placed = CallPlaced("CA123", "queued", CallStatus.QUEUED.value, 0, T0 + timedelta(seconds=2))
    row = await store.mark_call_placed("call-1", placed)
    assert row.provider_call_id == "CA123"
    assert row.status == CallStatus.RINGING.value
    failed = await store.mark_call_failed("call-1", "21211: invalid number", T0)
    assert (failed.status, failed.status_rank, failed.error) == ("failed", 3, "21211: invalid number")


async def test_events_are_applied_once_and_never_backwards(store: Store) -> None:
    await store.insert_call(call("call-1"))
    stored, row = await store.add_call_event(event("call-1", CallStatus.IN_PROGRESS, "e-answered"))
    assert stored is not None
    assert stored.applied
    assert stored.sequence > 0
    assert row.status == CallStatus.IN_PROGRESS.value
    duplicate, row = await store.add_call_event(event("call-1", CallStatus.IN_PROGRESS, "e-answered"))
    assert duplicate is None
    assert row.status == CallStatus.IN_PROGRESS.value
    late, row = await store.add_call_event(event("call-1", CallStatus.RINGING, "e-ringing"))
    assert late is not None
    assert not late.applied
    assert row.status == CallStatus.IN_PROGRESS.value
    done, row = await store.add_call_event(
        event("call-1", CallStatus.COMPLETED, "e-done", duration_ms=42_000, answered_by="human")
    )
    assert done is not None
    assert done.applied
    assert done.sequence > late.sequence
    assert (row.status, row.duration_ms, row.answered_by) == ("completed", 42_000, "human")
    # A second terminal state does not replace the first.
    other, row = await store.add_call_event(event("call-1", CallStatus.FAILED, "e-failed"))
    assert other is not None
    assert not other.applied
    assert row.status == "completed"
    # An event that is no change of state is recorded, not applied.
    info, row = await store.add_call_event(event("call-1", None, "e-info", raw={"k": "v"}))
    assert info is not None
    assert not info.applied
    assert info.raw == {"k": "v"}


async def test_machine_detection_alone_sets_answered_by(store: Store) -> None:
    await store.insert_call(call("call-1"))
    await store.add_call_event(event("call-1", CallStatus.IN_PROGRESS, "answered"))
    amd, row = await store.add_call_event(event("call-1", None, "amd", answered_by="machine_start"))
    assert amd is not None
    assert not amd.applied
    assert (row.status, row.answered_by) == ("in-progress", "machine_start")


async def test_the_tenant_event_log_in_order_with_calls(store: Store) -> None:
    await store.insert_call(call("call-1"))
    await store.insert_call(call("call-2", campaign_id="camp-1", campaign_row=0))
    await store.insert_call(call("call-x", tenant="t2"))
    assert await store.last_call_event_sequence("t1") == 0
    await store.add_call_event(event("call-1", CallStatus.RINGING, "a"))
    await store.add_call_event(event("call-x", CallStatus.RINGING, "a", tenant="t2"))
    await store.add_call_event(event("call-2", CallStatus.RINGING, "a", campaign_id="camp-1"))
    await store.add_call_event(event("call-1", CallStatus.COMPLETED, "b"))
    log = await store.list_call_events("t1", 0)
    assert [(e.call_id, e.status) for e, _ in log] == [
        ("call-1", "ringing"),
        ("call-2", "ringing"),
        ("call-1", "completed"),
    ]
    sequences = [e.sequence for e, _ in log]
    assert sequences == sorted(sequences)
    assert log[0][1].status == "completed"  # each with its call as it is now
    after = await store.list_call_events("t1", sequences[0])
    assert [e.sequence for e, _ in after] == sequences[1:]
    campaign = await store.list_call_events("t1", 0, campaign_id="camp-1")
    assert [e.call_id for e, _ in campaign] == ["call-2"]
    assert await store.last_call_event_sequence("t1") == sequences[-1]


async def test_concurrent_events_of_one_call_apply_the_highest(store: Store) -> None:
    await store.insert_call(call("call-1"))
    statuses = [CallStatus.RINGING, CallStatus.IN_PROGRESS, CallStatus.COMPLETED] * 3
    results = await asyncio.gather(
        *(store.add_call_event(event("call-1", s, f"{s}-{i % 3}")) for i, s in enumerate(statuses))
    )
    stored = [e for e, _ in results if e is not None]
    assert len(stored) == 3  # each event id once
    row = await store.get_call("t1", "call-1")
    assert row is not None
    assert row.status == "completed"


async def test_list_calls_pages_newest_first_with_filters(store: Store) -> None:
    for i in range(7):
        status = CallStatus.COMPLETED if i % 2 else CallStatus.QUEUED
        await store.insert_call(
            call(
                f"call-{i}",
                at=T0 + timedelta(minutes=i),
                status=status.value,
                campaign_id="c" if i < 3 else None,
            )
        )
    page1 = await store.list_calls(CallQuery("t1", limit=3))
    assert [r.id for r in page1] == ["call-6", "call-5", "call-4"]
    last = page1[-1]
    page2 = await store.list_calls(CallQuery("t1", limit=3, after=(last.created_at, last.id)))
    assert [r.id for r in page2] == ["call-3", "call-2", "call-1"]
    done = await store.list_calls(CallQuery("t1", limit=10, status="completed"))
    assert [r.id for r in done] == ["call-5", "call-3", "call-1"]
    window = await store.list_calls(
        CallQuery(
            "t1", limit=10, created_after=T0 + timedelta(minutes=2), created_before=T0 + timedelta(minutes=4)
        )
    )
    assert [r.id for r in window] == ["call-3", "call-2"]
    assert [r.id for r in await store.list_calls(CallQuery("t1", limit=10, campaign_id="c"))] == [
        "call-2",
        "call-1",
        "call-0",
    ]
    assert await store.list_calls(CallQuery("t2", limit=10)) == []


@pytest.mark.parametrize("limit", [-1])
async def test_a_negative_limit_is_refused(store: Store, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_calls(CallQuery("t1", limit=limit))
