"""Three `integration-hub serve --workers 1` processes on one Postgres and one Redis:
a credential created through one replica is used through the others at once, a
revoked token is refused by all three within one second, and a tenant's rate limit and
a tenant's budget hold across them (the three together let through no more than either).

The replicas are started once for the module (startup dominates the run time); each
test works in a tenant of its own, so their credentials, tokens and windows never meet.
Tokens are minted on the shared store, as `integration-hub tokens create` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import grpc
import pytest
import redis
from google.rpc import error_details_pb2, status_pb2

from integration_hub.auth import mint_token
from integration_hub.config import Settings
from integration_hub.store import open_store
from integration_hub.store.base import Store
from integration_hub.v1 import chat_pb2 as chat
from integration_hub.v1 import chat_pb2_grpc, credentials_pb2_grpc, identity_pb2, identity_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cred
from tests.conftest import REDIS_URL
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import HubProcess, hub_process, run_cli, settings_for
from tests.store.pg import create_test_database, drop_test_database

KEY = "sk-test-Replicas0123456789wxyz"
# A run's tenants carry a random suffix: Redis database 12 is shared with other test runs.
RUN = secrets.token_hex(3)
LIMITED_TENANT = f"limited-{RUN}"
REQUESTS_PER_MINUTE = 5
BUDGET_TENANT = f"budget-{RUN}"
# Every call below is bounded to 1000 output tokens and reports 5 + 1000 used, so what it
# holds (its reservation: an input estimate of a few tokens + 1000) and what it spends are
# both within [1000, 1050]: a day's budget of K * 1050 tokens has room for exactly K calls,
# whenever their reservations are settled (and whatever the input estimate, up to 50).
CALLS_IN_BUDGET = 5
CALL_OUTPUT_TOKENS = 1000
REVOCATION_BOUND = 1.0  # seconds from the revocation's commit to the last replica's refusal
POLL_INTERVAL = 0.05
POLICY = f"""
[defaults]
max_attempts = 1

[tenants.{LIMITED_TENANT}]
requests_per_minute = {REQUESTS_PER_MINUTE}

[tenants.{BUDGET_TENANT}.budget]
tokens_per_day = {CALLS_IN_BUDGET * (CALL_OUTPUT_TOKENS + 50)}
"""


@dataclass
class Replicas:
    settings: Settings
    hubs: list[HubProcess]

    def logs(self) -> str:
        return "\n".join(hub.logs() for hub in self.hubs)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    tmp = tmp_path_factory.mktemp("replicas")
    database_url = asyncio.run(create_test_database())
    flushing = redis.Redis.from_url(REDIS_URL)
    flushing.flushdb()
    flushing.close()
    settings = settings_for(tmp, database_url=database_url, redis_url=REDIS_URL, policy=POLICY)
    try:
        with contextlib.ExitStack() as stack:
            hubs = []
            for index in range(3):
                hub = stack.enter_context(hub_process(settings, tmp / f"replica{index}.log", workers=1))
                # Runs before hub_process's own exit (which kills whatever is still alive).
                stack.callback(hub.terminate)
                hubs.append(hub)
            yield Replicas(settings, hubs)
    finally:
        asyncio.run(drop_test_database(database_url))


@contextlib.asynccontextmanager
async def shared_store(settings: Settings) -> AsyncIterator[Store]:
    store = open_store(settings.database_url)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


async def new_token(settings: Settings, tenant: str, *scopes: str) -> tuple[str, str]:
    """(token id, token) minted on the replicas' shared store."""
    async with shared_store(settings) as store:
        row, token = await mint_token(store, tenant_id=tenant, scopes=scopes or ("admin", "invoke"))
    return row.id, token


def metadata(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            info = error_details_pb2.ErrorInfo()
            status_pb2.Status.FromString(value).details[0].Unpack(info)
            return str(info.reason)
    raise AssertionError(f"no status details on {error.code()}: {error.details()}")


def hello(credential: str, max_output_tokens: int | None = None) -> chat.ChatRequest:
    message = chat.ChatMessage(role=chat.ROLE_USER, content=[chat.ContentPart(text="Hi")])
    request = chat.ChatRequest(credential=credential, model="gpt-4o-mini", messages=[message])
    if max_output_tokens is not None:
        request.max_output_tokens = max_output_tokens
    return request


def rest_hello(credential: str) -> dict[str, object]:
    """hello() as the REST body of POST /v1/chat."""
    messages = [{"role": "ROLE_USER", "content": [{"text": "Hi"}]}]
    return {"credential": credential, "model": "gpt-4o-mini", "messages": messages}


async def create_credential(hub: HubProcess, token: str, base_url: str) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        await credentials_pb2_grpc.CredentialServiceStub(channel).CreateCredential(
            cred.CreateCredentialRequest(
                provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": base_url}
            ),
            metadata=metadata(token),
            timeout=10,
        )


async def chats_spread_over(
    hubs: list[HubProcess], token: str, calls: int, max_output_tokens: int | None = None
) -> tuple[list[str], float]:
    """`calls` concurrent Chats, round robin over the replicas: "OK" or the refusal's reason
    for each, and how long they took together."""
    async with contextlib.AsyncExitStack() as stack:
        channels = [await stack.enter_async_context(grpc.aio.insecure_channel(h.grpc_target)) for h in hubs]
        stubs = [chat_pb2_grpc.ChatServiceStub(channel) for channel in channels]

        async def one_call(index: int) -> str:
            try:
                await stubs[index % len(stubs)].Chat(
                    hello("main", max_output_tokens), metadata=metadata(token), timeout=15
                )
            except grpc.aio.AioRpcError as error:
                # Anything but a limit's refusal shows up, whole, in the counts' assertions.
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    return f"{error.code().name}: {error.details()}"
                return reason(error)
            return "OK"

        started = time.monotonic()
        outcomes = await asyncio.gather(*(one_call(i) for i in range(calls)))
        return list(outcomes), time.monotonic() - started


# --- (a) a credential created on one replica is used through the others at once ---------


async def test_a_credential_created_on_one_replica_is_used_through_the_others_at_once(
    replicas: Replicas,
) -> None:
    one, two, three = replicas.hubs
    _, token = await new_token(replicas.settings, f"acme-{RUN}")
    name = "main"
    async with (
        FakeOpenAI(valid_keys={KEY}) as fake,
        aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"}, timeout=aiohttp.ClientTimeout(total=10)
        ) as http,
        grpc.aio.insecure_channel(two.grpc_target) as channel,
    ):
        on_two = chat_pb2_grpc.ChatServiceStub(channel)
        # Before it exists, both replicas look it up (and must not remember the miss).
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await on_two.Chat(hello(name), metadata=metadata(token), timeout=10)
        assert reason(missing.value) == "CREDENTIAL_NOT_FOUND"
        async with http.post(f"{three.http_base}/v1/chat", json=rest_hello(name)) as r:
            assert r.status == 404, await r.text()
            assert (await r.json())["error"]["details"][0]["reason"] == "CREDENTIAL_NOT_FOUND"

        body = {
            "provider": "openai",
            "name": name,
            "secret": {"api_key": KEY},
            "options": {"base_url": fake.base_url},
        }
        async with http.post(f"{one.http_base}/v1/credentials", json=body) as created:
            assert created.status == 200, await created.text()
            assert KEY not in await created.text()  # the secret is write-only

        # No wait of any kind: the very next calls, on the other two replicas, use it.
        fake.script(ChatReply(text="via two"), ChatReply(text="via three"))
        answer = await on_two.Chat(hello(name), metadata=metadata(token), timeout=10)
        assert answer.message.content[0].text == "via two"
        async with http.post(f"{three.http_base}/v1/chat", json=rest_hello(name)) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["message"]["content"][0]["text"] == "via three"
    assert [request.headers["Authorization"] for request in fake.requests] == [f"Bearer {KEY}"] * 2
    assert KEY not in replicas.logs()


# --- (b) a revoked token is refused by every replica within a second ---------------------


async def _first_refusal(hub: HubProcess, token: str, deadline: float) -> tuple[float, str]:
    """Poll WhoAmI every 50 ms until it fails: the wall-clock time, and the failure."""
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        while time.monotonic() < deadline:
            try:
                await stub.WhoAmI(identity_pb2.WhoAmIRequest(), metadata=metadata(token), timeout=2)
            except grpc.aio.AioRpcError as error:
                return time.time(), f"{error.code().name}: {error.details()}"
            await asyncio.sleep(POLL_INTERVAL)
    raise AssertionError(f"{hub.grpc_target} still accepted the revoked token at the deadline")


async def test_a_token_revoked_through_one_replica_is_refused_by_all_within_a_second(
    replicas: Replicas,
) -> None:
    token_id, token = await new_token(replicas.settings, f"revoke-{RUN}", "invoke")
    # Every replica accepts the token first, which leaves it in each one's in-process cache and
    # in Redis. Token rows are cached for a second at most (hub.TOKEN_CACHE_SECONDS), but a row
    # copied from Redis into a replica's cache can be older than that: what brings every
    # replica under the bound is the pub/sub invalidation the CLI publishes.
    for hub in replicas.hubs:
        async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
            who = await identity_pb2_grpc.IdentityServiceStub(channel).WhoAmI(
                identity_pb2.WhoAmIRequest(), metadata=metadata(token), timeout=5
            )
        assert who.token_id == token_id

    deadline = time.monotonic() + 20
    polls = [asyncio.ensure_future(_first_refusal(hub, token, deadline)) for hub in replicas.hubs]
    # Revocation is an operator command (there is no revoke RPC): the CLI, on the replicas' settings.
    revoked = await asyncio.to_thread(run_cli, replicas.settings, "tokens", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    refusals = await asyncio.gather(*polls)

    async with shared_store(replicas.settings) as store:
        row = next(row for row in await store.list_tokens(f"revoke-{RUN}") if row.id == token_id)
    assert row.revoked_at is not None
    assert [why for _, why in refusals] == ["UNAUTHENTICATED: this hub token has been revoked"] * 3
    # From the revocation time the CLI recorded (taken just before its UPDATE; this machine's
    # clock, as is time.time() in the polls) to each replica's first refusal.
    lags = [refused_at - row.revoked_at.timestamp() for refused_at, _ in refusals]
    assert max(lags) <= REVOCATION_BOUND, f"refused {lags} s after the revocation"


# --- (c) a tenant's rate limit holds across the replicas ---------------------------------


async def test_a_tenant_rate_limit_holds_across_the_three_replicas(replicas: Replicas) -> None:
    _, token = await new_token(replicas.settings, LIMITED_TENANT)
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        await create_credential(replicas.hubs[0], token, fake.base_url)
        # 3N requests at once, N on each replica: replica-local windows would let all 3N through.
        outcomes, elapsed = await chats_spread_over(replicas.hubs, token, 3 * REQUESTS_PER_MINUTE)

    # The sliding window weighs the previous minute's count by its remaining overlap, so a
    # burst that straddles a minute boundary still lets through at most N in total as long as
    # it lasts less than 60/N s (12 s here); the burst above takes well under that.
    assert elapsed < 60 / REQUESTS_PER_MINUTE
    assert outcomes.count("OK") == REQUESTS_PER_MINUTE, outcomes
    assert outcomes.count("RATE_LIMITED") == 2 * REQUESTS_PER_MINUTE, outcomes
    assert len(fake.requests) == REQUESTS_PER_MINUTE  # refusals never reach the provider


# --- (d) a budget holds across the replicas ------------------------------------------------


async def test_a_budget_with_room_for_k_calls_lets_k_through_across_the_three_replicas(
    replicas: Replicas,
) -> None:
    _, token = await new_token(replicas.settings, BUDGET_TENANT)
    used = ChatReply(prompt_tokens=5, completion_tokens=CALL_OUTPUT_TOKENS)
    async with FakeOpenAI(valid_keys={KEY}, default_reply=used) as fake:
        await create_credential(replicas.hubs[1], token, fake.base_url)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        # 6K calls at once, 2K on each replica, against room for K.
        outcomes, _ = await chats_spread_over(
            replicas.hubs, token, 6 * CALLS_IN_BUDGET, max_output_tokens=CALL_OUTPUT_TOKENS
        )
        days = len({day, time.strftime("%Y-%m-%d", time.gmtime())})

    # A day's budget starts again at 00:00 UTC: a burst across midnight has two days' room.
    assert CALLS_IN_BUDGET <= outcomes.count("OK") <= CALLS_IN_BUDGET * days, outcomes
    assert outcomes.count("BUDGET_EXCEEDED") == len(outcomes) - outcomes.count("OK"), outcomes
    assert len(fake.requests) == outcomes.count("OK")  # refusals never reach the provider
