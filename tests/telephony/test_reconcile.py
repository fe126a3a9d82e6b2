"""Reconciliation through the hub, against the fake providers: a call whose every callback
is lost ends as the provider has it (Twilio, Vonage, Exotel); a call whose place answer came
too late (accepted by Twilio, the hub gave up waiting) was asked for once, never again, and
is found at Twilio by its numbers and settled; one that never reached Twilio is failed as
never placed; a campaign whose calls' callbacks are all lost completes without calling
anyone twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from callers.types import CallStatus
from integration_hub.telephony.reconcile import CallReconciler
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import telephony_pb2 as pb
from tests.fakes.exotel_server import EXOPHONE, FakeExotel
from tests.fakes.twilio_server import FakeTwilio
from tests.fakes.vonage_server import FakeVonage
from tests.harness import HubUnderTest, free_port, running_hub, settings_for
from tests.telephony.hub_calls import RETRYING_POLICY, error_info, stub, wait_until

pytestmark = pytest.mark.timeout(60)

# A pass's clock, far enough on that every call is silent and every lease has run out.
LATER = timedelta(minutes=30)


@dataclass
class Provider:
    name: str
    fake: Any
    to: str
    from_: str


PROVIDERS: dict[str, tuple[Callable[[], Any], str, str]] = {
    "twilio": (lambda: FakeTwilio(retry_after="0"), "+14155552671", "+14155550100"),
    "vonage": (FakeVonage, "+14155552671", "+14155550199"),
    "exotel": (lambda: FakeExotel(retry_after="0"), "+919876543210", EXOPHONE),
}


@contextlib.asynccontextmanager
async def hub_with(tmp_path: Path, name: str) -> AsyncIterator[tuple[HubUnderTest, Provider]]:
    make, to, from_ = PROVIDERS[name]
    port = free_port()
    settings = settings_for(
        tmp_path,
        database_url=None,
        http_port=port,
        public_url=f"http://127.0.0.1:{port}",
        policy=RETRYING_POLICY,
    )
    async with make() as fake, running_hub(settings) as hub:
        await hub.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider=name, name="phone", secret=fake.secret, options=fake.options
            ),
            metadata=hub.auth(hub.tokens.admin),
        )
        yield hub, Provider(name, fake, to, from_)


def invoke(hub: HubUnderTest) -> list[tuple[str, str]]:
    return hub.auth(hub.tokens.invoke_only)


def media_call(provider: Provider) -> pb.PlaceCallRequest:
    request = pb.PlaceCallRequest(
        credential="phone",
        to=provider.to,
        action=pb.CallAction(media_stream=pb.MediaStreamAction(parameters={"agent": "support"})),
    )
    setattr(request, "from", provider.from_)
    return request


async def get(hub: HubUnderTest, call_id: str) -> pb.Call:
    return (await stub(hub.channel).GetCall(pb.GetCallRequest(call_id=call_id), metadata=invoke(hub))).call


def reconciler(hub: HubUnderTest) -> CallReconciler:
    assert hub.hub.reconciler is not None
    return hub.hub.reconciler


async def reconcile(hub: HubUnderTest, *, after: timedelta = LATER) -> int:
    return await reconciler(hub).reconcile_once(datetime.now(UTC) + after)


def asked(provider: Provider) -> int:
    """The provider's REST requests that read calls (GET)."""
    return sum(1 for r in provider.fake.requests if r["method"] == "GET")


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_a_call_whose_callbacks_are_all_lost_ends_as_the_provider_has_it(
    tmp_path: Path, name: str
) -> None:
    async with hub_with(tmp_path, name) as (hub, provider):
        call = (await stub(hub.channel).PlaceCall(media_call(provider), metadata=invoke(hub))).call
        sid = call.provider_call_id
        assert sid
        # Not silent long enough yet: nobody is asked.
        before = asked(provider)
        assert await reconcile(hub, after=timedelta(0)) == 0
        assert asked(provider) == before
        # Silent: asked once; the provider has it still queued, which the call knows.
        assert await reconcile(hub) == 0
        assert asked(provider) == before + 1
        # Leased: no other pass (of this worker or another) asks again within the lease.
        assert await reconcile(hub) == 0
        assert asked(provider) == before + 1
        # The call is answered and ends at the provider; every callback is lost.
        provider.fake.settle(sid, CallStatus.IN_PROGRESS)
        provider.fake.settle(sid, CallStatus.COMPLETED)
        assert (await get(hub, call.id)).status == pb.CALL_STATUS_QUEUED
        assert await reconcile(hub, after=LATER * 2) == 1
        ended = await get(hub, call.id)
        assert (ended.status, ended.provider_call_id) == (pb.CALL_STATUS_COMPLETED, sid)
        # Ended: never asked about again.
        after = asked(provider)
        assert await reconcile(hub, after=LATER * 4) == 0
        assert asked(provider) == after
        # The answer was applied as an event of the call, once.
        events = await hub.hub.store.list_call_events("acme", 0)
        reconciled = [e for e, _ in events if e.event_id.startswith("reconcile:")]
        assert [(e.status, e.raw["source"]) for e in reconciled] == [("completed", "reconcile")]


def creates(provider: Provider) -> int:
    """The provider's create-call requests."""
    path = {"twilio": "/Calls.json", "vonage": "/v1/calls", "exotel": "/Calls/connect.json"}[provider.name]
    return sum(1 for r in provider.fake.requests if r["method"] == "POST" and str(r["path"]).endswith(path))


@pytest.mark.parametrize("name", sorted(PROVIDERS))
async def test_a_late_place_answer_is_never_retried_and_the_call_is_found(tmp_path: Path, name: str) -> None:
    async with hub_with(tmp_path, name) as (hub, provider):
        fake = provider.fake
        # The provider takes the call, but answers after the hub has stopped waiting: the
        # policy retries 429/502/503 up to 3 times, never this.
        fake.late_answer = 1.5
        request = media_call(provider)
        request.timeout.CopyFrom(duration_pb2.Duration(nanos=400_000_000))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(hub.channel).PlaceCall(request, metadata=invoke(hub))
        assert error_info(caught.value).reason == "CALL_OUTCOME_UNKNOWN"
        assert creates(provider) == 1
        (sid,) = fake.calls
        fake.late_answer = 0
        (row,) = (await stub(hub.channel).ListCalls(pb.ListCallsRequest(), metadata=invoke(hub))).calls
        assert (row.status, row.provider_call_id) == (pb.CALL_STATUS_QUEUED, "")
        # Another call to the same number never reaches the provider (the connection is reset).
        fake.fail_next("reset")
        with pytest.raises(grpc.aio.AioRpcError) as reset:
            await stub(hub.channel).PlaceCall(media_call(provider), metadata=invoke(hub))
        assert error_info(reset.value).reason == "CALL_OUTCOME_UNKNOWN"
        assert list(fake.calls) == [sid]
        # The first call went on at the provider and ended; its callbacks are all lost.
        fake.settle(sid, CallStatus.IN_PROGRESS)
        fake.settle(sid, CallStatus.COMPLETED)
        assert await reconcile(hub) == 2
        calls = (await stub(hub.channel).ListCalls(pb.ListCallsRequest(), metadata=invoke(hub))).calls
        found = next(c for c in calls if c.id == row.id)
        assert (found.status, found.provider_call_id) == (pb.CALL_STATUS_COMPLETED, sid)
        (never,) = [c for c in calls if c.id != row.id]
        assert (never.status, never.provider_call_id) == (pb.CALL_STATUS_FAILED, "")
        assert never.error.startswith("never reached the provider")
        assert list(fake.calls) == [sid]  # nobody was called again
        assert creates(provider) == 2


async def test_a_campaign_whose_callbacks_are_all_lost_completes_calling_each_number_once(
    tmp_path: Path,
) -> None:
    async with hub_with(tmp_path, "twilio") as (hub, twilio):
        fake: FakeTwilio = twilio.fake
        rows = 6
        request = pb.CreateCampaignRequest(
            name="lost callbacks",
            credential="phone",
            action=pb.CallAction(say=pb.SayAction(text="Hello {name}")),
            rows=[pb.CampaignRow(to=f"+1415555{i:04d}", variables={"name": f"N{i}"}) for i in range(rows)],
            calls_per_second=20,
            max_concurrent_calls=rows,
        )
        setattr(request, "from", twilio.from_)
        created = (await stub(hub.channel).CreateCampaign(request, metadata=invoke(hub))).campaign
        assert await wait_until(lambda: len(fake.calls) == rows, timeout=10)
        # Every call is answered and ends at Twilio; not one callback reaches the hub.
        for sid in list(fake.calls):
            fake.settle(sid, CallStatus.COMPLETED)
        assert await reconcile(hub) == rows

        async def completed() -> bool:
            campaign = (
                await stub(hub.channel).GetCampaign(
                    pb.GetCampaignRequest(campaign_id=created.id), metadata=invoke(hub)
                )
            ).campaign
            return campaign.state == pb.CAMPAIGN_STATE_COMPLETED and campaign.counts.completed == rows

        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not await completed():
            assert datetime.now(UTC) < deadline, "the campaign did not complete"
            await asyncio.sleep(0.1)
        assert sorted(c.to for c in fake.calls.values()) == [f"+1415555{i:04d}" for i in range(rows)]
