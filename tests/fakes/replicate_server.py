"""A real HTTP server on 127.0.0.1 that speaks Replicate's HTTP API.

The replicate caller is pointed at it through its `base_url` option. What it speaks:
Bearer-token auth; RFC 7807 problem documents ({"title", "detail", "status"},
application/problem+json) for errors; predictions created with 201 through
POST /v1/models/{owner}/{name}/predictions or POST /v1/predictions {"version"},
honouring `Prefer: wait=N` (answer once finished, or after N s with the running
prediction); GET /v1/predictions/{id}; POST /v1/predictions/{id}/cancel;
GET /v1/account; and each prediction's `urls.stream`, a server-sent event stream
of `output` / `error` / `done` events.

A prediction runs `work_seconds`, then succeeds with `output` (a list of tokens, as
Replicate's language models answer) and `metrics`, or fails with `fail_with`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LLAMA = "meta/meta-llama-3-8b-instruct"
LLAMA_VERSION = "5a6809ca6288247d06daf6365557e5e429063f32a21146b2a807c682652136b8"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"title": title, "detail": detail, "status": status})
    return web.Response(
        status=status, text=body, content_type="application/problem+json", headers=headers or {}
    )


FORCED_PROBLEMS = {
    401: ("Unauthenticated", "You did not pass a valid authentication token"),
    402: (
        "Insufficient credit",
        "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing "
        "to purchase credit. Once you purchase credit, please wait a few minutes before retrying.",
    ),
    403: ("Forbidden", "You do not have permission to perform this action."),
    404: ("Not found", "The requested resource could not be found."),
    422: ("Input validation failed", "- input.max_tokens: Must be less than or equal to 4096\n"),
    429: ("Request was throttled.", "Request was throttled. Expected available in 7 seconds."),
    500: ("Internal server error", "An unexpected error occurred."),
    503: ("Service unavailable", "Replicate is temporarily unavailable."),
}


@dataclass
class FakeReplicate:
    valid_tokens: Collection[str]
    models: Collection[str] = (LLAMA,)
    versions: Collection[str] = (LLAMA_VERSION,)
    # Knobs, settable at any time.
    output: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    metrics: dict[str, Any] = field(
        default_factory=lambda: {"input_token_count": 9, "output_token_count": 4, "predict_time": 0.4}
    )
    work_seconds: float = 0.0  # how long a prediction runs
    max_sync_wait: float = 60.0  # the longest `Prefer: wait` honoured (Replicate's is 60 s)
    fail_with: str | None = None  # the prediction fails with this error
    force_status: int | None = None  # every request answers this problem
    retry_after: str | None = None
    hang: bool = False  # creating a prediction answers nothing until the client leaves
    streamable: bool = True
    stream_origin: str | None = None  # where urls.stream points (default: this server)
    stream_error: str | None = None  # an `error` event after the output
    stream_done_reason: str | None = None  # {"reason": ...} in `done`
    cut_stream: bool = False  # drop the connection after the output, without `done`
    skip_done: bool = False  # end the response cleanly after the output, but without `done`
    hold_stream: bool = False  # after the output, keep the stream open until the client leaves
    token_delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)
    canceled: list[str] = field(default_factory=list)
    disconnected_at: list[float] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _departed: asyncio.Event = field(default_factory=asyncio.Event)
    _cancel_seen: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeReplicate is not running; use `async with FakeReplicate(...)`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def __aenter__(self) -> FakeReplicate:
        app = web.Application(middlewares=[self._guard])
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create_official)
        app.router.add_post("/v1/predictions", self._create_versioned)
        app.router.add_get("/v1/predictions/{id}", self._get)
        app.router.add_post("/v1/predictions/{id}/cancel", self._cancel)
        app.router.add_get("/v1/account", self._account)
        app.router.add_get("/stream/{id}", self._stream)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
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

    async def wait_for_request(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._arrived.wait(), timeout)

    async def wait_for_disconnect(self, timeout: float = 5.0) -> float:
        await asyncio.wait_for(self._departed.wait(), timeout)
        return self.disconnected_at[-1]

    async def wait_for_cancel(self, timeout: float = 5.0) -> str:
        await asyncio.wait_for(self._cancel_seen.wait(), timeout)
        return self.canceled[-1]

    # --- plumbing ----------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(request.method, request.path, CIMultiDict(request.headers), body)
        )
        if request.path.startswith("/stream/"):  # stream URLs are capabilities of their own
            return await handler(request)
        if self.force_status is not None:
            title, detail = FORCED_PROBLEMS[self.force_status]
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return problem(self.force_status, title, detail, headers)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.valid_tokens:
            return problem(401, *FORCED_PROBLEMS[401])
        return await handler(request)

    async def _hold_until_client_leaves(self, request: web.Request, limit: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline and not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnected_at.append(loop.time())
                self._departed.set()
                return
            await asyncio.sleep(0.002)

    # --- predictions -------------------------------------------------------------------

    async def _create_official(self, request: web.Request) -> web.StreamResponse:
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        if model not in self.models:
            return problem(404, *FORCED_PROBLEMS[404])
        return await self._create(request, model)

    async def _create_versioned(self, request: web.Request) -> web.StreamResponse:
        version = json.loads(await request.read()).get("version")
        if version not in self.versions:
            detail = "The specified version does not exist (or perhaps you don't have permission to use it?)"
            return problem(422, "Invalid version", detail)
        return await self._create(request, LLAMA)

    async def _create(self, request: web.Request, model: str) -> web.StreamResponse:
        body = json.loads(await request.read())
        inputs = body.get("input") or {}
        if not isinstance(inputs.get("prompt"), str):
            return problem(422, "Input validation failed", "- input: prompt is required\n")
        if int(inputs.get("max_tokens", 0)) > 4096:
            return problem(422, *FORCED_PROBLEMS[422])
        self._arrived.set()
        if self.hang:
            await self._hold_until_client_leaves(request)
            return web.Response(status=204)
        prediction = self._new_prediction(model, body)
        prefer = request.headers.get("Prefer", "")
        if prefer.startswith("wait") and not body.get("stream"):
            wait = min(float(prefer.partition("=")[2] or 60), self.max_sync_wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished(prediction["id"]), timeout=wait)
        return web.json_response(self._public(prediction["id"]), status=201)

    def _new_prediction(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        identifier = secrets.token_hex(13)
        loop = asyncio.get_running_loop()
        prediction = {
            "id": identifier,
            "model": model,
            "version": body.get("version", "dp-official"),
            "input": body.get("input"),
            "status": "starting",
            "output": None,
            "error": None,
            "logs": "",
            "created_at": "2025-01-01T00:00:00.000000Z",
            "urls": {
                "get": f"{self.base_url}/predictions/{identifier}",
                "cancel": f"{self.base_url}/predictions/{identifier}/cancel",
                "web": f"https://replicate.com/p/{identifier}",
            },
            "_ends_at": loop.time() + self.work_seconds,
        }
        if body.get("stream") and self.streamable:
            prediction["urls"]["stream"] = f"{self.stream_origin or self.url}/stream/{identifier}"
        self.predictions[identifier] = prediction
        return prediction

    async def _finished(self, identifier: str) -> None:
        while self._public(identifier)["status"] not in ("succeeded", "failed", "canceled"):
            await asyncio.sleep(0.01)

    def _public(self, identifier: str) -> dict[str, Any]:
        """The prediction as the API shows it now, advancing it if its work is done."""
        prediction = self.predictions[identifier]
        if prediction["status"] in ("starting", "processing"):
            done = asyncio.get_running_loop().time() >= prediction["_ends_at"]
            prediction["status"] = "processing"
            if done and self.fail_with is not None:
                prediction.update(status="failed", error=self.fail_with)
            elif done:
                prediction.update(status="succeeded", output=list(self.output), metrics=dict(self.metrics))
        return {k: v for k, v in prediction.items() if not k.startswith("_")}

    async def _get(self, request: web.Request) -> web.Response:
        identifier = request.match_info["id"]
        if identifier not in self.predictions:
            return problem(404, *FORCED_PROBLEMS[404])
        return web.json_response(self._public(identifier))

    async def _cancel(self, request: web.Request) -> web.Response:
        identifier = request.match_info["id"]
        self.canceled.append(identifier)
        self._cancel_seen.set()
        if identifier in self.predictions and self.predictions[identifier]["status"] in (
            "starting",
            "processing",
        ):
            self.predictions[identifier]["status"] = "canceled"
        return web.json_response(self._public(identifier) if identifier in self.predictions else {})

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "organization", "username": "acme", "name": "Acme Corp", "github_url": None}
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        identifier = request.match_info["id"]
        if identifier not in self.predictions:
            return problem(404, *FORCED_PROBLEMS[404])
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for number, token in enumerate(self.output):
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                await response.write(sse("output", token, f"1690212292:{number}"))
            if self.stream_error is not None:
                await response.write(sse("error", json.dumps({"detail": self.stream_error}), "1690212293:0"))
            if self.cut_stream:
                assert request.transport is not None
                request.transport.abort()
                return response
            if self.hold_stream:
                await self._hold_until_client_leaves(request)
                return response
            if self.skip_done:
                await response.write_eof()
                return response
            self.predictions[identifier]["_ends_at"] = 0.0  # the stream ends when the work does
            done = {"reason": self.stream_done_reason} if self.stream_done_reason else {}
            await response.write(sse("done", json.dumps(done), "1690212294:0"))
            await response.write_eof()
        return response


def sse(event: str, data: str, event_id: str) -> bytes:
    """One server-sent event; data with newlines spans several `data:` lines."""
    lines = [f"event: {event}", f"id: {event_id}", *(f"data: {line}" for line in data.split("\n"))]
    return ("\n".join(lines) + "\n\n").encode()
