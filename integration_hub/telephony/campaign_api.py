"""The campaign RPCs of TelephonyService: CreateCampaign, GetCampaign, PauseCampaign,
ResumeCampaign, CancelCampaign (the work itself: campaigns.py).

CreateCampaign checks everything before anything is stored, each problem an
INVALID_ARGUMENT naming its field: the numbers (E.164, `rows[12].to`), the row variables
(as call metadata: `rows[12].variables`), a say text's {name} placeholders against every
row's variables (`rows[12].variables.name` when row 12 lacks it; {{ and }} write braces),
the filled-in text's length, a media stream's parameters with the row's variables added,
the limits (calls_per_second over 0 and at most 100, default 1; max_concurrent_calls 1 to
1000, default 10), retry (on: busy, no-answer, failed; max_attempts 1 to 10, default 1;
delay 0 to 7 days) and the calling window (an IANA zone, "HH:MM" start and end, end
"24:00" allowed, end before start spans midnight). Then the credential (NOT_FOUND, or
FAILED_PRECONDITION for one that cannot place calls) and HUB_PUBLIC_URL (FAILED_PRECONDITION),
as PlaceCall does. The campaign and all its rows (at most 100,000, within
HUB_MAX_REQUEST_BYTES: 100,000 rows with a short variable or two are some 3 to 5 MB) are
stored in one transaction. Numbers may repeat: rows are rows.

State changes: pause (running -> paused; paused is answered as it is), resume (paused ->
running; running as it is), cancel (running or paused -> canceled; canceled and
completed are answered as they are, as HangupCall answers an ended call); anything else
is FAILED_PRECONDITION.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from google.protobuf import timestamp_pb2

from callers import registry
from callers import types as t
from callers.base import Capability
from integration_hub.credentials import CredentialService
from integration_hub.errors import HubError, invalid_field
from integration_hub.ids import unique_id
from integration_hub.rpc import CallContext
from integration_hub.store.base import Store
from integration_hub.store.campaigns import (
    CallingWindow,
    CampaignCounts,
    CampaignRow,
    CampaignStateName,
    NewNumber,
    RetryRule,
)
from integration_hub.telephony import convert
from integration_hub.telephony.calls import public_urls
from integration_hub.telephony.campaigns import (
    CampaignRunner,
    MissingVariable,
    TemplateError,
    minutes_of,
    placeholders,
    render,
)
from integration_hub.telephony.numbers import e164
from integration_hub.v1 import telephony_pb2 as pb

MAX_ROWS = 100_000
MAX_NAME = 200
DEFAULT_CALLS_PER_SECOND, MAX_CALLS_PER_SECOND = 1.0, 100.0
DEFAULT_CONCURRENT, MAX_CONCURRENT = 10, 1000
MAX_ATTEMPTS = 10
MAX_RETRY_DELAY_SECONDS = 7 * 86_400
# Rows checked between yields to the event loop (about 5 ms of work: the E.164 check is
# some 55 us a number, so 100,000 rows take about 6 s): a big request must not stall the
# worker's other calls, nor the pacing of the campaigns its runner is placing.
CHECK_BATCH = 100

_RETRIABLE = {
    pb.CALL_STATUS_BUSY: t.CallStatus.BUSY.value,
    pb.CALL_STATUS_NO_ANSWER: t.CallStatus.NO_ANSWER.value,
    pb.CALL_STATUS_FAILED: t.CallStatus.FAILED.value,
}
_STATE_TO_PROTO: dict[str, pb.CampaignState.ValueType] = {
    "running": pb.CAMPAIGN_STATE_RUNNING,
    "paused": pb.CAMPAIGN_STATE_PAUSED,
    "canceled": pb.CAMPAIGN_STATE_CANCELED,
    "completed": pb.CAMPAIGN_STATE_COMPLETED,
}


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def campaign_to_proto(row: CampaignRow, counts: CampaignCounts) -> pb.Campaign:
    return pb.Campaign(
        id=row.id,
        name=row.name,
        credential_id=row.credential_id,
        state=_STATE_TO_PROTO.get(row.state, pb.CAMPAIGN_STATE_UNSPECIFIED),
        total_rows=row.total_rows,
        counts=pb.CampaignCounts(
            pending=counts.pending,
            calling=counts.calling,
            completed=counts.completed,
            busy=counts.busy,
            no_answer=counts.no_answer,
            failed=counts.failed,
            canceled=counts.canceled,
        ),
        progress=counts.done / row.total_rows if row.total_rows else 0.0,
        created_at=_timestamp(row.created_at),
        updated_at=_timestamp(row.updated_at),
        calls_per_second=row.calls_per_second,
        max_concurrent_calls=row.max_concurrent_calls,
    )


def _calls_per_second(value: float) -> float:
    if value == 0:
        return DEFAULT_CALLS_PER_SECOND
    if not (math.isfinite(value) and 0 < value <= MAX_CALLS_PER_SECOND):
        raise invalid_field("calls_per_second", f"must be more than 0 and at most {MAX_CALLS_PER_SECOND:g}")
    return value


def _concurrent(value: int) -> int:
    if value == 0:
        return DEFAULT_CONCURRENT
    if not 1 <= value <= MAX_CONCURRENT:
        raise invalid_field("max_concurrent_calls", f"must be from 1 to {MAX_CONCURRENT}")
    return value


def _retry(request: pb.CreateCampaignRequest) -> RetryRule:
    if not request.HasField("retry"):
        return RetryRule()
    retry = request.retry
    on: list[str] = []
    for i, status in enumerate(retry.on):
        if status not in _RETRIABLE:
            raise invalid_field(f"retry.on[{i}]", "only busy, no-answer and failed calls can be retried")
        if _RETRIABLE[status] not in on:
            on.append(_RETRIABLE[status])
    attempts = retry.max_attempts or 1
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise invalid_field("retry.max_attempts", f"must be from 1 to {MAX_ATTEMPTS}")
    delay = retry.delay.ToTimedelta().total_seconds()
    if not 0 <= delay <= MAX_RETRY_DELAY_SECONDS:
        raise invalid_field("retry.delay", f"must be from 0 to {MAX_RETRY_DELAY_SECONDS} seconds")
    return RetryRule(on=tuple(on), max_attempts=attempts, delay_ms=round(delay * 1000))


def _window(request: pb.CreateCampaignRequest) -> CallingWindow | None:
    if not request.HasField("window"):
        return None
    window = request.window
    if not window.time_zone:
        raise invalid_field("window.time_zone", "required: an IANA time zone, e.g. Asia/Kolkata")
    try:
        ZoneInfo(window.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid_field(
            "window.time_zone", f"{window.time_zone[:64]!r} is not an IANA time zone"
        ) from None
    try:
        start = minutes_of(window.start)
    except ValueError as exc:
        raise invalid_field("window.start", f"{exc}") from None
    try:
        end = minutes_of(window.end, allow_midnight_end=True)
    except ValueError as exc:
        raise invalid_field("window.end", f"{exc}") from None
    if start == end % (24 * 60):
        raise invalid_field("window.end", "must differ from start (leave the window unset for any time)")
    return CallingWindow(window.time_zone, window.start, window.end)


def _not_found(campaign_id: str) -> HubError:
    return HubError(
        grpc.StatusCode.NOT_FOUND,
        "CAMPAIGN_NOT_FOUND",
        f"no campaign {campaign_id!r} in this tenant",
        {"campaign": campaign_id},
    )


class CampaignApi:
    def __init__(
        self,
        store: Store,
        credentials: CredentialService,
        public_url: str | None,
        runner: CampaignRunner | None = None,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._public_url = public_url
        self._runner = runner

    async def _numbers(self, request: pb.CreateCampaignRequest, action: dict[str, Any]) -> list[NewNumber]:
        if not request.rows:
            raise invalid_field("rows", "required: at least one row")
        if len(request.rows) > MAX_ROWS:
            raise invalid_field("rows", f"at most {MAX_ROWS} rows per campaign")
        kind = action["kind"]
        text = str(action.get("text", ""))
        needed = placeholders(text) if kind == t.CallActionKind.SAY.value else []
        media = kind == t.CallActionKind.MEDIA_STREAM.value
        parameters: dict[str, str] = dict(action.get("parameters", {})) if media else {}
        numbers = []
        for i, row in enumerate(request.rows):
            if i and i % CHECK_BATCH == 0:
                await asyncio.sleep(0)
            field = f"rows[{i}]"
            to = e164(f"{field}.to", row.to)
            variables = convert.check_parameters(row.variables, f"{field}.variables")
            for name in needed:
                if name not in variables:
                    raise invalid_field(f"{field}.variables.{name}", f"missing: the say text uses {{{name}}}")
            if needed:
                try:
                    filled = render(text, variables)
                except MissingVariable as missing:  # pragma: no cover - checked just above
                    raise invalid_field(f"{field}.variables.{missing.name}", "missing") from None
                if len(filled) > convert.MAX_TEXT:
                    raise invalid_field(
                        f"{field}.variables", f"the say text filled in is over {convert.MAX_TEXT} characters"
                    )
            if parameters and len({**parameters, **variables}) > convert.MAX_PARAMETERS:
                raise invalid_field(
                    f"{field}.variables",
                    f"with the media stream's parameters, at most {convert.MAX_PARAMETERS} entries",
                )
            numbers.append(NewNumber(to, variables))
        return numbers

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, call: CallContext
    ) -> pb.CreateCampaignResponse:
        if not request.credential:
            raise invalid_field("credential", "required: a telephony credential id or name")
        if len(request.name) > MAX_NAME:
            raise invalid_field("name", f"at most {MAX_NAME} characters")
        from_number = e164("from", getattr(request, "from"))
        if not request.HasField("action"):
            raise invalid_field("action", "required: one of media_stream, say, provider_instructions")
        action = convert.action_from_proto(request.action)
        if action["kind"] == t.CallActionKind.SAY.value:
            try:
                placeholders(str(action["text"]))
            except TemplateError as exc:
                raise invalid_field("action.say.text", str(exc)) from None
        calls_per_second = _calls_per_second(request.calls_per_second)
        concurrent = _concurrent(request.max_concurrent_calls)
        retry, window = _retry(request), _window(request)
        ring = convert.whole_seconds(request.ring_timeout, "ring_timeout", low=5, high=600)
        limit = convert.whole_seconds(request.time_limit, "time_limit", low=1, high=86_400)
        detection = convert.machine_detection(request.machine_detection)
        tenant = call.principal.tenant_id
        credential = await self._credentials.resolve(tenant, request.credential, "credential")
        registry.capability(credential.provider, Capability.TELEPHONY)
        public_urls(self._public_url)
        numbers = await self._numbers(request, action)
        now = datetime.now(UTC)
        campaign = CampaignRow(
            id=unique_id(),
            tenant_id=tenant,
            credential_id=credential.id,
            from_number=from_number,
            action=action,
            state="running",
            calls_per_second=calls_per_second,
            max_concurrent_calls=concurrent,
            total_rows=len(numbers),
            created_at=now,
            updated_at=now,
            name=request.name,
            retry=retry,
            window=window,
            ring_timeout=ring,
            time_limit=limit,
            machine_detection=detection.value,
        )
        await self._store.insert_campaign(campaign, numbers)
        if self._runner is not None:
            self._runner.wake()
        return pb.CreateCampaignResponse(
            campaign=campaign_to_proto(campaign, CampaignCounts(pending=len(numbers)))
        )

    async def _campaign(self, tenant_id: str, campaign_id: str) -> pb.Campaign:
        if not campaign_id:
            raise invalid_field("campaign_id", "required")
        row = await self._store.get_campaign(tenant_id, campaign_id)
        if row is None:
            raise _not_found(campaign_id)
        return campaign_to_proto(row, await self._store.campaign_counts(row.id))

    async def GetCampaign(self, request: pb.GetCampaignRequest, call: CallContext) -> pb.GetCampaignResponse:
        return pb.GetCampaignResponse(
            campaign=await self._campaign(call.principal.tenant_id, request.campaign_id)
        )

    async def _move(
        self,
        call: CallContext,
        campaign_id: str,
        state: CampaignStateName,
        *,
        from_states: tuple[CampaignStateName, ...],
        unchanged: tuple[CampaignStateName, ...],
    ) -> pb.Campaign:
        tenant = call.principal.tenant_id
        if not campaign_id:
            raise invalid_field("campaign_id", "required")
        moved = await self._store.set_campaign_state(
            tenant, campaign_id, state, from_states=from_states, now=datetime.now(UTC)
        )
        if moved is not None:
            if state == "running" and self._runner is not None:
                self._runner.wake()
            return campaign_to_proto(moved, await self._store.campaign_counts(moved.id))
        current = await self._store.get_campaign(tenant, campaign_id)
        if current is None:
            raise _not_found(campaign_id)
        if current.state not in unchanged:
            raise HubError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "CAMPAIGN_ENDED",
                f"campaign {campaign_id!r} is {current.state}: it cannot be made {state}",
                {"campaign": campaign_id, "state": current.state},
            )
        return campaign_to_proto(current, await self._store.campaign_counts(current.id))

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, call: CallContext
    ) -> pb.PauseCampaignResponse:
        campaign = await self._move(
            call, request.campaign_id, "paused", from_states=("running",), unchanged=("paused",)
        )
        return pb.PauseCampaignResponse(campaign=campaign)

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, call: CallContext
    ) -> pb.ResumeCampaignResponse:
        campaign = await self._move(
            call, request.campaign_id, "running", from_states=("paused",), unchanged=("running",)
        )
        return pb.ResumeCampaignResponse(campaign=campaign)

    async def CancelCampaign(
        self, request: pb.CancelCampaignRequest, call: CallContext
    ) -> pb.CancelCampaignResponse:
        campaign = await self._move(
            call,
            request.campaign_id,
            "canceled",
            from_states=("running", "paused"),
            unchanged=("canceled", "completed"),
        )
        return pb.CancelCampaignResponse(campaign=campaign)
