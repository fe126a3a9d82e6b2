"""Reconciliation: calls whose events were lost are asked about at their provider.

A provider's status callbacks can all be lost (the hub down for longer than the provider
retries, a proxy dropping them, a misconfigured console). Without them a call would stay
queued, ringing or in progress in the store forever, and a campaign row would wait for
its longest life to pass. So each worker runs one CallReconciler: every POLL_SECONDS it
takes from the store (claim_silent_calls) up to BATCH calls that have not ended and
have had no news for SILENCE_SECONDS, each leased to it for
RECHECK_SECONDS (a store-level lease: SKIP LOCKED on Postgres, the single writer on
SQLite), so that the workers of every replica share the calls and a call is asked about
at most once a RECHECK_SECONDS whatever the number of workers. For each it asks the
provider (the caller's get_call, through the policy engine like any provider call; at
most CONCURRENCY at a time, each bounded by ASK_TIMEOUT) and applies the answer through
the same path as a webhook's events (CallEvents.apply): stored once (the event id is
"reconcile:<status>"), and only when it moves the call forward, so a reconciliation that
races the late callback it stands in for changes nothing the callback would not.

A provider that has no such call (NotFound for the id it gave) is recorded as failed, with
that reason. Any other failure (the provider down, the credential deleted) leaves the call
as it is: its lease runs out and it is asked again RECHECK_SECONDS later.

A call with no provider id (its place answer was lost and no event ever came) cannot be
asked about by id. The provider's calls to the same number from the same number within
FIND_WINDOW of its creation (the caller's find_calls) that no other call of the hub has
are its candidates: the nearest in time is adopted (a provider call is one hub call's at
most, enforced by the store), then settled as any call; with none, the provider never
had it, and the call is failed NEVER_PLACED (which a campaign places again). Such calls
are settled one after the other, oldest first. campaigns.py asks the same about a
campaign's calls once their longest life has passed, before it moves their rows on.

An answered call sends no events while it lasts: a long call is asked about every
RECHECK_SECONDS, one GET each, until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from callers import errors as caller_errors
from callers import types as t
from integration_hub.errors import HubError
from integration_hub.ids import unique_id
from integration_hub.rpc import CallContext, Principal
from integration_hub.store.base import Store, StoreUnavailable
from integration_hub.store.calls import CallRow
from integration_hub.store.campaigns import NEVER_PLACED
from integration_hub.telephony.calls import TelephonyCalls
from integration_hub.telephony.events import CallEvents

log = logging.getLogger("integration_hub.telephony.reconcile")

SILENCE_SECONDS = 300.0  # no event for this long: ask the provider
RECHECK_SECONDS = 300.0  # a call is asked about at most this often (the lease)
POLL_SECONDS = 30.0  # between passes
BATCH = 100  # calls taken per pass
CONCURRENCY = 8  # provider requests at once
ASK_TIMEOUT = 10.0
RECONCILE_METHOD = "/integration_hub.v1.TelephonyService/GetCall"
NO_SUCH_CALL = "the provider has no record of this call"
# How far apart the hub's and the provider's creation times of one call may be: the
# place request's own time, the clocks' skew, and providers that keep only seconds.
FIND_WINDOW = timedelta(seconds=60)


def _context(row: CallRow) -> CallContext:
    # The audit trail names who opened the credential: the reconciler, for this provider.
    principal = Principal(
        tenant_id=row.tenant_id, token_id=f"reconcile:{row.provider}", scopes=frozenset({"invoke"})
    )
    return CallContext(principal, unique_id(), RECONCILE_METHOD)


def reconciled_event(state: t.CallState) -> t.CallEvent:
    """The provider's answer as an event of the call, as a webhook would have brought it."""
    return t.CallEvent(
        provider_call_id=state.provider_call_id,
        status=state.status,
        raw_status=state.raw_status,
        event_id=f"reconcile:{state.status.value}",
        occurred_at=datetime.now(UTC),
        duration_seconds=state.duration_seconds,
        answered_by=state.answered_by,
        raw={"source": "reconcile", "status": state.raw_status},
    )


def _missing_event(row: CallRow) -> t.CallEvent:
    return t.CallEvent(
        provider_call_id=row.provider_call_id,
        status=t.CallStatus.FAILED,
        raw_status="not-found",
        event_id="reconcile:not-found",
        occurred_at=datetime.now(UTC),
        error=NO_SUCH_CALL,
        raw={"source": "reconcile", "status": "not-found"},
    )


class CallReconciler:
    """One worker's share of reconciliation: start() once the store is connected, close()
    before it closes."""

    def __init__(
        self,
        store: Store,
        calls: TelephonyCalls,
        events: CallEvents,
        *,
        silence_seconds: float = SILENCE_SECONDS,
        recheck_seconds: float = RECHECK_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        batch: int = BATCH,
        ask_timeout: float = ASK_TIMEOUT,
    ) -> None:
        self._store = store
        self._calls = calls
        self._events = events
        self._silence = timedelta(seconds=silence_seconds)
        self._recheck = timedelta(seconds=recheck_seconds)
        self._poll = poll_seconds
        self._batch = batch
        self._ask_timeout = ask_timeout
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._forever(), name="call-reconcile")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forever(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except StoreUnavailable as exc:
                if not self._failing:
                    log.warning("call reconciliation paused: the store is unavailable (%s)", exc)
                self._failing = True
            except Exception:  # the loop must outlive anything one pass meets
                log.exception("call reconciliation pass failed")
            else:
                if self._failing:
                    log.info("call reconciliation resumed")
                self._failing = False
            await asyncio.sleep(self._poll)

    async def reconcile_once(self, now: datetime | None = None) -> int:
        """One pass: the silent calls this worker could lease, each asked about and settled;
        answers how many calls moved on. `now` is the pass's clock (tests move it on)."""
        now = now or datetime.now(UTC)
        rows = await self._store.claim_silent_calls(
            now=now, silent_before=now - self._silence, lease_until=now + self._recheck, limit=self._batch
        )
        if not rows:
            return 0
        count = await self.reconcile_calls(rows)
        log.info("reconciled %d silent call(s): %d moved on", len(rows), count)
        return count

    async def reconcile_calls(self, rows: list[CallRow]) -> int:
        """settle() each call (CONCURRENCY at a time); how many moved on. Calls with a
        provider id are asked about at once; those without one one after the other,
        oldest first, so that when two of them could be one provider call (the same
        numbers, close in time) the older takes it, and the other is then failed as
        never placed (a provider call is adopted by one call at most)."""
        known = [row for row in rows if row.provider_call_id]
        unplaced = sorted((row for row in rows if not row.provider_call_id), key=lambda r: r.created_at)

        async def one_by_one() -> int:
            return sum([await self.reconcile_call(row) for row in unplaced])

        moved = await asyncio.gather(one_by_one(), *(self.reconcile_call(row) for row in known))
        return sum(moved)

    async def reconcile_call(self, row: CallRow) -> bool:
        """settle(), at most CONCURRENCY at a time in this worker."""
        async with self._slots:
            return await self.settle(row)

    async def settle(self, row: CallRow) -> bool:
        """Ask the provider about one call and apply its answer; True when the call moved
        on. Never raises for the provider's or the policy's errors (logged: the call is
        asked about again when its lease runs out)."""
        try:
            if row.provider_call_id:
                return await self._settle_known(row)
            return await self._settle_unplaced(row)
        except (HubError, caller_errors.CallerError) as exc:
            log.warning(
                "call %s: could not ask %s about it (%s: %s)",
                row.id,
                row.provider,
                type(exc).__name__,
                exc.message,
            )
            return False

    async def _settle_known(self, row: CallRow) -> bool:
        try:
            state = await self._calls.provider_state(_context(row), row, self._ask_timeout)
        except caller_errors.NotFound:
            return await self._events.apply(row, [_missing_event(row)]) > 0
        if state.status.rank <= row.status_rank:
            return False  # nothing the call does not know
        return await self._events.apply(row, [reconciled_event(state)]) > 0

    async def _settle_unplaced(self, row: CallRow) -> bool:
        """A call with no provider id: its place answer was lost and no event came. The
        provider's calls to the same number from the same number around its creation
        that no other call of the hub has taken are its candidates: the nearest in time
        is adopted (then settled as any call); with none, the provider never had it."""
        found = await self._calls.provider_calls_like(_context(row), row, FIND_WINDOW, self._ask_timeout)
        candidates = []
        for state in found:
            if not state.provider_call_id:
                continue
            if await self._store.call_by_provider_id(row.provider, state.provider_call_id) is None:
                candidates.append(state)

        def distance(state: t.CallState) -> float:
            created = state.created_at or row.created_at
            return abs((created - row.created_at).total_seconds())

        for state in sorted(candidates, key=distance):
            # Atomic: a provider call is one hub call's at most (another may take it first).
            if await self._store.adopt_provider_call_id(row.id, state.provider_call_id):
                log.info(
                    "call %s: its place answer was lost; %s has it as %s",
                    row.id,
                    row.provider,
                    state.provider_call_id,
                )
                if state.status.rank <= row.status_rank:
                    return True  # it has its provider id now
                return await self._events.apply(row, [reconciled_event(state)]) > 0
        failed = await self._store.fail_unplaced_call(
            row.id, f"{NEVER_PLACED}: the provider has no such call", datetime.now(UTC)
        )
        if failed:
            log.info("call %s never reached %s: marked failed", row.id, row.provider)
        return failed
