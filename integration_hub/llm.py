"""Chat, streaming chat, embeddings and rerank: the one path every transport takes.

credential (id or name, the caller's tenant) -> ciphertext row -> Vault.open ->
the provider's caller -> the provider. LlmService speaks the callers' neutral
types, so both the proto API (ChatApi, below) and the OpenAI-compatible adapter
use it unchanged. The opened secret is a local of one call: it is passed to the
caller and dropped when the call (or the stream) ends.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import duration_pb2

from callers import registry
from callers.base import Capability, ProviderUnavailable
from callers.types import llm as t
from integration_hub.call_record import CallObserver, CallRecord
from integration_hub.credentials import CredentialService
from integration_hub.dispatch import to_hub_error
from integration_hub.errors import HubError, invalid_field
from integration_hub.llm_convert import (
    chat_event_to_proto,
    chat_request_from_proto,
    chat_response_to_proto,
    embed_request_from_proto,
    embed_response_to_proto,
    rerank_request_from_proto,
    rerank_response_to_proto,
)
from integration_hub.policy import Plan, PolicyEngine, Target, TargetUnusable
from integration_hub.rpc import CallContext
from integration_hub.store.base import CredentialRow
from integration_hub.v1 import chat_pb2 as pb

DEFAULT_TIMEOUT, MAX_TIMEOUT = 120.0, 600.0
T = TypeVar("T")


@dataclass(slots=True)
class Timing:
    """Where a call's time went; upstream is the part spent in the provider call."""

    started: float
    upstream: float = 0.0
    first_token: float | None = None
    finished: float = field(default=0.0)

    def to_proto(self) -> pb.Timings:
        timings = pb.Timings()
        timings.total.FromNanoseconds(int((self.finished - self.started) * 1e9))
        timings.upstream.FromNanoseconds(int(self.upstream * 1e9))
        if self.first_token is not None:
            timings.time_to_first_token.FromNanoseconds(int((self.first_token - self.started) * 1e9))
        return timings


def timeout_from(value: duration_pb2.Duration | None, call: CallContext) -> float:
    """The call's time budget: asked (bounded) or the default, within the caller's deadline."""
    if value is not None and (value.seconds or value.nanos):
        asked = value.ToNanoseconds() / 1e9
        if not 0 < asked <= MAX_TIMEOUT:
            raise invalid_field("timeout", f"must be more than 0 and at most {MAX_TIMEOUT:g}s")
    else:
        asked = DEFAULT_TIMEOUT
    return call.time_left(asked)


class LlmService:
    """Every provider call: planned and guarded by the PolicyEngine, recorded for the observers."""

    def __init__(
        self, credentials: CredentialService, engine: PolicyEngine, observers: Sequence[CallObserver] = ()
    ) -> None:
        self._credentials = credentials
        self._engine = engine
        self._observers = list(observers)

    def add_observer(self, observer: CallObserver) -> None:
        self._observers.append(observer)

    async def _plan(
        self, call: CallContext, credential_ref: str, model: str, record: CallRecord
    ) -> tuple[Plan, dict[str, CredentialRow]]:
        """The call's targets, each naming its credential by name (the key of its limits and
        breaker), and the rows already resolved on the way, by that name.

        A direct call's credential is resolved here (by id or name; an unknown one fails the
        call at once). A route's targets are resolved when tried, so that one naming a
        deleted credential is passed over for the next (TargetUnusable) instead of failing
        every call of the route.
        """
        if not credential_ref and not model:
            raise invalid_field("credential", "required: a credential id or name (or a route as the model)")
        if not model:
            raise invalid_field("model", "required")
        tenant_id = call.principal.tenant_id
        plan = self._engine.plan(tenant_id, credential_ref, model)
        resolved: dict[str, CredentialRow] = {}
        if plan.route is None:
            (target,) = plan.targets
            row = await self._credentials.resolve(tenant_id, target.credential, "credential")
            resolved[row.name] = row
            plan = Plan(None, (Target(row.name, target.model),))
        else:
            record.route = plan.route.name
        await self._engine.admit(tenant_id)
        return plan, resolved

    async def _prepare(
        self,
        call: CallContext,
        target: Target,
        capability: Capability,
        record: CallRecord,
        resolved: dict[str, CredentialRow],
    ) -> tuple[Any, dict[str, str], Any]:
        row = resolved.get(target.credential)
        if row is None:
            try:
                row = await self._credentials.resolve(
                    call.principal.tenant_id, target.credential, "credential"
                )
            except HubError as missing:
                if missing.reason == "CREDENTIAL_NOT_FOUND":
                    raise TargetUnusable(missing) from None
                raise
        record.credential_id, record.credential_name, record.provider = row.id, row.name, row.provider
        record.model = target.model
        if record.route:
            record.target = f"{row.name}/{target.model}"
        caller = registry.capability(row.provider, capability)  # NotSupported before any decrypt
        row, secret = await self._credentials.open(row, call, record.operation)
        return caller, dict(row.options), secret

    def _start(self, call: CallContext, operation: str, model: str) -> CallRecord:
        return CallRecord(
            tenant_id=call.principal.tenant_id,
            operation=operation,
            model=model,
            request_id=call.request_id,
            started_at=datetime.now(UTC),
        )

    def _finish(self, record: CallRecord, timing: Timing, error: BaseException | None) -> None:
        timing.finished = timing.finished or time.monotonic()
        record.latency_seconds = timing.finished - timing.started
        record.upstream_seconds = timing.upstream
        if error is not None:
            hub_error = to_hub_error(error, record.operation, record.request_id, log_unexpected=False)
            record.status, record.reason = hub_error.code.name, hub_error.reason
        for observer in self._observers:
            observer.observe(record)

    async def _account(self, call: CallContext, record: CallRecord, target: Target, usage: t.Usage) -> None:
        record.input_tokens, record.output_tokens = usage.input_tokens, usage.output_tokens
        record.cached_tokens = usage.cached_input_tokens
        total = usage.total_tokens or usage.input_tokens + usage.output_tokens
        await self._engine.account(call.principal.tenant_id, target.credential, total)

    async def _unary(
        self,
        call: CallContext,
        credential_ref: str,
        model: str,
        capability: Capability,
        record: CallRecord,
        timing: Timing,
        timeout: float,
        invoke: Callable[[Any, dict[str, str], Any, str, float], Awaitable[T]],
    ) -> tuple[T, Target]:
        plan, resolved = await self._plan(call, credential_ref, model, record)

        async def attempt(target: Target, budget: float) -> T:
            caller, options, secret = await self._prepare(call, target, capability, record, resolved)
            upstream_start = time.monotonic()
            try:
                return await invoke(caller, options, secret, target.model, budget)
            finally:
                timing.upstream += time.monotonic() - upstream_start

        return await self._engine.run(call.principal.tenant_id, plan, timeout, attempt)

    async def chat(
        self, call: CallContext, credential_ref: str, request: t.ChatRequest, timeout: float
    ) -> tuple[t.ChatResponse, str, Timing]:
        timing, record = Timing(started=call.started), self._start(call, "chat", request.model)
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                return await caller.chat(secret, options, _with_model(request, model), timeout=budget)

            response, target = await self._unary(
                call, credential_ref, request.model, Capability.CHAT, record, timing, timeout, invoke
            )
            timing.finished = time.monotonic()
            await self._account(call, record, target, response.usage)
            return response, record.provider, timing
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)

    async def stream_chat(
        self, call: CallContext, credential_ref: str, request: t.ChatRequest, timeout: float, timing: Timing
    ) -> tuple[str, AsyncIterator[t.ChatEvent]]:
        record = self._start(call, "stream_chat", request.model)
        # The provider's share starts when the last attempt's caller is called: not the
        # planning, credential lookup and decrypt before it (0 if no attempt got that far).
        upstream_start: float | None = None

        def upstream_so_far() -> float:
            return 0.0 if upstream_start is None else time.monotonic() - upstream_start

        try:
            plan, resolved = await self._plan(call, credential_ref, request.model, record)

            async def attempt(target: Target, budget: float) -> AsyncIterator[t.ChatEvent]:
                nonlocal upstream_start
                caller, options, secret = await self._prepare(
                    call, target, Capability.STREAM_CHAT, record, resolved
                )
                upstream_start = time.monotonic()
                stream: AsyncIterator[t.ChatEvent] = caller.stream_chat(
                    secret, options, _with_model(request, target.model), timeout=budget
                )
                return stream

            stream, target = await self._engine.run_stream(call.principal.tenant_id, plan, timeout, attempt)
            timing.first_token = time.monotonic()
        except BaseException as exc:
            timing.upstream = upstream_so_far()
            self._finish(record, timing, exc)
            raise

        async def events() -> AsyncIterator[t.ChatEvent]:
            # The record is written when the stream ends, however it ends (a client that
            # goes away mid-stream is CANCELLED), with the usage of the end event.
            error: BaseException | None = None
            try:
                async for event in stream:
                    if isinstance(event, t.ChatStreamEnd):
                        await self._account(call, record, target, event.usage)
                    yield event
                timing.finished = time.monotonic()
            except BaseException as exc:
                error = exc
                raise
            finally:
                # Closed at a yield (the client went away while an event was being written),
                # `async for` does not close what it reads: without this the upstream response
                # stays open, and billed, until garbage collection.
                await _aclose(stream)
                timing.upstream = upstream_so_far()
                self._finish(record, timing, error)

        return record.provider, events()

    async def embed(
        self, call: CallContext, credential_ref: str, request: t.EmbedRequest, timeout: float
    ) -> tuple[t.EmbedResponse, Timing]:
        timing, record = Timing(started=call.started), self._start(call, "embed", request.model)
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                response = await caller.embed(secret, options, _with_model(request, model), timeout=budget)
                got, asked = len(response.vectors), len(request.inputs)
                if got != asked:
                    raise ProviderUnavailable(f"the provider returned {got} vectors for {asked} inputs")
                return response

            response, target = await self._unary(
                call, credential_ref, request.model, Capability.EMBED, record, timing, timeout, invoke
            )
            timing.finished = time.monotonic()
            await self._account(call, record, target, response.usage)
            return response, timing
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)

    async def rerank(
        self, call: CallContext, credential_ref: str, request: t.RerankRequest, timeout: float
    ) -> tuple[t.RerankResponse, Timing]:
        timing, record = Timing(started=call.started), self._start(call, "rerank", request.model)
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                return await caller.rerank(secret, options, _with_model(request, model), timeout=budget)

            response, target = await self._unary(
                call, credential_ref, request.model, Capability.RERANK, record, timing, timeout, invoke
            )
            timing.finished = time.monotonic()
            await self._account(call, record, target, response.usage)
            return response, timing
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)


async def _aclose(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


R = TypeVar("R", t.ChatRequest, t.EmbedRequest, t.RerankRequest)


def _with_model(request: R, model: str) -> R:
    """The request for one target: a route's targets may use different models."""
    return request if request.model == model else dataclasses.replace(request, model=model)


class ChatApi:
    """The ChatService RPCs: protobuf in and out, the logic in LlmService."""

    def __init__(self, llm: LlmService) -> None:
        self._llm = llm

    async def Chat(self, request: pb.ChatRequest, call: CallContext) -> pb.ChatResponse:
        neutral = chat_request_from_proto(request)
        response, provider, timing = await self._llm.chat(
            call, request.credential, neutral, timeout_from(request.timeout, call)
        )
        proto = chat_response_to_proto(response, provider)
        timing.finished = time.monotonic()
        proto.timings.CopyFrom(timing.to_proto())
        return proto

    async def StreamChat(
        self, request: pb.ChatRequest, call: CallContext
    ) -> AsyncIterator[pb.StreamChatResponse]:
        neutral = chat_request_from_proto(request)
        timing = Timing(started=call.started)
        provider, events = await self._llm.stream_chat(
            call, request.credential, neutral, timeout_from(request.timeout, call), timing
        )
        try:
            async for event in events:
                proto = chat_event_to_proto(event, provider)
                if isinstance(event, t.ChatStreamEnd):
                    timing.finished = time.monotonic()
                    proto.end.timings.CopyFrom(timing.to_proto())
                yield proto
        finally:
            await _aclose(events)  # closed itself (the client gone), close the stream it reads

    async def Embed(self, request: pb.EmbedRequest, call: CallContext) -> pb.EmbedResponse:
        response, timing = await self._llm.embed(
            call, request.credential, embed_request_from_proto(request), timeout_from(request.timeout, call)
        )
        proto = embed_response_to_proto(response)
        timing.finished = time.monotonic()
        proto.timings.CopyFrom(timing.to_proto())
        return proto

    async def Rerank(self, request: pb.RerankRequest, call: CallContext) -> pb.RerankResponse:
        response, timing = await self._llm.rerank(
            call, request.credential, rerank_request_from_proto(request), timeout_from(request.timeout, call)
        )
        proto = rerank_response_to_proto(response)
        timing.finished = time.monotonic()
        proto.timings.CopyFrom(timing.to_proto())
        return proto
