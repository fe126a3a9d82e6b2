"""The chatbot's small HTTP API and its web chat page.

- GET  /                           the web chat page (chatbot/web/): pick a bot, ask, watch it stream
- GET  /v1/bots                    the caller's bots
- GET  /v1/bots/{id}/ingestion-tasks  one bot's ingestion tasks (the hub's admin console shows them)
- POST /v1/bots/{id}:ask           {"question", "session_id"?} -> the answer with citations
- POST /v1/bots/{id}:streamAsk     the same as server-sent events: `delta` events, then one `end`
- GET  /healthz/, /readiness/      liveness; readiness checks the database

Every API call carries the caller's hub token (Authorization: Bearer ...), exactly as over
gRPC; the page keeps the token the user pastes in sessionStorage and sends it as that
header, so no cookie exists to be forged (no CSRF), and the page renders every answer
with textContent under a strict Content-Security-Policy (no inline script, no other origin).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from chatbot.auth import Caller
from chatbot.db import Database
from chatbot.errors import ChatbotError, InvalidArgument
from chatbot.hub_client import HubCallError
from chatbot.service import Parts

log = logging.getLogger("chatbot.http")

WEB_DIR = Path(__file__).parent / "web"
MAX_BODY_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}

# gRPC code -> HTTP status, as grpc-gateway maps them.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_app(parts: Parts, db: Database) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_security_headers])
    api = _Api(parts)
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/v1/bots", _errors_as_json(api.list_bots))
    app.router.add_get("/v1/bots/{bot_id}/ingestion-tasks", _errors_as_json(api.list_ingestion_tasks))
    app.router.add_post("/v1/bots/{bot_id}:ask", _errors_as_json(api.ask))
    app.router.add_post("/v1/bots/{bot_id}:streamAsk", api.stream_ask)
    app.router.add_get("/healthz/", _alive)

    async def ready(request: web.Request) -> web.Response:
        try:
            await db.fetch_one("SELECT 1 AS ok")
        except Exception as error:
            return web.json_response({"status": "not ready", "database": type(error).__name__}, status=503)
        return web.json_response({"status": "ready"})

    app.router.add_get("/readiness/", ready)
    return app


class _Api:
    def __init__(self, parts: Parts) -> None:
        self._p = parts

    async def _caller(self, request: web.Request) -> Caller:
        caller = await self._p.callers.resolve(request.headers.get("Authorization"))
        caller.require("invoke")
        return caller

    async def list_bots(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        bots, token = await self._p.bots.page(
            caller.tenant, page_size=100, after=request.query.get("page_token", "")
        )
        return _json({"bots": [_dict(bot) for bot in bots], "next_page_token": token})

    async def list_ingestion_tasks(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        bot_id = request.match_info["bot_id"]
        await self._p.bots.get(caller.tenant, bot_id)  # another tenant's bot is NOT_FOUND, as over gRPC
        tasks, token = await self._p.tasks.page(
            caller.tenant, bot_id, page_size=100, after=request.query.get("page_token", "")
        )
        return _json({"tasks": [_dict(task) for task in tasks], "next_page_token": token})

    async def ask(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        question, session_id = await _question(request)
        answer = await self._p.answerer.ask(caller, request.match_info["bot_id"], question, session_id)
        return _json(_dict(answer))

    async def stream_ask(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = await self._caller(request)
            question, session_id = await _question(request)
            events = self._p.answerer.stream(caller, request.match_info["bot_id"], question, session_id)
            first = await anext(events)  # errors before the first event are plain JSON errors
        except (ChatbotError, HubCallError, StopAsyncIteration) as error:
            return _error_response(error)
        response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        async with contextlib.aclosing(events):
            try:
                await _send_event(response, first)
                async for event in events:
                    await _send_event(response, event)
            except (ChatbotError, HubCallError) as error:
                _, body = _error_body(error)
                await response.write(b"event: error\ndata: " + orjson.dumps(body) + b"\n\n")
        await response.write_eof()
        return response


async def _send_event(response: web.StreamResponse, event: Any) -> None:
    if event.HasField("end"):
        await response.write(b"event: end\ndata: " + orjson.dumps(_dict(event.end)) + b"\n\n")
    else:
        await response.write(b"event: delta\ndata: " + orjson.dumps({"text": event.delta}) + b"\n\n")


async def _question(request: web.Request) -> tuple[str, str]:
    try:
        body = await request.json(loads=orjson.loads)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("body", 'not JSON: send {"question": ..., "session_id"?: ...}') from None
    if not isinstance(body, dict):
        raise InvalidArgument("body", "a JSON object")
    question, session_id = body.get("question", ""), body.get("session_id", "")
    if not isinstance(question, str) or not isinstance(session_id, str):
        raise InvalidArgument("question", "question and session_id are strings")
    return question, session_id


def _errors_as_json(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (ChatbotError, HubCallError) as error:
            return _error_response(error)

    return wrapped


def _error_body(error: BaseException) -> tuple[int, dict[str, Any]]:
    if isinstance(error, ChatbotError):
        code, message = error.code, error.message
    elif isinstance(error, HubCallError):
        code = error.code
        message = f"the hub refused the call ({error.reason or error.code.name}): {error.message}"
    else:
        code, message = grpc.StatusCode.INTERNAL, "the answer ended early"
    return _HTTP_STATUS.get(code, 500), {"error": {"code": code.name, "message": message}}


def _error_response(error: BaseException) -> web.Response:
    status, body = _error_body(error)
    return web.json_response(body, status=status, dumps=lambda v: orjson.dumps(v).decode())


def _json(value: Any) -> web.Response:
    return web.json_response(value, dumps=lambda v: orjson.dumps(v).decode())


def _dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


async def _alive(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def _page(name: str) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        return _file(name)

    return page


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in _STATIC or name == "index.html":
        raise web.HTTPNotFound()
    return _file(name)


def _file(name: str) -> web.Response:
    return web.Response(body=(WEB_DIR / name).read_bytes(), content_type=_STATIC[name], charset="utf-8")


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response
