"""A real HTTP server on 127.0.0.1 that speaks Voyage AI's API as its reference documents it.

    async with FakeVoyage(valid_keys={"pa-good"}) as fake:
        fake.force_status, fake.retry_after = 429, "7"     # every later request: 429
        fake.requests[-1].json                             # what the caller sent

Routes (Bearer auth on all): POST /v1/embeddings, POST /v1/rerank. Errors are
Voyage's {"detail": "..."}. `truncate_body` sends a response whose body stops
half-way (the connection closes). The handler of a request whose client disconnects
is cancelled, and `disconnected_at` records when (loop time).
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

EMBEDDING_MODELS = ("voyage-3.5", "voyage-3.5-lite", "voyage-code-3")
RERANK_MODELS = ("rerank-2.5", "rerank-2.5-lite")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    json: Any


def voyage_error(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


@dataclass
class FakeVoyage:
    valid_keys: Collection[str]
    # Knobs, settable at any time.
    force_status: int | None = None
    force_detail: str = "forced error"
    retry_after: str | None = None
    delay: float = 0.0  # before answering
    truncate_body: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected_at: float | None = None
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _port: int = 0

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeVoyage is not running; use `async with FakeVoyage(...)`")
        return f"http://127.0.0.1:{self._port}/v1"

    async def __aenter__(self) -> FakeVoyage:
        app = web.Application(middlewares=[self._guard])
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/rerank", self._rerank)
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
        try:
            await self._pause(self.delay)
            response = await self._answer(request, handler)
        except asyncio.CancelledError:
            self.disconnected_at = asyncio.get_running_loop().time()
            raise
        if not response.prepared:
            request_id = uuid.uuid4().hex
            self.request_ids.append(request_id)
            response.headers["x-request-id"] = request_id
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.force_status is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            return voyage_error(self.force_status, self.force_detail, headers)
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid_keys:
            return voyage_error(401, "Provided API key is invalid.")
        if self.truncate_body:
            return await self._truncated(request)
        return await handler(request)

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "400"})
        await response.prepare(request)
        await response.write(b'{"object": "list", "data": [{"object": "embedding", "embedding": [0.1, ')
        assert request.transport is not None
        request.transport.close()
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = self.requests[-1].json
        if body.get("model") not in EMBEDDING_MODELS:
            return voyage_error(
                400, f"Model {body.get('model')} is not supported. Supported models are {EMBEDDING_MODELS}."
            )
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimension = int(body.get("output_dimension") or 1024)
        data = [
            {"object": "embedding", "embedding": [round(0.1 * (i + 1), 3)] * dimension, "index": i}
            for i in range(len(inputs))
        ]
        tokens = sum(len(text.split()) for text in inputs)
        answer = {"object": "list", "data": data, "model": body["model"], "usage": {"total_tokens": tokens}}
        return web.json_response(answer)

    async def _rerank(self, request: web.Request) -> web.Response:
        body = self.requests[-1].json
        if body.get("model") not in RERANK_MODELS:
            return voyage_error(
                400, f"Model {body.get('model')} is not supported. Supported models are {RERANK_MODELS}."
            )
        query_words = set(body["query"].lower().split())
        scored = [
            {
                "relevance_score": len(query_words & set(doc.lower().split())) / (len(query_words) or 1),
                "index": i,
            }
            for i, doc in enumerate(body["documents"])
        ]
        scored.sort(key=lambda item: item["relevance_score"], reverse=True)
        if body.get("top_k"):
            scored = scored[: body["top_k"]]
        tokens = len(body["query"].split()) * len(body["documents"]) + sum(
            len(d.split()) for d in body["documents"]
        )
        return web.json_response(
            {"object": "list", "data": scored, "model": body["model"], "usage": {"total_tokens": tokens}}
        )
