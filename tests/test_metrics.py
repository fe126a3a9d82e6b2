"""/metrics through a running hub: requests, latency (hub time apart from upstream time),
tokens, errors by code and reason, the policy layer's retries, fallbacks, breaker states
and rate-limit rejections; no secret anywhere in the exposition; label values bounded.

The registry is the process's own (one per test process, shared by every test in it),
so every check compares a scrape after the calls with one before them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from integration_hub import metrics
from integration_hub.policy.breaker import BreakerState
from integration_hub.policy.config import Target
from integration_hub.v1 import chat_pb2 as chat
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import HubUnderTest, running_hub, settings_for

# Deliberately not in a format the redaction patterns know (no "sk-" prefix): only the
# hub's record of the secrets it opened can keep it out.
KEY = "plainKeyMetrics0123456789abcdefXYZ"
PATTERN_KEY = "sk-test-Metrics0123456789abcdefgh"

Labels = tuple[tuple[str, str], ...]
Scrape = dict[tuple[str, Labels], float]


async def scrape_text(hut: HubUnderTest) -> str:
    async with hut.http.get(hut.http_base + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def parse(text: str) -> Scrape:
    samples: Scrape = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def scrape(hut: HubUnderTest) -> Scrape:
    return parse(await scrape_text(hut))


def value(samples: Scrape, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def series(samples: Scrape, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples if sample == name]


def user(text: str) -> chat.ChatMessage:
    return chat.ChatMessage(role=chat.ROLE_USER, content=[chat.ContentPart(text=text)])


async def add_credential(
    hut: HubUnderTest, name: str, base_url: str, key: str, token: str | None = None
) -> None:
    await hut.credentials_stub().CreateCredential(
        cpb.CreateCredentialRequest(
            provider="openai", name=name, secret={"api_key": key}, options={"base_url": base_url}
        ),
        metadata=hut.auth(token or hut.tokens.admin),
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY, PATTERN_KEY}) as server:
        yield server


@pytest.fixture
async def hub(tmp_path: Path, fake: FakeOpenAI) -> AsyncIterator[HubUnderTest]:
    async with running_hub(settings_for(tmp_path, database_url=None)) as hut:
        await add_credential(hut, "main", fake.base_url, KEY)
        yield hut


async def test_requests_latency_tokens_and_errors_are_exported(hub: HubUnderTest, fake: FakeOpenAI) -> None:
    stub, md = chat_pb2_grpc.ChatServiceStub(hub.channel), hub.auth(hub.tokens.invoke_only)
    before = await scrape(hub)
    fake.script(ChatReply(text="hi", prompt_tokens=20, completion_tokens=3, cached_tokens=8))
    fake.delay = 0.25  # the upstream part of this call
    await stub.Chat(chat.ChatRequest(credential="main", model="gpt-4o", messages=[user("x")]), metadata=md)
    fake.delay = 0.0
    _ = [
        e
        async for e in stub.StreamChat(
            chat.ChatRequest(credential="main", model="gpt-4o", messages=[user("x")]), metadata=md
        )
    ]
    body = {
        "credential": "main",
        "model": "gpt-4o",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "x"}]}],
    }
    async with hub.http.post(
        hub.http_base + "/v1/chat", json=body, headers=hub.headers(hub.tokens.invoke_only)
    ) as r:
        assert r.status == 200
    fake.force_status = 503
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Chat(
            chat.ChatRequest(credential="main", model="gpt-4o", messages=[user("x")]), metadata=md
        )
    fake.force_status = None
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Chat(
            chat.ChatRequest(credential="nope", model="gpt-4o", messages=[user("x")]), metadata=md
        )
    after = await scrape(hub)

    # Requests by transport, method and code.
    assert delta(after, before, "hub_requests_total", transport="grpc", method="Chat", code="OK") == 1
    assert delta(after, before, "hub_requests_total", transport="grpc", method="StreamChat", code="OK") == 1
    assert delta(after, before, "hub_requests_total", transport="rest", method="Chat", code="OK") == 1
    assert (
        delta(after, before, "hub_requests_total", transport="grpc", method="Chat", code="UNAVAILABLE") == 1
    )
    assert delta(after, before, "hub_requests_total", transport="grpc", method="Chat", code="NOT_FOUND") == 1
    assert delta(after, before, "hub_request_duration_seconds_count", transport="grpc", method="Chat") == 3
    assert delta(after, before, "hub_request_duration_seconds_sum", transport="grpc", method="Chat") >= 0.25
    assert (
        value(after, "hub_request_duration_seconds_bucket", transport="grpc", method="Chat", le="+Inf") >= 3
    )
    assert value(after, "hub_requests_in_flight", transport="grpc") == 0
    # Errors by code and reason.
    assert delta(after, before, "hub_errors_total", code="UNAVAILABLE", reason="PROVIDER_UNAVAILABLE") == 1
    assert delta(after, before, "hub_errors_total", code="NOT_FOUND", reason="CREDENTIAL_NOT_FOUND") == 1
    # Provider calls, and their time split: the 0.25 s upstream, the hub's own share small.
    calls = {"provider": "openai", "operation": "chat"}
    assert delta(after, before, "hub_provider_calls_total", status="OK", **calls) == 2
    assert delta(after, before, "hub_provider_calls_total", status="UNAVAILABLE", **calls) == 1
    assert (
        delta(
            after,
            before,
            "hub_provider_calls_total",
            provider="unresolved",
            operation="chat",
            status="NOT_FOUND",
        )
        == 1
    )
    assert delta(after, before, "hub_provider_call_phase_seconds_count", phase="upstream", **calls) == 3
    assert delta(after, before, "hub_provider_call_phase_seconds_count", phase="hub", **calls) == 3
    assert delta(after, before, "hub_provider_call_phase_seconds_sum", phase="upstream", **calls) >= 0.25
    assert delta(after, before, "hub_provider_call_phase_seconds_sum", phase="hub", **calls) < 0.2
    stream = {"provider": "openai", "operation": "stream_chat"}
    assert delta(after, before, "hub_provider_call_phase_seconds_count", phase="upstream", **stream) == 1
    # Tokens by kind: 20/3/8 from the first chat, the fake's default 12/7 from the REST one.
    assert delta(after, before, "hub_tokens_total", kind="input", **calls) == 32
    assert delta(after, before, "hub_tokens_total", kind="output", **calls) == 10
    assert delta(after, before, "hub_tokens_total", kind="cached", **calls) == 8
    assert delta(after, before, "hub_tokens_total", kind="input", **stream) == 12


async def test_usage_recorder_counters_are_exported(hub: HubUnderTest) -> None:
    recorder = hub.hub.usage
    assert recorder is not None
    before = await scrape(hub)
    with pytest.raises(grpc.aio.AioRpcError):
        await chat_pb2_grpc.ChatServiceStub(hub.channel).Chat(
            chat.ChatRequest(credential="nope", model="m", messages=[user("x")]),
            metadata=hub.auth(hub.tokens.invoke_only),
        )
    await recorder.flush()
    after = await scrape(hub)
    assert delta(after, before, "hub_usage_records_written_total") == 1
    assert value(after, "hub_usage_records_pending") == 0


async def test_the_policy_layer_events_are_exported(tmp_path: Path, fake: FakeOpenAI) -> None:
    policy = (
        "[defaults]\nmax_attempts = 1\nbackoff_base = 0.01\nbackoff_max = 0.02\n"
        "[tenants.acme]\nrequests_per_minute = 1000\n"
        "[tenants.acme.credentials.flaky]\nmax_attempts = 2\nbreaker_failures = 2\n"
        "[tenants.acme.routes.smart]\n"
        'targets = [{credential = "flaky", model = "gpt-4o"}, {credential = "main", model = "gpt-4o-mini"}]\n'
        "[tenants.globex]\nrequests_per_minute = 1\n"
    )
    async with (
        FakeOpenAI(valid_keys={PATTERN_KEY}, force_status=503) as down,
        running_hub(settings_for(tmp_path, database_url=None, policy=policy)) as hut,
    ):
        await add_credential(hut, "main", fake.base_url, KEY)
        await add_credential(hut, "flaky", down.base_url, PATTERN_KEY)
        stub = chat_pb2_grpc.ChatServiceStub(hut.channel)
        before = await scrape(hut)
        # flaky fails twice (a retry), its breaker opens, the route falls back to main.
        answer = await stub.Chat(
            chat.ChatRequest(model="smart", messages=[user("x")]), metadata=hut.auth(hut.tokens.invoke_only)
        )
        assert answer.message.content[0].text
        # globex may make one request a minute: the second is refused by the hub's limit.
        await add_credential(hut, "theirs", fake.base_url, KEY, token=hut.tokens.other_tenant)
        other = hut.auth(hut.tokens.other_tenant)
        request = chat.ChatRequest(credential="theirs", model="gpt-4o", messages=[user("x")])
        await stub.Chat(request, metadata=other)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Chat(request, metadata=other)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        after = await scrape(hut)
    assert delta(after, before, "hub_retries_total", target="flaky/gpt-4o", reason="ProviderUnavailable") == 1
    assert (
        delta(
            after,
            before,
            "hub_fallbacks_total",
            route="smart",
            from_target="flaky/gpt-4o",
            to_target="main/gpt-4o-mini",
        )
        == 1
    )
    assert value(after, "hub_circuit_breaker_state", credential="acme/flaky", model="gpt-4o") == int(
        BreakerState.OPEN
    )
    assert delta(after, before, "hub_rate_limit_rejections_total", scope="tenant", kind="requests") == 1
    assert delta(after, before, "hub_errors_total", code="RESOURCE_EXHAUSTED", reason="RATE_LIMITED") == 1


async def test_the_helper_functions_produce_their_series(hub: HubUnderTest) -> None:
    before = await scrape(hub)
    metrics.retry("helper-cred/helper-model", "ProviderTimeout")
    metrics.fallback("helper-route", "helper-a/m1", "helper-b/m2")
    metrics.breaker_state("helper-tenant/helper-cred", "helper-model", BreakerState.HALF_OPEN)
    metrics.rate_limited("credential", "tokens")
    events = metrics.PolicyMetrics()
    events.retried(Target("helper-cred", "helper-model"), "ProviderTimeout")
    events.fell_back("helper-route", Target("helper-a", "m1"), Target("helper-b", "m2"))
    events.breaker_changed("helper-tenant/helper-cred", "helper-model", BreakerState.OPEN)
    events.rate_limited("tenant", "tokens")
    metrics.usage_records_dropped("rejected", 3)
    after = await scrape(hub)
    assert (
        delta(after, before, "hub_retries_total", target="helper-cred/helper-model", reason="ProviderTimeout")
        == 2
    )
    assert (
        delta(
            after,
            before,
            "hub_fallbacks_total",
            route="helper-route",
            from_target="helper-a/m1",
            to_target="helper-b/m2",
        )
        == 2
    )
    breaker = {"credential": "helper-tenant/helper-cred", "model": "helper-model"}
    assert value(after, "hub_circuit_breaker_state", **breaker) == 2  # the last state set
    assert delta(after, before, "hub_rate_limit_rejections_total", scope="credential", kind="tokens") == 1
    assert delta(after, before, "hub_rate_limit_rejections_total", scope="tenant", kind="tokens") == 1
    assert delta(after, before, "hub_usage_records_dropped_total", reason="rejected") == 3
    with pytest.raises(ValueError, match="scope"):
        metrics.rate_limited("everyone", "requests")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason"):
        metrics.usage_records_dropped("lost", 1)  # type: ignore[arg-type]


async def test_no_secret_appears_anywhere_in_metrics(tmp_path: Path, fake: FakeOpenAI) -> None:
    policy = "[defaults]\nmax_attempts = 2\nbackoff_base = 0.01\nbackoff_max = 0.02\nbreaker_failures = 2\n"
    async with (
        FakeOpenAI(valid_keys={PATTERN_KEY}, force_status=503) as down,
        running_hub(settings_for(tmp_path, database_url=None, policy=policy)) as hut,
    ):
        await add_credential(hut, "main", fake.base_url, KEY)
        await add_credential(hut, "down", down.base_url, PATTERN_KEY)
        stub = chat_pb2_grpc.ChatServiceStub(hut.channel)
        md = hut.auth(hut.tokens.invoke_only)
        await stub.Chat(
            chat.ChatRequest(credential="main", model="gpt-4o", messages=[user(KEY)]), metadata=md
        )
        # Secrets where a caller's string becomes a label value: the model of a retried call
        # and of a breaker (the retry target, the breaker's model label).
        for model in (KEY, PATTERN_KEY, hut.tokens.admin, hut.tokens.invoke_only, f"x-{KEY}-y"):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Chat(
                    chat.ChatRequest(credential="down", model=model, messages=[user("x")]), metadata=md
                )
        # A wrong token, and one sent as a path.
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Chat(
                chat.ChatRequest(credential="main", model="m"), metadata=hut.auth(hut.tokens.admin + "x")
            )
        async with hut.http.get(f"{hut.http_base}/v1/{hut.tokens.admin}/{KEY}") as response:
            assert response.status == 404
        text = await scrape_text(hut)
    assert "hub_retries_total" in text
    assert "hub_circuit_breaker_state" in text
    tokens = [hut.tokens.admin, hut.tokens.invoke_only, hut.tokens.other_tenant]
    for secret in [KEY, PATTERN_KEY, *tokens, *(t.removeprefix("ihub_") for t in tokens)]:
        assert secret not in text
        assert secret[4:-4] not in text  # not even most of it
    assert "REDACTED" in text  # the labels were there, redacted


async def test_label_values_stay_bounded_under_a_thousand_unmatched_paths(hub: HubUnderTest) -> None:
    before = await scrape(hub)
    paths = [f"/v1/scan-{i}" for i in range(400)]
    paths += [f"/scan/{i}/x" for i in range(300)]
    paths += [f"/openai/v1/scan-{i}" for i in range(300)]
    for path in paths:
        async with hub.http.get(hub.http_base + path) as response:
            assert response.status in (404, 501)
    after = await scrape(hub)
    unmatched = sum(
        delta(after, before, "hub_requests_total", transport="rest", method="unmatched", code=code)
        for code in ("NOT_FOUND", "UNIMPLEMENTED")
    )
    assert unmatched == 1000
    text = await scrape_text(hub)
    assert "scan" not in text
    new_series = set(after) - set(before)
    assert len(new_series) < 20, sorted(new_series)


def test_bounded_values_pass_the_first_ones_and_fold_the_rest_into_other() -> None:
    bounded = metrics.BoundedValues(3)
    assert [bounded(v) for v in ["a", "b", "a", "c", "d", "e", "b"]] == [
        "a",
        "b",
        "a",
        "c",
        "_other",
        "_other",
        "b",
    ]


async def test_a_thousand_distinct_targets_export_a_bounded_number_of_series(
    hub: HubUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The exported bound, made small for the test (the shared one keeps its values).
    monkeypatch.setattr(metrics, "_targets", metrics.BoundedValues(10))
    monkeypatch.setattr(metrics, "_breaker_models", metrics.BoundedValues(10))
    for i in range(1000):
        metrics.retry(f"bound-cred/bound-model-{i}", "ProviderUnavailable")
        metrics.breaker_state("bound-tenant/bound-cred", f"bound-model-{i}", BreakerState.CLOSED)
    after = await scrape(hub)
    retried = [
        s
        for s in series(after, "hub_retries_total")
        if s["target"].startswith("bound-") or s["target"] == "_other"
    ]
    assert len([s for s in retried if s["target"] != "_other"]) == 10
    assert value(after, "hub_retries_total", target="_other", reason="ProviderUnavailable") >= 990
    breakers = [
        s for s in series(after, "hub_circuit_breaker_state") if s["credential"] == "bound-tenant/bound-cred"
    ]
    assert len(breakers) == 11  # ten models and "_other"


async def test_a_stream_closed_by_its_consumer_is_counted_as_cancelled() -> None:
    # What a transport does when the client leaves while the handler waits at a `yield`:
    # the handler's generator is closed (GeneratorExit), which is the caller going away,
    # not an INTERNAL error.
    endpoint = metrics.Endpoint("grpc", "MeterProbe")

    async def handler() -> AsyncGenerator[int, None]:
        with endpoint.measure({}):
            for n in range(10):
                yield n

    def count(code: str) -> float:
        return (
            REGISTRY.get_sample_value(
                "hub_requests_total", {"transport": "grpc", "method": "MeterProbe", "code": code}
            )
            or 0.0
        )

    stream = handler()
    assert await anext(stream) == 0
    await stream.aclose()
    assert (count("CANCELLED"), count("INTERNAL")) == (1, 0)
    assert REGISTRY.get_sample_value("hub_requests_in_flight", {"transport": "grpc"}) == 0
