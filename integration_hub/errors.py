"""The hub's one error type, and how every transport renders it.

Service code raises HubError with a gRPC status code and a stable reason (the
ErrorReason names of common.proto, without the prefix). The gRPC layer turns it
into a google.rpc.Status with ErrorInfo (and RetryInfo); the HTTP layer into the
matching status and a Google-style JSON error body. Messages are passed through
the redactor before they leave the process, so a provider echoing a key back
cannot leak it through an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from integration_hub.vault.redaction import redact

ERROR_DOMAIN = "integration-hub"

# google.rpc.Code -> HTTP status, as in google/rpc/code.proto and grpc-gateway.
HTTP_STATUS_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


@dataclass(eq=False)
class HubError(Exception):
    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None

    def __post_init__(self) -> None:
        self.message = redact(self.message)
        self.metadata = {k: redact(v) for k, v in self.metadata.items()}
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_CODE.get(self.code, 500)


def invalid_field(field_path: str, problem: str) -> HubError:
    """INVALID_ARGUMENT naming the field, e.g. ("secret.api_key", "required")."""
    return HubError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        f"{field_path}: {problem}",
        {"field": field_path},
    )


def unauthenticated(message: str = "a valid hub token is required (Authorization: Bearer ...)") -> HubError:
    return HubError(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", message)


def credential_not_found(ref: str) -> HubError:
    return HubError(
        grpc.StatusCode.NOT_FOUND,
        "CREDENTIAL_NOT_FOUND",
        f"no credential {ref!r} in this tenant",
        {"credential": ref},
    )


def store_unavailable() -> HubError:
    # The store's own message may name hosts; the client learns only that it is down.
    return HubError(grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE", "the hub's store is unavailable")


def internal_error(request_id: str) -> HubError:
    return HubError(
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        f"internal error; the hub's logs have the details under request id {request_id}",
        {"request_id": request_id},
    )
