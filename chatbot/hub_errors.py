"""A failed hub call, as the chatbot sees it: one exception carrying the hub's reason.

The hub puts a google.rpc.ErrorInfo (reason, metadata) and, when it asks for a pause,
a RetryInfo into every error's status details; the reason is common.proto's
ErrorReason name without its prefix. Callers branch on `reason`, never on messages.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

_STATUS_DETAILS = "grpc-status-details-bin"

# Reasons worth retrying after a pause: the provider or the hub is busy or briefly down.
RETRYABLE_REASONS = frozenset(
    {
        "PROVIDER_RATE_LIMITED",
        "PROVIDER_UNAVAILABLE",
        "PROVIDER_TIMEOUT",
        "RATE_LIMITED",
        "CIRCUIT_OPEN",
        "OVERLOADED",
        "STORE_UNAVAILABLE",
    }
)


class HubCallError(Exception):
    """A hub call failed: the hub's reason ("" when the hub was not reached), code, message.

    `reason` is an ErrorReason name without its prefix, e.g. "CREDENTIAL_NOT_FOUND",
    "PROVIDER_RATE_LIMITED"; `metadata` is the ErrorInfo's (e.g. {"field": "model"});
    `retry_after` the hub's RetryInfo delay in seconds, when it gave one. The message
    is the hub's, which never holds a key; the hub token is never part of it.
    """

    def __init__(
        self,
        method: str,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"hub {method} failed: {reason or code.name}: {message}")
        self.method = method
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        if self.reason:
            return self.reason in RETRYABLE_REASONS
        # No ErrorInfo: the hub itself was not reached (down, restarting) or did not answer in time.
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def hub_error(method: str, error: grpc.aio.AioRpcError) -> HubCallError:
    """The HubCallError of a failed call, from its status and the ErrorInfo/RetryInfo details."""
    reason, metadata, retry_after = "", {}, None
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Unpack(retry):
                retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    return HubCallError(method, error.code(), reason, error.details() or "", metadata, retry_after)
