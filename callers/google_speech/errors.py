"""gRPC status codes (as google.api_core raises them) -> callers.errors."""

from __future__ import annotations

from typing import Any

import grpc
from google.api_core import exceptions as core

from callers.base import (
    AuthenticationFailed,
    CallerError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)

_KINDS: dict[grpc.StatusCode, type[CallerError]] = {
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationFailed,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.DEADLINE_EXCEEDED: ProviderTimeout,
    grpc.StatusCode.UNAVAILABLE: ProviderUnavailable,
}
# The HTTP status Google's REST mapping gives each code (provider_status).
_HTTP = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def _retry_after(details: Any) -> float | None:
    for detail in details or ():
        delay = getattr(detail, "retry_delay", None)
        if delay is not None and hasattr(delay, "seconds"):
            return float(delay.seconds) + float(getattr(delay, "nanos", 0)) / 1e9
    return None


def from_grpc(exc: BaseException, service: str) -> CallerError:
    """The caller error for a failed call to `service` ("Speech-to-Text", "Text-to-Speech")."""
    if isinstance(exc, core.GoogleAPICallError):
        code = exc.grpc_status_code
        message, details = exc.message, exc.details
    elif isinstance(exc, grpc.aio.AioRpcError):
        code, message, details = exc.code(), exc.details() or "", ()
    else:
        return ProviderUnavailable(f"{service} call failed ({type(exc).__name__})")
    kind = _KINDS.get(code, ProviderUnavailable) if code is not None else ProviderUnavailable
    name = code.name if code is not None else "UNKNOWN"
    status = _HTTP.get(code, 500) if code is not None else 500
    return kind(f"{service}: {name}: {message}", retry_after=_retry_after(details), provider_status=status)


def call_errors() -> tuple[type[BaseException], ...]:
    return (core.GoogleAPICallError, grpc.aio.AioRpcError)


# grpc.aio's stream-stream race: when the server ends a call (an auth error, say) while
# a write of audio is in flight, the failed write overwrites the call's status with
# INTERNAL "Internal error from Core", and the server's real status is gone from the
# call object. Reporting that would turn an expired key into an outage (and a retry).
# The call's done-callbacks run on every status it is given, the real one first, so
# FirstStatus keeps that one.
_WRITE_RACE_DETAILS = "Internal error from Core"


def _is_write_race(exc: BaseException) -> bool:
    if isinstance(exc, core.GoogleAPICallError):
        return exc.grpc_status_code is grpc.StatusCode.INTERNAL and _WRITE_RACE_DETAILS in exc.message
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() is grpc.StatusCode.INTERNAL and _WRITE_RACE_DETAILS in (exc.details() or "")
    return False


def _settled(awaitable: Any) -> Any:
    """The value of an awaitable that completes without suspending (a finished call's
    status accessors), read synchronously inside a done-callback."""
    coroutine = awaitable.__await__()
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    return None


class FirstStatus:
    """A done-callback for a grpc.aio streaming call: remembers its first final status."""

    __slots__ = ("code", "details", "trailing")

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details: str = ""
        self.trailing: grpc.aio.Metadata | None = None

    def __call__(self, call: Any) -> None:
        if self.code is not None:
            return
        self.code = _settled(call.code())
        self.details = _settled(call.details()) or ""
        self.trailing = _settled(call.trailing_metadata())

    def real_error(self, exc: BaseException) -> BaseException:
        """`exc`, or the server's own status when `exc` is the write race's stand-in."""
        if self.code is None or not _is_write_race(exc):
            return exc
        if self.code is grpc.StatusCode.INTERNAL and _WRITE_RACE_DETAILS in self.details:
            return exc
        trailing = self.trailing if self.trailing is not None else grpc.aio.Metadata()
        real = grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), trailing, self.details)
        mapped: BaseException = core.from_grpc_error(real)  # type: ignore[no-untyped-call]
        return mapped
