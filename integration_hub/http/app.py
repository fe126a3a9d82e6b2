"""The HTTP side: the REST transcoder, the liveness/readiness probes, /metrics, and JSON errors.

aiohttp serves it on the event loop the gRPC server shares. Every error,
including the framework's own (no route, body too large), leaves as the same
Google-style JSON body the gRPC status maps to (under /openai/, OpenAI's error shape).
Every REST call is counted and timed under its RPC's name (integration_hub/metrics.py),
never its raw path.

A client that hangs up cancels its handler (the runner's handler_cancellation), and
with it the upstream call. When the hang-up is noticed first by a write failing
instead, the stream being written is closed at once (which closes the upstream
response it reads) and the call ends as CANCELLED, like a cancellation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import orjson
from aiohttp import web

from integration_hub import console, metrics
from integration_hub.dispatch import Dispatcher, new_request_id, to_hub_error
from integration_hub.errors import ERROR_DOMAIN, HubError
from integration_hub.http import openai_wire
from integration_hub.http.chatbot_proxy import ChatbotProxy
from integration_hub.http.openapi import document_bytes
from integration_hub.http.transcoder import (
    Binding,
    Transcoder,
    build_request,
    message_to_dict,
    render_response,
)

log = logging.getLogger("integration_hub.http")
JSON = "application/json"
Readiness = Callable[[], Awaitable[tuple[bool, dict[str, str]]]]
MAX_REQUEST_BYTES = web.AppKey("max_request_bytes", int)
# Requests that matched no route are counted under this one method name, so that a
# scan of random paths cannot add label values.
UNMATCHED = metrics.Endpoint("rest", "unmatched")


class ClientGone(Exception):
    """The HTTP client hung up: nothing more can be sent to it."""


def client_gone() -> HubError:
    return HubError(grpc.StatusCode.CANCELLED, "CANCELLED", "the client went away")


async def prepare(stream: web.StreamResponse, request: web.Request) -> None:
    try:
        await stream.prepare(request)
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one
        raise ClientGone from None


async def send(stream: web.StreamResponse, data: bytes) -> None:
    """Write to the client; its hang-up is ClientGone, told apart from the handler's own errors."""
    try:
        await stream.write(data)
    except ConnectionResetError:
        raise ClientGone from None


async def finish(stream: web.StreamResponse) -> None:
    try:
        await stream.write_eof()
    except ConnectionResetError:
        raise ClientGone from None


async def close_stream(stream: AsyncIterator[Any]) -> None:
    """Close a stream however its reading ended; a no-op for one that has finished."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def error_body(error: HubError, status: int | None = None) -> bytes:
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": error.reason,
            "domain": ERROR_DOMAIN,
            "metadata": error.metadata,
        }
    ]
    if error.retry_after is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": f"{error.retry_after:.3f}s"}
        )
    return orjson.dumps(
        {
            "error": {
                "code": status or error.http_status,
                "status": error.code.name,
                "message": error.message,
                "details": details,
            }
        }
    )


def error_response(error: HubError, request_id: str = "", *, status: int | None = None) -> web.Response:
    headers = {"x-request-id": request_id} if request_id else {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return web.Response(
        status=status or error.http_status, body=error_body(error, status), content_type=JSON, headers=headers
    )


class RestHandler:
    def __init__(self, dispatcher: Dispatcher, transcoder: Transcoder) -> None:
        self._dispatcher = dispatcher
        self._transcoder = transcoder
        self._endpoints = {
            method.full_name: metrics.Endpoint("rest", method.name) for method in dispatcher.methods.values()
        }

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        rid = new_request_id(request.headers.get("x-request-id"))
        found = self._transcoder.match(request.method, request.path)
        if found is None:
            with UNMATCHED.measure() as meter:
                error = self._no_route(request)
                meter.fail(error)
                return error_response(error, rid)
        binding, path_values = found
        with self._endpoints[binding.method.full_name].measure(request.headers) as meter:
            return await self._serve(request, binding, path_values, rid, meter)

    async def _serve(
        self,
        request: web.Request,
        binding: Binding,
        path_values: dict[str, str],
        rid: str,
        meter: metrics.RequestMeter,
    ) -> web.StreamResponse:
        try:
            call = await self._dispatcher.begin(
                binding.method,
                authorization=request.headers.get("Authorization"),
                request_id=rid,
                time_remaining=_timeout_header(request),
                peer=request.remote or "",
            )
            message = build_request(binding, path_values, request.query.items(), await request.read())
            if binding.method.server_streaming:
                return await self._stream(request, binding, message, call, rid, meter)
            response = await binding.method.handler(message, call)
            return web.Response(
                body=render_response(binding, response), content_type=JSON, headers={"x-request-id": rid}
            )
        except web.HTTPException as exc:
            framework = framework_error(request, exc)
            if framework is not None:
                meter.fail(framework)
            raise  # the framework's own (e.g. body too large): rendered by _framework_errors
        except Exception as exc:
            error = to_hub_error(exc, binding.method.name, rid)
            meter.fail(error)
            log.info(
                "%s failed: %s %s",
                binding.method.name,
                error.code.name,
                error.reason,
                extra={"request_id": rid, "transport": "http"},
            )
            return error_response(error, rid)

    async def _stream(
        self,
        request: web.Request,
        binding: Binding,
        message: Any,
        call: Any,
        rid: str,
        meter: metrics.RequestMeter,
    ) -> web.StreamResponse:
        # Newline-delimited JSON, like grpc-gateway: {"result": ...} per message. The first
        # message is awaited before the 200 goes out, so a call that fails at once (bad
        # credential, provider refusal) is an ordinary HTTP error; one that fails after it
        # started ends with an {"error": ...} line (never a silent end).
        items: AsyncIterator[Any] = binding.method.handler(message, call)
        stream = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "x-request-id": rid})
        try:
            first = await anext(items, None)
            await prepare(stream, request)
            try:
                if first is not None:
                    await send(stream, orjson.dumps({"result": message_to_dict(first)}) + b"\n")
                    async for item in items:
                        await send(stream, orjson.dumps({"result": message_to_dict(item)}) + b"\n")
            except ClientGone:
                raise
            except Exception as exc:
                error = to_hub_error(exc, binding.method.name, rid)
                meter.fail(error)
                await send(stream, error_body(error) + b"\n")
            await finish(stream)
        except ClientGone:
            meter.fail(client_gone())
            log.info(
                "%s: the client went away mid-stream",
                binding.method.name,
                extra={"request_id": rid, "transport": "http"},
            )
        finally:
            await close_stream(items)
        return stream

    def _no_route(self, request: web.Request) -> HubError:
        allowed = self._transcoder.allowed_methods(request.path)
        if allowed:
            return HubError(
                grpc.StatusCode.UNIMPLEMENTED,
                "ROUTE_NOT_FOUND",
                f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}",
            )
        return HubError(
            grpc.StatusCode.NOT_FOUND, "ROUTE_NOT_FOUND", f"no route {request.method} {request.path}"
        )


def _timeout_header(request: web.Request) -> float | None:
    # Optional "X-Timeout: <seconds>", the HTTP stand-in for a gRPC deadline.
    raw = request.headers.get("X-Timeout")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise HubError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "X-Timeout: must be a number of seconds",
            {"field": "X-Timeout"},
        ) from None
    if value <= 0:
        raise HubError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "X-Timeout: must be greater than 0",
            {"field": "X-Timeout"},
        )
    return value


def framework_error(request: web.Request, exc: web.HTTPException) -> HubError | None:
    """The hub's error for one of aiohttp's own (body too large, no route, method not allowed)."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        # RESOURCE_EXHAUSTED is what gRPC answers for an oversized message; HTTP says 413.
        return HubError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "REQUEST_TOO_LARGE",
            f"request body is larger than the {request.app[MAX_REQUEST_BYTES]} bytes this hub accepts",
        )
    if isinstance(exc, web.HTTPNotFound):
        return HubError(
            grpc.StatusCode.NOT_FOUND, "ROUTE_NOT_FOUND", f"no route {request.method} {request.path}"
        )
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return HubError(
            grpc.StatusCode.UNIMPLEMENTED,
            "ROUTE_NOT_FOUND",
            f"{request.method} is not allowed on {request.path}",
        )
    return None


@web.middleware
async def _framework_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        error = framework_error(request, exc)
        if error is None:
            raise
        if isinstance(exc, web.HTTPNotFound | web.HTTPMethodNotAllowed):
            # Only the router raises these (handlers answer their own errors): a request no
            # handler saw, counted here once.
            with UNMATCHED.measure() as meter:
                meter.fail(error)
        status = 413 if isinstance(exc, web.HTTPRequestEntityTooLarge) else error.http_status
        if request.path.startswith("/openai/"):
            # The OpenAI-compatible endpoint answers in OpenAI's error shape, its own errors and these.
            return web.Response(
                status=status, body=orjson.dumps(openai_wire.error_json(error, status)), content_type=JSON
            )
        return error_response(error, status=status)


def build_http_app(
    dispatcher: Dispatcher,
    readiness: Readiness,
    *,
    max_request_bytes: int,
    extra_routes: Sequence[web.RouteDef] = (),
    chatbot_url: str | None = None,
) -> web.Application:
    app = web.Application(client_max_size=max_request_bytes, middlewares=[_framework_errors])
    app[MAX_REQUEST_BYTES] = max_request_bytes
    transcoder = Transcoder(dispatcher.methods.values())
    rest = RestHandler(dispatcher, transcoder)

    async def liveness(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"}, dumps=lambda o: orjson.dumps(o).decode())

    async def ready(_: web.Request) -> web.Response:
        ok, checks = await readiness()
        return web.Response(
            status=200 if ok else 503,
            content_type=JSON,
            body=orjson.dumps({"status": "ready" if ok else "not ready", "checks": checks}),
        )

    for path in ("/healthz/", "/healthz"):
        app.router.add_get(path, liveness)
    for path in ("/readiness/", "/readiness"):
        app.router.add_get(path, ready)

    async def metrics_page(_: web.Request) -> web.Response:
        # Unauthenticated by design (scrapers carry no hub token): keep the port off the public
        # network. Only label values and numbers are in it, never a token, key or body.
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/metrics", metrics_page)

    # The REST contract, from the transcoder's own bindings; unauthenticated like the protos
    # it is generated from: it holds the API's shape, never a tenant's data.
    contract = document_bytes(
        transcoder.bindings, (m.full_name for m in dispatcher.methods.values() if m.http_rule is None)
    )

    async def openapi_document(_: web.Request) -> web.Response:
        return web.Response(body=contract, content_type=JSON)

    app.router.add_get("/openapi.json", openapi_document)

    async def transcoded(request: web.Request) -> web.StreamResponse:
        return await rest(request)

    app.router.add_route("*", "/v1/{tail:.*}", transcoded)
    app.add_routes(extra_routes)
    # The console's Chatbot page reads through this (HUB_CHATBOT_URL); before console.routes(),
    # whose /console/{name} would otherwise take these paths.
    chatbot = ChatbotProxy(chatbot_url, error_response)
    app.add_routes(chatbot.routes())
    app.on_cleanup.append(chatbot.close)
    app.add_routes(console.routes())  # the admin console's static pages (integration_hub/console/)
    return app
