"""CampaignStore contract, on both backends: rows claimed once (also by concurrent
claimers), slots reserved at the credential's rate, live calls bounded per credential,
lease expiry giving the attempt back, outcomes (retry, done, lost and stale calls),
state changes and counts."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callers.types import CallStatus
from integration_hub.store import PostgresStore, SqliteStore
from integration_hub.store.base import Store
from integration_hub.store.calls import CallEventRow, CallPlaced, CallRow
from integration_hub.store.campaigns import (
    NEVER_PLACED,
    CampaignRow,
    Claim,
    ClaimRequest,
    NewNumber,
    OutcomeRules,
    RetryRule,
)

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=10)


def campaign(
    campaign_id: str = "camp-1", *, tenant: str = "t1", credential: str = "cred-1", **kw: object
) -> CampaignRow:
    row = CampaignRow(
        id=campaign_id,
        tenant_id=tenant,
        credential_id=credential,
        from_number="+14155550100",
        action={"kind": "say", "text": "Hello {name}"},
        state="running",
        calls_per_second=10.0,
        max_concurrent_calls=100,
        total_rows=0,
        created_at=T0,
        updated_at=T0,
        name="december",
    )
    return replace(row, **kw)  # type: ignore[arg-type]


def numbers(count: int) -> list[NewNumber]:
    return [NewNumber(f"+1415555{i:04d}", {"name": f"n{i}"}) for i in range(count)]


async def create(store: Store, count: int, campaign_id: str = "camp-1", **kw: Any) -> CampaignRow:
    row = campaign(campaign_id, total_rows=count, **kw)
    await store.insert_campaign(row, numbers(count))
    return row


def claim_request(
    row: CampaignRow, now: datetime = T0, *, worker: str = "w1", horizon: float = 1.0, limit: int = 200
) -> ClaimRequest:
    return ClaimRequest(
        campaign_id=row.id,
        credential_id=row.credential_id,
        worker_id=worker,
        now=now,
        horizon=now + timedelta(seconds=horizon),
        lease_until=now + LEASE,
        calls_per_second=row.calls_per_second,
        max_concurrent_calls=row.max_concurrent_calls,
        limit=limit,
    )


def rules(row: CampaignRow, now: datetime, *, lost_after: float = 60.0) -> OutcomeRules:
    return OutcomeRules(
        campaign_id=row.id, now=now, retry=row.retry, lost_before=now - timedelta(seconds=lost_after)
    )


def call_of(claim: Claim, *, at: datetime = T0, tenant: str = "t1") -> CallRow:
    return CallRow(
        id=f"call-{claim.row_index}-{claim.attempt}",
        tenant_id=tenant,
        credential_id="cred-1",
        provider="twilio",
        to_number=claim.to_number,
        from_number="+14155550100",
        status=CallStatus.QUEUED.value,
        status_rank=0,
        token_hash="ab" * 32,
        created_at=at,
        updated_at=at,
        idempotency_key=f"campaign:{claim.campaign_id}:{claim.row_index}:{claim.attempt}",
        campaign_id=claim.campaign_id,
        campaign_row=claim.row_index,
        attempt=claim.attempt,
    )


async def end_call(store: Store, call: CallRow, status: CallStatus, at: datetime = T0) -> None:
    await store.add_call_event(
        CallEventRow(
            call_id=call.id,
            tenant_id=call.tenant_id,
            campaign_id=call.campaign_id,
            event_id=f"{call.id}:{status.value}",
            received_at=at,
            status=status.value,
            status_rank=status.rank,
            provider_status=status.value,
        )
    )


async def placed(store: Store, claim: Claim, status: CallStatus | None = None) -> CallRow:
    """The claim's call stored and accepted by the provider; ended with `status` if given."""
    call = await store.insert_call(call_of(claim))
    await store.mark_call_placed(call.id, CallPlaced(f"CA{call.id}", "queued", None, None, T0))
    if status is not None:
        await end_call(store, call, status)
    return call


async def test_a_campaign_and_its_rows(store: Store) -> None:
    row = await create(store, 3, retry=RetryRule(("busy",), 2, 1500))
    assert await store.get_campaign("t1", "camp-1") == row
    assert await store.get_campaign("t2", "camp-1") is None
    assert await store.campaign_state("camp-1") == "running"
    counts = await store.campaign_counts("camp-1")
    assert (counts.pending, counts.calling, counts.done) == (3, 0, 0)
    rows = await store.list_campaign_rows("camp-1")
    assert [(r.row_index, r.to_number, dict(r.variables), r.state, r.attempts) for r in rows] == [
        (0, "+14155550000", {"name": "n0"}, "pending", 0),
        (1, "+14155550001", {"name": "n1"}, "pending", 0),
        (2, "+14155550002", {"name": "n2"}, "pending", 0),
    ]
    assert [r.row_index for r in await store.list_campaign_rows("camp-1", after_row=0, limit=1)] == [1]
    assert [c.id for c in await store.active_campaigns()] == ["camp-1"]


async def test_a_large_campaign_goes_in_at_once(store: Store) -> None:
    await create(store, 12_345)
    counts = await store.campaign_counts("camp-1")
    assert counts.pending == 12_345
    last = await store.list_campaign_rows("camp-1", after_row=12_343)
    assert [(r.row_index, r.to_number) for r in last] == [(12_344, "+141555512344")]


async def test_claims_reserve_slots_at_the_rate_and_take_each_row_once(store: Store) -> None:
    row = await create(store, 30)  # 10 calls per second
    first = await store.claim_campaign_rows(claim_request(row, horizon=1.0))
    assert [c.row_index for c in first] == list(range(10))
    assert all(c.attempt == 1 for c in first)
    assert [c.slot_at for c in first] == [T0 + timedelta(seconds=k / 10) for k in range(10)]
    # Claimed again at once: the slots of the first second are taken, none is left before the horizon.
    assert await store.claim_campaign_rows(claim_request(row, horizon=1.0)) == []
    # Half a second on, the next half second's slots follow the last one exactly.
    later = await store.claim_campaign_rows(claim_request(row, T0 + timedelta(seconds=0.5), horizon=1.0))
    assert [c.row_index for c in later] == list(range(10, 15))
    assert [c.slot_at for c in later] == [T0 + timedelta(seconds=1 + k / 10) for k in range(5)]
    rows = {r.row_index: r for r in await store.list_campaign_rows("camp-1")}
    assert rows[0].state == "calling"
    assert rows[0].claimed_by == "w1"
    assert rows[0].claimed_until == T0 + LEASE
    assert rows[14].state == "calling"
    assert rows[15].state == "pending"
    # After an idle minute the next slot is now: no burst to make up for lost time.
    idle = T0 + timedelta(seconds=60)
    resumed = await store.claim_campaign_rows(claim_request(row, idle, horizon=0.25))
    assert [c.slot_at for c in resumed] == [idle + timedelta(seconds=k / 10) for k in range(3)]


async def test_the_rate_and_live_calls_are_the_credentials_across_campaigns(store: Store) -> None:
    a = await create(store, 20, "camp-a", max_concurrent_calls=6)
    b = await create(store, 20, "camp-b", max_concurrent_calls=6)
    c = await create(store, 20, "camp-c", credential="cred-2")
    from_a = await store.claim_campaign_rows(claim_request(a, horizon=0.4))
    from_b = await store.claim_campaign_rows(claim_request(b, horizon=0.6))
    # One pacing for the credential: b's slots follow a's.
    assert [s.slot_at for s in from_a + from_b] == [T0 + timedelta(seconds=k / 10) for k in range(6)]
    # Six live on cred-1: neither campaign may start another.
    assert await store.claim_campaign_rows(claim_request(a, T0 + timedelta(seconds=1))) == []
    assert await store.claim_campaign_rows(claim_request(b, T0 + timedelta(seconds=1))) == []
    # Another credential has its own.
    assert len(await store.claim_campaign_rows(claim_request(c, horizon=0.3))) == 3
    # One call of a's ends: one more may start (on whichever campaign claims first).
    await placed(store, from_a[0], CallStatus.COMPLETED)
    await store.apply_campaign_outcomes(rules(a, T0 + timedelta(seconds=1)))
    again = await store.claim_campaign_rows(claim_request(b, T0 + timedelta(seconds=1)))
    assert len(again) == 1


async def test_only_running_campaigns_are_claimed(store: Store) -> None:
    row = await create(store, 5)
    await store.set_campaign_state("t1", "camp-1", "paused", from_states=["running"], now=T0)
    assert await store.claim_campaign_rows(claim_request(row)) == []
    await store.set_campaign_state("t1", "camp-1", "running", from_states=["paused"], now=T0)
    assert len(await store.claim_campaign_rows(claim_request(row, horizon=0.2))) == 2


async def test_concurrent_claimers_never_get_the_same_row(store: Store, tmp_path: Path) -> None:
    row = await create(store, 300, calls_per_second=100.0, max_concurrent_calls=1000)
    # Another connection (pool) to the same database, as another worker has.
    if isinstance(store, PostgresStore):
        other: Store = PostgresStore(store._url, max_size=4)
    else:
        assert isinstance(store, SqliteStore)
        other = SqliteStore(store._path)
    await other.connect()
    try:
        claimed: list[Claim] = []
        for step in range(30):
            now = T0 + timedelta(seconds=step * 0.1)
            batches = await asyncio.gather(
                *(
                    s.claim_campaign_rows(claim_request(row, now, worker=f"w{i}", horizon=0.15))
                    for i, s in enumerate([store, other, store, other])
                )
            )
            claimed += [c for batch in batches for c in batch]
    finally:
        await other.close()
    indexes = [c.row_index for c in claimed]
    assert len(indexes) == len(set(indexes)) == 300
    slots = sorted(c.slot_at for c in claimed)
    # Exactly 1 / 100 s apart, whichever worker reserved them.
    gaps = {round((b - a).total_seconds(), 6) for a, b in itertools.pairwise(slots)}
    assert gaps == {0.01}


async def test_an_expired_claim_without_a_call_is_claimed_again_for_the_same_attempt(store: Store) -> None:
    row = await create(store, 2)
    first = await store.claim_campaign_rows(claim_request(row, horizon=0.2))
    assert [(c.row_index, c.attempt) for c in first] == [(0, 1), (1, 1)]
    await placed(store, first[1])  # row 1's call was stored; row 0's worker died before it
    # Within the lease nothing moves.
    assert await store.apply_campaign_outcomes(rules(row, T0 + timedelta(seconds=5))) == (0, True)
    after = T0 + LEASE + timedelta(seconds=1)
    moved, still_open = await store.apply_campaign_outcomes(rules(row, after))
    assert (moved, still_open) == (1, True)
    rows = await store.list_campaign_rows("camp-1")
    assert (rows[0].state, rows[0].attempts, rows[0].claimed_by) == ("pending", 0, None)
    assert (rows[1].state, rows[1].attempts) == ("calling", 1)
    again = await store.claim_campaign_rows(claim_request(row, after, worker="w2"))
    assert [(c.row_index, c.attempt) for c in again] == [(0, 1)]  # the same attempt: the same key


async def test_release_and_fail_a_claim(store: Store) -> None:
    row = await create(store, 3)
    claims = await store.claim_campaign_rows(claim_request(row, horizon=0.3))
    assert not await store.release_campaign_claim("camp-1", 0, 1, "someone-else", T0)
    assert await store.release_campaign_claim("camp-1", 0, 1, "w1", T0)
    assert await store.fail_campaign_claim("camp-1", 1, 1, "credential 'x' is gone", T0)
    await placed(store, claims[2])
    assert not await store.release_campaign_claim("camp-1", 2, 1, "w1", T0)  # its call exists
    assert not await store.fail_campaign_claim("camp-1", 2, 1, "x", T0)
    rows = await store.list_campaign_rows("camp-1")
    assert [(r.state, r.attempts, r.outcome, r.error) for r in rows] == [
        ("pending", 0, "", ""),
        ("done", 1, "failed", "credential 'x' is gone"),
        ("calling", 1, "", ""),
    ]
    await store.set_campaign_state("t1", "camp-1", "canceled", from_states=["running"], now=T0)
    claim = await store.claim_campaign_rows(claim_request(row))
    assert claim == []
    rows = await store.list_campaign_rows("camp-1")
    assert rows[0].state == "canceled"


async def test_outcomes_retry_finish_and_complete_the_campaign(store: Store) -> None:
    row = await create(store, 3, retry=RetryRule(("busy", "no-answer"), 2, 30_000))
    claims = await store.claim_campaign_rows(claim_request(row, horizon=0.3))
    await placed(store, claims[0], CallStatus.COMPLETED)
    await placed(store, claims[1], CallStatus.BUSY)
    await placed(store, claims[2], CallStatus.FAILED)
    now = T0 + timedelta(seconds=1)
    assert await store.apply_campaign_outcomes(rules(row, now)) == (3, True)
    rows = await store.list_campaign_rows("camp-1")
    assert [(r.state, r.outcome, r.attempts, r.last_call_id) for r in rows] == [
        ("done", "completed", 1, "call-0-1"),
        ("pending", "", 1, "call-1-1"),
        ("done", "failed", 1, "call-2-1"),
    ]
    assert rows[1].next_attempt_at == now + timedelta(seconds=30)
    # Not due yet; then due: the second attempt.
    assert await store.claim_campaign_rows(claim_request(row, now + timedelta(seconds=10))) == []
    due = now + timedelta(seconds=31)
    retry = await store.claim_campaign_rows(claim_request(row, due))
    assert [(c.row_index, c.attempt) for c in retry] == [(1, 2)]
    await placed(store, retry[0], CallStatus.BUSY)
    assert await store.apply_campaign_outcomes(rules(row, due)) == (1, False)
    counts = await store.campaign_counts("camp-1")
    assert (counts.completed, counts.busy, counts.failed, counts.pending, counts.calling) == (1, 1, 1, 0, 0)
    assert await store.complete_campaign("camp-1", due)
    assert not await store.complete_campaign("camp-1", due)
    done = await store.get_campaign("t1", "camp-1")
    assert done is not None
    assert done.state == "completed"
    assert await store.active_campaigns() == []


async def test_a_call_the_provider_never_had_is_placed_again(store: Store) -> None:
    row = await create(store, 2, retry=RetryRule((), 1, 0))
    claims = await store.claim_campaign_rows(claim_request(row, horizon=0.2))
    lost = await store.insert_call(call_of(claims[0]))  # stored, never sent, no event
    stale = await placed(store, claims[1])  # accepted, but its final event never came
    # Within the bound: waiting for their events, nothing to ask the provider about.
    soon = T0 + timedelta(seconds=30)
    assert (
        await store.claim_lost_campaign_calls(
            "camp-1", lost_before=soon - timedelta(seconds=60), now=soon, lease_until=soon + LEASE, limit=10
        )
        == []
    )
    assert await store.apply_campaign_outcomes(rules(row, soon)) == (0, True)
    # Past it: both are leased to the one worker that asks their provider first.
    later = T0 + timedelta(seconds=61)
    lost_before = later - timedelta(seconds=60)
    leased = await store.claim_lost_campaign_calls(
        "camp-1", lost_before=lost_before, now=later, lease_until=later + LEASE, limit=10
    )
    assert sorted(c.id for c in leased) == sorted([lost.id, stale.id])
    assert (
        await store.claim_lost_campaign_calls(
            "camp-1", lost_before=lost_before, now=later, lease_until=later + LEASE, limit=10
        )
        == []
    )
    # The provider has no call for `lost` (it never reached it); `stale` has a provider id.
    never = f"{NEVER_PLACED}: the provider has no such call"
    assert await store.fail_unplaced_call(lost.id, never, later)
    assert not await store.fail_unplaced_call(stale.id, never, later)
    assert await store.apply_campaign_outcomes(rules(row, later)) == (2, True)
    rows = await store.list_campaign_rows("camp-1")
    assert (rows[0].state, rows[0].attempts, rows[0].unplaced) == ("pending", 1, 1)
    assert (rows[1].state, rows[1].outcome) == ("done", "failed")
    assert "no final status" in rows[1].error
    gone = await store.get_call("t1", lost.id)
    assert gone is not None
    assert (gone.status, gone.error) == ("failed", never)
    still = await store.get_call("t1", stale.id)
    assert still is not None
    assert still.status == "queued"
    # The new attempt does not count against max_attempts = 1.
    again = await store.claim_campaign_rows(claim_request(row, later))
    assert [(c.row_index, c.attempt) for c in again] == [(0, 2)]
    await placed(store, again[0], CallStatus.COMPLETED)
    await store.apply_campaign_outcomes(rules(row, later))
    rows = await store.list_campaign_rows("camp-1")
    assert (rows[0].state, rows[0].outcome, rows[0].attempts, rows[0].unplaced) == ("done", "completed", 2, 1)


async def test_a_call_of_unknown_outcome_is_never_placed_again(store: Store) -> None:
    row = await create(store, 1, retry=RetryRule(("failed",), 3, 0))
    (claim,) = await store.claim_campaign_rows(claim_request(row, horizon=0.1))
    call = await store.insert_call(call_of(claim))  # no provider id, no event, provider not asked
    later = T0 + timedelta(seconds=61)
    waiting = replace(rules(row, later), give_up_before=later - timedelta(seconds=120))
    # Past its longest life, but the provider could not yet say whether it placed it.
    assert await store.apply_campaign_outcomes(waiting) == (0, True)
    much_later = T0 + timedelta(seconds=200)
    given_up = replace(rules(row, much_later), give_up_before=much_later - timedelta(seconds=120))
    assert await store.apply_campaign_outcomes(given_up) == (1, False)
    (number,) = await store.list_campaign_rows("camp-1")
    assert (number.state, number.outcome, number.attempts, number.unplaced) == ("done", "failed", 1, 0)
    assert "not placed again" in number.error
    # The call row is left as it is: it may be ringing.
    kept = await store.get_call("t1", call.id)
    assert kept is not None
    assert (kept.status, kept.error) == ("queued", "")


async def test_a_call_with_an_event_is_not_taken_for_lost(store: Store) -> None:
    row = await create(store, 1)
    (claim,) = await store.claim_campaign_rows(claim_request(row, horizon=0.1))
    call = await store.insert_call(call_of(claim))  # no provider id: its answer was lost ...
    await end_call(store, call, CallStatus.RINGING)  # ... but the provider's event came
    await store.apply_campaign_outcomes(rules(row, T0 + timedelta(seconds=61)))
    (number,) = await store.list_campaign_rows("camp-1")
    assert (number.state, number.outcome, number.unplaced) == ("done", "failed", 0)


async def test_pause_resume_cancel(store: Store) -> None:
    row = await create(store, 4)
    claims = await store.claim_campaign_rows(claim_request(row, horizon=0.2))
    live = await placed(store, claims[0])
    paused = await store.set_campaign_state("t1", "camp-1", "paused", from_states=["running"], now=T0)
    assert paused is not None
    assert paused.state == "paused"
    assert await store.set_campaign_state("t1", "camp-1", "paused", from_states=["running"], now=T0) is None
    assert await store.set_campaign_state("t2", "camp-1", "running", from_states=["paused"], now=T0) is None
    canceled = await store.set_campaign_state(
        "t1", "camp-1", "canceled", from_states=["running", "paused"], now=T0
    )
    assert canceled is not None
    counts = await store.campaign_counts("camp-1")
    assert (counts.pending, counts.calling, counts.canceled) == (0, 2, 2)
    # Still watched for its live calls' outcomes; a claim released now is canceled too.
    assert [c.id for c in await store.active_campaigns()] == ["camp-1"]
    assert await store.release_campaign_claim("camp-1", 1, 1, "w1", T0)
    await end_call(store, live, CallStatus.BUSY)
    moved, still_open = await store.apply_campaign_outcomes(rules(row, T0))
    assert (moved, still_open) == (1, False)
    counts = await store.campaign_counts("camp-1")
    assert (counts.busy, counts.canceled, counts.calling) == (1, 3, 0)
    assert await store.active_campaigns() == []
    assert not await store.complete_campaign("camp-1", T0)  # canceled stays canceled


async def test_a_busy_call_of_a_canceled_campaign_is_not_retried(store: Store) -> None:
    row = await create(store, 1, retry=RetryRule(("busy",), 3, 0))
    (claim,) = await store.claim_campaign_rows(claim_request(row, horizon=0.1))
    await placed(store, claim, CallStatus.BUSY)
    await store.set_campaign_state("t1", "camp-1", "canceled", from_states=["running"], now=T0)
    await store.apply_campaign_outcomes(rules(row, T0))
    (number,) = await store.list_campaign_rows("camp-1")
    assert (number.state, number.outcome) == ("done", "busy")
