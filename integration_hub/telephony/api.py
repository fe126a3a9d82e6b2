"""The TelephonyService RPCs: protobuf in and out, the logic in calls.py and events.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC

from integration_hub.errors import invalid_field
from integration_hub.rpc import CallContext
from integration_hub.store.calls import CallQuery
from integration_hub.telephony import convert
from integration_hub.telephony.calls import (
    DEFAULT_PAGE,
    MAX_PAGE,
    NewCall,
    TelephonyCalls,
    check_idempotency_key,
)
from integration_hub.telephony.campaign_api import CampaignApi
from integration_hub.telephony.events import CallEvents
from integration_hub.telephony.media_agent import CallMediaStreams
from integration_hub.telephony.numbers import e164
from integration_hub.v1 import telephony_pb2 as pb

# Placing or hanging up a call is one short request to the provider.
DEFAULT_PROVIDER_TIMEOUT, MAX_PROVIDER_TIMEOUT = 10.0, 60.0


def _timeout(request_timeout: object, call: CallContext) -> float:
    value = getattr(request_timeout, "ToNanoseconds", lambda: 0)() / 1e9
    if value and not 0 < value <= MAX_PROVIDER_TIMEOUT:
        raise invalid_field("timeout", f"must be more than 0 and at most {MAX_PROVIDER_TIMEOUT:g}s")
    return call.time_left(value or DEFAULT_PROVIDER_TIMEOUT)


def new_call(request: pb.PlaceCallRequest) -> NewCall:
    return NewCall(
        credential=request.credential,
        to=e164("to", request.to),
        from_=e164("from", getattr(request, "from")),
        action=convert.action_from_proto(request.action) if request.HasField("action") else _no_action(),
        ring_timeout_seconds=convert.whole_seconds(request.ring_timeout, "ring_timeout", low=5, high=600),
        time_limit_seconds=convert.whole_seconds(request.time_limit, "time_limit", low=1, high=86_400),
        machine_detection=convert.machine_detection(request.machine_detection),
        metadata=convert.check_parameters(request.metadata, "metadata"),
        idempotency_key=check_idempotency_key(request.idempotency_key),
    )


def _no_action() -> dict[str, str]:
    raise invalid_field("action", "required: one of media_stream, say, provider_instructions")


class TelephonyApi:
    def __init__(
        self, calls: TelephonyCalls, events: CallEvents, media: CallMediaStreams, campaigns: CampaignApi
    ) -> None:
        self._calls = calls
        self._events = events
        self._media = media
        self._campaigns = campaigns

    async def PlaceCall(self, request: pb.PlaceCallRequest, call: CallContext) -> pb.PlaceCallResponse:
        if not request.credential:
            raise invalid_field("credential", "required: a telephony credential id or name")
        row = await self._calls.place(call, new_call(request), _timeout(request.timeout, call))
        return pb.PlaceCallResponse(call=convert.call_to_proto(row))

    async def GetCall(self, request: pb.GetCallRequest, call: CallContext) -> pb.GetCallResponse:
        return pb.GetCallResponse(call=convert.call_to_proto(await self._calls.get(call, request.call_id)))

    async def ListCalls(self, request: pb.ListCallsRequest, call: CallContext) -> pb.ListCallsResponse:
        if not 0 <= request.page_size <= MAX_PAGE:
            raise invalid_field("page_size", f"must be from 0 to {MAX_PAGE}")
        status = convert.status_from_proto(request.status, "status")
        query = CallQuery(
            tenant_id=call.principal.tenant_id,
            limit=request.page_size or DEFAULT_PAGE,
            status=None if status is None else status.value,
            campaign_id=request.campaign_id or None,
            created_after=request.created_after.ToDatetime(tzinfo=UTC)
            if request.HasField("created_after")
            else None,
            created_before=request.created_before.ToDatetime(tzinfo=UTC)
            if request.HasField("created_before")
            else None,
        )
        rows, next_token = await self._calls.list(call, query, request.page_token)
        return pb.ListCallsResponse(
            calls=[convert.call_to_proto(r) for r in rows], next_page_token=next_token
        )

    async def HangupCall(self, request: pb.HangupCallRequest, call: CallContext) -> pb.HangupCallResponse:
        row = await self._calls.hangup(call, request.call_id, _timeout(None, call))
        return pb.HangupCallResponse(call=convert.call_to_proto(row))

    async def WatchCalls(
        self, request: pb.WatchCallsRequest, call: CallContext
    ) -> AsyncIterator[pb.WatchCallsResponse]:
        events = self._events.watch(
            call.principal.tenant_id,
            after_sequence=request.after_sequence,
            campaign_id=request.campaign_id or None,
        )
        async for event, row in events:
            yield pb.WatchCallsResponse(event=convert.event_to_proto(event), call=convert.call_to_proto(row))

    async def CallMedia(
        self, requests: AsyncIterator[pb.CallMediaRequest], call: CallContext
    ) -> AsyncIterator[pb.CallMediaResponse]:
        async for response in self._media.serve(requests, call):
            yield response

    # --- campaigns: campaign_api.py ----------------------------------------------------

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, call: CallContext
    ) -> pb.CreateCampaignResponse:
        return await self._campaigns.CreateCampaign(request, call)

    async def GetCampaign(self, request: pb.GetCampaignRequest, call: CallContext) -> pb.GetCampaignResponse:
        return await self._campaigns.GetCampaign(request, call)

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, call: CallContext
    ) -> pb.PauseCampaignResponse:
        return await self._campaigns.PauseCampaign(request, call)

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, call: CallContext
    ) -> pb.ResumeCampaignResponse:
        return await self._campaigns.ResumeCampaign(request, call)

    async def CancelCampaign(
        self, request: pb.CancelCampaignRequest, call: CallContext
    ) -> pb.CancelCampaignResponse:
        return await self._campaigns.CancelCampaign(request, call)
