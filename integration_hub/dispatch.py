"""What every transport does around a handler: authenticate, authorize, and turn
whatever the handler raised into a HubError. Kept in one place so that gRPC and
HTTP cannot disagree on who may call what, or on which error a fault becomes.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from callers import base as caller_errors
from integration_hub.auth import Authenticator, authorize
from integration_hub.errors import HubError, internal_error, store_unavailable
from integration_hub.ids import unique_id
from integration_hub.rpc import CallContext, Method
from integration_hub.store.base import StoreUnavailable

log = logging.getLogger("integration_hub.calls")


def new_request_id(supplied: str | None) -> str:
    # A caller-supplied id is kept only if it is short and printable (it reaches logs).
    if supplied and len(supplied) <= 64 and supplied.isascii() and supplied.isprintable():
        return supplied
    return unique_id()


class Dispatcher:
    def __init__(self, methods: dict[str, Method], authenticator: Authenticator) -> None:
        self.methods = methods
        self._authenticator = authenticator

    async def begin(
        self,
        method: Method,
        *,
        authorization: str | None,
        request_id: str,
        time_remaining: float | None,
        peer: str = "",
    ) -> CallContext:
        return await self.begin_operation(
            method.full_name,
            method.allowed_scopes,
            authorization=authorization,
            request_id=request_id,
            time_remaining=time_remaining,
            peer=peer,
        )

    async def begin_operation(
        self,
        name: str,
        allowed_scopes: frozenset[str],
        *,
        authorization: str | None,
        request_id: str,
        time_remaining: float | None,
        peer: str = "",
    ) -> CallContext:
        """Authenticate and authorize a call to `name` (an RPC, or an adapter's endpoint)."""
        started = time.monotonic()
        principal = await self._authenticator.authenticate(authorization)
        authorize(principal, allowed_scopes, name.rsplit("/", 1)[-1])
        deadline = started + time_remaining if time_remaining is not None else None
        return CallContext(principal, request_id, name, deadline=deadline, peer=peer, started=started)


# Provider errors, classified by the callers, mapped to the hub's codes once.
_CALLER_ERRORS: list[tuple[type[Exception], grpc.StatusCode, str]] = [
    (caller_errors.AuthenticationFailed, grpc.StatusCode.UNAUTHENTICATED, "PROVIDER_AUTH_FAILED"),
    (caller_errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, "PROVIDER_PERMISSION_DENIED"),
    (caller_errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
    (caller_errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_INVALID_REQUEST"),
    (caller_errors.NotFound, grpc.StatusCode.NOT_FOUND, "PROVIDER_NOT_FOUND"),
    (caller_errors.ProviderTimeout, grpc.StatusCode.DEADLINE_EXCEEDED, "PROVIDER_TIMEOUT"),
    (caller_errors.ProviderUnavailable, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    (caller_errors.MissingExtra, grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_EXTRA_MISSING"),
    # The credential's provider lacks the capability: the caller's choice of credential, so a
    # client error (HTTP 400), not UNIMPLEMENTED (501): the hub has the RPC, this provider not.
    (caller_errors.NotSupported, grpc.StatusCode.FAILED_PRECONDITION, "CAPABILITY_NOT_SUPPORTED"),
]


def from_caller_error(exc: caller_errors.CallerError) -> HubError:
    for cls, code, reason in _CALLER_ERRORS:
        if isinstance(exc, cls):
            metadata = {}
            if exc.provider_status is not None:
                metadata["provider_status"] = str(exc.provider_status)
            return HubError(code, reason, exc.message, metadata, retry_after=exc.retry_after)
    return HubError(grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE", exc.message)


def to_hub_error(
    exc: BaseException, call_name: str, request_id: str, *, log_unexpected: bool = True
) -> HubError:
    """The HubError a transport should answer with for `exc` (cancellation: CANCELLED).

    GeneratorExit is a stream closed by its consumer before its end (a client that went
    away while the hub was writing to it): a cancellation too, not an internal error.
    """
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return HubError(grpc.StatusCode.CANCELLED, "CANCELLED", "the call was cancelled")
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, caller_errors.CallerError):
        return from_caller_error(exc)
    if isinstance(exc, StoreUnavailable):
        if log_unexpected:
            log.warning("store unavailable during %s", call_name, extra={"request_id": request_id})
        return store_unavailable()
    if log_unexpected:
        log.error("unexpected error in %s", call_name, exc_info=exc, extra={"request_id": request_id})
    return internal_error(request_id)
