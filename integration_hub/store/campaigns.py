"""What the store keeps of campaigns: the campaign, its rows (numbers), the per-credential
call pacing, and the protocol both backends implement (postgres_campaigns.py,
sqlite_campaigns.py, with the SQL they share in _campaigns_sql.py).

A row's states: pending (not called yet, or waiting for its retry) -> calling (claimed by
a worker; its call is being placed or is live) -> done (its last attempt ended; outcome
is the call's final status), or back to pending for a retry; pending -> canceled when the
campaign is canceled first.

The store makes the decisions that must be atomic with the state they read, so that every
worker (and replica) can run them at once and each row moves once:

- claim_campaign_rows: the credential's pacing row is locked (Postgres FOR UPDATE SKIP
  LOCKED: a worker finding it locked claims nothing this round; SQLite BEGIN IMMEDIATE),
  the live rows of every campaign on the credential are counted against the campaign's
  max_concurrent_calls, slots are reserved 1 / calls_per_second apart from the pacing
  row's next free slot (never earlier than now: no burst after an idle spell), and as
  many pending rows as there are slots before the horizon are marked calling with
  attempts + 1, all in one transaction, before any provider is called.
- apply_campaign_outcomes: each calling row whose call (the calls row with its campaign,
  row and attempt) ended is moved on by decide() below; a claim whose lease ran out with
  no call for its attempt is given back its attempt number (release_state()), and a call
  the provider said it never had (failed NEVER_PLACED) is re-queued.
- claim_lost_campaign_calls: the calls of a campaign's calling rows that are past their
  longest life and not ended, each leased (calls.reconcile_until) to the worker that asks
  the provider about them before their rows are decided.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from .calls import CallRow

CampaignStateName = Literal["running", "paused", "canceled", "completed"]
RowStateName = Literal["pending", "calling", "done", "canceled"]
TERMINAL_RANK = 3  # callers.types.CallStatus: completed, busy, no-answer, failed, canceled
# What a call that never reached the provider is marked with (its status is failed).
NEVER_PLACED = "never reached the provider"


@dataclass(frozen=True, slots=True)
class RetryRule:
    # callers.types.CallStatus values retried, e.g. ("busy", "no-answer").
    on: tuple[str, ...] = ()
    # Attempts in all, the first included.
    max_attempts: int = 1
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class CallingWindow:
    time_zone: str  # IANA, e.g. "Asia/Kolkata"
    start: str  # "HH:MM" local, inclusive
    end: str  # "HH:MM" local, exclusive ("24:00": midnight); end < start spans midnight


@dataclass(frozen=True, slots=True)
class CampaignRow:
    id: str
    tenant_id: str
    credential_id: str
    from_number: str
    # As convert.action_from_proto stores it; a say text may hold {variable} placeholders.
    action: Mapping[str, object]
    state: CampaignStateName
    calls_per_second: float
    max_concurrent_calls: int
    total_rows: int
    created_at: datetime
    updated_at: datetime
    name: str = ""
    retry: RetryRule = field(default_factory=RetryRule)
    window: CallingWindow | None = None
    ring_timeout: int | None = None  # seconds
    time_limit: int | None = None  # seconds
    machine_detection: str = "off"  # a callers.types.MachineDetection value


@dataclass(frozen=True, slots=True)
class NewNumber:
    """A row of a new campaign: the number and its variables."""

    to_number: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NumberRow:
    """A campaign_rows row."""

    campaign_id: str
    row_index: int
    to_number: str
    variables: Mapping[str, str]
    state: RowStateName
    attempts: int
    unplaced: int
    next_attempt_at: datetime
    updated_at: datetime
    # When the latest attempt's call was to start (kept after it ended; None once a claim
    # is given back).
    slot_at: datetime | None = None
    last_call_id: str | None = None
    outcome: str = ""
    error: str = ""
    claimed_by: str | None = None
    claimed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    campaign_id: str
    credential_id: str
    worker_id: str
    now: datetime
    # Slots are reserved only before this (now + the claim horizon, or the window's end).
    horizon: datetime
    lease_until: datetime
    calls_per_second: float
    max_concurrent_calls: int
    limit: int = 200


@dataclass(frozen=True, slots=True)
class Claim:
    """A row claimed for one attempt, with the moment its call may start."""

    campaign_id: str
    row_index: int
    to_number: str
    variables: Mapping[str, str]
    attempt: int
    slot_at: datetime


@dataclass(frozen=True, slots=True)
class OutcomeRules:
    """How apply_campaign_outcomes moves a campaign's calling rows on."""

    campaign_id: str
    now: datetime
    retry: RetryRule
    # A call created before this that has not ended is given up on (see decide()).
    lost_before: datetime
    max_unplaced: int = 3
    # A call with no provider id and no event is given up on only when created before
    # this (None: lost_before): until then the provider is asked whether it placed it.
    give_up_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class CampaignCounts:
    pending: int = 0
    calling: int = 0
    completed: int = 0
    busy: int = 0
    no_answer: int = 0
    failed: int = 0
    canceled: int = 0

    @property
    def done(self) -> int:
        return self.completed + self.busy + self.no_answer + self.failed


def counts_from(groups: Sequence[tuple[str, str, int]]) -> CampaignCounts:
    """The counts from (state, outcome, rows) groups. A call the provider reports
    canceled (hung up before it was answered) counts as failed: `canceled` is for rows
    never called because the campaign was canceled first."""
    totals = {
        "pending": 0,
        "calling": 0,
        "completed": 0,
        "busy": 0,
        "no_answer": 0,
        "failed": 0,
        "canceled": 0,
    }
    for state, outcome, rows in groups:
        if state in ("pending", "calling", "canceled"):
            totals[state] += rows
        elif outcome in ("completed", "busy"):
            totals[outcome] += rows
        elif outcome == "no-answer":
            totals["no_answer"] += rows
        else:
            totals["failed"] += rows
    return CampaignCounts(**totals)


# --- the decisions both backends apply ----------------------------------------------


def reserve_slots(
    next_slot_at: datetime, now: datetime, horizon: datetime, calls_per_second: float, room: int
) -> list[datetime]:
    """Up to `room` call slots from the credential's next free one (never before now),
    1 / calls_per_second apart, each before `horizon`."""
    if room <= 0:
        return []
    first = max(next_slot_at, now)
    if first >= horizon:
        return []
    interval = 1.0 / calls_per_second
    count = min(room, math.ceil((horizon - first).total_seconds() / interval))
    return [first + timedelta(seconds=k * interval) for k in range(count)]


def next_free_slot(slots: Sequence[datetime], calls_per_second: float) -> datetime:
    return slots[-1] + timedelta(seconds=1.0 / calls_per_second)


@dataclass(frozen=True, slots=True)
class Watched:
    """A calling row with the call of its current attempt, as apply_campaign_outcomes reads it."""

    row_index: int
    attempts: int
    unplaced: int
    call_id: str
    status: str
    status_rank: int
    provider_call_id: str
    error: str
    created_at: datetime
    has_events: bool


@dataclass(frozen=True, slots=True)
class Decision:
    row_index: int
    state: RowStateName
    attempts: int
    unplaced: int
    next_attempt_at: datetime
    outcome: str = ""
    error: str = ""
    last_call_id: str | None = None


def decide(watched: Watched, rules: OutcomeRules, campaign_state: str) -> Decision | None:
    """Where a calling row goes now that its call ended, or was given up on; None: stays.
    campaign_state is the campaign's as the store read it under the campaign's lock.

    - The provider said it has no such call (the call failed NEVER_PLACED, with no
      provider id: its place request never reached the provider, the reconciler found):
      queued again as a new attempt that does not count against max_attempts
      (unplaced + 1), at most max_unplaced times, then done as failed; canceled when the
      campaign is.
    - The call ended otherwise (a terminal status): pending again (next_attempt_at = now +
      delay) when its status is in retry.on, the row has attempts left (attempts -
      unplaced < max_attempts) and the campaign is not canceled; otherwise done, outcome =
      status.
    - The call was created before lost_before (the longest a placed call can take to end
      and be reported: the placement timeout + ring timeout + time limit + a margin) and
      has not ended, though the provider was asked about it (the campaign runner asks
      first, reconcile.py): done as failed, never placed again (it may have rung). With no
      provider id and no event (whether it was placed is unknown: the provider could not
      be asked) only once created before give_up_before, so that the provider is asked
      again meanwhile. The call row is left as it is.
    """
    now = rules.now
    if watched.status_rank >= TERMINAL_RANK and _never_placed(watched):
        if campaign_state == "canceled":
            return Decision(
                watched.row_index,
                "canceled",
                watched.attempts,
                watched.unplaced + 1,
                now,
                last_call_id=watched.call_id,
            )
        if watched.unplaced < rules.max_unplaced:
            return Decision(
                watched.row_index,
                "pending",
                watched.attempts,
                watched.unplaced + 1,
                now,
                last_call_id=watched.call_id,
            )
        return Decision(
            watched.row_index,
            "done",
            watched.attempts,
            watched.unplaced + 1,
            now,
            outcome="failed",
            error=watched.error,
            last_call_id=watched.call_id,
        )
    if watched.status_rank >= TERMINAL_RANK:
        counted = watched.attempts - watched.unplaced
        if (
            campaign_state != "canceled"
            and watched.status in rules.retry.on
            and counted < rules.retry.max_attempts
        ):
            return Decision(
                watched.row_index,
                "pending",
                watched.attempts,
                watched.unplaced,
                now + timedelta(milliseconds=rules.retry.delay_ms),
                last_call_id=watched.call_id,
            )
        return Decision(
            watched.row_index,
            "done",
            watched.attempts,
            watched.unplaced,
            now,
            outcome=watched.status,
            error=watched.error,
            last_call_id=watched.call_id,
        )
    if watched.created_at >= rules.lost_before:
        return None
    if watched.provider_call_id or watched.has_events:
        error = "no final status from the provider within the call's longest possible duration"
    else:
        give_up_before = rules.give_up_before or rules.lost_before
        if watched.created_at >= give_up_before:
            return None
        error = (
            "the provider never answered whether it placed the call, and could not be asked;"
            " not placed again, so as not to ring twice"
        )
    return Decision(
        watched.row_index,
        "done",
        watched.attempts,
        watched.unplaced,
        now,
        outcome="failed",
        error=error,
        last_call_id=watched.call_id,
    )


def _never_placed(watched: Watched) -> bool:
    return (
        watched.status == "failed"
        and not watched.provider_call_id
        and not watched.has_events
        and watched.error.startswith(NEVER_PLACED)
    )


def release_state(campaign_state: str) -> RowStateName:
    """Where a claim given back goes: a claim released (its worker stopped before placing
    it, or its lease ran out with no call for its attempt) returns its attempt number
    (attempts - 1), so the next claim takes the same number and the same idempotency key:
    a worker that was only slow, and places it after all, places the same call."""
    return "canceled" if campaign_state == "canceled" else "pending"


class CampaignStore(Protocol):
    async def insert_campaign(self, campaign: CampaignRow, numbers: Sequence[NewNumber]) -> None:
        """The campaign and its rows (row_index = position), in one transaction: no worker
        sees the campaign before all of its rows."""
        ...

    async def get_campaign(self, tenant_id: str, campaign_id: str) -> CampaignRow | None: ...

    async def campaign_state(self, campaign_id: str) -> CampaignStateName | None:
        """For a worker about to place a claimed row's call (any tenant)."""
        ...

    async def campaign_counts(self, campaign_id: str) -> CampaignCounts: ...

    async def set_campaign_state(
        self,
        tenant_id: str,
        campaign_id: str,
        state: CampaignStateName,
        *,
        from_states: Sequence[CampaignStateName],
        now: datetime,
    ) -> CampaignRow | None:
        """Move the campaign to `state` if it is in one of from_states; None otherwise.
        To canceled: its pending rows become canceled in the same transaction."""
        ...

    async def active_campaigns(self) -> list[CampaignRow]:
        """Every tenant's campaigns a runner works on: running or paused, and canceled
        ones that still have calling rows (their live calls' outcomes)."""
        ...

    async def claim_campaign_rows(self, request: ClaimRequest) -> list[Claim]:
        """Claim pending rows due now for the slots the credential's rate and concurrency
        allow (see the module docstring); [] when none, or another worker is claiming."""
        ...

    async def release_campaign_claim(
        self, campaign_id: str, row_index: int, attempt: int, worker_id: str, now: datetime
    ) -> bool:
        """Give back a claim this worker holds whose call it did not place (release_state)."""
        ...

    async def fail_campaign_claim(
        self, campaign_id: str, row_index: int, attempt: int, error: str, now: datetime
    ) -> bool:
        """A claim whose call could not even be stored (e.g. its credential was deleted):
        done as failed, with the reason."""
        ...

    async def apply_campaign_outcomes(self, rules: OutcomeRules) -> tuple[int, bool]:
        """Move the campaign's calling rows on (decide(), release_state()); answers (rows
        moved, whether any row is still pending or calling)."""
        ...

    async def complete_campaign(self, campaign_id: str, now: datetime) -> bool:
        """Running or paused -> completed, if no row is pending or calling."""
        ...

    async def claim_lost_campaign_calls(
        self, campaign_id: str, *, lost_before: datetime, now: datetime, lease_until: datetime, limit: int
    ) -> list[CallRow]:
        """Up to `limit` calls of the campaign's calling rows (their current attempt's)
        created before lost_before that have not ended, with no lease running; each
        leased until lease_until (every worker may ask at once; each call goes to one)."""
        ...

    async def campaign_call(self, campaign_id: str, row_index: int, attempt: int) -> CallRow | None:
        """The call placed for this row's attempt, if one was stored."""
        ...

    async def list_campaign_rows(
        self, campaign_id: str, *, after_row: int = -1, limit: int = 1000
    ) -> list[NumberRow]:
        """Rows in row_index order, after `after_row`."""
        ...
