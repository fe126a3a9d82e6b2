"""A real HTTP server on 127.0.0.1 that speaks Mistral's API as its reference documents it.

Tests point the official `mistralai` SDK at it (server_url) instead of mocking it:

    async with FakeMistral(valid_keys={"m-good"}) as fake:
        fake.replies.append(MistralReply(text="Hi"))       # the next chat answer
        fake.force_status, fake.retry_after = 429, "7"     # every later request: 429
        fake.requests[-1].json                             # what the SDK sent

Routes (Bearer auth on all): GET /v1/models, POST /v1/chat/completions (JSON, or
server-sent `data:` chunks ending in `data: [DONE]` when "stream": true),
POST /v1/embeddings. Errors are Mistral's {"object": "error", "message", "type",
"param", "code"}; a bad key gets its gateway's {"message": "Unauthorized",
"request_id"}; 422 is FastAPI's {"detail": [...]}. Every answer carries a
mistral-correlation-id header. The handler of a request whose client disconnects is
cancelled, and `disconnected_at` records when (loop time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORRELATION = web.RequestKey("correlation", str)

DEFAULT_MODELS = ("mistral-small-latest", "mistral-large-latest", "mistral-embed", "codestral-embed")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    json: Any


@dataclass
class MistralReply:
    """One scripted chat answer, used as a JSON answer or as a stream of chunks."""

    text: str = "Hello from Mistral."
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    finish_reason: str = "stop"
    prompt_tokens: int = 11
    completion_tokens: int = 6
    cached_tokens: int = 0


def mistral_error(
    status: int, message: str, type_: str, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"object": "error", "message": message, "type": type_, "param": None, "code": code}
    return web.json_response(body, status=status, headers=headers)


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class FakeMistral:
    valid_keys: Collection[str]
    models: tuple[str, ...] = DEFAULT_MODELS
    replies: list[MistralReply] = field(default_factory=list)
    # Knobs, settable at any time.
    force_status: int | None = None
    force_message: str = "forced error"
    retry_after: str | None = None
    delay: float = 0.0  # before answering
    event_delay: float = 0.0  # between stream chunks
    cut_stream_after: int | None = None  # drop the connection after this many chunks
    omit_finish: bool = False  # end the stream with [DONE] but no finish_reason ever
    stream_finish_error: bool = False  # last chunk says finish_reason "error"
    stream_error_object: str | None = None  # an error object as a chunk, mid-stream
    requests: list[RecordedRequest] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected_at: float | None = None
    correlation_ids: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _port: int = 0

    @property
    def base_url(self) -> str:
        """The API root as the credential holds it: ending in /v1."""
        if self._runner is None:
            raise RuntimeError("FakeMistral is not running; use `async with FakeMistral(...)`")
        return f"http://127.0.0.1:{self._port}/v1"

    async def __aenter__(self) -> FakeMistral:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        # handler_cancellation: a client that hangs up cancels its handler, which is
        # how the tests see that a cancelled call really closed its connection.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append(
            RecordedRequest(request.method, request.path, CIMultiDict(request.headers), body)
        )
        self.received.set()
        correlation = uuid.uuid4().hex
        self.correlation_ids.append(correlation)
        try:
            await self._pause(self.delay)
            response = await self._answer(request, handler, correlation)
        except asyncio.CancelledError:
            self.disconnected_at = asyncio.get_running_loop().time()
            raise
        if not response.prepared:  # a stream has sent its headers already
            response.headers["mistral-correlation-id"] = correlation
            response.headers["x-kong-request-id"] = uuid.uuid4().hex
        return response

    async def _answer(self, request: web.Request, handler: Handler, correlation: str) -> web.StreamResponse:
        if self.force_status is not None:
            return self._forced(self.force_status)
        authorization = request.headers.get("Authorization", "")
        if authorization.removeprefix("Bearer ") not in self.valid_keys:
            # Mistral's gateway (Kong) answers a missing or wrong key itself.
            return web.json_response({"message": "Unauthorized", "request_id": correlation}, status=401)
        body = self.requests[-1].json
        if isinstance(body, dict) and "model" in body and body["model"] not in self.models:
            return mistral_error(400, f"Invalid model: {body['model']}", "invalid_model", "1500")
        request[CORRELATION] = correlation
        return await handler(request)

    def _forced(self, status: int) -> web.Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
        if status == 422:
            detail = [{"type": "missing", "loc": ["body", "messages"], "msg": "Field required", "input": {}}]
            return web.json_response({"detail": detail}, status=422)
        if status == 429:
            return mistral_error(429, self.force_message, "rate_limited", "1300", headers)
        return mistral_error(status, self.force_message, "invalid_request_error", None, headers)

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    async def _list_models(self, request: web.Request) -> web.Response:
        capabilities = {"completion_chat": True, "function_calling": True, "vision": False}
        data = [
            {
                "id": m,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "mistralai",
                "type": "base",
                "capabilities": capabilities,
            }
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = self.requests[-1].json
        reply = self.replies.pop(0) if self.replies else MistralReply()
        if body.get("stream"):
            return await self._stream(request, body["model"], reply)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "tool_calls": None}
        if reply.tool_calls:
            message["content"] = ""
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}, "index": k}
                for k, (i, n, a) in enumerate(reply.tool_calls)
            ]
        answer = {
            "id": uuid.uuid4().hex,
            "object": "chat.completion",
            "model": body["model"],
            "created": int(time.time()),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": _usage(reply),
        }
        return web.json_response(answer)

    def _chunks(self, model: str, reply: MistralReply) -> list[dict[str, Any]]:
        head = {
            "id": uuid.uuid4().hex,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

        out = [chunk({"role": "assistant", "content": ""})]
        if reply.tool_calls:
            out += [
                chunk({"tool_calls": [{"id": i, "function": {"name": n, "arguments": a}, "index": k}]})
                for k, (i, n, a) in enumerate(reply.tool_calls)
            ]
        else:
            out += [chunk({"content": piece}) for piece in chunks(reply.text, 5)]
        if self.stream_error_object is not None:
            out.append(
                {
                    "object": "error",
                    "message": self.stream_error_object,
                    "type": "internal_error",
                    "param": None,
                    "code": "3000",
                }
            )
        if not self.omit_finish:
            finish = "error" if self.stream_finish_error else reply.finish_reason
            out.append(chunk({"content": ""}, finish, usage=_usage(reply)))
        return out

    async def _stream(self, request: web.Request, model: str, reply: MistralReply) -> web.StreamResponse:
        headers = {"Content-Type": "text/event-stream", "mistral-correlation-id": request[CORRELATION]}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        for sent, chunk in enumerate(self._chunks(model, reply)):
            if self.cut_stream_after is not None and sent == self.cut_stream_after:
                assert request.transport is not None
                request.transport.close()  # mid-stream, without the chunked terminator
                return response
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await self._pause(self.event_delay)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = self.requests[-1].json
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimension = int(body.get("output_dimension") or (1024 if body["model"] == "mistral-embed" else 1536))
        data = [
            {"object": "embedding", "embedding": [round(0.1 * (i + 1), 3)] * dimension, "index": i}
            for i in range(len(inputs))
        ]
        data.reverse()  # the API numbers them; the order on the wire is not a promise
        tokens = sum(len(text.split()) for text in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
        answer = {
            "id": uuid.uuid4().hex,
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": usage,
        }
        return web.json_response(answer)


def _usage(reply: MistralReply) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    if reply.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    return usage
