"""The method table: every RPC of the API, read once from the descriptors.

Both transports are driven by this table, so neither has a hand-written route
per RPC: the gRPC server builds its generic handlers from it, the HTTP
transcoder its routes (from the google.api.http annotation), and both check the
scopes declared beside each RPC with the (allowed_scopes) option.

A handler is a plain coroutine `(request, call) -> response`, or an async
iterator of responses for a server-streaming RPC; it knows no transport.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import message as pb_message
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from integration_hub.v1 import common_pb2

Message = pb_message.Message


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: from the hub token, never from a request field."""

    tenant_id: str
    token_id: str
    scopes: frozenset[str]


@dataclass(slots=True)
class CallContext:
    """What a handler knows of the call besides its request."""

    principal: Principal
    request_id: str
    method: str
    # time.monotonic() by which the caller wants an answer, if it said.
    deadline: float | None = None
    peer: str = ""
    started: float = field(default_factory=time.monotonic)

    def time_left(self, default: float) -> float:
        if self.deadline is None:
            return default
        return max(0.0, min(default, self.deadline - time.monotonic()))


UnaryHandler = Callable[[Any, CallContext], Awaitable[Message]]
StreamHandler = Callable[[Any, CallContext], AsyncIterator[Message]]


@dataclass(frozen=True, slots=True)
class Method:
    full_name: str  # "/integration_hub.v1.CredentialService/CreateCredential"
    service: str  # "integration_hub.v1.CredentialService"
    name: str  # "CreateCredential"
    request_type: type[Message]
    response_type: type[Message]
    server_streaming: bool
    client_streaming: bool
    allowed_scopes: frozenset[str]
    http_rule: http_pb2.HttpRule | None
    handler: Callable[..., Any]


def scope_name(value: int) -> str:
    """SCOPE_ADMIN -> "admin"; the form tokens carry."""
    return common_pb2.Scope.Name(common_pb2.Scope.ValueType(value)).removeprefix("SCOPE_").lower()


def _message_class(descriptor: Any) -> type[Message]:
    cls: type[Message] = message_factory.GetMessageClass(descriptor)
    return cls


def _method_from_descriptor(method: MethodDescriptor, handler: Callable[..., Any]) -> Method:
    options = method.GetOptions()
    scopes = frozenset(scope_name(s) for s in options.Extensions[common_pb2.allowed_scopes])
    if not scopes:
        # Every RPC must say who may call it; a forgotten option must not mean "anyone".
        raise ValueError(f"{method.full_name} declares no (allowed_scopes)")
    rule = options.Extensions[annotations_pb2.http] if options.HasExtension(annotations_pb2.http) else None
    return Method(
        full_name=f"/{method.containing_service.full_name}/{method.name}",
        service=method.containing_service.full_name,
        name=method.name,
        request_type=_message_class(method.input_type),
        response_type=_message_class(method.output_type),
        server_streaming=method.server_streaming,
        client_streaming=method.client_streaming,
        allowed_scopes=scopes,
        http_rule=rule,
        handler=handler,
    )


def methods_of(service: ServiceDescriptor, implementation: object) -> list[Method]:
    """Bind each RPC of `service` to the same-named coroutine of `implementation`."""
    methods = []
    for descriptor in service.methods:
        handler = getattr(implementation, descriptor.name, None)
        if handler is None:
            raise TypeError(f"{type(implementation).__name__} does not implement {descriptor.full_name}")
        methods.append(_method_from_descriptor(descriptor, handler))
    return methods


def method_table(bindings: Iterable[tuple[ServiceDescriptor, object]]) -> dict[str, Method]:
    table: dict[str, Method] = {}
    for service, implementation in bindings:
        for method in methods_of(service, implementation):
            table[method.full_name] = method
    return table
