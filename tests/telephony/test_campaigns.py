"""Campaigns through the TelephonyService API of a running hub, its Twilio credential
pointed at the loopback FakeTwilio (real caller, real signed callbacks): every row called
once per attempt, at the configured rate, never more live calls than allowed, retries on
busy and no-answer, pause, resume, cancel, the calling window, the variables, and every
bad request refused naming its field."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import duration_pb2

from callers.types import CallStatus
from integration_hub.store.campaigns import CallingWindow
from integration_hub.telephony.campaigns import placeholders, render, window_state
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import telephony_pb2 as pb
from integration_hub.v1 import telephony_pb2_grpc
from tests.fakes.twilio_server import FakeCall, FakeTwilio
from tests.harness import HubUnderTest, eventually, free_port, running_hub, settings_for
from tests.store.tcp_proxy import TcpProxy
from tests.telephony.campaign_fakes import CalledParties, fastest, fitted_rate, rate

pytestmark = pytest.mark.timeout(60)

FROM = "+14155550100"


def number(i: int) -> str:
    return f"+1415555{i:04d}"


@dataclass
class CampaignHub:
    hub: HubUnderTest
    fake: FakeTwilio

    @property
    def stub(self) -> telephony_pb2_grpc.TelephonyServiceStub:
        return telephony_pb2_grpc.TelephonyServiceStub(self.hub.channel)

    @property
    def auth(self) -> list[tuple[str, str]]:
        return self.hub.auth(self.hub.tokens.invoke_only)

    async def create(self, request: pb.CreateCampaignRequest) -> pb.Campaign:
        response = await self.stub.CreateCampaign(request, metadata=self.auth)
        campaign: pb.Campaign = response.campaign
        return campaign

    async def get(self, campaign_id: str) -> pb.Campaign:
        response = await self.stub.GetCampaign(
            pb.GetCampaignRequest(campaign_id=campaign_id), metadata=self.auth
        )
        campaign: pb.Campaign = response.campaign
        return campaign

    async def finished(self, campaign_id: str, timeout: float = 20.0) -> pb.Campaign:
        async def done() -> pb.Campaign | None:
            campaign = await self.get(campaign_id)
            ended = (pb.CAMPAIGN_STATE_COMPLETED, pb.CAMPAIGN_STATE_CANCELED)
            return campaign if campaign.state in ended and not campaign.counts.calling else None

        found = await eventually(done, timeout=timeout)
        assert found is not None, await self.get(campaign_id)
        return found  # type: ignore[no-any-return]


@contextlib.contextmanager
def _at_info() -> Iterator[None]:
    """The hub's logs at INFO, as it runs in production: running_hub logs at DEBUG, and
    every DEBUG line (each SQLite statement, each access) goes through the redaction
    filter, which at tens of calls a second costs more than the calls themselves."""
    loggers = [logging.getLogger(name) for name in ("", "aiohttp.access", "asyncio", "aiosqlite")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO if logger.name == "root" else logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def _campaign_hub(tmp_path: Path, database_url: str | None) -> AsyncIterator[CampaignHub]:
    port = free_port()
    settings = settings_for(
        tmp_path, database_url=database_url, http_port=port, public_url=f"http://127.0.0.1:{port}"
    )
    async with FakeTwilio() as fake, running_hub(settings) as hub:
        with _at_info():
            await hub.credentials_stub().CreateCredential(
                cpb.CreateCredentialRequest(
                    provider="twilio", name="phone", secret=fake.secret, options=fake.options
                ),
                metadata=hub.auth(hub.tokens.admin),
            )
        await hub.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(provider="openai", name="llm", secret={"api_key": "sk-test-0000"}),
            metadata=hub.auth(hub.tokens.admin),
        )
        yield CampaignHub(hub, fake)


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[CampaignHub]:
    async for hub in _campaign_hub(tmp_path, None):
        yield hub


@pytest.fixture
async def phone_pg(tmp_path: Path, postgres_url: str) -> AsyncIterator[CampaignHub]:
    async for hub in _campaign_hub(tmp_path, postgres_url):
        yield hub


def campaign_request(rows: int, **fields: object) -> pb.CreateCampaignRequest:
    request = pb.CreateCampaignRequest(
        name="december",
        credential="phone",
        action=pb.CallAction(say=pb.SayAction(text="Hello {name}, your order {order} ships today")),
        rows=[
            pb.CampaignRow(to=number(i), variables={"name": f"N{i}", "order": str(1000 + i)})
            for i in range(rows)
        ],
        calls_per_second=50,
        max_concurrent_calls=50,
    )
    setattr(request, "from", FROM)
    for name, value in fields.items():
        if isinstance(value, duration_pb2.Duration | pb.CampaignRetry | pb.CallingWindow | pb.CallAction):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


async def test_every_row_is_called_once_at_the_rate_with_its_variables(phone_pg: CampaignHub) -> None:
    async with CalledParties(phone_pg.fake) as parties:
        created = await phone_pg.create(campaign_request(125, calls_per_second=25))
        assert created.state == pb.CAMPAIGN_STATE_RUNNING
        assert (created.total_rows, created.counts.pending, created.progress) == (125, 125, 0.0)
        campaign = await phone_pg.finished(created.id)
    assert campaign.state == pb.CAMPAIGN_STATE_COMPLETED
    assert (campaign.counts.completed, campaign.counts.pending, campaign.progress) == (125, 0, 1.0)
    assert parties.calls_per_number() == {number(i): 1 for i in range(125)}
    said = {call.to: call.say for call in phone_pg.fake.calls.values()}
    spoken = said[number(7)]
    assert spoken is not None
    assert spoken["text"] == "Hello N7, your order 1007 ships today"
    # The schedule (each row's slot, kept in the store) is exact; the provider sees it
    # within the jitter of each call's way there.
    rows = await phone_pg.hub.hub.store.list_campaign_rows(created.id)
    slots = sorted(row.slot_at for row in rows if row.slot_at is not None)
    assert fitted_rate(slots) == pytest.approx(25, rel=0.01)
    measured = fitted_rate(parties.starts())
    print(f"provider-side rate {measured:.2f}/s (first to last: {rate(parties.starts()):.2f}/s) for 25/s")
    assert abs(measured - 25) / 25 < 0.05, measured
    assert min(b - a for a, b in itertools.pairwise(slots)) >= timedelta(seconds=1 / 25, microseconds=-1)
    # Arrival at the provider carries the machine's scheduling jitter too (bounded, not exact).
    assert fastest(parties.starts(), 100) <= 25 * 1.25
    # Each call is the campaign's, with the row's variables as metadata.
    listed = await phone_pg.stub.ListCalls(
        pb.ListCallsRequest(campaign_id=created.id, page_size=1000), metadata=phone_pg.auth
    )
    assert len(listed.calls) == 125
    by_to = {call.to: call for call in listed.calls}
    assert by_to[number(3)].metadata == {"name": "N3", "order": "1003"}
    assert {call.attempt for call in listed.calls} == {1}
    assert {call.status for call in listed.calls} == {pb.CALL_STATUS_COMPLETED}


async def test_busy_and_no_answer_are_retried_after_the_delay(phone: CampaignHub) -> None:
    def outcome(call: FakeCall, nth: int) -> CallStatus:
        row = int(call.to[-4:])
        if row % 3 == 1:
            return CallStatus.BUSY if nth == 1 else CallStatus.COMPLETED
        if row % 3 == 2:
            return CallStatus.NO_ANSWER  # every time: gives up after max_attempts
        return CallStatus.COMPLETED

    retry = pb.CampaignRetry(
        on=[pb.CALL_STATUS_BUSY, pb.CALL_STATUS_NO_ANSWER],
        max_attempts=2,
        delay=duration_pb2.Duration(nanos=400_000_000),
    )
    async with CalledParties(phone.fake, outcome) as parties:
        created = await phone.create(campaign_request(12, retry=retry))
        campaign = await phone.finished(created.id)
    counts = campaign.counts
    assert (counts.completed, counts.busy, counts.no_answer, counts.failed) == (8, 0, 4, 0)
    per_number = parties.calls_per_number()
    assert per_number == {number(i): 1 if i % 3 == 0 else 2 for i in range(12)}
    # The second attempt came at least the delay after the first one ended.
    for i in (1, 2, 4):
        calls = sorted(
            (c for c in phone.fake.calls.values() if c.to == number(i)), key=lambda c: c.date_created
        )
        first_end = next(e.ended for e in parties.ended if e.sid == calls[0].sid)
        assert (calls[1].date_created - first_end).total_seconds() >= 0.4
    listed = await phone.stub.ListCalls(pb.ListCallsRequest(campaign_id=created.id), metadata=phone.auth)
    attempts = sorted((c.to, c.attempt) for c in listed.calls if c.to == number(2))
    assert attempts == [(number(2), 1), (number(2), 2)]


async def test_live_calls_never_exceed_the_limit(phone: CampaignHub) -> None:
    async with CalledParties(phone.fake, duration=0.25) as parties:
        created = await phone.create(campaign_request(40, calls_per_second=100, max_concurrent_calls=4))
        campaign = await phone.finished(created.id)
    assert campaign.counts.completed == 40
    assert parties.max_live() == 4  # reached, never passed
    assert parties.calls_per_number() == {number(i): 1 for i in range(40)}


async def test_pause_resume_and_cancel(phone: CampaignHub) -> None:
    async with CalledParties(phone.fake) as parties:
        created = await phone.create(campaign_request(80, calls_per_second=20))
        await eventually(lambda: _at_least(phone.fake, 10), timeout=5)
        paused = await phone.stub.PauseCampaign(
            pb.PauseCampaignRequest(campaign_id=created.id), metadata=phone.auth
        )
        assert paused.campaign.state == pb.CAMPAIGN_STATE_PAUSED
        at_pause = len(phone.fake.calls)
        await _sleep(0.6)
        assert len(phone.fake.calls) <= at_pause + 1  # at most one already on its way
        stopped = len(phone.fake.calls)
        again = await phone.stub.PauseCampaign(
            pb.PauseCampaignRequest(campaign_id=created.id), metadata=phone.auth
        )
        assert again.campaign.state == pb.CAMPAIGN_STATE_PAUSED
        resumed = await phone.stub.ResumeCampaign(
            pb.ResumeCampaignRequest(campaign_id=created.id), metadata=phone.auth
        )
        assert resumed.campaign.state == pb.CAMPAIGN_STATE_RUNNING
        await eventually(lambda: _at_least(phone.fake, stopped + 10), timeout=5)
        canceled = await phone.stub.CancelCampaign(
            pb.CancelCampaignRequest(campaign_id=created.id), metadata=phone.auth
        )
        assert canceled.campaign.state == pb.CAMPAIGN_STATE_CANCELED
        at_cancel = len(phone.fake.calls)
        campaign = await phone.finished(created.id)
        await _sleep(0.5)
        assert len(phone.fake.calls) <= at_cancel + 1
    counts = campaign.counts
    called = len(phone.fake.calls)
    assert counts.completed == called
    assert counts.canceled == 80 - called
    assert counts.pending == counts.calling == 0
    assert 0 < campaign.progress < 1
    assert set(parties.calls_per_number().values()) == {1}
    # Canceled and completed campaigns are answered as they are; a canceled one cannot resume.
    again_canceled = await phone.stub.CancelCampaign(
        pb.CancelCampaignRequest(campaign_id=created.id), metadata=phone.auth
    )
    assert again_canceled.campaign.state == pb.CAMPAIGN_STATE_CANCELED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await phone.stub.ResumeCampaign(pb.ResumeCampaignRequest(campaign_id=created.id), metadata=phone.auth)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def _at_least(fake: FakeTwilio, count: int) -> bool:
    return len(fake.calls) >= count


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_no_call_outside_the_calling_window(phone: CampaignHub) -> None:
    zone = "Asia/Kolkata"
    local = datetime.now(UTC).astimezone(ZoneInfo(zone))
    later = (local + timedelta(hours=2)).strftime("%H:%M")
    much_later = (local + timedelta(hours=3)).strftime("%H:%M")
    window = pb.CallingWindow(time_zone=zone, start=later, end=much_later)
    created = await phone.create(campaign_request(5, window=window))
    await _sleep(1.5)
    assert phone.fake.calls == {}
    campaign = await phone.get(created.id)
    assert (campaign.state, campaign.counts.pending) == (pb.CAMPAIGN_STATE_RUNNING, 5)
    # Open now: called.
    open_now = pb.CallingWindow(
        time_zone=zone,
        start=(local - timedelta(hours=1)).strftime("%H:%M"),
        end=(local + timedelta(hours=1)).strftime("%H:%M"),
    )
    async with CalledParties(phone.fake):
        second = await phone.create(campaign_request(5, window=open_now))
        done = await phone.finished(second.id)
    assert done.counts.completed == 5


def test_window_state_in_its_zone_across_midnight_and_dst() -> None:
    kolkata = CallingWindow("Asia/Kolkata", "09:00", "18:00")
    at = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)  # 09:30 in Kolkata
    assert window_state(kolkata, at) == (True, datetime(2026, 12, 3, 12, 30, tzinfo=UTC))
    assert window_state(kolkata, datetime(2026, 12, 3, 3, 29, tzinfo=UTC))[0] is False  # 08:59
    assert window_state(kolkata, datetime(2026, 12, 3, 12, 30, tzinfo=UTC))[0] is False  # 18:00: end excluded
    night = CallingWindow("Europe/Berlin", "22:00", "06:00")
    assert window_state(night, datetime(2026, 12, 3, 22, 0, tzinfo=UTC)) == (
        True,  # 23:00 in Berlin: closes at 06:00 the next morning
        datetime(2026, 12, 4, 5, 0, tzinfo=UTC),
    )
    assert window_state(night, datetime(2026, 12, 4, 4, 0, tzinfo=UTC)) == (
        True,
        datetime(2026, 12, 4, 5, 0, tzinfo=UTC),
    )
    assert window_state(night, datetime(2026, 12, 4, 12, 0, tzinfo=UTC))[0] is False
    # New York on the day clocks go back (1 Nov 2026): 18:00 local is 23:00 UTC.
    new_york = CallingWindow("America/New_York", "00:00", "18:00")
    assert window_state(new_york, datetime(2026, 11, 1, 15, 0, tzinfo=UTC)) == (
        True,
        datetime(2026, 11, 1, 23, 0, tzinfo=UTC),
    )
    all_evening = CallingWindow("UTC", "12:00", "24:00")
    assert window_state(all_evening, datetime(2026, 12, 3, 23, 59, tzinfo=UTC)) == (
        True,
        datetime(2026, 12, 4, 0, 0, tzinfo=UTC),
    )


def test_say_templates() -> None:
    assert placeholders("Hi {name}, {{literal}} {order-id}") == ["name", "order-id"]
    assert render("Hi {name}, {{literal}}", {"name": "Ana"}) == "Hi Ana, {literal}"


async def test_variables_become_media_stream_parameters(phone: CampaignHub) -> None:
    action = pb.CallAction(
        media_stream=pb.MediaStreamAction(parameters={"agent": "sales", "name": "default"})
    )
    async with CalledParties(phone.fake):
        created = await phone.create(campaign_request(2, action=action))
        await phone.finished(created.id)
    streamed = {call.to: call.stream_parameters for call in phone.fake.calls.values()}
    assert streamed[number(1)] == {"agent": "sales", "name": "N1", "order": "1001"}


async def test_a_refused_call_fails_its_row_only(phone: CampaignHub) -> None:
    phone.fake.fail_next("bad_number")
    async with CalledParties(phone.fake):
        created = await phone.create(campaign_request(5, calls_per_second=10))
        campaign = await phone.finished(created.id)
    assert (campaign.counts.failed, campaign.counts.completed) == (1, 4)
    listed = await phone.stub.ListCalls(
        pb.ListCallsRequest(campaign_id=created.id, status=pb.CALL_STATUS_FAILED), metadata=phone.auth
    )
    assert len(listed.calls) == 1
    assert "21211" in listed.calls[0].error


async def test_the_rest_mapping_and_other_tenants(phone: CampaignHub) -> None:
    hub = phone.hub
    body = {
        "credential": "phone",
        "from": FROM,
        "action": {"say": {"text": "Hello"}},
        "rows": [{"to": number(1)}],
        "calls_per_second": 5,
    }
    async with CalledParties(phone.fake):
        async with hub.http.post(
            f"{hub.http_base}/v1/campaigns", json=body, headers=hub.headers(hub.tokens.invoke_only)
        ) as response:
            assert response.status == 200, await response.text()
            created = await response.json()
        campaign = await phone.finished(created["campaign"]["id"])
    assert campaign.counts.completed == 1
    async with hub.http.get(
        f"{hub.http_base}/v1/campaigns/{campaign.id}", headers=hub.headers(hub.tokens.invoke_only)
    ) as response:
        shown = await response.json()
    assert shown["campaign"]["state"] == "CAMPAIGN_STATE_COMPLETED"
    assert shown["campaign"]["progress"] == 1
    other = hub.auth(hub.tokens.other_tenant)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await phone.stub.GetCampaign(pb.GetCampaignRequest(campaign_id=campaign.id), metadata=other)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await phone.stub.CancelCampaign(pb.CancelCampaignRequest(campaign_id=campaign.id), metadata=other)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def _bad_rows() -> pb.CreateCampaignRequest:
    request = campaign_request(3)
    request.rows[1].to = "4155550101"
    return request


def _missing_variable() -> pb.CreateCampaignRequest:
    request = campaign_request(3)
    del request.rows[2].variables["order"]
    return request


def _bad_variable_key() -> pb.CreateCampaignRequest:
    request = campaign_request(3)
    request.rows[0].variables["no spaces"] = "x"
    return request


@pytest.mark.parametrize(
    ("request_of", "field", "words"),
    [
        (lambda: campaign_request(0), "rows", "at least one"),
        (_bad_rows, "rows[1].to", "E.164"),
        (_missing_variable, "rows[2].variables.order", "{order}"),
        (_bad_variable_key, "rows[0].variables", "letters, digits"),
        (lambda: campaign_request(1, credential=""), "credential", "required"),
        (lambda: campaign_request(1, **{"from": "0044"}), "from", "E.164"),
        (lambda: campaign_request(1, calls_per_second=150), "calls_per_second", "at most 100"),
        (lambda: campaign_request(1, calls_per_second=-1), "calls_per_second", "more than 0"),
        (lambda: campaign_request(1, max_concurrent_calls=5000), "max_concurrent_calls", "1 to 1000"),
        (
            lambda: campaign_request(1, action=pb.CallAction(say=pb.SayAction(text="Hi {name.upper}"))),
            "action.say.text",
            "variable name",
        ),
        (
            lambda: campaign_request(1, action=pb.CallAction(say=pb.SayAction(text="Hi {name"))),
            "action.say.text",
            "literal braces",
        ),
        (
            lambda: campaign_request(
                1, retry=pb.CampaignRetry(on=[pb.CALL_STATUS_COMPLETED], max_attempts=2)
            ),
            "retry.on[0]",
            "busy, no-answer and failed",
        ),
        (
            lambda: campaign_request(1, retry=pb.CampaignRetry(max_attempts=11)),
            "retry.max_attempts",
            "1 to 10",
        ),
        (
            lambda: campaign_request(
                1, window=pb.CallingWindow(time_zone="Mars/Olympus", start="09:00", end="18:00")
            ),
            "window.time_zone",
            "IANA",
        ),
        (
            lambda: campaign_request(1, window=pb.CallingWindow(time_zone="UTC", start="9:00", end="18:00")),
            "window.start",
            "HH:MM",
        ),
        (
            lambda: campaign_request(1, window=pb.CallingWindow(time_zone="UTC", start="09:00", end="25:00")),
            "window.end",
            "time of day",
        ),
        (
            lambda: campaign_request(1, ring_timeout=duration_pb2.Duration(seconds=2)),
            "ring_timeout",
            "from 5",
        ),
    ],
)
async def test_bad_requests_name_the_field(
    phone: CampaignHub, request_of: object, field: str, words: str
) -> None:
    request = request_of()  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await phone.stub.CreateCampaign(request, metadata=phone.auth)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}:"), caught.value.details()
    assert words in caught.value.details()


async def test_too_many_rows_and_credentials_that_cannot_call(phone: CampaignHub) -> None:
    request = campaign_request(1)
    request.rows.extend([pb.CampaignRow(to=number(1))] * 100_000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await phone.stub.CreateCampaign(request, metadata=phone.auth)
    assert caught.value.details().startswith("rows: at most 100000")
    for credential, code in (
        ("nope", grpc.StatusCode.NOT_FOUND),
        ("llm", grpc.StatusCode.FAILED_PRECONDITION),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await phone.stub.CreateCampaign(campaign_request(1, credential=credential), metadata=phone.auth)
        assert caught.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await phone.stub.GetCampaign(pb.GetCampaignRequest(campaign_id="nope"), metadata=phone.auth)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await phone.stub.PauseCampaign(pb.PauseCampaignRequest(), metadata=phone.auth)
    assert caught.value.details().startswith("campaign_id:")


@pytest.mark.timeout(120)  # 14 s on a quiet machine; a loaded one needs longer to catch up
async def test_a_store_outage_pauses_the_campaign_and_nothing_is_called_twice(
    tmp_path: Path, postgres_url: str
) -> None:
    upstream = urlsplit(postgres_url)
    proxy = TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432)
    await proxy.start()
    through_proxy = urlunsplit(upstream._replace(netloc=f"{upstream.username}@127.0.0.1:{proxy.port}"))
    try:
        async for phone in _campaign_hub(tmp_path, through_proxy):
            async with CalledParties(phone.fake) as parties:
                created = await phone.create(campaign_request(60, calls_per_second=25))
                await eventually(functools.partial(_at_least, phone.fake, 15), timeout=5)
                await proxy.stop()
                await _sleep(2.0)
                during = len(phone.fake.calls)
                await proxy.start()
                campaign = await phone.finished(created.id, timeout=90)
            logs = phone.hub.logs.getvalue()
    finally:
        await proxy.stop()
    assert campaign.counts.completed == 60
    assert parties.calls_per_number() == {number(i): 1 for i in range(60)}
    assert during < 60
    assert "the store is unavailable" in logs
    assert "resumed after" in logs


async def test_a_rate_limited_provider_backs_the_credential_off(phone: CampaignHub) -> None:
    phone.fake.fail_next("rate_limited")  # 429 with Retry-After: 3
    async with CalledParties(phone.fake):
        started = datetime.now(UTC)
        created = await phone.create(campaign_request(3, calls_per_second=1))
        campaign = await phone.finished(created.id)
    assert (campaign.counts.failed, campaign.counts.completed) == (1, 2)
    # The first call was refused at once; the next slot was a second later, but no claim
    # was made on the credential for the provider's Retry-After.
    first_placed = min(call.date_created for call in phone.fake.calls.values())
    assert (first_placed - started).total_seconds() >= 2.5
    assert "the provider refused a call" in phone.hub.logs.getvalue()
