"""A real HTTP server on 127.0.0.1 that speaks Anthropic's Messages API wire format.

Tests point the official `anthropic` SDK at it (base_url) instead of mocking the SDK.

    async with FakeAnthropic(valid_keys={"sk-ant-good"}) as fake:
        fake.replies.append(message([text_block("Hi")]))   # the next answer (else a default)
        ...  # options {"base_url": fake.url}
        fake.requests[-1].json                              # the body the SDK sent
        fake.force_status = 529                             # every later request gets it
        fake.stream_error = (3, "overloaded_error", "Overloaded")   # `error` event after 3 events
        fake.cut_after = 3                                  # drop the connection after 3 events
        fake.end_after = 3                                  # end the body cleanly after 3 events
        fake.hang_after = 2                                 # hold the stream open after 2 events
        fake.disconnects                                    # loop times the client went away

What the server checks, as the API does: the key (x-api-key, or Authorization: Bearer,
x-api-key winning when both come), the anthropic-version header, the required body
fields, sampling parameters under version 2026-10-21, and that every tool_use of an
assistant turn is answered by a tool_result in the very next (user) turn.
Streaming answers are rendered from the same scripted message as unary ones, as the
named SSE events of the 2023-06-01+ stream format.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JsonDict = dict[str, Any]

DEFAULT_MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7")
VERSIONS = ("2023-06-01", "2026-10-21")
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
FORCED_MESSAGES = {
    403: "Your API key does not have permission to use the specified resource.",
    404: "model: claude-nonexistent",
    429: "Number of request tokens has exceeded your per-minute rate limit "
    "(https://docs.claude.com/en/api/rate-limits); see the response headers for current usage.",
    500: "Internal server error",
    529: "Overloaded",
}


def text_block(text: str) -> JsonDict:
    return {"type": "text", "text": text}


def tool_use_block(id_: str, name: str, input_: JsonDict) -> JsonDict:
    return {"type": "tool_use", "id": id_, "name": name, "input": input_}


def message(
    content: list[JsonDict],
    *,
    stop_reason: str = "end_turn",
    model: str = "claude-sonnet-4-6",
    input_tokens: int = 25,
    output_tokens: int = 12,
    cache_creation: int | None = None,
    cache_read: int | None = None,
) -> JsonDict:
    """A Messages API response body."""
    usage: JsonDict = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_creation is not None:
        usage["cache_creation_input_tokens"] = cache_creation
    if cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    return {
        "id": "msg_01FakeFakeFakeFake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def error_body(error_type: str, text: str, request_id: str | None = None) -> JsonDict:
    return {"type": "error", "error": {"type": error_type, "message": text}, "request_id": request_id}


def stream_events(reply: JsonDict) -> list[tuple[str, JsonDict]]:
    """The SSE events that stream `reply`: text and tool input in several fragments."""
    start_usage = dict(reply["usage"], output_tokens=1)
    start = dict(reply, content=[], stop_reason=None, usage=start_usage)
    events: list[tuple[str, JsonDict]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(reply["content"]):
        events.extend(_block_events(index, block))
        if index == 0:
            events.append(("ping", {"type": "ping"}))
    delta = {"stop_reason": reply["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": reply["usage"]["output_tokens"]}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _block_events(index: int, block: JsonDict) -> list[tuple[str, JsonDict]]:
    if block["type"] == "text":
        opening: JsonDict = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"], 5)]
    else:
        opening = dict(block, input={})
        arguments = json.dumps(block["input"]) if block["input"] else ""
        # The API opens a tool's input with an empty fragment; a tool without arguments sends only that.
        deltas = [{"type": "input_json_delta", "partial_json": ""}]
        deltas += [{"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments, 7)]
    events = [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
    ]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeAnthropic:
    valid_keys: Collection[str]
    models: Sequence[str] = DEFAULT_MODELS
    replies: list[JsonDict] = field(default_factory=list)  # answered in order; then a default
    force_status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0  # seconds before answering (the client leaving ends the wait)
    stream_error: tuple[int, str, str] | None = None  # (after n events, error type, message)
    cut_after: int | None = None
    end_after: int | None = None
    hang_after: int | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _port: int = 0

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeAnthropic is not running; use `async with FakeAnthropic(...)`")
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> FakeAnthropic:
        app = web.Application(middlewares=[self._guard])
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._list_models)
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

    def _request_id(self) -> str:
        return f"req_011Fake{next(self._ids):016d}"

    def _error(self, status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
        request_id = self._request_id()
        body = error_body(ERROR_TYPES.get(status, "api_error"), text, request_id)
        return web.json_response(body, status=status, headers={"request-id": request_id, **(headers or {})})

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        recorded = RecordedRequest(
            request.method,
            request.path,
            dict(request.query),
            CIMultiDict(request.headers),
            await request.read(),
        )
        self.requests.append(recorded)
        if self.delay > 0 and await self._client_left(request, self.delay):
            return web.Response(status=499)
        if self.force_status is not None:
            headers = {"retry-after": self.retry_after} if self.retry_after is not None else None
            text = FORCED_MESSAGES.get(self.force_status, f"forced status {self.force_status}")
            return self._error(self.force_status, text, headers)
        return self._check_headers(request) or await handler(request)

    def _check_headers(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key")
        if key is None and request.headers.get("Authorization", "").startswith("Bearer "):
            key = request.headers["Authorization"].removeprefix("Bearer ")
        if key is None:
            return self._error(401, "x-api-key header is required")
        if key not in self.valid_keys:
            return self._error(401, "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version not in VERSIONS:
            return self._error(400, f"anthropic-version: {version!r} is not a valid version")
        return None

    async def _client_left(self, request: web.Request, seconds: float) -> bool:
        """Wait up to `seconds`; True (and recorded) as soon as the client closes the connection."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until and not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnects.append(loop.time())
                return True
            await asyncio.sleep(0.005)
        return False

    async def _list_models(self, request: web.Request) -> web.Response:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"}
            for m in self.models
        ]
        body = {"data": data, "has_more": False, "first_id": self.models[0], "last_id": self.models[-1]}
        return web.json_response(body, headers={"request-id": self._request_id()})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        problem = validate_messages_body(body, request.headers["anthropic-version"])
        if problem is not None:
            return self._error(400, problem)
        reply = self.replies.pop(0) if self.replies else message([text_block("Hello from the fake Claude.")])
        reply = dict(reply, model=body["model"])
        if not body.get("stream"):
            return web.json_response(reply, headers={"request-id": self._request_id()})
        return await self._stream(request, stream_events(reply))

    async def _stream(self, request: web.Request, events: list[tuple[str, JsonDict]]) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "request-id": self._request_id(),
            }
        )
        await response.prepare(request)
        for sent, (name, data) in enumerate(events):
            if self.stream_error is not None and sent == self.stream_error[0]:
                error = error_body(self.stream_error[1], self.stream_error[2])
                await response.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
                return response
            if self.cut_after is not None and sent == self.cut_after:
                assert request.transport is not None
                request.transport.abort()  # mid-body: no terminating chunk
                return response
            if self.end_after is not None and sent == self.end_after:
                break
            if self.hang_after is not None and sent == self.hang_after:
                await self._client_left(request, 30.0)
                return response
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


def validate_messages_body(body: JsonDict, version: str) -> str | None:
    """The first problem the API would report for this body, in its words, or None."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    if version == "2026-10-21":
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                return f"{name}: Extra inputs are not permitted"
    return _check_tool_pairs(body["messages"])


def _check_tool_pairs(turns: list[JsonDict]) -> str | None:
    for n, turn in enumerate(turns):
        blocks = turn["content"] if isinstance(turn["content"], list) else []
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        previous = turns[n - 1]["content"] if n > 0 and isinstance(turns[n - 1]["content"], list) else []
        asked = [b["id"] for b in previous if b["type"] == "tool_use"]
        unexpected = [r for r in results if r not in asked]
        if unexpected:
            return (
                f"messages.{n}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{unexpected[0]}. Each `tool_result` block must have a corresponding `tool_use` block "
                "in the previous message."
            )
        unanswered = [a for a in asked if a not in results]
        if unanswered:
            return (
                f"messages.{n - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {unanswered[0]}. Each `tool_use` block must have a corresponding `tool_result` "
                "block in the next message."
            )
    return None
