"""The shared path of every provider call, whatever it carries (chat, speech, ...).

credential (id or name, the caller's tenant) -> ciphertext row -> Vault.open ->
the provider's caller, planned and guarded by the PolicyEngine (routes, retries,
breakers, limits), and recorded as one CallRecord for the observers (usage rows,
metrics, spans). LlmService and SpeechService are this plus their own conversions.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import duration_pb2

from callers import registry
from callers.base import Capability
from integration_hub.call_record import CallObserver, CallRecord
from integration_hub.credentials import CredentialService
from integration_hub.dispatch import to_hub_error
from integration_hub.errors import HubError, invalid_field
from integration_hub.policy import Plan, PolicyEngine, Target, TargetUnusable
from integration_hub.policy.budget import Amounts
from integration_hub.policy.budget_spend import Spend
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


class ProviderCalls:
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
        self,
        call: CallContext,
        credential_ref: str,
        model: str,
        record: CallRecord,
        *,
        model_required: bool = True,
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
        if not model and (model_required or not credential_ref):
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

    def _spend(
        self, call: CallContext, estimate: Callable[[], Amounts], *, output_bounded: bool = True
    ) -> Spend:
        """The call's spend against its budgets (policy/budget_spend.py): reserved by the engine,
        settled by `_settle` when the call ends."""
        return Spend(call.principal.token_id, estimate, output_bounded)

    async def _settle(self, spend: Spend, record: CallRecord) -> None:
        """Settle the call's budgets with what its record says it used (nothing if it failed).
        Called after `_finish`: a settlement cut short by a second cancellation must not
        also lose the call's record."""
        await self._engine.settle(
            spend,
            Amounts(
                record.input_tokens,
                record.output_tokens,
                record.cached_tokens,
                record.audio_seconds,
                record.characters,
            ),
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
        *,
        model_required: bool = True,
        idempotent: bool = True,
        spend: Spend | None = None,
    ) -> tuple[T, Target]:
        plan, resolved = await self._plan(call, credential_ref, model, record, model_required=model_required)

        async def attempt(target: Target, budget: float) -> T:
            caller, options, secret = await self._prepare(call, target, capability, record, resolved)
            upstream_start = time.monotonic()
            try:
                return await invoke(caller, options, secret, target.model, budget)
            finally:
                timing.upstream += time.monotonic() - upstream_start

        return await self._engine.run(
            call.principal.tenant_id, plan, timeout, attempt, idempotent=idempotent, spend=spend
        )
