"""OpenTelemetry traces, only when asked for: a span per request, a child span per provider call.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set or
HUB_OTEL=1, unless OTEL_SDK_DISABLED is "true" or OTEL_TRACES_EXPORTER is "none" (the
standard ways to turn traces off while the endpoint is set for metrics or logs). Spans go to an OTLP exporter
(OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf", the default, or "grpc"); the SDK
reads the rest of its settings (headers, sampler, service name) from the standard
OTEL_* variables. The SDK is the optional extra `otel`: asked for but missing, the
hub refuses to start rather than run silently untraced.

While tracing is off nothing here imports OpenTelemetry, and every entry point
returns at the first line, so the request path pays one global read.

Span attributes are bounded, non-secret values only: transport, RPC name, status
code, provider, model, operation and token counts. Never a token, a key, a
tenant's message or a request body.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integration_hub.call_record import CallRecord
from integration_hub.vault.redaction import redact

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

EXTRA_HINT = "pip install 'integration-hub[otel]'"
SERVICE_NAME = "integration-hub"
_INSTRUMENTATION_NAME = "integration_hub"

_tracer: Tracer | None = None


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but cannot be set up; the message says what to install or fix."""


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(endpoint) or env.get("HUB_OTEL", "").strip() == "1"


def configure_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on if the environment asks for it (once per process); True if it is on."""
    env = os.environ if env is None else env
    if not wanted(env):
        return _tracer is not None
    if _tracer is None:
        install(_otlp_tracer_provider(env))
    return True


def install(provider: TracerProvider) -> None:
    """Send the hub's spans to `provider` (the OTLP one, or a test's in-memory one)."""
    global _tracer
    _tracer = provider.get_tracer(_INSTRUMENTATION_NAME)


def uninstall() -> None:
    """Stop tracing (tests); spans already ended stay with their provider."""
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


def _otlp_tracer_provider(env: Mapping[str, str]) -> TracerProvider:
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable(
            "traces are configured (OTEL_EXPORTER_OTLP_ENDPOINT or HUB_OTEL=1) but the OpenTelemetry "
            f"SDK is not installed: {EXTRA_HINT}, or unset them"
        ) from None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # OTEL_SERVICE_NAME (read by Resource.create) wins; otherwise name the service ourselves.
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    # shutdown_on_exit: the SDK flushes the batch when the process exits, after the drain.
    provider = SdkTracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(env)))
    return provider


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip() or "http/protobuf"
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        else:
            raise TracingUnavailable(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: traces are exported over grpc or http/protobuf"
            )
    except ImportError:
        raise TracingUnavailable(
            f"traces are configured but the OTLP exporter ({protocol}) is not installed: {EXTRA_HINT}"
        ) from None
    # The exporter reads its endpoint, headers, TLS and timeout from the OTEL_EXPORTER_OTLP_* variables.
    return OTLPSpanExporter()


# --- the request span ------------------------------------------------------------------


@dataclass(slots=True)
class RequestSpan:
    span: Span
    context_token: object


def start_request(transport: str, method: str, carrier: Mapping[str, str]) -> RequestSpan | None:
    """A SERVER span for one request, the child of the caller's W3C traceparent (headers or
    gRPC metadata) if it sent one, and made current so the provider call's span nests in it."""
    tracer = _tracer
    if tracer is None:
        return None
    from opentelemetry import context, propagate, trace

    parent = propagate.extract(carrier)
    span = tracer.start_span(
        f"{transport} {method}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={"hub.transport": transport, "rpc.method": method},
    )
    token = context.attach(trace.set_span_in_context(span, parent))
    return RequestSpan(span, token)


def end_request(request: RequestSpan, code: str) -> None:
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    request.span.set_attribute("hub.code", code)
    if code != "OK":
        request.span.set_status(Status(StatusCode.ERROR, code))
    request.span.end()
    context.detach(request.context_token)  # type: ignore[arg-type]


# --- the provider call's span ----------------------------------------------------------


class ProviderCallSpans:
    """A CallObserver: one CLIENT span per provider call, the child of the request span.

    LlmService reports a call when it ends, so the span is written after the fact
    from the CallRecord: it covers the time spent waiting on the provider (the
    request span's remainder is the hub's own time).
    """

    def observe(self, record: CallRecord) -> None:
        tracer = _tracer
        if tracer is None:
            return
        from opentelemetry.trace import SpanKind, Status, StatusCode

        ended = time.time_ns()
        span = tracer.start_span(
            f"provider {record.operation}",
            kind=SpanKind.CLIENT,
            start_time=ended - int(record.upstream_seconds * 1e9),
            attributes=_provider_attributes(record),
        )
        if record.status != "OK":
            span.set_status(Status(StatusCode.ERROR, record.status))
        span.end(end_time=ended)


def _provider_attributes(record: CallRecord) -> dict[str, str | int | float]:
    return {
        "gen_ai.system": record.provider or "unresolved",
        "gen_ai.operation.name": record.operation,
        # The model is the caller's string: redacted like every other text that leaves the hub.
        "gen_ai.request.model": redact(record.model),
        "gen_ai.usage.input_tokens": record.input_tokens,
        "gen_ai.usage.output_tokens": record.output_tokens,
        "hub.usage.cached_tokens": record.cached_tokens,
        "hub.call.status": record.status,
        "hub.call.reason": record.reason,
        "hub.call.latency_seconds": record.latency_seconds,
        "hub.call.upstream_seconds": record.upstream_seconds,
    }
