"""Budgets end to end: real hubs (gRPC), real credentials, a fake OpenAI upstream on
loopback, the ledger in process or in a real Redis shared by two hubs. Every answer of
the fake uses 12 input + 7 output = 19 tokens; a chat of "Hi" is estimated at 5 input
tokens, so max_output_tokens = 14 makes its reservation exactly its real use."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from integration_hub.auth import mint_token
from integration_hub.errors import HubError
from integration_hub.policy import PolicyConfig, PolicyError
from integration_hub.policy.budget import Amounts, Price, cost_micro, period_bounds
from integration_hub.policy.budget_ledger import BudgetExceeded, BudgetLedger, Counter, Reservation
from integration_hub.v1 import chat_pb2 as pb
from integration_hub.v1 import chat_pb2_grpc, speech_pb2, speech_pb2_grpc
from tests.fakes.openai_audio import OpenAIAudio
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import HubUnderTest, free_port, running_hub, settings_for
from tests.policy.test_through_hub import KEY, add_credential, details, route, user

pytestmark = pytest.mark.timeout(90)
TENANT_TOKENS_190 = "[tenants.acme.budget]\ntokens_per_day = 190\n"
# 2026-12-04 23:59:58 UTC: two seconds before a day (not a month) ends.
LATE = datetime(2026, 12, 4, 23, 59, 58, tzinfo=UTC).timestamp()


@pytest.fixture
async def main() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}, default_reply=ChatReply(text="from main")) as fake:
        yield fake


@pytest.fixture
async def backup() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}, default_reply=ChatReply(text="from backup")) as fake:
        yield fake


@contextlib.asynccontextmanager
async def hub_with(
    tmp: Path, policy: str, credentials: dict[str, str], redis_url: str | None = None
) -> AsyncIterator[HubUnderTest]:
    tmp.mkdir(parents=True, exist_ok=True)
    async with running_hub(settings_for(tmp, database_url=None, redis_url=redis_url, policy=policy)) as hut:
        for name, base_url in credentials.items():
            await add_credential(hut, name, base_url)
        yield hut


async def chat(
    hut: HubUnderTest, model: str = "gpt-4o", credential: str = "main", token: str | None = None, **kw: object
) -> pb.ChatResponse:
    return await chat_pb2_grpc.ChatServiceStub(hut.channel).Chat(
        pb.ChatRequest(credential=credential, model=model, messages=[user("Hi")], max_output_tokens=14, **kw),  # type: ignore[arg-type]
        metadata=hut.auth(token or hut.tokens.invoke_only),
    )


async def outcome(hut: HubUnderTest, **kw: object) -> str | grpc.aio.AioRpcError:
    try:
        await chat(hut, **kw)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as exc:
        return exc
    return "ok"


def assert_budget_refusal(error: object, scope: str, owner: str, period: str, unit: str) -> None:
    assert isinstance(error, grpc.aio.AioRpcError), error
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = details(error)
    assert info.reason == "BUDGET_EXCEEDED"
    assert dict(info.metadata) == {"scope": scope, "id": owner, "period": period, "unit": unit}
    assert retry is not None  # when the period ends


def counter(hut: HubUnderTest, scope: str, owner: str, unit: str = "tokens", period: str = "day") -> Counter:
    ledger = hut.hub.policy_engine.budgets.ledger  # type: ignore[union-attr]
    label, ends = period_bounds(period, ledger.clock())  # type: ignore[arg-type]
    return Counter(scope, owner, "acme", unit, period, label, 1, 0.8, ends)  # type: ignore[arg-type]


async def spent(hut: HubUnderTest, scope: str, owner: str, unit: str = "tokens") -> tuple[int, int]:
    ledger = hut.hub.policy_engine.budgets.ledger  # type: ignore[union-attr]
    return await ledger.spent(counter(hut, scope, owner, unit))


# --- concurrency ------------------------------------------------------------------------------------


async def test_200_concurrent_calls_against_room_for_10_let_exactly_10_through(
    tmp_path: Path, main: FakeOpenAI
) -> None:
    async with hub_with(tmp_path, TENANT_TOKENS_190, {"main": main.base_url}) as hut:
        results = await asyncio.gather(*(outcome(hut) for _ in range(200)))
        assert await spent(hut, "tenant", "acme") == (190, 0)
    assert results.count("ok") == 10
    assert len(main.requests) == 10  # refusals never reach the provider
    for error in (r for r in results if r != "ok"):
        assert_budget_refusal(error, "tenant", "acme", "day", "tokens")


async def test_two_hubs_on_one_redis_share_the_room_for_10(
    tmp_path: Path, main: FakeOpenAI, redis_url: str
) -> None:
    async with (
        hub_with(tmp_path, TENANT_TOKENS_190, {"main": main.base_url}, redis_url) as first,
        # A second replica: the same store and keyring, the same Redis.
        hub_with(tmp_path, TENANT_TOKENS_190, {}, redis_url) as second,
    ):
        results = await asyncio.gather(*(outcome(hut) for _ in range(100) for hut in (first, second)))
        assert await spent(first, "tenant", "acme") == (190, 0)
        assert await spent(second, "tenant", "acme") == (190, 0)
    assert results.count("ok") == 10
    assert len(main.requests) == 10
    for error in (r for r in results if r != "ok"):
        assert_budget_refusal(error, "tenant", "acme", "day", "tokens")


# --- streams --------------------------------------------------------------------------------------------


async def test_a_stream_is_counted_when_it_ends_cancelled_included(tmp_path: Path, main: FakeOpenAI) -> None:
    # A stream sets no max_output_tokens here: it reserves 5 + reserve_output_tokens = 25.
    policy = "[defaults]\nreserve_output_tokens = 20\n[tenants.acme.budget]\ntokens_per_day = 50\n"
    async with hub_with(tmp_path, policy, {"main": main.base_url}) as hut:
        stub = chat_pb2_grpc.ChatServiceStub(hut.channel)

        def open_stream() -> grpc.aio.UnaryStreamCall:
            return stub.StreamChat(
                pb.ChatRequest(credential="main", model="gpt-4o", messages=[user("Hi")]),
                metadata=hut.auth(hut.tokens.invoke_only),
            )

        main.script(ChatReply(text="one two three four", chunk_delay=0.2))
        call = open_stream()
        await anext(aiter(call))
        assert await spent(hut, "tenant", "acme") == (0, 25)  # reserved, not yet counted
        async for _ in call:
            pass
        assert await spent(hut, "tenant", "acme") == (19, 0)  # its end event's usage

        # Cancelled mid-way: no end event, no usage; the reservation is given back.
        main.script(ChatReply(text="one two three four five six", chunk_delay=0.3))
        call = open_stream()
        await anext(aiter(call))
        assert await spent(hut, "tenant", "acme") == (19, 25)
        call.cancel()

        async def released() -> bool:
            return await spent(hut, "tenant", "acme") == (19, 0)

        for _ in range(100):
            if await released():
                break
            await asyncio.sleep(0.05)
        assert await released()

        async for _ in open_stream():  # 19 + 25 <= 50
            pass
        assert await spent(hut, "tenant", "acme") == (38, 0)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in open_stream():  # 38 + 25 > 50
                pass
        assert_budget_refusal(caught.value, "tenant", "acme", "day", "tokens")
    assert len(main.requests) == 3  # the refused one never reached it


# --- money ------------------------------------------------------------------------------------------------


async def test_money_is_computed_from_prices_and_a_full_credential_budget_falls_back(
    tmp_path: Path, main: FakeOpenAI, backup: FakeOpenAI
) -> None:
    # 12 input at 1.0 + 7 output at 2.0 per million = 26 micro-units a call, reserved as
    # 5 * 1.0 + 14 * 2.0 = 33; the cap is 60.
    policy = (
        "[tenants.acme.credentials.main.budget]\nmoney_per_month = 0.00006\n"
        '[tenants.acme.credentials.main.prices."gpt-4o"]\n'
        "input_per_million = 1.0\noutput_per_million = 2.0\ncached_per_million = 0.5\n"
        + route("smart", "main/gpt-4o", "backup/gpt-4o")
    )
    async with hub_with(tmp_path, policy, {"main": main.base_url, "backup": backup.base_url}) as hut:
        await chat(hut)
        month = hut.hub.policy_engine.budgets.ledger  # type: ignore[union-attr]
        label, ends = period_bounds("month", month.clock())
        monthly = Counter("credential", "main", "acme", "money", "month", label, 60, 0.8, ends)
        assert await month.spent(monthly) == (26, 0)
        # Cached input costs its own price: 2 * 1.0 + 10 * 0.5 + 7 * 2.0 = 21.
        main.script(ChatReply(cached_tokens=10))
        await chat(hut)
        assert await month.spent(monthly) == (47, 0)
        # 47 + this call's reservation of 33 > 60: refused, no provider call.
        error = await outcome(hut)
        assert_budget_refusal(error, "credential", "main", "month", "money")
        # Through a route, a credential without budget room is passed over for the next target.
        answer = await chat(hut, model="smart", credential="")
        assert answer.message.content[0].text == "from backup"
    assert len(main.requests) == 2


async def test_synthesis_is_priced_per_character(tmp_path: Path) -> None:
    # 11 characters at 15 per million = 165 micro-units a call; the cap is 400.
    policy = (
        "[tenants.acme.credentials.voice.budget]\nmoney_per_day = 0.0004\n"
        '[tenants.acme.credentials.voice.prices."tts-1"]\ncharacters_per_million = 15\n'
    )
    fake = FakeOpenAI(valid_keys={KEY})
    OpenAIAudio().install(fake)
    async with fake, hub_with(tmp_path, policy, {"voice": fake.base_url}) as hut:
        stub = speech_pb2_grpc.SpeechServiceStub(hut.channel)
        request = speech_pb2.SynthesizeRequest(
            credential="voice",
            model="tts-1",
            text="Hello there",
            voice="alloy",
            output_format=speech_pb2.AudioFormat(encoding=speech_pb2.AUDIO_ENCODING_MULAW),
        )
        for _ in range(2):
            await stub.Synthesize(request, metadata=hut.auth(hut.tokens.invoke_only))
        assert await spent(hut, "credential", "voice", "money") == (330, 0)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Synthesize(request, metadata=hut.auth(hut.tokens.invoke_only))
        assert_budget_refusal(caught.value, "credential", "voice", "day", "money")
    assert len(fake.requests) == 2


def test_money_arithmetic_is_exact_decimal_rounded_up_once_per_call() -> None:
    price = Price(input_per_million=Decimal("0.1"), output_per_million=Decimal("0.3"))
    # Exact decimals (0.1 * 10 is 1, not 0.9999...), rounded up once: 1.0 + 0.3 -> 2.
    assert cost_micro(Amounts(input_tokens=10, output_tokens=1), price) == 2
    assert cost_micro(Amounts(input_tokens=3_000_000), price) == 300_000
    tts = Price(characters_per_million=Decimal("15"), audio_per_second=Decimal("0.0001"))
    assert cost_micro(Amounts(characters=1000, audio_seconds=2.5), tts) == 15_000 + 250
    assert cost_micro(Amounts(input_tokens=10**9), None) == 0


# --- tokens ------------------------------------------------------------------------------------------------


async def test_a_hub_tokens_budget_binds_that_token_only(tmp_path: Path, main: FakeOpenAI) -> None:
    async with hub_with(tmp_path, "", {"main": main.base_url}) as hut:
        row, capped = await mint_token(hut.hub.store, tenant_id="acme", scopes=["invoke"])
        Path(hut.settings.policy_file or "").write_text(
            f"[tenants.acme.tokens.{row.id}.budget]\ntokens_per_day = 38\n"
        )
        await asyncio.sleep(1.2)  # the policy file is re-read within a second
        for _ in range(2):
            await chat(hut, token=capped)
        error = await outcome(hut, token=capped)
        assert_budget_refusal(error, "token", row.id, "day", "tokens")
        assert await outcome(hut) == "ok"  # another token of the same tenant
    assert len(main.requests) == 3


# --- periods, expiry, warnings ----------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
async def test_a_day_budget_starts_again_at_midnight_utc(
    tmp_path: Path, main: FakeOpenAI, redis_url: str, shared: bool
) -> None:
    policy = "[tenants.acme.budget]\ntokens_per_day = 19\n"
    async with hub_with(tmp_path, policy, {"main": main.base_url}, redis_url if shared else None) as hut:
        clock = [LATE]
        hut.hub.policy_engine.budgets.ledger.clock = lambda: clock[0]  # type: ignore[union-attr]
        await chat(hut)
        error = await outcome(hut)
        assert_budget_refusal(error, "tenant", "acme", "day", "tokens")
        assert isinstance(error, grpc.aio.AioRpcError)
        retry = details(error)[1]
        assert retry is not None
        assert 1 <= retry.retry_delay.ToTimedelta().total_seconds() <= 3
        clock[0] = LATE + 3  # 00:00:01 on the 5th
        assert await outcome(hut) == "ok"
        assert await spent(hut, "tenant", "acme") == (19, 0)
    assert len(main.requests) == 2


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
async def test_a_lost_reservation_expires_and_an_unsettled_one_holds_room(
    redis_url: str, shared: bool
) -> None:
    client = aioredis.from_url(redis_url) if shared else None
    now = [LATE - 3600]
    ledger = BudgetLedger(client, clock=lambda: now[0])
    label, ends = period_bounds("day", now[0])
    budget = Counter("tenant", "crash", "crash", "tokens", "day", label, 10, 0.8, ends)
    try:
        await ledger.reserve(Reservation((budget,), (10,)), hold_for=30)  # a worker that then died
        with pytest.raises(BudgetExceeded):
            await ledger.reserve(Reservation((budget,), (1,)), hold_for=30)
        now[0] += 31
        second = Reservation((budget,), (10,))
        await ledger.reserve(second, hold_for=30)  # the lost one has expired
        settled = await ledger.settle(second, [4])
        assert [(s.before, s.after) for s in settled] == [(0, 4)]
        assert await ledger.spent(budget) == (4, 0)
    finally:
        if client is not None:
            await client.aclose()


async def test_crossing_warn_at_logs_once_and_counts_in_the_metric(tmp_path: Path, main: FakeOpenAI) -> None:
    policy = "[tenants.acme.credentials.warned.budget]\ntokens_per_day = 100\nwarn_at = 0.3\n"
    async with hub_with(tmp_path, policy, {"warned": main.base_url}) as hut:
        before = await warnings_metric(hut)
        await chat(hut, credential="warned")  # 19 of 100: below 30
        assert await warnings_metric(hut) == before
        await chat(hut, credential="warned")  # 38: crosses 30
        await chat(hut, credential="warned")  # 57: already past
        assert await warnings_metric(hut) == before + 1
        assert await used_ratio(hut) == pytest.approx(0.57)
        logged = hut.logs.getvalue()
    assert logged.count('"event":"budget_warning"') == 1
    assert "budget credential warned tokens per day" in logged


async def metrics_text(hut: HubUnderTest) -> str:
    async with hut.http.get(hut.http_base + "/metrics") as response:
        return await response.text()


async def warnings_metric(hut: HubUnderTest) -> float:
    return _sample(await metrics_text(hut), "hub_budget_warnings_total") or 0.0


async def used_ratio(hut: HubUnderTest) -> float | None:
    return _sample(await metrics_text(hut), "hub_budget_used_ratio")


def _sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels == {"scope": "credential", "budget": "acme/warned", "period": "day", "unit": "tokens"}:
                return float(line.rsplit(" ", 1)[1])
    return None


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[tenants.acme.budget]\ntokens_per_day = 1.5\n", "tenants.acme.budget.tokens_per_day"),
        ("[tenants.acme.budget]\nmoney_per_week = 1\n", "tenants.acme.budget: unknown keys"),
        ("[tenants.acme.budget]\nwarn_at = 0.5\n", "tenants.acme.budget: names no limit"),
        ("[tenants.acme.budget]\ntokens_per_day = 9\nwarn_at = 1.5\n", "tenants.acme.budget.warn_at"),
        ('[tenants.acme.credentials.c.prices."m"]\ninput = 1\n', "tenants.acme.credentials.c.prices.m"),
        ("[tenants.acme.tokens.t1]\ntokens_per_day = 5\n", "tenants.acme.tokens.t1"),
    ],
)
def test_a_wrong_budget_setting_is_refused_naming_its_key(text: str, named: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(named)):
        PolicyConfig.parse(text)


async def test_an_unreachable_redis_refuses_calls_under_a_budget() -> None:
    client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    ledger = BudgetLedger(client)
    label, ends = period_bounds("day", ledger.clock())
    budget = Counter("tenant", "down", "down", "tokens", "day", label, 10, 0.8, ends)
    reservation = Reservation((budget,), (1,))
    try:
        with pytest.raises(HubError) as caught:
            await ledger.reserve(reservation, hold_for=5)
        assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
        assert await ledger.settle(reservation, [1]) == []  # logged; the reservation would expire
    finally:
        await client.aclose()
