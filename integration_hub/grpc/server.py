"""The gRPC side: generic handlers built from the method table, plus the standard
grpc.health.v1 and reflection services, on a grpc.aio server.

Handlers are registered generically (no generated servicer base classes): each
RPC is wrapped once with authentication, scope checks, error mapping to a
google.rpc.Status carrying ErrorInfo (and RetryInfo when a retry delay is known),
and its metrics and trace span (integration_hub/metrics.py).

Bytes that do not decode as the method's request message are INVALID_ARGUMENT naming
the message type (gRPC itself would answer UNKNOWN and log a traceback), and a method
this server does not have is UNIMPLEMENTED naming it.

A server-streaming handler writes each message itself (`context.write`) rather than
being an async generator that gRPC iterates, so that a cancellation (the client gone,
its deadline passed) lands in the hub's own code wherever the call is waiting, even on
a slow reader's flow control, and the hub closes the stream it was reading, which
gives up the upstream request at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from integration_hub import metrics
from integration_hub.config import Settings
from integration_hub.dispatch import Dispatcher, new_request_id, to_hub_error
from integration_hub.errors import ERROR_DOMAIN, HubError
from integration_hub.rpc import CallContext, Message, Method

log = logging.getLogger("integration_hub.grpc")
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Calls to a method this server does not have are counted under this one name.
_UNMATCHED = metrics.Endpoint("grpc", "unmatched")


def rich_status(error: HubError) -> status_pb2.Status:
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    status.details.append(packed)
    if error.retry_after is not None:
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration())
        retry.retry_delay.FromMilliseconds(int(error.retry_after * 1000))
        packed_retry = any_pb2.Any()
        packed_retry.Pack(retry)
        status.details.append(packed_retry)
    return status


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """What the deserializer hands on for bytes that are not the request message.

    gRPC answers a deserializer that raises with UNKNOWN and logs a traceback; this is
    passed to the handler instead, which answers INVALID_ARGUMENT once the caller is
    authenticated, like any other bad request.
    """

    type_name: str
    problem: str

    def error(self) -> HubError:
        return HubError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            f"body: malformed protobuf, not a valid {self.type_name} ({self.problem})",
            {"field": "body"},
        )


def _deserializer(message_type: type[Message]) -> Callable[[bytes], Any]:
    type_name = message_type.DESCRIPTOR.full_name
    parse = message_type.FromString

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            # "Error parsing message with type 'x.Y': Wire format was corrupt" -> the cause.
            return _Undecodable(type_name, str(exc).rsplit(": ", 1)[-1] or "undecodable")

    return deserialize


async def _close(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


class _Wrapper:
    """Turns a transport-free handler into a grpc.aio behaviour."""

    def __init__(self, dispatcher: Dispatcher, method: Method) -> None:
        self._dispatcher = dispatcher
        self._method = method
        self._endpoint = metrics.Endpoint("grpc", method.name)

    async def _begin(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        metadata: dict[str, str],
        request_id: str,
        request: Any,
    ) -> CallContext:
        call = await self._dispatcher.begin(
            self._method,
            authorization=metadata.get("authorization"),
            request_id=request_id,
            time_remaining=context.time_remaining(),
            peer=context.peer() or "",
        )
        if isinstance(request, _Undecodable):
            raise request.error()
        return call

    async def _abort(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        exc: BaseException,
        rid: str,
        meter: metrics.RequestMeter,
    ) -> None:
        error = to_hub_error(exc, self._method.name, rid)
        meter.fail(error)
        log.info(
            "%s failed: %s %s",
            self._method.name,
            error.code.name,
            error.reason,
            extra={"request_id": rid, "transport": "grpc"},
        )
        status = rich_status(error)
        await context.abort(
            error.code, error.message, trailing_metadata=((_STATUS_DETAILS_KEY, status.SerializeToString()),)
        )

    async def unary(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        metadata = _metadata(context)
        rid = new_request_id(metadata.get("x-request-id"))
        with self._endpoint.measure(metadata) as meter:
            try:
                call = await self._begin(context, metadata, rid, request)
                return await self._method.handler(request, call)
            except Exception as exc:
                failure: BaseException = exc
            await self._abort(context, failure, rid, meter)

    async def server_stream(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metadata = _metadata(context)
        rid = new_request_id(metadata.get("x-request-id"))
        with self._endpoint.measure(metadata) as meter:
            try:
                call = await self._begin(context, metadata, rid, request)
                responses: AsyncIterator[Any] = self._method.handler(request, call)
                try:
                    async for response in responses:
                        await context.write(response)
                finally:
                    # Also on cancellation, wherever it landed: closing the stream closes the
                    # upstream response it reads.
                    await _close(responses)
                return
            except Exception as exc:
                failure: BaseException = exc
            await self._abort(context, failure, rid, meter)

    async def bidi_stream(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        # As server_stream, with the client's messages read by the handler as it needs them.
        metadata = _metadata(context)
        rid = new_request_id(metadata.get("x-request-id"))
        with self._endpoint.measure(metadata) as meter:
            try:
                call = await self._begin(context, metadata, rid, None)
                responses: AsyncIterator[Any] = self._method.handler(_decoded(requests), call)
                try:
                    async for response in responses:
                        await context.write(response)
                finally:
                    await _close(responses)
                return
            except Exception as exc:
                failure: BaseException = exc
            await self._abort(context, failure, rid, meter)


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's messages; one that did not decode ends it with INVALID_ARGUMENT."""
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise request.error()
        yield request


class _UnknownMethod:
    """A generic RPC handler (gRPC needs only `service`), consulted last: any method the
    handlers before it do not serve."""

    def __init__(self, services: Sequence[str]) -> None:
        self._services = ", ".join(services)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = str(handler_call_details.method)[:200]
        message = f"unknown method {method}; this server has {self._services}"

        # Stream-stream so that it answers at once whatever the caller sends: raw bytes, no decoding.
        async def refuse(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            error = HubError(grpc.StatusCode.UNIMPLEMENTED, "ROUTE_NOT_FOUND", message)
            with _UNMATCHED.measure() as meter:
                meter.fail(error)
            status = rich_status(error)
            await context.abort(
                error.code,
                error.message,
                trailing_metadata=((_STATUS_DETAILS_KEY, status.SerializeToString()),),
            )

        return grpc.stream_stream_rpc_method_handler(refuse)


def generic_handlers(dispatcher: Dispatcher) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for method in dispatcher.methods.values():
        wrapper = _Wrapper(dispatcher, method)
        serializer: Callable[[Any], bytes] = method.response_type.SerializeToString
        deserializer = _deserializer(method.request_type)
        if method.client_streaming and not method.server_streaming:
            raise ValueError(f"{method.full_name}: client streaming alone is not wired (no RPC uses it)")
        if method.client_streaming:
            handler = grpc.stream_stream_rpc_method_handler(wrapper.bidi_stream, deserializer, serializer)
        elif method.server_streaming:
            handler = grpc.unary_stream_rpc_method_handler(wrapper.server_stream, deserializer, serializer)
        else:
            handler = grpc.unary_unary_rpc_method_handler(wrapper.unary, deserializer, serializer)
        by_service.setdefault(method.service, {})[method.name] = handler
    return [grpc.method_handlers_generic_handler(svc, handlers) for svc, handlers in by_service.items()]


def _server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert_file or not settings.tls_key_file:
        return None
    key = Path(settings.tls_key_file).read_bytes()
    cert = Path(settings.tls_cert_file).read_bytes()
    client_ca = Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def build_grpc_server(
    settings: Settings, dispatcher: Dispatcher, port: int
) -> tuple[grpc.aio.Server, HealthServicer, int]:
    """A configured, started server; returns it, its health servicer and the bound port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.so_reuseport", 1),
        ]
    )
    server.add_generic_rpc_handlers(generic_handlers(dispatcher))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    services = sorted({m.service for m in dispatcher.methods.values()})
    served = [*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(served, server)
    server.add_generic_rpc_handlers((_UnknownMethod(served),))  # after every real one
    address = f"{settings.host}:{port}"
    credentials = _server_credentials(settings)
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"gRPC could not bind {address}")
    await server.start()
    for service in ["", *services]:
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, health, bound
