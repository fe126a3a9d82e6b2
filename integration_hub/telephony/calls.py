"""Placing, reading and hanging up calls: the TelephonyService's logic on neutral types.

A call's row is written (queued, with its URL token's hash) before the provider is
called, so that the provider's first callback, which can arrive before its answer to
the request, finds it. Placing a call is never retried when the outcome is unknown (a
timeout, a connection lost after the request went out): a retry could ring someone
twice. Only answers that say the provider did not take the call (429, 502, 503) are
retried, by the policy engine as for any provider call; the engine is told the place is
not idempotent, so that its own backstop timeout (a caller that overruns its bound) is
not retried either, on this credential or the next of a route.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from callers import errors as caller_errors
from callers import registry
from callers import types as t
from callers.base import Capability
from integration_hub.dispatch import from_caller_error
from integration_hub.errors import HubError, invalid_field
from integration_hub.ids import unique_id
from integration_hub.provider_calls import ProviderCalls, Timing
from integration_hub.rpc import CallContext
from integration_hub.store.base import Store
from integration_hub.store.calls import CallPlaced, CallQuery, CallRow
from integration_hub.telephony import urls as call_urls
from integration_hub.telephony.convert import neutral_action

DEFAULT_PAGE, MAX_PAGE = 100, 1000
MAX_IDEMPOTENCY_KEY = 128


def outcome_unknown(exc: caller_errors.CallerError) -> HubError:
    return HubError(
        grpc.StatusCode.UNAVAILABLE,
        "CALL_OUTCOME_UNKNOWN",
        f"the provider did not answer whether it placed the call ({type(exc).__name__}); it was not "
        "retried, so as not to ring twice: its events, if it was placed, update it (GetCall)",
    )


def _retry_is_safe(exc: caller_errors.CallerError) -> bool:
    """True when the provider's answer says it did not take the call."""
    if isinstance(exc, caller_errors.RateLimited):
        return True
    return isinstance(exc, caller_errors.ProviderUnavailable) and exc.provider_status in (502, 503)


def public_urls(base: str | None) -> call_urls.CallUrls:
    if not base:
        raise HubError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "PUBLIC_URL_NOT_SET",
            "HUB_PUBLIC_URL is not set: providers need the hub's public address for a call's "
            "events and media (see the README's telephony section)",
        )
    return call_urls.CallUrls(base)


@dataclass(frozen=True, slots=True)
class NewCall:
    """A checked PlaceCall request (numbers in E.164, action and limits checked)."""

    credential: str
    to: str
    from_: str
    action: Mapping[str, Any]
    ring_timeout_seconds: int | None
    time_limit_seconds: int | None
    machine_detection: t.MachineDetection
    metadata: Mapping[str, str]
    idempotency_key: str | None
    campaign_id: str | None = None
    campaign_row: int | None = None
    attempt: int = 1


# Campaign calls' keys (campaigns.py): a client's key may not take one.
RESERVED_KEY_PREFIX = "campaign:"


def check_idempotency_key(key: str) -> str | None:
    if not key:
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable():
        raise invalid_field("idempotency_key", f"printable ASCII, at most {MAX_IDEMPOTENCY_KEY} characters")
    if key.startswith(RESERVED_KEY_PREFIX):
        raise invalid_field("idempotency_key", f"keys starting with {RESERVED_KEY_PREFIX!r} are reserved")
    return key


def encode_cursor(row: CallRow) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        at, call_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(at), call_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_field(
            "page_token", "malformed; pass a next_page_token from a previous response"
        ) from None


class TelephonyCalls(ProviderCalls):
    """PlaceCall, GetCall, ListCalls, HangupCall."""

    def __init__(self, *args: Any, store: Store, public_url: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._store = store
        self._public_url = public_url

    async def place(self, call: CallContext, new: NewCall, timeout: float) -> CallRow:
        urls = public_urls(self._public_url)
        tenant = call.principal.tenant_id
        credential = await self._credentials.resolve(tenant, new.credential, "credential")
        # Before a row is written: a credential that cannot place calls leaves no trace.
        registry.capability(credential.provider, Capability.TELEPHONY)
        now = datetime.now(UTC)
        call_id, token = unique_id(), call_urls.new_token()
        row = await self._store.insert_call(
            CallRow(
                id=call_id,
                tenant_id=tenant,
                credential_id=credential.id,
                credential_name=credential.name,
                provider=credential.provider,
                to_number=new.to,
                from_number=new.from_,
                status=t.CallStatus.QUEUED.value,
                status_rank=t.CallStatus.QUEUED.rank,
                token_hash=call_urls.token_hash(token),
                created_at=now,
                updated_at=now,
                action=dict(new.action),
                metadata=dict(new.metadata),
                idempotency_key=new.idempotency_key,
                campaign_id=new.campaign_id,
                campaign_row=new.campaign_row,
                attempt=new.attempt,
            )
        )
        if row.id != call_id:
            return row  # the idempotency key's call: placed (or being placed) already
        request = t.PlaceCallRequest(
            to=new.to,
            from_=new.from_,
            action=neutral_action(new.action, urls.media(call_id, token)),
            status_callback_url=urls.events(call_id, token),
            answer_url=urls.answer(call_id, token),
            hub_call_id=call_id,
            call_token=token,
            ring_timeout_seconds=new.ring_timeout_seconds,
            time_limit_seconds=new.time_limit_seconds,
            machine_detection=new.machine_detection,
            metadata=dict(new.metadata),
        )
        try:
            response = await self._place(call, credential.id, request, timeout)
        except (HubError, caller_errors.CallerError) as exc:
            # The provider refused the call (or the hub did, before asking): it is failed,
            # with the reason. An unknown outcome stays queued for its events to settle.
            refusal = exc if isinstance(exc, HubError) else from_caller_error(exc)
            if refusal.reason != "CALL_OUTCOME_UNKNOWN":
                await self._store.mark_call_failed(call_id, refusal.message, datetime.now(UTC))
            raise
        status = response.status
        placed = CallPlaced(
            provider_call_id=response.provider_call_id,
            provider_status=response.raw_status,
            status=None if status is None else status.value,
            status_rank=None if status is None else status.rank,
            at=datetime.now(UTC),
        )
        return await self._store.mark_call_placed(call_id, placed)

    async def _place(
        self, call: CallContext, credential_id: str, request: t.PlaceCallRequest, timeout: float
    ) -> t.PlaceCallResponse:
        timing, record = Timing(started=call.started), self._start(call, "place_call", "")
        error: BaseException | None = None

        async def invoke(caller: Any, options: dict[str, str], secret: Any, _: str, budget: float) -> Any:
            try:
                return await caller.place_call(secret, options, request, timeout=budget)
            except (caller_errors.ProviderTimeout, caller_errors.ProviderUnavailable) as exc:
                if _retry_is_safe(exc):
                    raise
                raise outcome_unknown(exc) from None

        try:
            response, _ = await self._unary(
                call,
                credential_id,
                "",
                Capability.TELEPHONY,
                record,
                timing,
                timeout,
                invoke,
                model_required=False,
                idempotent=False,
            )
            return response  # type: ignore[no-any-return]
        except caller_errors.ProviderTimeout as exc:
            # The engine's backstop: the caller overran its bound, the request may be out.
            error = outcome_unknown(exc)
            raise error from None
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)

    async def get(self, call: CallContext, call_id: str) -> CallRow:
        if not call_id:
            raise invalid_field("call_id", "required")
        row = await self._store.get_call(call.principal.tenant_id, call_id)
        if row is None:
            raise HubError(
                grpc.StatusCode.NOT_FOUND,
                "CALL_NOT_FOUND",
                f"no call {call_id!r} in this tenant",
                {"call": call_id},
            )
        return row

    async def list(self, call: CallContext, query: CallQuery, page_token: str) -> tuple[list[CallRow], str]:
        after = decode_cursor(page_token) if page_token else None
        wanted = query.limit
        page = await self._store.list_calls(
            CallQuery(
                tenant_id=call.principal.tenant_id,
                limit=wanted + 1,
                status=query.status,
                campaign_id=query.campaign_id,
                created_after=query.created_after,
                created_before=query.created_before,
                after=after,
            )
        )
        more = len(page) > wanted
        page = page[:wanted]
        return page, encode_cursor(page[-1]) if more and page else ""

    async def hangup(self, call: CallContext, call_id: str, timeout: float) -> CallRow:
        row = await self.get(call, call_id)
        if t.CallStatus(row.status).terminal:
            return row
        if not row.provider_call_id:
            raise HubError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "CALL_NOT_PLACED",
                f"call {call_id!r} has no provider call id yet"
                " (it is being placed, or its outcome is unknown)",
            )
        timing, record = Timing(started=call.started), self._start(call, "hangup_call", "")
        error: BaseException | None = None

        async def invoke(caller: Any, options: dict[str, str], secret: Any, _: str, budget: float) -> Any:
            request = t.HangupRequest(provider_call_id=row.provider_call_id)
            return await caller.hangup(secret, options, request, timeout=budget)

        try:
            await self._unary(
                call,
                row.credential_id,
                "",
                Capability.TELEPHONY,
                record,
                timing,
                timeout,
                invoke,
                model_required=False,
            )
        except BaseException as exc:
            error = exc
            raise
        finally:
            timing.finished = time.monotonic()
            self._finish(record, timing, error)
        # The provider's events say how the call ended; until they arrive, it is as it was.
        return await self.get(call, call_id)

    async def provider_state(self, call: CallContext, row: CallRow, timeout: float) -> t.CallState:
        """The call as its provider has it now (reconcile.py asks this of silent calls):
        the caller's get_call, through the policy engine like any provider call."""

        async def invoke(caller: Any, options: dict[str, str], secret: Any, _: str, budget: float) -> Any:
            return await caller.get_call(secret, options, row.provider_call_id, timeout=budget)

        state: t.CallState = await self._ask_provider(call, row, "get_call", invoke, timeout)
        return state

    async def provider_calls_like(
        self, call: CallContext, row: CallRow, window: timedelta, timeout: float
    ) -> Sequence[t.CallState]:
        """The provider's calls to and from the row's numbers created within `window` of
        the row: whether a call whose place answer was lost was placed at all."""
        request = t.FindCallsRequest(
            to=row.to_number,
            from_=row.from_number,
            created_after=row.created_at - window,
            created_before=row.created_at + window,
        )

        async def invoke(caller: Any, options: dict[str, str], secret: Any, _: str, budget: float) -> Any:
            return await caller.find_calls(secret, options, request, timeout=budget)

        found: Sequence[t.CallState] = await self._ask_provider(call, row, "find_calls", invoke, timeout)
        return found

    async def _ask_provider(
        self, call: CallContext, row: CallRow, operation: str, invoke: Any, timeout: float
    ) -> Any:
        """One read of the provider's call records through the policy engine, recorded like
        any provider call."""
        timing, record = Timing(started=call.started), self._start(call, operation, "")
        error: BaseException | None = None
        try:
            answer, _ = await self._unary(
                call,
                row.credential_id,
                "",
                Capability.TELEPHONY,
                record,
                timing,
                timeout,
                invoke,
                model_required=False,
            )
            return answer
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)
