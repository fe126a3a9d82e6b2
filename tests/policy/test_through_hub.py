"""The policy layer end to end: a real hub (gRPC, the OpenAI-compatible endpoint with the
openai SDK as the client), real credentials, and fake OpenAI upstreams on loopback that
fail as each test needs. Every hub here runs its own policy file."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from google.rpc import error_details_pb2, status_pb2

from integration_hub.policy.breaker import BreakerState
from integration_hub.v1 import chat_pb2 as pb
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import HubUnderTest, running_hub, settings_for
from tests.policy.test_connect_timeout import unaccepting_listener

pytestmark = pytest.mark.timeout(60)
KEY = "sk-test-PolicyPath0123456789abcd"
# Retries in these tests wait milliseconds, unless the test is about the wait.
FAST = "[defaults]\nbackoff_base = 0.01\nbackoff_max = 0.02\n"
SLACK = 1.0  # how much later than its bound a call may end: the hub's own overhead, generously


def route(name: str, *targets: str) -> str:
    listed = ", ".join(f'{{credential = "{t.split("/")[0]}", model = "{t.split("/")[1]}"}}' for t in targets)
    return f"[tenants.acme.routes.{name}]\ntargets = [{listed}]\n"


@pytest.fixture
async def main() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}, default_reply=ChatReply(text="from main")) as fake:
        yield fake


@pytest.fixture
async def backup() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}, default_reply=ChatReply(text="from backup")) as fake:
        yield fake


async def add_credential(hut: HubUnderTest, name: str, base_url: str, token: str | None = None) -> None:
    await hut.credentials_stub().CreateCredential(
        cpb.CreateCredentialRequest(
            provider="openai", name=name, secret={"api_key": KEY}, options={"base_url": base_url}
        ),
        metadata=hut.auth(token or hut.tokens.admin),
    )


@contextlib.asynccontextmanager
async def hub_with(
    tmp_path: Path, policy: str, credentials: dict[str, str], redis_url: str | None = None
) -> AsyncIterator[HubUnderTest]:
    """A hub on SQLite running `policy`, with one openai credential per name -> base URL."""
    settings = settings_for(tmp_path, database_url=None, redis_url=redis_url, policy=policy)
    async with running_hub(settings) as hut:
        for name, base_url in credentials.items():
            await add_credential(hut, name, base_url)
        yield hut


def user(text: str) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])


async def chat(
    hut: HubUnderTest, model: str, credential: str = "", token: str | None = None, **kw: Any
) -> pb.ChatResponse:
    """A gRPC Chat; an empty credential makes `model` a route name."""
    return await chat_pb2_grpc.ChatServiceStub(hut.channel).Chat(
        pb.ChatRequest(credential=credential, model=model, messages=[user("Hi")], **kw),
        metadata=hut.auth(token or hut.tokens.invoke_only),
    )


@dataclass
class Streamed:
    events: list[pb.StreamChatResponse] = field(default_factory=list)
    error: grpc.aio.AioRpcError | None = None

    @property
    def text(self) -> str:
        return "".join(e.text_delta.text for e in self.events if e.HasField("text_delta"))

    @property
    def ended(self) -> bool:
        return any(e.HasField("end") for e in self.events)


async def stream(hut: HubUnderTest, model: str, credential: str = "") -> Streamed:
    result = Streamed()
    call = chat_pb2_grpc.ChatServiceStub(hut.channel).StreamChat(
        pb.ChatRequest(credential=credential, model=model, messages=[user("Hi")]),
        metadata=hut.auth(hut.tokens.invoke_only),
    )
    try:
        async for event in call:
            result.events.append(event)
    except grpc.aio.AioRpcError as exc:
        result.error = exc
    return result


def details(
    error: grpc.aio.AioRpcError,
) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo | None]:
    """The google.rpc.ErrorInfo and (if any) RetryInfo of a failed call."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info, retry = error_details_pb2.ErrorInfo(), None
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    detail.Unpack(info)
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
            return info, retry
    raise AssertionError("no status details")


async def refused(hut: HubUnderTest, model: str, credential: str = "", token: str | None = None) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat(hut, model, credential, token)
    return caught.value


def sdk(hut: HubUnderTest) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=hut.http_base + "/openai/v1", api_key=hut.tokens.invoke_only, max_retries=0
    )


async def breaker_metric(hut: HubUnderTest, credential: str, model: str) -> float | None:
    async with hut.http.get(hut.http_base + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("hub_circuit_breaker_state{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if labels == {"credential": credential, "model": model}:
                return float(line.rsplit(" ", 1)[1])
    return None


# --- retries --------------------------------------------------------------------------------------


async def test_a_429_with_retry_after_is_retried_after_that_delay(tmp_path: Path, main: FakeOpenAI) -> None:
    async with hub_with(tmp_path, FAST + "max_attempts = 3\n", {"main": main.base_url}) as hut:
        main.force_status, main.retry_after = 429, "1"
        started = time.monotonic()
        call = asyncio.create_task(chat(hut, "gpt-4o", "main"))
        await main.wait_for_request(1)
        main.force_status = None  # the provider has room again: the retry succeeds
        answer = await call
        elapsed = time.monotonic() - started
    assert answer.message.content[0].text == "from main"
    assert len(main.requests) == 2
    # Backoff here is at most 0.02 s: only the provider's Retry-After makes the hub wait 1 s.
    assert 1.0 <= elapsed < 1.0 + SLACK


async def test_a_burst_of_500s_is_retried_until_it_passes(tmp_path: Path, main: FakeOpenAI) -> None:
    async with hub_with(tmp_path, FAST + "max_attempts = 3\n", {"main": main.base_url}) as hut:
        main.script(ChatReply(status=500), ChatReply(status=503))
        answer = await chat(hut, "gpt-4o", "main")
    assert answer.message.content[0].text == "from main"
    assert len(main.requests) == 3


async def test_a_non_retryable_400_is_not_retried(tmp_path: Path, main: FakeOpenAI) -> None:
    async with hub_with(tmp_path, FAST + "max_attempts = 3\n", {"main": main.base_url}) as hut:
        main.script(ChatReply(status=400))
        error = await refused(hut, "gpt-4o", "main")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error)[0].reason == "PROVIDER_INVALID_REQUEST"
    assert len(main.requests) == 1


# --- routes and breakers ------------------------------------------------------------------------------


async def test_a_route_falls_back_from_a_failing_credential_over_grpc_and_the_openai_sdk(
    tmp_path: Path, main: FakeOpenAI, backup: FakeOpenAI
) -> None:
    policy = (
        FAST
        + "max_attempts = 2\nbreaker_failures = 100\n"
        + route("smart", "main/gpt-4o", "backup/gpt-4o-mini")
    )
    async with hub_with(tmp_path, policy, {"main": main.base_url, "backup": backup.base_url}) as hut:
        main.force_status = 503
        answer = await chat(hut, "smart")
        assert answer.message.content[0].text == "from backup"
        assert (len(main.requests), len(backup.requests)) == (2, 1)  # retried once, then fell back
        assert backup.requests[-1].json()["model"] == "gpt-4o-mini"  # the target's own model

        client = sdk(hut)
        completion = await client.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "Hi"}]
        )
        assert completion.choices[0].message.content == "from backup"
        assert completion.model == "smart"
        chunks = await client.chat.completions.create(
            model="smart", stream=True, messages=[{"role": "user", "content": "Hi"}]
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        assert streamed == "from backup"
        await client.close()
    assert (len(main.requests), len(backup.requests)) == (6, 3)


async def test_a_route_passes_over_a_target_whose_credential_was_deleted(
    tmp_path: Path, main: FakeOpenAI, backup: FakeOpenAI
) -> None:
    # "gone" is named by the route but does not exist (never created, or deleted since):
    # the route goes on to its next target instead of failing every call.
    policy = route("smart", "gone/gpt-4o", "backup/gpt-4o-mini") + route("dead", "gone/gpt-4o")
    async with hub_with(tmp_path, policy, {"backup": backup.base_url}) as hut:
        assert (await chat(hut, "smart")).message.content[0].text == "from backup"
        streamed = await stream(hut, "smart")
        assert (streamed.error, streamed.text, streamed.ended) == (None, "from backup", True)
        # Only missing targets: the call fails naming the missing credential.
        error = await refused(hut, "dead")
        assert error.code() == grpc.StatusCode.NOT_FOUND
        info, _ = details(error)
        assert (info.reason, info.metadata["credential"]) == ("CREDENTIAL_NOT_FOUND", "gone")
        # A direct call naming a missing credential still fails at once.
        assert (await refused(hut, "gpt-4o", "gone")).code() == grpc.StatusCode.NOT_FOUND
    assert len(backup.requests) == 2
    assert main.requests == []


async def test_the_circuit_opens_skips_the_target_then_half_opens_after_the_cooldown(
    tmp_path: Path, main: FakeOpenAI, backup: FakeOpenAI
) -> None:
    cooldown = 0.5
    policy = f"[defaults]\nmax_attempts = 1\nbreaker_failures = 2\nbreaker_cooldown = {cooldown}\n" + route(
        "smart", "cb-flaky/gpt-4o", "backup/gpt-4o-mini"
    )
    async with hub_with(tmp_path, policy, {"cb-flaky": main.base_url, "backup": backup.base_url}) as hut:
        breakers = hut.hub.policy_engine.breakers  # type: ignore[union-attr]
        main.force_status = 503
        for _ in range(2):  # breaker_failures failures open it
            assert (await chat(hut, "smart")).message.content[0].text == "from backup"
        assert breakers.state("acme/cb-flaky", "gpt-4o") is BreakerState.OPEN
        assert await breaker_metric(hut, "acme/cb-flaky", "gpt-4o") == 2

        # Open: straight to the fallback, without touching the failing upstream.
        assert (await chat(hut, "smart")).message.content[0].text == "from backup"
        assert len(main.requests) == 2

        # After the cool-down one trial goes through (slow, so the half-open state is seen).
        await asyncio.sleep(cooldown)
        main.force_status, main.delay = None, 0.5
        trial = asyncio.create_task(chat(hut, "smart"))
        await main.wait_for_request(3)
        assert breakers.state("acme/cb-flaky", "gpt-4o") is BreakerState.HALF_OPEN
        assert await breaker_metric(hut, "acme/cb-flaky", "gpt-4o") == 1
        # Only one trial at a time: a call meanwhile still goes to the fallback.
        assert (await chat(hut, "smart")).message.content[0].text == "from backup"
        assert len(main.requests) == 3
        assert (await trial).message.content[0].text == "from main"
        assert breakers.state("acme/cb-flaky", "gpt-4o") is BreakerState.CLOSED
        assert await breaker_metric(hut, "acme/cb-flaky", "gpt-4o") == 0
        main.delay = 0
        assert (await chat(hut, "smart")).message.content[0].text == "from main"


async def test_streams_cut_mid_way_count_against_the_breaker(tmp_path: Path, main: FakeOpenAI) -> None:
    # Too late to retry once events have reached the client, but a provider that keeps
    # cutting its streams is failing: its circuit opens like on any other failure.
    policy = "[defaults]\nmax_attempts = 1\nbreaker_failures = 2\nbreaker_cooldown = 60\n"
    async with hub_with(tmp_path, policy, {"cb-cut": main.base_url}) as hut:
        breakers = hut.hub.policy_engine.breakers  # type: ignore[union-attr]
        main.script(*[ChatReply(text="one two three four five", cut_after=2) for _ in range(2)])
        for _ in range(2):
            cut = await stream(hut, "gpt-4o", "cb-cut")
            assert cut.events
            assert cut.error is not None
            assert cut.error.code() == grpc.StatusCode.UNAVAILABLE
        assert breakers.state("acme/cb-cut", "gpt-4o") is BreakerState.OPEN
        assert (await refused(hut, "gpt-4o", "cb-cut")).code() == grpc.StatusCode.UNAVAILABLE
        assert len(main.requests) == 2  # the open circuit kept the third call off the provider


async def test_a_non_retryable_answer_to_the_half_open_trial_closes_the_circuit(
    tmp_path: Path, main: FakeOpenAI, backup: FakeOpenAI
) -> None:
    """The stuck-half-open regression, through the hub: a 400 to the trial means the provider is up."""
    cooldown = 0.3
    policy = f"[defaults]\nmax_attempts = 1\nbreaker_failures = 1\nbreaker_cooldown = {cooldown}\n"
    async with hub_with(tmp_path, policy, {"cb-trial": main.base_url}) as hut:
        main.force_status = 503
        await refused(hut, "gpt-4o", "cb-trial")
        assert (await refused(hut, "gpt-4o", "cb-trial")).code() == grpc.StatusCode.UNAVAILABLE  # open
        assert len(main.requests) == 1
        await asyncio.sleep(cooldown)
        main.force_status = None
        main.script(ChatReply(status=400))
        assert (await refused(hut, "gpt-4o", "cb-trial")).code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (await chat(hut, "gpt-4o", "cb-trial")).message.content[0].text == "from main"
    assert len(main.requests) == 3


async def test_an_unknown_route_is_invalid_argument(tmp_path: Path, main: FakeOpenAI) -> None:
    policy = route("smart", "main/gpt-4o")
    async with hub_with(tmp_path, policy, {"main": main.base_url}) as hut:
        error = await refused(hut, "no-such-route")
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        info, _ = details(error)
        assert (info.reason, info.metadata["route"]) == ("UNKNOWN_ROUTE", "no-such-route")
        # A route belongs to its tenant.
        await add_credential(hut, "main", main.base_url, token=hut.tokens.other_tenant)
        other = await refused(hut, "smart", token=hut.tokens.other_tenant)
        assert details(other)[0].reason == "UNKNOWN_ROUTE"
        client = sdk(hut)
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="no-such-route", messages=[{"role": "user", "content": "x"}]
            )
        assert "not a route" in str(bad.value)
        await client.close()
    assert main.requests == []


# --- rate limits ----------------------------------------------------------------------------------------


async def test_the_tenant_request_limit_answers_resource_exhausted_with_retry_info(
    tmp_path: Path, main: FakeOpenAI, redis_url: str
) -> None:
    policy = "[tenants.acme]\nrequests_per_minute = 2\n"
    async with hub_with(tmp_path, policy, {"main": main.base_url}, redis_url=redis_url) as hut:
        for _ in range(2):
            await chat(hut, "gpt-4o", "main")
        error = await refused(hut, "gpt-4o", "main")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info, retry = details(error)
        assert (info.reason, dict(info.metadata)) == ("RATE_LIMITED", {"scope": "tenant", "kind": "requests"})
        assert retry is not None
        assert 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 120
        client = sdk(hut)
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(
                model="main/gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
        assert limited.value.status_code == 429
        assert 1 <= int(limited.value.response.headers["retry-after"]) <= 120
        await client.close()
        # Another tenant has its own window.
        await add_credential(hut, "theirs", main.base_url, token=hut.tokens.other_tenant)
        await chat(hut, "gpt-4o", "theirs", token=hut.tokens.other_tenant)
    assert len(main.requests) == 3  # refusals never reach the provider


async def test_the_credential_request_limit_refuses_and_a_route_falls_back(
    tmp_path: Path, main: FakeOpenAI, backup: FakeOpenAI
) -> None:
    policy = "[tenants.acme.credentials.main]\nrequests_per_minute = 1\n" + route(
        "smart", "main/gpt-4o", "backup/gpt-4o"
    )
    async with hub_with(tmp_path, policy, {"main": main.base_url, "backup": backup.base_url}) as hut:
        await chat(hut, "gpt-4o", "main")
        error = await refused(hut, "gpt-4o", "main")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info, retry = details(error)
        assert dict(info.metadata) == {"scope": "credential", "kind": "requests"}
        assert retry is not None
        assert retry.retry_delay.ToTimedelta().total_seconds() > 0
        client = sdk(hut)
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(
                model="main/gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
        assert int(limited.value.response.headers["retry-after"]) >= 1
        # Through a route, a credential at its limit is passed over for the next target.
        completion = await client.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "x"}]
        )
        assert completion.choices[0].message.content == "from backup"
        await client.close()
    assert len(main.requests) == 1


async def test_tokens_per_minute_is_enforced_once_usage_is_accounted(
    tmp_path: Path, main: FakeOpenAI
) -> None:
    # Each answer of the fake costs 12 + 7 = 19 tokens: one call fits under 10, a second does not.
    policy = (
        "[tenants.acme.credentials.main]\ntokens_per_minute = 10\n[tenants.globex]\ntokens_per_minute = 10\n"
    )
    async with hub_with(tmp_path, policy, {"main": main.base_url}) as hut:
        streamed = await stream(hut, "gpt-4o", "main")  # a stream's usage is counted at its end
        assert streamed.ended
        error = await refused(hut, "gpt-4o", "main")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(details(error)[0].metadata) == {"scope": "credential", "kind": "tokens"}

        other = hut.tokens.other_tenant
        await add_credential(hut, "theirs", main.base_url, token=other)
        answer = await chat(hut, "gpt-4o", "theirs", token=other)
        assert answer.usage.total_tokens == 19
        error = await refused(hut, "gpt-4o", "theirs", token=other)
        assert dict(details(error)[0].metadata) == {"scope": "tenant", "kind": "tokens"}
        assert details(error)[1] is not None
    assert len(main.requests) == 2


# --- streams ----------------------------------------------------------------------------------------------


async def test_a_stream_that_failed_after_its_first_event_is_not_retried(
    tmp_path: Path, main: FakeOpenAI, backup: FakeOpenAI
) -> None:
    policy = FAST + "max_attempts = 3\n" + route("smart", "main/gpt-4o", "backup/gpt-4o")
    async with hub_with(tmp_path, policy, {"main": main.base_url, "backup": backup.base_url}) as hut:
        main.script(ChatReply(text="one two three four", error_after=2))
        result = await stream(hut, "smart")
    assert result.text  # something reached the client ...
    assert not result.ended
    assert result.error is not None  # ... so the failure ends the stream: no retry, no fallback
    assert result.error.code() == grpc.StatusCode.UNAVAILABLE
    assert (len(main.requests), len(backup.requests)) == (1, 0)


@pytest.mark.parametrize(
    "failure",
    [ChatReply(status=503), ChatReply(error_after=0), ChatReply(cut_after=0)],
    ids=["503", "error-event-first", "cut-before-any-event"],
)
async def test_a_stream_that_fails_before_its_first_event_is_retried(
    tmp_path: Path, main: FakeOpenAI, failure: ChatReply
) -> None:
    async with hub_with(tmp_path, FAST + "max_attempts = 2\n", {"main": main.base_url}) as hut:
        main.script(failure)
        result = await stream(hut, "gpt-4o", "main")
    assert result.error is None
    assert (result.text, result.ended) == ("from main", True)
    assert len(main.requests) == 2


# --- timeouts ----------------------------------------------------------------------------------------------


async def test_first_byte_timeout_bounds_a_silent_upstream(tmp_path: Path, main: FakeOpenAI) -> None:
    policy = FAST + "max_attempts = 2\nfirst_byte_timeout = 0.3\n"
    async with hub_with(tmp_path, policy, {"main": main.base_url}) as hut:
        main.delay = 30  # accepts the request, then says nothing
        started = time.monotonic()
        result = await stream(hut, "gpt-4o", "main")
        elapsed = time.monotonic() - started
    assert result.error is not None
    assert result.error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details(result.error)[0].reason == "PROVIDER_TIMEOUT"
    assert len(main.requests) == 2  # a timeout is retryable
    assert 0.6 <= elapsed < 0.6 + SLACK


async def test_total_timeout_bounds_a_unary_call_retries_included(tmp_path: Path, main: FakeOpenAI) -> None:
    policy = FAST + "max_attempts = 3\ntotal_timeout = 0.4\n"
    async with hub_with(tmp_path, policy, {"main": main.base_url}) as hut:
        main.delay = 30
        started = time.monotonic()
        error = await refused(hut, "gpt-4o", "main")  # the request's default 120 s: the policy wins
        elapsed = time.monotonic() - started
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.4 <= elapsed < 0.4 + SLACK
    assert len(main.requests) == 1  # no time was left for another attempt


async def test_connect_timeout_bounds_a_provider_that_does_not_accept(tmp_path: Path) -> None:
    policy = "[defaults]\nmax_attempts = 1\nconnect_timeout = 0.3\n"
    with unaccepting_listener() as url:
        async with hub_with(tmp_path, policy, {"nowhere": f"{url}/v1"}) as hut:
            started = time.monotonic()
            error = await refused(hut, "gpt-4o", "nowhere")
            elapsed = time.monotonic() - started
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.3 <= elapsed < 0.3 + SLACK  # not the transports' 10 s default
