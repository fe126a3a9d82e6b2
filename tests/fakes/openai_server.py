"""A real HTTP server on 127.0.0.1 that speaks OpenAI's (and Azure OpenAI's) wire format.

Tests point the callers (or the official `openai` SDK) at it instead of mocking, so
what is tested is what goes over the wire. Usage:

    async with FakeOpenAI(valid_keys={"sk-good"}) as fake:
        ...  # base_url=fake.base_url (OpenAI style) or azure_endpoint=fake.azure_endpoint
        fake.force_status = 429; fake.retry_after = "7"   # every later request gets a 429
        fake.delay = 2.0                                  # answer after 2 s (for timeouts)
        fake.requests[-1].headers["Authorization"]        # what the client sent
        fake.script(ChatReply(tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}')]))
        fake.requests[-1].json()                          # the decoded request body

Routes, all with the same recording, delay, forced status and auth checks:
- GET /v1/models (Bearer), GET /openai/models?api-version=... (Azure `api-key`);
- POST /v1/chat/completions and /openai/deployments/{deployment}/chat/completions:
  a JSON answer, or with "stream": true server-sent events exactly as OpenAI sends
  them (role chunk, content / tool_call fragments, finish chunk, the usage chunk with
  empty choices when stream_options.include_usage, `data: [DONE]`). Each request
  takes the next scripted `ChatReply` (`fake.script(...)`), else `fake.default_reply`;
  a ChatReply also carries the failure knobs (cut the connection after N events, an
  error event, malformed JSON, comment lines, tiny TCP writes, hold the stream open,
  reset the connection, never answer, stall or end a stream early);
- POST /v1/embeddings and /openai/deployments/{deployment}/embeddings: deterministic
  unit vectors (`dimensions` honoured, float or base64), with usage;
- Hugging Face: GET /api/whoami-v2, GET /info (TGI/TEI), POST /embed (TEI) and
  POST /hf-inference/models/{model}/pipeline/feature-extraction.
Azure paths need `api-key` and `api-version`; every other path needs a Bearer key.
`valid_keys=None` runs the server without authentication, like a self-hosted engine.
Tests can add endpoints with `add_route` before entering the context; a route added
that way replaces a built-in one on the same method and path.

Connections are watched from the server's side: `await fake.wait_for_request(n)` returns
once n requests have arrived, and `await fake.wait_for_close(fake.requests[-1].peer)`
returns the `time.monotonic()` at which the connection that carried a request ended (the
moment the server saw it closed, whether or not a handler was still running), so tests
can measure how quickly a client gave up an upstream call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
DEFAULT_EMBEDDING_DIMENSIONS = 8
CREATED = 1_700_000_000

# Azure's real answer to a bad or missing api-key.
AZURE_401_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource."
)
HF_401_MESSAGE = "Invalid credentials in Authorization header"
_HF_PATHS = ("/api/", "/hf-inference/", "/info", "/embed")
_WORDS = re.compile(r"\S+\s*|\s+")

_AZURE_FILTER = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    body: bytes
    # The client's (host, port): equal ports mean one reused keep-alive connection.
    peer: tuple[str, int] | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    name: str
    arguments: str  # JSON text, as the model produced it
    id: str | None = None  # default: call_<n>


@dataclass(slots=True)
class ChatReply:
    """One scripted answer of POST .../chat/completions (JSON, or SSE when streamed)."""

    text: str | None = "Hello from the fake."
    tool_calls: Sequence[FakeToolCall] = ()
    finish_reason: str | None = None  # default: "tool_calls" with tool calls, else "stop"
    prompt_tokens: int = 12
    completion_tokens: int = 7
    cached_tokens: int = 0
    model: str | None = None  # default: the request's model
    headers: Mapping[str, str] = field(default_factory=dict)
    # Answer with this HTTP error status (OpenAI's error shape) instead.
    status: int | None = None
    error_code: str | None = None
    # Streaming shape.
    text_chunks: Sequence[str] | None = None  # default: the text word by word
    arguments_chunk_size: int = 8
    interleave_tool_calls: bool = False  # alternate the fragments of parallel calls
    include_usage: bool | None = None  # default: what the request's stream_options asked
    send_done: bool = True
    comments: bool = False  # ": OPENROUTER PROCESSING" before every event
    split_writes: int | None = None  # write the stream in pieces of this many bytes
    chunk_delay: float = 0.0  # seconds between events
    # Failures.
    malformed: bool = False  # JSON answer: a body that is not JSON
    cut_after: int | None = None  # stream: close the connection after this many events
    error_after: int | None = None  # stream: an error event after this many events, then end
    error: Mapping[str, Any] = field(
        default_factory=lambda: {"code": 502, "message": "Provider returned error"}
    )
    malformed_after: int | None = None  # stream: a non-JSON data line after this many events
    hold_open: bool = False  # stream: after the events, stay open until the client leaves
    reset: bool = False  # close the connection with a TCP reset instead of answering
    hang: bool = False  # never answer, not even the headers, until the client leaves
    stall_after: int | None = None  # stream: after this many events send nothing, stay open
    end_after: int | None = None  # stream: end the body cleanly after this many events (no [DONE])


def openai_error(
    status: int, message: str, *, type_: str, code: str | None, headers: dict[str, str] | None = None
) -> web.Response:
    """An error in OpenAI's exact JSON shape."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def masked_key(key: str) -> str:
    """How OpenAI echoes a wrong key: first characters, stars, last four."""
    return f"{key[:3]}{'*' * max(0, len(key) - 7)}{key[-4:]}" if len(key) > 8 else key


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for `text`."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % len(seed)] + 31 * i) % 251) / 125.0 - 1.0 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


@dataclass
class FakeOpenAI:
    valid_keys: Collection[str] | None
    models: Sequence[str] = DEFAULT_MODELS
    # Knobs, settable at any time.
    force_status: int | None = None  # answer every request with this status
    retry_after: str | None = None  # Retry-After header sent with a forced status
    delay: float = 0.0  # seconds to wait before answering
    default_reply: ChatReply = field(default_factory=ChatReply)
    embedding_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS
    token_level_features: bool = False  # feature-extraction answers per token (no pooling)
    # Chat and embeddings for a model not in `models` get OpenAI's 404 model_not_found.
    strict_models: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    # Streams whose client went away before the stream ended.
    disconnects: int = 0
    _replies: deque[ChatReply] = field(default_factory=deque)
    _extra_routes: list[tuple[str, str, Handler]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event | None = None
    _disconnected: asyncio.Event | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _port: int = 0
    # Connection watching: peer -> time.monotonic() the server saw its connection end.
    closed_at: dict[tuple[str, int], float] = field(default_factory=dict)
    _peers: dict[int, tuple[str, int]] = field(default_factory=dict)
    _changed: asyncio.Event | None = None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeOpenAI is not running; use `async with FakeOpenAI(...)`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def azure_endpoint(self) -> str:
        return self.url

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve another endpoint (or replace a built-in one); call before starting."""
        if self._runner is not None:
            raise RuntimeError("add routes before entering the FakeOpenAI context")
        self._extra_routes.append((method, path, handler))

    def script(self, *replies: ChatReply) -> None:
        """The answers of the next chat requests, in order (then `default_reply`)."""
        self._replies.extend(replies)

    async def wait_for_disconnect(self, timeout: float = 5.0) -> None:
        """Until a streaming client has gone away (raises TimeoutError if none did)."""
        assert self._disconnected is not None, "the fake is not running"
        await asyncio.wait_for(self._disconnected.wait(), timeout)

    async def _until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                assert self._changed is not None, "the fake is not running"
                await self._changed.wait()

    def _notify(self) -> None:
        # Wake every waiter, then arm a fresh event for the next change.
        if self._changed is not None:
            self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_request(self, count: int = 1, timeout: float = 5.0) -> RecordedRequest:
        """Until `count` requests have arrived in all (TimeoutError if not); returns the last one."""
        await self._until(lambda: len(self.requests) >= count, timeout)
        return self.requests[count - 1]

    async def wait_for_close(self, peer: tuple[str, int] | None, timeout: float = 5.0) -> float:
        """The time.monotonic() at which the connection from `peer` ended (TimeoutError if it did not)."""
        assert peer is not None, "the request has no recorded peer"
        await self._until(lambda: peer in self.closed_at, timeout)
        return self.closed_at[peer]

    def _watch_connections(self, server: web.Server) -> None:
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            peer = transport.get_extra_info("peername")
            if peer is not None:
                self._peers[id(handler)] = (str(peer[0]), int(peer[1]))
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            peer = self._peers.pop(id(handler), None)
            if peer is not None:
                self.closed_at[peer] = time.monotonic()
                self._notify()
            lost(handler, exc)

        # web.Server is told of every connection of its RequestHandlers; wrap those two hooks.
        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    async def __aenter__(self) -> FakeOpenAI:
        self._closing = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._changed = asyncio.Event()
        app = web.Application(middlewares=[self._guard])
        built_in: list[tuple[str, str, Handler]] = [
            ("GET", "/v1/models", self._list_models),
            ("GET", "/openai/models", self._list_models),
            ("POST", "/v1/chat/completions", self._chat),
            ("POST", "/openai/deployments/{deployment}/chat/completions", self._chat),
            ("POST", "/v1/embeddings", self._embeddings),
            ("POST", "/openai/deployments/{deployment}/embeddings", self._embeddings),
            ("GET", "/api/whoami-v2", self._whoami),
            ("GET", "/info", self._info),
            ("POST", "/embed", self._feature_extraction),
            ("POST", "/hf-inference/models/{model:.+}/pipeline/feature-extraction", self._feature_extraction),
        ]
        replaced = {(method, path) for method, path, _ in self._extra_routes}
        for method, path, handler in self._extra_routes:
            app.router.add_route(method, path, handler)
        for method, path, handler in built_in:
            if (method, path) not in replaced:
                app.router.add_route(method, path, handler)
        # A short shutdown grace: requests still sleeping in `delay` are woken on exit.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        assert self._runner.server is not None
        self._watch_connections(self._runner.server)
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closing is not None:
            self._closing.set()
            self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=CIMultiDict(request.headers),
                body=await request.read(),
                peer=request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        self._notify()
        if self.delay > 0 and self._closing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=self.delay)
        if self.force_status is not None:
            return self._forced_answer(self.force_status)
        rejection = self._check_auth(request)
        if rejection is not None:
            return rejection
        return await handler(request)

    def _forced_answer(self, status: int) -> web.Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
        if status == 429:
            return openai_error(
                429,
                "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): "
                "Limit 3, Used 3, Requested 1.",
                type_="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if status >= 500:
            return openai_error(
                status,
                "The server had an error while processing your request. Sorry about that!",
                type_="server_error",
                code=None,
                headers=headers,
            )
        return openai_error(status, f"forced status {status}", type_="invalid_request_error", code=None)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if self.valid_keys is None:
            return None
        if request.path.startswith("/openai/"):
            return self._check_azure_auth(request)
        authorization = request.headers.get("Authorization", "")
        key = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        if request.path.startswith(_HF_PATHS):
            if key not in self.valid_keys:
                return web.json_response({"error": HF_401_MESSAGE}, status=401)
            return None
        if key is None:
            return openai_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                type_="invalid_request_error",
                code=None,
            )
        if key not in self.valid_keys:
            return openai_error(
                401,
                f"Incorrect API key provided: {masked_key(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                type_="invalid_request_error",
                code="invalid_api_key",
            )
        return None

    def _check_azure_auth(self, request: web.Request) -> web.Response | None:
        assert self.valid_keys is not None
        if "api-version" not in request.query:
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        if request.headers.get("api-key") not in self.valid_keys:
            return web.json_response({"error": {"code": "401", "message": AZURE_401_MESSAGE}}, status=401)
        return None

    def _request_headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"x-request-id": f"req_fake{next(self._ids):06d}", **(extra or {})}

    async def _list_models(self, request: web.Request) -> web.Response:
        data: list[dict[str, Any]] = [
            {"id": model, "object": "model", "created": CREATED, "owned_by": "system"}
            for model in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    # --- chat completions --------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        reply = self._replies.popleft() if self._replies else self.default_reply
        if reply.reset:
            return self._reset(request)
        if reply.hang:
            await self._wait_gone(request)
            return web.Response(status=499)  # to a closed connection: aiohttp drops it quietly
        unknown = self._unknown_model(body)
        if unknown is not None:
            return unknown
        if reply.status is not None:
            return openai_error(
                reply.status,
                f"scripted status {reply.status}",
                type_="invalid_request_error",
                code=reply.error_code,
                headers=self._request_headers(),
            )
        azure = request.path.startswith("/openai/")
        if body.get("stream"):
            return await self._stream(request, body, reply, azure=azure)
        headers = self._request_headers(reply.headers)
        if reply.malformed:
            return web.Response(
                body=b'{"id": "chatcmpl-broken", "choices": [',
                content_type="application/json",
                headers=headers,
            )
        return web.json_response(self._completion(body, reply, azure=azure), headers=headers)

    def _reset(self, request: web.Request) -> web.StreamResponse:
        """Abort the connection with an RST (SO_LINGER 0), as a crashing proxy or peer does."""
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return web.Response(status=499)  # to a closed connection: aiohttp drops it quietly

    async def _wait_gone(self, request: web.Request) -> None:
        """Say nothing until the client has gone (or the fake stops)."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        assert self._closing is not None
        closing = self._closing
        with contextlib.suppress(TimeoutError):
            await self._until(
                lambda: closing.is_set() or (peer is not None and tuple(peer) in self.closed_at), 3600
            )

    def _unknown_model(self, body: Any) -> web.Response | None:
        model = body.get("model") if isinstance(body, dict) else None
        if not self.strict_models or model in self.models:
            return None
        return openai_error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            type_="invalid_request_error",
            code="model_not_found",
            headers=self._request_headers(),
        )

    def _calls(self, reply: ChatReply) -> list[dict[str, Any]]:
        return [
            {
                "id": call.id or f"call_fake{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for index, call in enumerate(reply.tool_calls)
        ]

    def _finish_reason(self, reply: ChatReply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _usage(self, reply: ChatReply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _completion(self, body: dict[str, Any], reply: ChatReply, *, azure: bool) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_calls:
            message["tool_calls"] = self._calls(reply)
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self._finish_reason(reply),
        }
        answer: dict[str, Any] = {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": CREATED,
            "model": reply.model or body.get("model", ""),
            "choices": [choice],
            "usage": self._usage(reply),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        if azure:
            choice["content_filter_results"] = _AZURE_FILTER
            answer["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _AZURE_FILTER}]
        return answer

    def _stream_events(self, body: dict[str, Any], reply: ChatReply, *, azure: bool) -> list[bytes]:
        include_usage = reply.include_usage
        if include_usage is None:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base: dict[str, Any] = {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": reply.model or body.get("model", ""),
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                payload["usage"] = None
            return sse(payload)

        events: list[bytes] = []
        if azure:  # Azure opens with the prompt filter results and no choices
            events.append(
                sse(
                    {
                        "choices": [],
                        "created": 0,
                        "id": "",
                        "model": "",
                        "object": "",
                        "prompt_filter_results": [
                            {"prompt_index": 0, "content_filter_results": _AZURE_FILTER}
                        ],
                    }
                )
            )
        if reply.text is not None or not reply.tool_calls:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            pieces = reply.text_chunks if reply.text_chunks is not None else _WORDS.findall(reply.text or "")
            events.extend(chunk({"content": piece}) for piece in pieces)
        fragments: list[list[bytes]] = []
        for index, call in enumerate(self._calls(reply)):
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            delta: dict[str, Any] = {"tool_calls": [first]}
            if index == 0 and reply.text is None:
                delta = {"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}
            arguments = call["function"]["arguments"]
            size = max(1, reply.arguments_chunk_size)
            fragments.append(
                [chunk(delta)]
                + [
                    chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + size]}}]}
                    )
                    for i in range(0, len(arguments), size)
                ]
            )
        if reply.interleave_tool_calls:
            for group in itertools.zip_longest(*fragments):
                events.extend(event for event in group if event is not None)
        else:
            for group in fragments:
                events.extend(group)
        events.append(chunk({}, self._finish_reason(reply)))
        if include_usage:
            events.append(sse({**base, "choices": [], "usage": self._usage(reply)}))
        if reply.send_done:
            events.append(b"data: [DONE]\n\n")
        return events

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: ChatReply, *, azure: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **self._request_headers(reply.headers),
            }
        )
        await response.prepare(request)
        events = self._stream_events(body, reply, azure=azure)
        try:
            for position, event in enumerate(events):
                if position == reply.cut_after:
                    assert request.transport is not None
                    request.transport.close()  # no chunked terminator: an abrupt end
                    return response
                if position == reply.error_after:
                    # OpenRouter's shape: the error, and a choice finishing with "error".
                    error_event = {
                        "id": f"gen-fake{next(self._ids)}",
                        "object": "chat.completion.chunk",
                        "created": CREATED,
                        "model": reply.model or body.get("model", ""),
                        "error": dict(reply.error),
                        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
                    }
                    await response.write(sse(error_event))
                    await response.write_eof()
                    return response
                if position == reply.end_after:
                    await response.write_eof()  # a clean end of the body, but no finish and no [DONE]
                    return response
                if position == reply.stall_after:
                    await self._wait_gone(request)
                    raise ConnectionResetError("the client left a stalled stream")
                if position == reply.malformed_after:
                    await response.write(b'data: {"id": "chatcmpl-broken", "choices": [\n\n')
                if reply.comments:
                    await response.write(b": OPENROUTER PROCESSING\n\n")
                await self._write(response, event, reply.split_writes)
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
            while reply.hold_open and self._closing is not None and not self._closing.is_set():
                await asyncio.sleep(0.02)
                await response.write(b": still here\n\n")
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError
            await response.write_eof()
        except ConnectionError:
            self._record_disconnect()
        return response

    async def _write(self, response: web.StreamResponse, event: bytes, piece: int | None) -> None:
        if not piece:
            await response.write(event)
            return
        for start in range(0, len(event), piece):
            await response.write(event[start : start + piece])
            await asyncio.sleep(0.001)  # separate TCP segments, so the client sees split lines

    def _record_disconnect(self) -> None:
        self.disconnects += 1
        if self._disconnected is not None:
            self._disconnected.set()

    # --- embeddings --------------------------------------------------------------

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        unknown = self._unknown_model(body)
        if unknown is not None:
            return unknown
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimensions = body.get("dimensions") or self.embedding_dimensions
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector: Any = fake_vector(str(text), dimensions)
            if as_base64:
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(str(text).split()) for text in inputs)
        answer = {
            "object": "list",
            "data": data,
            "model": body.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.json_response(answer, headers=self._request_headers())

    # --- Hugging Face ------------------------------------------------------------

    async def _whoami(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "type": "user",
                "id": "6500000000000000000fa4e0",
                "name": "fake-user",
                "auth": {"type": "access_token", "accessToken": {"displayName": "hub", "role": "read"}},
            }
        )

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_id": "meta-llama/Llama-3.1-8B-Instruct",
                "model_sha": "0e9e39f249a16976918f6564b8830bc894c89659",
                "max_input_tokens": 8191,
                "max_total_tokens": 8192,
                "version": "3.3.4",
            }
        )

    async def _feature_extraction(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body["inputs"]
        single = isinstance(inputs, str)
        texts = [inputs] if single else inputs
        vectors: list[Any] = [fake_vector(text, self.embedding_dimensions) for text in texts]
        if self.token_level_features:
            vectors = [[vector, vector] for vector in vectors]
        answer = vectors[0] if single else vectors
        return web.json_response(answer, headers=self._request_headers())
