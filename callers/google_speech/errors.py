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
