"""OpenTelemetry traces through a running hub, into the SDK's in-memory exporter: a SERVER
span per request, a CLIENT child span per provider call with gen_ai attributes, the
caller's W3C traceparent honoured, no secret in any span; and with tracing not asked
for, nothing is set up and OpenTelemetry is not even imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from integration_hub import tracing
from integration_hub.v1 import chat_pb2 as chat
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import REPO, HubUnderTest, running_hub, settings_for

KEY = "plainKeyTracing0123456789abcdefXYZ"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}) as server:
        yield server


@pytest.fixture
async def hub(tmp_path: Path, fake: FakeOpenAI, spans: InMemorySpanExporter) -> AsyncIterator[HubUnderTest]:
    async with running_hub(settings_for(tmp_path, database_url=None)) as hut:
        await hut.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": fake.base_url}
            ),
            metadata=hut.auth(hut.tokens.admin),
        )
        spans.clear()
        yield hut


def user(text: str) -> chat.ChatMessage:
    return chat.ChatMessage(role=chat.ROLE_USER, content=[chat.ContentPart(text=text)])


def one(spans: InMemorySpanExporter, kind: SpanKind, name: str) -> ReadableSpan:
    found = [s for s in spans.get_finished_spans() if s.kind == kind and s.name == name]
    assert len(found) == 1, [(s.name, s.kind) for s in spans.get_finished_spans()]
    return found[0]


def request_chat(model: str = "gpt-4o-mini") -> chat.ChatRequest:
    return chat.ChatRequest(credential="main", model=model, messages=[user("Hi")])


async def test_a_grpc_chat_is_a_server_span_with_a_client_provider_span(
    hub: HubUnderTest, fake: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    fake.script(ChatReply(text="hi", prompt_tokens=20, completion_tokens=3, cached_tokens=8))
    await chat_pb2_grpc.ChatServiceStub(hub.channel).Chat(
        request_chat(), metadata=hub.auth(hub.tokens.invoke_only)
    )
    server = one(spans, SpanKind.SERVER, "grpc Chat")
    client = one(spans, SpanKind.CLIENT, "provider chat")
    assert server.parent is None  # the caller sent no traceparent
    assert server.attributes is not None
    assert client.attributes is not None
    assert dict(server.attributes) == {"hub.transport": "grpc", "rpc.method": "Chat", "hub.code": "OK"}
    assert server.status.status_code != StatusCode.ERROR
    # The provider call is the request span's child, inside it in time.
    assert client.parent is not None
    assert server.context is not None
    assert client.context is not None
    assert client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    assert server.start_time is not None
    assert server.end_time is not None
    assert client.start_time is not None
    assert client.end_time is not None
    assert server.start_time <= client.start_time <= client.end_time <= server.end_time
    attributes = dict(client.attributes)
    assert attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (20, 3)
    assert attributes["hub.usage.cached_tokens"] == 8
    assert attributes["hub.call.status"] == "OK"
    assert attributes["hub.call.latency_seconds"] >= attributes["hub.call.upstream_seconds"] > 0  # type: ignore[operator]


async def test_the_callers_traceparent_is_the_parent_over_grpc_and_rest(
    hub: HubUnderTest, spans: InMemorySpanExporter
) -> None:
    await chat_pb2_grpc.ChatServiceStub(hub.channel).Chat(
        request_chat(), metadata=[*hub.auth(hub.tokens.invoke_only), ("traceparent", TRACEPARENT)]
    )
    body = {
        "credential": "main",
        "model": "gpt-4o",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "x"}]}],
    }
    async with hub.http.post(
        hub.http_base + "/v1/chat",
        json=body,
        headers={**hub.headers(hub.tokens.invoke_only), "traceparent": TRACEPARENT},
    ) as response:
        assert response.status == 200
    for server in (one(spans, SpanKind.SERVER, "grpc Chat"), one(spans, SpanKind.SERVER, "rest Chat")):
        assert server.context is not None
        assert server.parent is not None
        assert format(server.context.trace_id, "032x") == TRACE_ID
        assert format(server.parent.span_id, "016x") == PARENT_SPAN_ID
        assert server.parent.is_remote
    clients = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert len(clients) == 2
    assert all(s.context is not None and format(s.context.trace_id, "032x") == TRACE_ID for s in clients)


async def test_failures_and_streams_have_their_spans(
    hub: HubUnderTest, fake: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    stub, md = chat_pb2_grpc.ChatServiceStub(hub.channel), hub.auth(hub.tokens.invoke_only)
    fake.force_status = 503
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Chat(request_chat(), metadata=md)
    fake.force_status = None
    _ = [e async for e in stub.StreamChat(request_chat(), metadata=md)]
    failed = one(spans, SpanKind.SERVER, "grpc Chat")
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["hub.code"] == "UNAVAILABLE"
    failed_call = one(spans, SpanKind.CLIENT, "provider chat")
    assert failed_call.status.status_code == StatusCode.ERROR
    assert failed_call.attributes is not None
    assert failed_call.attributes["hub.call.reason"] == "PROVIDER_UNAVAILABLE"
    streamed = one(spans, SpanKind.SERVER, "grpc StreamChat")
    stream_call = one(spans, SpanKind.CLIENT, "provider stream_chat")
    assert stream_call.parent is not None
    assert streamed.context is not None
    assert stream_call.parent.span_id == streamed.context.span_id
    assert stream_call.attributes is not None
    assert stream_call.attributes["gen_ai.usage.output_tokens"] == 7


async def test_no_secret_in_any_span(
    hub: HubUnderTest, fake: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(hub.channel)
    md = [*hub.auth(hub.tokens.invoke_only), ("traceparent", TRACEPARENT), ("baggage", f"k={KEY}")]
    await stub.Chat(chat.ChatRequest(credential="main", model="gpt-4o", messages=[user(KEY)]), metadata=md)
    # Secrets as the caller's model string, which becomes an attribute.
    for model in (KEY, hub.tokens.admin):
        await stub.Chat(request_chat(model=model), metadata=md)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Chat(request_chat(), metadata=hub.auth(hub.tokens.admin + "x"))
    async with hub.http.post(
        hub.http_base + "/v1/chat",
        json={
            "credential": "main",
            "model": KEY,
            "messages": [{"role": "ROLE_USER", "content": [{"text": KEY}]}],
        },
        headers={**hub.headers(hub.tokens.invoke_only), "traceparent": TRACEPARENT},
    ) as response:
        assert response.status == 200
    finished = spans.get_finished_spans()
    assert len(finished) >= 8
    dumped = "\n".join(s.to_json() for s in finished)
    tokens = [hub.tokens.admin, hub.tokens.invoke_only, hub.tokens.other_tenant]
    for secret in [KEY, *tokens, *(t.removeprefix("ihub_") for t in tokens)]:
        assert secret not in dumped
        assert secret[4:-4] not in dumped
    assert "[REDACTED]" in dumped  # the model attribute was there, redacted
    for span in finished:
        for name, attribute in (span.attributes or {}).items():
            assert isinstance(attribute, str | int | float | bool), name


async def test_uninstall_stops_tracing(hub: HubUnderTest, spans: InMemorySpanExporter) -> None:
    tracing.uninstall()
    assert not tracing.enabled()
    await chat_pb2_grpc.ChatServiceStub(hub.channel).Chat(
        request_chat(), metadata=hub.auth(hub.tokens.invoke_only)
    )
    assert spans.get_finished_spans() == ()


# --- configuration -----------------------------------------------------------------------------


def _run(code: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


_PROBE = """
import json, sys
import integration_hub.hub, integration_hub.serve  # everything a serving hub imports
from integration_hub import tracing
on = tracing.configure_from_env()
print(json.dumps({"on": on, "enabled": tracing.enabled(),
                  "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
"""


def test_without_hub_otel_nothing_is_set_up_or_imported() -> None:
    result = _run(_PROBE)
    assert result == {"on": False, "enabled": False, "otel": []}


def test_hub_otel_1_sets_up_the_otlp_exporter() -> None:
    result = _run(_PROBE, HUB_OTEL="1")
    assert result["on"] is True
    assert result["enabled"] is True
    assert "opentelemetry.sdk.trace" in result["otel"]  # type: ignore[operator]
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in result["otel"]  # type: ignore[operator]


def test_when_tracing_is_wanted() -> None:
    assert not tracing.wanted({})
    assert not tracing.wanted({"HUB_OTEL": "0"})
    assert tracing.wanted({"HUB_OTEL": "1"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not tracing.wanted({"HUB_OTEL": "1", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing.configure_from_env({}) is False
    assert not tracing.enabled()


def test_an_unknown_exporter_protocol_is_refused_naming_it() -> None:
    with pytest.raises(tracing.TracingUnavailable, match="OTEL_EXPORTER_OTLP_PROTOCOL='carrier-pigeon'"):
        tracing.configure_from_env({"HUB_OTEL": "1", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
    assert not tracing.enabled()
