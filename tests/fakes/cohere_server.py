"""A real HTTP server on 127.0.0.1 that speaks Cohere's API as its reference documents it.

Tests point the official `cohere` SDK at it (base_url) instead of mocking the SDK:

    async with FakeCohere(valid_keys={"co-good"}) as fake:
        fake.replies.append(CohereReply(text="Hi"))         # the next chat answer
        fake.force_status, fake.retry_after = 429, "7"      # every later request: 429
        fake.delay = 2.0                                    # answer after 2 s (timeouts)
        fake.requests[-1].json                              # what the SDK sent

Routes (Bearer auth on all): GET /v1/models, POST /v2/chat (JSON, or
server-sent events when the body says "stream": true), POST /v2/embed, POST /v2/rerank.
Errors are Cohere's {"id": ..., "message": ...}. The handler of a request whose client
disconnects is cancelled, and `disconnected_at` records when (loop time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    json: Any


@dataclass
class CohereReply:
    """One scripted chat answer, used as a JSON answer or as a stream."""

    text: str = "Hello from Cohere."
    tool_plan: str = ""
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    finish_reason: str = "COMPLETE"
    input_tokens: int = 12
    output_tokens: int = 7
    cached_tokens: int = 0


def cohere_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"id": str(uuid.uuid4()), "message": message}, status=status, headers=headers)


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class FakeCohere:
    valid_keys: Collection[str]
    replies: list[CohereReply] = field(default_factory=list)
    # Knobs, settable at any time.
    force_status: int | None = None
    force_message: str = "forced error"
    retry_after: str | None = None
    delay: float = 0.0  # before answering
    event_delay: float = 0.0  # between stream events
    cut_stream_after: int | None = None  # drop the connection after this many events
    omit_message_end: bool = False  # end the stream cleanly but without message-end
    stream_error: str | None = None  # message-end with finish_reason ERROR and this error
    models: tuple[str, ...] = ("command-a-03-2025", "embed-v4.0", "rerank-v3.5")
    requests: list[RecordedRequest] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected_at: float | None = None
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _port: int = 0

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeCohere is not running; use `async with FakeCohere(...)`")
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> FakeCohere:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v2/chat", self._chat)
        app.router.add_post("/v2/embed", self._embed)
        app.router.add_post("/v2/rerank", self._rerank)
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
            RecordedRequest(
                request.method, request.path, dict(request.query), CIMultiDict(request.headers), body
            )
        )
        self.received.set()
        try:
            await self._pause(self.delay)
            if self.force_status is not None:
                headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
                return cohere_error(self.force_status, self.force_message, headers)
            authorization = request.headers.get("Authorization", "")
            if not authorization.startswith("Bearer "):
                return cohere_error(401, "no api key supplied")
            if authorization.removeprefix("Bearer ") not in self.valid_keys:
                return cohere_error(401, "invalid api token")
            return await handler(request)
        except asyncio.CancelledError:
            self.disconnected_at = asyncio.get_running_loop().time()
            raise

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    async def _models(self, request: web.Request) -> web.Response:
        models = [
            {
                "name": name,
                "endpoints": ["chat"],
                "finetuned": False,
                "context_length": 256000,
                "features": [],
            }
            for name in self.models
        ]
        return web.json_response({"models": models})

    def _next_reply(self) -> CohereReply:
        return self.replies.pop(0) if self.replies else CohereReply()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = self.requests[-1].json
        reply = self._next_reply()
        if body.get("stream"):
            return await self._stream(request, reply)
        message: dict[str, Any] = {"role": "assistant"}
        if reply.tool_calls:
            message["tool_plan"] = reply.tool_plan
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in reply.tool_calls
            ]
        else:
            message["content"] = [{"type": "text", "text": reply.text}]
        answer = {
            "id": f"chat-{uuid.uuid4()}",
            "finish_reason": reply.finish_reason,
            "message": message,
            "usage": _usage(reply),
        }
        return web.json_response(answer, headers={"x-debug-trace-id": uuid.uuid4().hex})

    def _events(self, reply: CohereReply) -> list[dict[str, Any]]:
        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        events: list[dict[str, Any]] = [
            {"type": "message-start", "id": f"chat-{uuid.uuid4()}", "delta": {"message": start}}
        ]
        if reply.tool_calls:
            events += [
                {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}}
                for piece in chunks(reply.tool_plan, 8)
                if piece
            ]
            for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
                call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                events.append(
                    {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": call}}}
                )
                events += [
                    {
                        "type": "tool-call-delta",
                        "index": index,
                        "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}},
                    }
                    for piece in chunks(arguments, 5)
                ]
                events.append({"type": "tool-call-end", "index": index})
        else:
            events.append(
                {
                    "type": "content-start",
                    "index": 0,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}},
                }
            )
            events += [
                {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}}
                for piece in chunks(reply.text, 6)
            ]
            events.append({"type": "content-end", "index": 0})
        end: dict[str, Any] = {"finish_reason": reply.finish_reason, "usage": _usage(reply)}
        if self.stream_error is not None:
            end = {"finish_reason": "ERROR", "error": self.stream_error}
        if not self.omit_message_end:
            events.append({"type": "message-end", "delta": end})
        return events

    async def _stream(self, request: web.Request, reply: CohereReply) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for sent, event in enumerate(self._events(reply)):
            if self.cut_stream_after is not None and sent == self.cut_stream_after:
                assert request.transport is not None
                request.transport.close()  # mid-stream, without the chunked terminator
                return response
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
            await self._pause(self.event_delay)
        await response.write_eof()
        return response

    async def _embed(self, request: web.Request) -> web.Response:
        body = self.requests[-1].json
        if "input_type" not in body:
            return cohere_error(400, "invalid request: input_type is required for embed-v3 and later models")
        dimension = int(body.get("output_dimension") or 4)
        vectors = [
            [round(0.1 * (i + 1) + 0.01 * d, 4) for d in range(dimension)] for i in range(len(body["texts"]))
        ]
        tokens = sum(len(text.split()) for text in body["texts"])
        answer = {
            "id": f"embed-{uuid.uuid4()}",
            "embeddings": {"float": vectors},
            "texts": body["texts"],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
            "response_type": "embeddings_by_type",
        }
        return web.json_response(answer)

    async def _rerank(self, request: web.Request) -> web.Response:
        body = self.requests[-1].json
        query_words = set(body["query"].lower().split())
        scored = [
            {
                "index": i,
                "relevance_score": len(query_words & set(doc.lower().split())) / (len(query_words) or 1),
            }
            for i, doc in enumerate(body["documents"])
        ]
        scored.sort(key=lambda item: item["relevance_score"], reverse=True)
        top_n = body.get("top_n")
        answer = {
            "id": f"rerank-{uuid.uuid4()}",
            "results": scored[:top_n] if top_n else scored,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }
        return web.json_response(answer)


def _usage(reply: CohereReply) -> dict[str, Any]:
    return {
        "billed_units": {"input_tokens": reply.input_tokens - 2, "output_tokens": reply.output_tokens},
        "tokens": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        "cached_tokens": reply.cached_tokens,
    }
