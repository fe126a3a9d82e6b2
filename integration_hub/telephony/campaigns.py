"""Campaigns: durable batches of calls, placed by every worker of every replica.

A campaign is a job in the store (campaigns, campaign_rows: store/campaigns.py). Each
worker process runs one CampaignRunner (hub.py starts it, and closes it first), two
background tasks that pass over every active campaign of every tenant, every
POLL_SECONDS while there is one (IDLE_POLL_SECONDS otherwise; at once when this worker
created or resumed one), so that pacing never waits behind outcome work:

1. claims (store.claim_campaign_rows), for a running campaign inside its calling window
   whose credential is not backing off: one transaction reserves call slots from the
   credential's pacing row, 1 / calls_per_second apart and never before now, up to
   HORIZON_SECONDS ahead (and not past the window's end), for as many rows as the
   credential's live campaign calls leave room for under max_concurrent_calls, and marks
   those rows calling (attempts + 1, claimed_by, claimed_until = the lease). Each claimed
   row's call is then placed at its slot by a task of its own: it sleeps until the slot,
   reads the campaign's state (paused or canceled since the claim: the claim is given
   back), and calls TelephonyCalls.place with the campaign's call, the row's variables (a
   say text's {name} placeholders filled, the call's metadata, added to a media stream's
   parameters) and the idempotency key campaign:<id>:<row>:<attempt>.
2. outcomes (store.apply_campaign_outcomes): first the calls past their longest life
   that have not ended are asked about at their provider (store.claim_lost_campaign_calls
   leases each to one worker; reconcile.py asks and applies the answer), then each
   calling row whose call ended goes to done, or back to pending for a retry (its status
   in retry.on, attempts left, campaign not canceled) after retry.delay; a running or
   paused campaign with no row pending or calling is completed. Outcomes are learnt by
   polling the store, not from a hook in the webhook path: the provider's events are
   stored by whichever worker or replica receives them, and a join of calling rows with
   their calls (by campaign, row and attempt) sees them all, with no Redis and nothing
   lost when a worker dies. At campaign rates (at
   most 100 calls a second, 1000 live) it is one indexed query per campaign per pass.

Rate: the slots are spaced exactly, in the store, whichever worker or replica reserves
them, and the pacing row outlives a restart (no burst after it either); a credential's
pacing is shared by its campaigns (each claim spaces its slots by its own campaign's
rate). The provider sees the schedule plus each call's own latency jitter (a few ms on
an idle host). The schedule holds as long as each claim takes less than HORIZON_SECONDS
(a slower one is logged: the store or the worker cannot keep up, and the schedule has
gaps); SQLite, one writer for every worker, holds it to about 80 calls a second on a
small host, Postgres to the 100 allowed. Replicas' clocks are assumed to agree (NTP).
Concurrency: a claimed row counts as live from its claim (at most HORIZON_SECONDS
before its slot) until its outcome is applied, so the provider never has more than
max_concurrent_calls of a credential's campaign calls live (calls placed with PlaceCall
are not counted). Pause: no new claims; claims not yet placed are given back, so at most
the calls already on their way to the provider start after PauseCampaign answers.
Resume: claims again. Cancel: pending rows become canceled in the same transaction; live
calls go on, their outcomes are still applied, and none is retried.

A failed placement: the provider's refusal is the attempt's outcome, failed (the call is
marked failed: by place() for a HubError, by the runner for the caller's own error, which
place() lets through with the call still queued), retried only if retry.on has failed.
The policy engine has already retried what the provider answered it did not take (429,
502, 503); a refusal of that kind (RESOURCE_EXHAUSTED, UNAVAILABLE) also stops this
worker's claims on the credential for a growing backoff (FIRST_BACKOFF to MAX_BACKOFF).
A failure before the call was stored (its credential deleted, not a telephony one,
HUB_PUBLIC_URL unset) makes the row done as failed with the reason. A store outage fails
nothing: the claim's lease runs out and the row is claimed again.

No number is called twice for the same attempt, whatever crashes where:

- worker dies after the claim, before insert_call (waiting for its slot, or after): the
  row stays calling with no call for its attempt; once its lease (HORIZON +
  PLACE_TIMEOUT + LEASE_MARGIN) has run out, the next outcome pass gives the attempt back
  (attempts - 1, pending), and the next claim takes the same attempt number, hence the
  same idempotency key. A worker that was
  only slow and places it after all collides on the key (calls (tenant_id,
  idempotency_key) is unique): one call row, one provider request.
- after insert_call, before the provider was asked (or while asking): the call row
  exists, queued, with no provider call id. If the request reached the provider, its
  events arrive on the call's URL (their token is in the row; the first gives the call
  its provider id) and the call ends as any other; a re-claim of the row's attempt would
  answer this same call (the key). Once the call's longest life (PLACE_TIMEOUT + ring
  timeout + time limit, UNSET_* when the campaign sets none, + LOST_CALL_MARGIN) has
  passed with no provider id and no event, the outcome pass asks the provider first
  (reconcile.py: its calls to the number, from the number, around the call's creation,
  none of which the hub has already matched): a call found is adopted and settled as
  any other (not placed again: it rang); only when the provider has none is the call
  marked failed ("never reached the provider") and the row queued as a new attempt
  (attempt + 1, a new key) that does not count against max_attempts, at most
  MAX_UNPLACED times. While the provider cannot be asked (down, the credential gone)
  the row waits, and after GIVE_UP_SECONDS more it is done as failed, not placed again.
- after the provider answered, before mark_call_placed: as above, but its events come.
- after mark_call_placed: the call's events end it; if they are all lost, the
  reconciler (reconcile.py) asks the provider for the call's state once it has been
  silent for a while, and at the call's longest life the outcome pass asks too, and
  applies the answer as an event: a completed call is done as completed, a busy one
  retried by the campaign's rules. A call whose provider cannot be asked and that got no
  final status within its longest life is done as failed (never retried: it may have
  rung).
- outcome pass or claim interrupted: each is one transaction; nothing half-done.
- worker stopped (SIGTERM): close() gives back the claims still waiting for their slot
  and gives the calls being placed PLACE_TIMEOUT to finish.

The runner never lets an error out of its tasks: a store outage is logged once per loop,
passes back off (up to MAX_BACKOFF seconds) and resume by themselves when the store is
back (logged too); one campaign's unexpected error is logged and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import string
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import grpc

from callers import errors as caller_errors
from callers import types as t
from integration_hub.dispatch import from_caller_error
from integration_hub.errors import HubError
from integration_hub.ids import unique_id
from integration_hub.rpc import CallContext, Principal
from integration_hub.store.base import Store, StoreUnavailable
from integration_hub.store.campaigns import (
    TERMINAL_RANK,
    CallingWindow,
    CampaignRow,
    Claim,
    ClaimRequest,
    OutcomeRules,
)
from integration_hub.telephony.calls import NewCall, TelephonyCalls
from integration_hub.telephony.reconcile import CallReconciler

log = logging.getLogger("integration_hub.telephony.campaigns")

POLL_SECONDS = 0.1  # between passes while any campaign is active
IDLE_POLL_SECONDS = 1.0  # with none: how soon another worker's new campaign is seen
HORIZON_SECONDS = 0.5  # slots are reserved this far ahead (several passes apart)
PLACE_TIMEOUT = 5.0  # of a campaign call's request to the provider
LEASE_MARGIN = 5.0
LOST_CALL_MARGIN = 15.0
# When a campaign sets no ring_timeout / time_limit: above the providers' defaults
# (Twilio rings 60 s and limits a call to 4 h, Vonage 60 s and 2 h).
UNSET_RING_SECONDS = 120
UNSET_TIME_LIMIT_SECONDS = 4 * 3600
MAX_UNPLACED = 3
# A call past its longest life is asked about at most this often (by one worker) ...
LOST_RECHECK_SECONDS = 10.0
# ... and, while the provider cannot say whether it placed it, given up on after this.
GIVE_UP_SECONDS = 300.0
CLAIM_LIMIT = 200
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 30.0
SLOW_LOG_SECONDS = 60.0  # at most one "claims are too slow" warning this often
CAMPAIGN_METHOD = "/integration_hub.v1.TelephonyService/CreateCampaign"
_VARIABLE_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


def idempotency_key(campaign_id: str, row_index: int, attempt: int) -> str:
    return f"campaign:{campaign_id}:{row_index}:{attempt}"


# --- say text templates -------------------------------------------------------------


class TemplateError(ValueError):
    """A say text that is not a template: the message says why."""


@dataclass(frozen=True, slots=True)
class MissingVariable(Exception):
    name: str


def placeholders(text: str) -> list[str]:
    """The variable names of a say text's {name} placeholders ({{ and }} are braces)."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion or not name or not set(name) <= _VARIABLE_CHARS:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise TemplateError(
                f"{{{shown}}}: a placeholder is a variable name (letters, digits, - and _),"
                " e.g. {first_name}"
            )
        names.append(name)
    return names


def render(text: str, variables: Mapping[str, str]) -> str:
    """The text with each {name} replaced by the variable; MissingVariable when one is not given."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(text):
        out.append(literal)
        if name is not None:
            if name not in variables:
                raise MissingVariable(name)
            out.append(variables[name])
    return "".join(out)


def render_action(action: Mapping[str, Any], variables: Mapping[str, str]) -> dict[str, Any]:
    """A campaign's stored action for one row: a say text filled in, a media stream's
    parameters with the row's variables added (the row's win a clash)."""
    rendered = dict(action)
    kind = action.get("kind")
    if kind == t.CallActionKind.SAY.value:
        rendered["text"] = render(str(action.get("text", "")), variables)
    elif kind == t.CallActionKind.MEDIA_STREAM.value:
        rendered["parameters"] = {**dict(action.get("parameters", {})), **variables}
    return rendered


# --- calling windows ----------------------------------------------------------------


def minutes_of(value: str, *, allow_midnight_end: bool = False) -> int:
    """ "HH:MM" as minutes after midnight; ValueError when it is not one ("24:00" only as an end)."""
    hours, sep, minutes = value.partition(":")
    if not (sep and len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit()):
        raise ValueError(f"{value!r} is not HH:MM")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or total > 24 * 60 or (total == 24 * 60 and not allow_midnight_end):
        raise ValueError(
            f"{value!r} is not a time of day (00:00 to 23:59{', or 24:00' if allow_midnight_end else ''})"
        )
    return total


def window_state(window: CallingWindow, now: datetime) -> tuple[bool, datetime]:
    """Whether calls may start now, and (when they may) the UTC moment the window closes."""
    zone = ZoneInfo(window.time_zone)
    local = now.astimezone(zone)
    start = minutes_of(window.start) * 60
    end = minutes_of(window.end, allow_midnight_end=True) * 60
    second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    day = local.date()
    if start < end:
        is_open = start <= second < end
    else:  # spans midnight, e.g. 22:00 to 06:00
        is_open = second >= start or second < end
        if second >= start:
            day += timedelta(days=1)
    closes = datetime.combine(day, clock_time(), tzinfo=zone) + timedelta(seconds=end)
    return is_open, closes.astimezone(UTC)


# --- the runner ---------------------------------------------------------------------


def _context(campaign: CampaignRow) -> CallContext:
    # The audit trail names who opened the credential: this campaign.
    principal = Principal(
        tenant_id=campaign.tenant_id, token_id=f"campaign:{campaign.id}", scopes=frozenset({"invoke"})
    )
    return CallContext(principal, unique_id(), CAMPAIGN_METHOD)


def new_call(campaign: CampaignRow, claim: Claim) -> NewCall:
    return NewCall(
        credential=campaign.credential_id,
        to=claim.to_number,
        from_=campaign.from_number,
        action=render_action(campaign.action, claim.variables),
        ring_timeout_seconds=campaign.ring_timeout,
        time_limit_seconds=campaign.time_limit,
        machine_detection=t.MachineDetection(campaign.machine_detection),
        metadata=dict(claim.variables),
        idempotency_key=idempotency_key(campaign.id, claim.row_index, claim.attempt),
        campaign_id=campaign.id,
        campaign_row=claim.row_index,
        attempt=claim.attempt,
    )


def _transient(exc: HubError) -> bool:
    """The provider (or the policy engine for it) said it did not take the call now."""
    if exc.reason == "CALL_OUTCOME_UNKNOWN":
        return False
    return exc.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


class CampaignRunner:
    """One worker's share of every campaign: start() once the store is connected, close()
    before it closes."""

    def __init__(
        self,
        store: Store,
        calls: TelephonyCalls,
        *,
        worker_id: str | None = None,
        poll_seconds: float = POLL_SECONDS,
        idle_poll_seconds: float = IDLE_POLL_SECONDS,
        horizon_seconds: float = HORIZON_SECONDS,
        place_timeout: float = PLACE_TIMEOUT,
        lost_call_margin: float = LOST_CALL_MARGIN,
        reconciler: CallReconciler | None = None,
    ) -> None:
        self._store = store
        self._calls = calls
        # Asks the provider about calls past their longest life before their rows move on.
        self._reconciler = reconciler
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{unique_id()[-8:]}"
        self._poll = poll_seconds
        self._idle_poll = idle_poll_seconds
        self._horizon = timedelta(seconds=horizon_seconds)
        self._place_timeout = place_timeout
        self._lease = timedelta(seconds=horizon_seconds + place_timeout + LEASE_MARGIN)
        self._lost_margin = lost_call_margin
        self._tasks: list[asyncio.Task[None]] = []
        self._wakes = {"claims": asyncio.Event(), "outcomes": asyncio.Event()}
        self._stopping = asyncio.Event()
        self._placing: set[asyncio.Task[None]] = set()
        # The active campaigns as the claim loop last read them (the outcome loop's list too).
        self._campaigns: list[CampaignRow] = []
        # Per credential: (monotonic time claims resume, the last delay).
        self._backoff: dict[str, tuple[float, float]] = {}
        # Per loop: since when its passes fail.
        self._failing: dict[str, float] = {}
        self._slow_claim_logged = -SLOW_LOG_SECONDS

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Two loops: claims (and the pacing) never wait for an outcome pass."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._forever("claims", self._claim_pass), name="campaign-claims"),
                asyncio.create_task(self._forever("outcomes", self._outcome_pass), name="campaign-outcomes"),
            ]

    def wake(self) -> None:
        """Look at the campaigns now (one was created or resumed through this worker)."""
        for event in self._wakes.values():
            event.set()

    async def close(self, drain_seconds: float = PLACE_TIMEOUT) -> None:
        """Stop claiming; claims waiting for their slot are given back; calls being
        placed get drain_seconds to finish, then are cancelled (their outcome is then
        unknown, which the next pass of any worker resolves as above)."""
        self._stopping.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        placing = list(self._placing)
        if placing:
            _, late = await asyncio.wait(placing, timeout=drain_seconds)
            for straggler in late:
                straggler.cancel()
            await asyncio.gather(*placing, return_exceptions=True)

    # --- the loops -----------------------------------------------------------------

    async def _forever(self, name: str, one_pass: Callable[[], Awaitable[bool]]) -> None:
        wake = self._wakes[name]
        failures = 0
        while not self._stopping.is_set():
            wake.clear()
            try:
                active = await one_pass()
            except Exception as exc:  # the runner must outlive anything a pass meets
                failures = min(failures + 1, 16)
                self._report_failure(name, exc)
                wait = min(MAX_BACKOFF, self._poll * 2**failures)
            else:
                since = self._failing.pop(name, None)
                if since is not None:
                    log.info("campaign %s resumed after %.1fs of failures", name, time.monotonic() - since)
                failures = 0
                wait = self._poll if active else self._idle_poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)

    def _report_failure(self, name: str, exc: Exception) -> None:
        first = name not in self._failing
        if first:
            self._failing[name] = time.monotonic()
        if isinstance(exc, StoreUnavailable):
            if first:
                log.warning("campaign %s stopped on this worker: the store is unavailable (%s)", name, exc)
        else:
            log.error("campaign %s pass failed", name, exc_info=exc)

    async def _claim_pass(self) -> bool:
        self._campaigns = await self._store.active_campaigns()
        for campaign in self._campaigns:
            if campaign.state != "running" or self._stopping.is_set():
                continue
            try:
                await self._claim(campaign)
            except StoreUnavailable:
                raise
            except Exception:  # one broken campaign must not stop the others
                log.exception("campaign %s: claim failed", campaign.id, extra={"campaign_id": campaign.id})
        return bool(self._campaigns)

    async def _outcome_pass(self) -> bool:
        campaigns = self._campaigns
        for campaign in campaigns:
            try:
                await self._outcomes(campaign)
            except StoreUnavailable:
                raise
            except Exception:
                log.exception("campaign %s: outcomes failed", campaign.id, extra={"campaign_id": campaign.id})
        return bool(campaigns)

    def lost_after(self, campaign: CampaignRow) -> timedelta:
        """The longest a placed call of this campaign can take to end and be reported."""
        ring = campaign.ring_timeout or UNSET_RING_SECONDS
        limit = campaign.time_limit or UNSET_TIME_LIMIT_SECONDS
        return timedelta(seconds=self._place_timeout + ring + limit + self._lost_margin)

    async def _outcomes(self, campaign: CampaignRow) -> None:
        now = datetime.now(UTC)
        lost_before = now - self.lost_after(campaign)
        if self._reconciler is not None:
            lost = await self._store.claim_lost_campaign_calls(
                campaign.id,
                lost_before=lost_before,
                now=now,
                lease_until=now + timedelta(seconds=LOST_RECHECK_SECONDS),
                limit=CLAIM_LIMIT,
            )
            if lost:
                await self._reconciler.reconcile_calls(lost)
                now = datetime.now(UTC)
        rules = OutcomeRules(
            campaign_id=campaign.id,
            now=now,
            retry=campaign.retry,
            lost_before=lost_before,
            max_unplaced=MAX_UNPLACED,
            give_up_before=lost_before - timedelta(seconds=GIVE_UP_SECONDS),
        )
        _, still_open = await self._store.apply_campaign_outcomes(rules)
        if (
            not still_open
            and campaign.state in ("running", "paused")
            and await self._store.complete_campaign(campaign.id, now)
        ):
            log.info("campaign %s completed", campaign.id, extra={"campaign_id": campaign.id})

    async def _claim(self, campaign: CampaignRow) -> None:
        backoff = self._backoff.get(campaign.credential_id)
        if backoff is not None and time.monotonic() < backoff[0]:
            return
        now = datetime.now(UTC)
        horizon = now + self._horizon
        if campaign.window is not None:
            is_open, closes = window_state(campaign.window, now)
            if not is_open:
                return
            horizon = min(horizon, closes)
        started = time.monotonic()
        claims = await self._store.claim_campaign_rows(
            ClaimRequest(
                campaign_id=campaign.id,
                credential_id=campaign.credential_id,
                worker_id=self.worker_id,
                now=now,
                horizon=horizon,
                lease_until=now + self._lease,
                calls_per_second=campaign.calls_per_second,
                max_concurrent_calls=campaign.max_concurrent_calls,
                limit=CLAIM_LIMIT,
            )
        )
        took = time.monotonic() - started
        if (
            took > self._horizon.total_seconds()
            and time.monotonic() - self._slow_claim_logged > SLOW_LOG_SECONDS
        ):
            # Slots are reserved only HORIZON ahead: a claim slower than that leaves gaps.
            self._slow_claim_logged = time.monotonic()
            log.warning(
                "campaign %s: a claim took %.2fs, longer than the %.2fs slots are reserved ahead:"
                " the store (or this worker) is too slow to hold the campaign's rate",
                campaign.id,
                took,
                self._horizon.total_seconds(),
                extra={"campaign_id": campaign.id},
            )
        for claim in claims:
            task = asyncio.create_task(self._place(campaign, claim), name=f"campaign-call-{claim.row_index}")
            self._placing.add(task)
            task.add_done_callback(self._placing.discard)

    # --- one call ------------------------------------------------------------------

    async def _place(self, campaign: CampaignRow, claim: Claim) -> None:
        try:
            delay = (claim.slot_at - datetime.now(UTC)).total_seconds()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set() or await self._store.campaign_state(campaign.id) != "running":
                await self._store.release_campaign_claim(
                    campaign.id, claim.row_index, claim.attempt, self.worker_id, datetime.now(UTC)
                )
                return
            try:
                async with asyncio.timeout(self._place_timeout + LEASE_MARGIN / 2):
                    await self._calls.place(
                        _context(campaign), new_call(campaign, claim), self._place_timeout
                    )
            except HubError as exc:
                await self._placing_failed(campaign, claim, exc)
            except caller_errors.CallerError as exc:
                # The provider's own refusal, raised as it came (place() marks only its
                # HubErrors failed): it did not take the call.
                await self._placing_failed(campaign, claim, from_caller_error(exc), refused=True)
            else:
                self._backoff.pop(campaign.credential_id, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The claim stays: its lease runs out and the row is claimed again for the same
            # attempt (the idempotency key makes that safe whatever got done).
            level = logging.WARNING if isinstance(exc, StoreUnavailable | TimeoutError) else logging.ERROR
            log.log(
                level,
                "campaign %s row %d: placing attempt %d failed: %s",
                campaign.id,
                claim.row_index,
                claim.attempt,
                type(exc).__name__,
                exc_info=level == logging.ERROR,
                extra={"campaign_id": campaign.id},
            )

    async def _placing_failed(
        self, campaign: CampaignRow, claim: Claim, exc: HubError, *, refused: bool = False
    ) -> None:
        if _transient(exc):
            self._back_off(campaign, exc)
        if exc.reason == "STORE_UNAVAILABLE":
            return  # the lease brings the row back
        log.debug(
            "campaign %s row %d attempt %d: %s",
            campaign.id,
            claim.row_index,
            claim.attempt,
            exc.message,
            extra={"campaign_id": campaign.id},
        )
        call = await self._store.campaign_call(campaign.id, claim.row_index, claim.attempt)
        if call is None:
            # Refused before a call was stored: nothing will ever end this attempt.
            await self._store.fail_campaign_claim(
                campaign.id, claim.row_index, claim.attempt, exc.message, datetime.now(UTC)
            )
        elif refused and call.status_rank < TERMINAL_RANK and not call.provider_call_id:
            await self._store.mark_call_failed(call.id, exc.message, datetime.now(UTC))
        # Otherwise the call row carries it: failed (its outcome is applied), or its
        # outcome unknown (its events, or the lost-call bound, settle it).

    def _back_off(self, campaign: CampaignRow, exc: HubError) -> None:
        _, last = self._backoff.get(campaign.credential_id, (0.0, 0.0))
        delay = min(MAX_BACKOFF, max(FIRST_BACKOFF, last * 2, exc.retry_after or 0.0))
        self._backoff[campaign.credential_id] = (time.monotonic() + delay, delay)
        log.warning(
            "campaign %s: the provider refused a call (%s); no claims on its credential for %.0fs",
            campaign.id,
            exc.reason,
            delay,
            extra={"campaign_id": campaign.id},
        )
