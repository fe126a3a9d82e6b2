"""Prometheus metrics: every request, every provider call, and the policy layer's events.

Served at GET /metrics on the HTTP port (`exposition`). With PROMETHEUS_MULTIPROC_DIR
set (the worker supervisor sets it for its workers), prometheus_client keeps each
worker's values in files there and /metrics on any worker adds up all of them;
without it, the process's default registry is served. prometheus_client decides
that when it is first imported, so the variable must be in the environment before
the process starts.

Cardinality stays bounded: label values are fixed names chosen by the hub's code
(transport, RPC or endpoint name, status code, provider, operation, token kind), or
names from configuration (routes, targets as credential/model, breaker keys as
tenant/credential name and model), which pass through `BoundedValues` so that at
most a fixed number of distinct values per label is ever exported; past that they
are counted under "_other". Credential and request ids are never labels, and no
label value is a request's content.

The request path is cheap: each endpoint looks up its labelled children once
(`Endpoint`), so a request costs a few increments and one histogram observation.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Literal

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess

from callers.registry import PROVIDERS
from integration_hub import tracing
from integration_hub.call_record import CallRecord
from integration_hub.errors import HubError
from integration_hub.policy.breaker import BreakerState
from integration_hub.policy.budget_ledger import Counter as BudgetCounter
from integration_hub.policy.config import Target
from integration_hub.vault.redaction import redact

# The very test prometheus_client makes when it is imported (values.get_value_class): values live in
# files, one per process.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ
OTHER = "_other"

# Sub-millisecond (a rejected token) to two minutes (a long generation).
REQUEST_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# The hub's own share of a call is usually well under a millisecond: finer at the bottom.
PHASE_BUCKETS = (0.0001, 0.00025, *REQUEST_BUCKETS)

# "_created" series double the exposition for no use here (Prometheus tracks resets itself).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "hub_requests",
    "Requests served, by transport, RPC or endpoint, and status code.",
    ["transport", "method", "code"],
)
REQUEST_DURATION = Histogram(
    "hub_request_duration_seconds",
    "Time from receiving a request to its last byte (a stream: all of it).",
    ["transport", "method"],
    buckets=REQUEST_BUCKETS,
)
IN_FLIGHT = Gauge(
    "hub_requests_in_flight", "Requests being served now.", ["transport"], multiprocess_mode="livesum"
)
ERRORS = Counter("hub_errors", "Requests that failed, by status code and reason.", ["code", "reason"])
PROVIDER_CALLS = Counter(
    "hub_provider_calls",
    "Provider calls, by provider, operation and the status they ended with.",
    ["provider", "operation", "status"],
)
PROVIDER_CALL_DURATION = Histogram(
    "hub_provider_call_duration_seconds",
    "A provider call's whole time (resolve, decrypt, upstream).",
    ["provider", "operation", "status"],
    buckets=REQUEST_BUCKETS,
)
PROVIDER_CALL_PHASE = Histogram(
    "hub_provider_call_phase_seconds",
    "A provider call's time split: phase=upstream waiting on the provider, phase=hub the hub's own.",
    ["provider", "operation", "phase"],
    buckets=PHASE_BUCKETS,
)
TOKENS = Counter(
    "hub_tokens",
    "Tokens reported by providers, by kind (input, output, cached input).",
    ["provider", "operation", "kind"],
)
AUDIO_SECONDS = Counter(
    "hub_audio_seconds", "Seconds of audio transcribed or synthesized.", ["provider", "operation"]
)
CHARACTERS = Counter("hub_characters", "Characters of text synthesized.", ["provider", "operation"])
RETRIES = Counter(
    "hub_retries", "Provider calls retried, by target (credential/model) and reason.", ["target", "reason"]
)
FALLBACKS = Counter(
    "hub_fallbacks", "Calls moved from one route target to the next.", ["route", "from_target", "to_target"]
)
BREAKER_STATE = Gauge(
    "hub_circuit_breaker_state",
    "Circuit breaker per credential and model: 0 closed, 1 half-open, 2 open.",
    ["credential", "model"],
    multiprocess_mode="livemax",
)
RATE_LIMIT_REJECTIONS = Counter(
    "hub_rate_limit_rejections", "Requests refused by the hub's own limits.", ["scope", "kind"]
)
BUDGET_REJECTIONS = Counter(
    "hub_budget_rejections",
    "Calls refused because a budget had no room, by scope, period and unit.",
    ["scope", "period", "unit"],
)
BUDGET_WARNINGS = Counter(
    "hub_budget_warnings",
    "Budgets whose spend crossed their warn_at threshold (once per budget per period).",
    ["scope", "budget", "period", "unit"],
)
BUDGET_USED = Gauge(
    "hub_budget_used_ratio",
    "Spent / limit of a budget in its current period, as last settled on this worker.",
    ["scope", "budget", "period", "unit"],
    multiprocess_mode="livemax",
)
USAGE_RECORDS_WRITTEN = Counter("hub_usage_records_written", "Usage records written to the store.")
USAGE_RECORDS_DROPPED = Counter(
    "hub_usage_records_dropped",
    "Usage records lost: queue_full (a long store outage), rejected (refused by the store),"
    " shutdown (still queued when the drain time ran out).",
    ["reason"],
)
# Telephony. Providers and endpoints are fixed names; outcomes and fates are the hub's words.
CALL_EVENTS = Counter(
    "hub_call_events",
    "Provider call events received: applied (moved the call on), late (recorded, not applied:"
    " the call was past it), duplicate (a replay or a retry, ignored).",
    ["provider", "outcome"],
)
WEBHOOK_REJECTIONS = Counter(
    "hub_webhook_rejections",
    "Requests to the public telephony endpoints refused, by endpoint and HTTP status"
    " (403: wrong token or signature).",
    ["endpoint", "status"],
)
MEDIA_STREAMS = Gauge(
    "hub_media_streams", "Provider media websockets open.", ["provider"], multiprocess_mode="livesum"
)
MEDIA_FRAMES = Counter(
    "hub_media_frames",
    "Call media frames: in (provider to agent: forwarded, or dropped while no agent is attached),"
    " out (agent to provider: sent, or cleared before playing).",
    ["direction", "fate"],
)
USAGE_RECORDS_PENDING = Gauge(
    "hub_usage_records_pending",
    "Usage records queued, not yet written (grows while the store is unavailable).",
    multiprocess_mode="livesum",
)
UsageLoss = Literal["queue_full", "rejected", "shutdown"]


class BoundedValues:
    """The first `limit` distinct values of a label pass; later new ones become "_other"."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


# --- requests ----------------------------------------------------------------------------


class Endpoint:
    """The metrics of one (transport, method), its labelled children looked up once.

    `method` must come from a fixed set (an RPC's name, an adapter's endpoint), never
    from a raw path.
    """

    __slots__ = ("_by_code", "_duration", "_in_flight", "method", "transport")

    def __init__(self, transport: str, method: str) -> None:
        self.transport, self.method = transport, method
        self._duration = REQUEST_DURATION.labels(transport, method)
        self._in_flight = IN_FLIGHT.labels(transport)
        self._by_code: dict[str, Counter] = {}

    def measure(self, carrier: Mapping[str, str] | None = None) -> RequestMeter:
        """A context manager around one request; `carrier` (headers or gRPC metadata) may hold
        the caller's traceparent."""
        return RequestMeter(self, carrier)

    def _started(self) -> None:
        self._in_flight.inc()

    def _finished(self, code: str, reason: str, seconds: float) -> None:
        self._in_flight.dec()
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = REQUESTS.labels(self.transport, self.method, code)
        counter.inc()
        self._duration.observe(seconds)
        if code != "OK":
            ERRORS.labels(code, _reasons(reason)).inc()


class RequestMeter:
    """One request: in flight while it runs; counted with its code (and its span ended) when it ends.

    A handler that answers with an error instead of raising says so with `fail`; an
    exception leaving the block is counted by the code the hub maps it to.
    """

    __slots__ = ("_carrier", "_endpoint", "_span", "_started", "code", "reason")

    def __init__(self, endpoint: Endpoint, carrier: Mapping[str, str] | None) -> None:
        self._endpoint, self._carrier = endpoint, carrier
        self._span: tracing.RequestSpan | None = None
        self._started = 0.0
        self.code: str | None = None
        self.reason = ""

    def fail(self, error: HubError) -> None:
        self.code, self.reason = error.code.name, error.reason

    def __enter__(self) -> RequestMeter:
        self._endpoint._started()
        if self._carrier is not None and tracing.enabled():
            self._span = tracing.start_request(self._endpoint.transport, self._endpoint.method, self._carrier)
        self._started = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        seconds = time.perf_counter() - self._started
        if self.code is None:
            self.code, self.reason = ("OK", "") if exc is None else _failure_of(exc)
        self._endpoint._finished(self.code, self.reason, seconds)
        if self._span is not None:
            tracing.end_request(self._span, self.code)


def _failure_of(exc: BaseException) -> tuple[str, str]:
    # The caller went away: the task was cancelled, the connection reset, or (a streaming
    # handler's generator closed before its end) the transport stopped consuming the stream.
    if isinstance(exc, asyncio.CancelledError | ConnectionResetError | GeneratorExit):
        return "CANCELLED", "CANCELLED"
    if isinstance(exc, HubError):
        return exc.code.name, exc.reason
    return "INTERNAL", "INTERNAL"


_reasons = BoundedValues(200)


# --- provider calls (a CallObserver) ------------------------------------------------------------

_KNOWN_PROVIDERS = frozenset(PROVIDERS)
_operations = BoundedValues(32)


class _CallSeries:
    """The labelled children one (provider, operation, status) writes to, looked up once:
    `labels()` costs more than the increments themselves."""

    __slots__ = ("audio_seconds", "calls", "characters", "duration", "hub", "tokens", "upstream")

    def __init__(self, provider: str, operation: str, status: str) -> None:
        self.calls = PROVIDER_CALLS.labels(provider, operation, status)
        self.duration = PROVIDER_CALL_DURATION.labels(provider, operation, status)
        self.upstream = PROVIDER_CALL_PHASE.labels(provider, operation, "upstream")
        self.hub = PROVIDER_CALL_PHASE.labels(provider, operation, "hub")
        self.tokens = tuple(
            TOKENS.labels(provider, operation, kind) for kind in ("input", "output", "cached")
        )
        self.audio_seconds = AUDIO_SECONDS.labels(provider, operation)
        self.characters = CHARACTERS.labels(provider, operation)


class CallMetrics:
    """A CallObserver: counts each provider call, its time split (hub vs upstream), its
    tokens, and for speech its seconds of audio and characters."""

    def __init__(self) -> None:
        # Bounded: providers are a fixed set (or "_other"), operations pass BoundedValues and
        # statuses are gRPC code names.
        self._series: dict[tuple[str, str, str], _CallSeries] = {}

    def observe(self, record: CallRecord) -> None:
        key = (record.provider, record.operation, record.status)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= 4096:  # a guard; the label sets above are small
                self._series.clear()
            labels = (_provider_label(record.provider), _operations(record.operation), record.status)
            series = self._series[key] = _CallSeries(*labels)
        series.calls.inc()
        series.duration.observe(record.latency_seconds)
        if record.upstream_seconds > 0:  # the call reached the provider
            series.upstream.observe(record.upstream_seconds)
            series.hub.observe(max(0.0, record.latency_seconds - record.upstream_seconds))
        input_tokens, output_tokens, cached_tokens = series.tokens
        if record.input_tokens > 0:
            input_tokens.inc(record.input_tokens)
        if record.output_tokens > 0:
            output_tokens.inc(record.output_tokens)
        if record.cached_tokens > 0:
            cached_tokens.inc(record.cached_tokens)
        if record.audio_seconds > 0:
            series.audio_seconds.inc(record.audio_seconds)
        if record.characters > 0:
            series.characters.inc(record.characters)


def _provider_label(provider: str) -> str:
    if not provider:
        return "unresolved"  # the call failed before a credential named its provider
    return provider if provider in _KNOWN_PROVIDERS else OTHER


# --- the policy layer's events -------------------------------------------------------------------


_retry_reasons = BoundedValues(50)
_routes, _targets = BoundedValues(200), BoundedValues(500)
# Breakers are keyed by credential name and model, both the caller's strings: at most
# this many distinct ones are exported, the rest share "_other".
_breaker_credentials, _breaker_models = BoundedValues(500), BoundedValues(500)


def retry(target: str, reason: str) -> None:
    RETRIES.labels(_targets(redact(target)), _retry_reasons(reason)).inc()


def fallback(route: str, from_target: str, to_target: str) -> None:
    FALLBACKS.labels(_routes(redact(route)), _targets(redact(from_target)), _targets(redact(to_target))).inc()


def breaker_state(credential: str, model: str, state: BreakerState) -> None:
    credential_label = _breaker_credentials(redact(credential))
    BREAKER_STATE.labels(credential_label, _breaker_models(redact(model))).set(int(state))


def rate_limited(scope: Literal["tenant", "credential"], kind: Literal["requests", "tokens"]) -> None:
    if scope not in ("tenant", "credential") or kind not in ("requests", "tokens"):
        raise ValueError(f"rate_limited: scope {scope!r} / kind {kind!r} is not one of the defined ones")
    RATE_LIMIT_REJECTIONS.labels(scope, kind).inc()


class PolicyMetrics:
    """The PolicyEngine's events (integration_hub/policy/engine.py PolicyEvents) as metrics."""

    def retried(self, target: Target, reason: str) -> None:
        retry(_target_label(target), reason)

    def fell_back(self, route: str, from_target: Target, to_target: Target) -> None:
        fallback(route, _target_label(from_target), _target_label(to_target))

    def breaker_changed(self, credential: str, model: str, state: BreakerState) -> None:
        breaker_state(credential, model, state)

    def rate_limited(self, scope: str, kind: str) -> None:
        rate_limited(scope, kind)  # type: ignore[arg-type]

    def budget_refused(self, counter: BudgetCounter) -> None:
        BUDGET_REJECTIONS.labels(counter.scope, counter.period, counter.unit).inc()

    def budget_warned(self, counter: BudgetCounter) -> None:
        BUDGET_WARNINGS.labels(*_budget_labels(counter)).inc()

    def budget_used(self, counter: BudgetCounter, spent: int) -> None:
        BUDGET_USED.labels(*_budget_labels(counter)).set(spent / counter.limit)


# Budget owners are names from the policy file (tenant ids, credential names, token ids),
# bounded like every configured label.
_budget_owners = BoundedValues(500)


def _budget_labels(counter: BudgetCounter) -> tuple[str, str, str, str]:
    owner = counter.owner if counter.scope == "tenant" else f"{counter.tenant_id}/{counter.owner}"
    return counter.scope, _budget_owners(redact(owner)), counter.period, counter.unit


def _target_label(target: Target) -> str:
    return f"{target.credential}/{target.model}"


def usage_records_written(count: int) -> None:
    USAGE_RECORDS_WRITTEN.inc(count)


def usage_records_dropped(reason: UsageLoss, count: int = 1) -> None:
    if reason not in ("queue_full", "rejected", "shutdown"):
        raise ValueError(f"usage_records_dropped: reason {reason!r} is not one of the defined ones")
    USAGE_RECORDS_DROPPED.labels(reason).inc(count)


def usage_records_pending(count: int) -> None:
    USAGE_RECORDS_PENDING.set(count)


# --- exposition ------------------------------------------------------------------------------------

_multiprocess_registry: CollectorRegistry | None = None


def exposition() -> tuple[bytes, str]:
    """The /metrics body and its content type: this process's registry, or with
    PROMETHEUS_MULTIPROC_DIR the sum over every worker's files."""
    return prometheus_client.generate_latest(_registry()), CONTENT_TYPE_LATEST


def _registry() -> CollectorRegistry:
    global _multiprocess_registry
    if not MULTIPROCESS:
        return REGISTRY
    if _multiprocess_registry is None:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        _multiprocess_registry = registry
    return _multiprocess_registry


def mark_process_dead(pid: int) -> None:
    """For the worker supervisor: drop a dead worker's in-flight and breaker gauges (multiprocess mode)."""
    if MULTIPROCESS:
        prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
