"""A real HTTP server on 127.0.0.1 that speaks Amazon Bedrock's wire protocol.

The real botocore client is pointed at it (endpoint_url / control_endpoint_url), so
what is tested is what goes over the wire:

- SigV4: every request must carry `Authorization: AWS4-HMAC-SHA256 Credential=...,
  SignedHeaders=..., Signature=...`; the signature is recomputed with botocore's own
  signer from the secret key the fake knows for that access key id. Unknown key ->
  403 UnrecognizedClientException, wrong secret -> 403 InvalidSignatureException,
  exactly as AWS answers.
- Errors: AWS's REST-JSON shape, `x-amzn-ErrorType: <Code>:<namespace>` and
  {"message": ...}, with x-amzn-RequestId.
- ConverseStream: `application/vnd.amazon.eventstream`, each event a binary frame
  (prelude with total and headers lengths and its CRC32, typed headers, JSON
  payload, message CRC32) encoded here and decoded by botocore on the client side.

Routes: POST /model/{id}/converse, /model/{id}/converse-stream, /model/{id}/invoke
(Titan and Cohere embeddings) and GET /foundation-models (control plane).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import re
import ssl
import struct
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StreamEvent = tuple[str, dict[str, Any]]  # (event type, payload)

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
UNKNOWN_KEY = "The security token included in the request is invalid."


# --- the event-stream encoding (botocore/eventstream.py decodes it) -----------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # name length (1 byte), name, value type 7 = string, value length (2 bytes), value
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    encoded_headers = b"".join(_header(name, value) for name, value in headers.items())
    total_length = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack("!II", total_length, len(encoded_headers))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded_headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event_frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    # Bedrock pads payloads with a "p" field so that sizes do not leak content lengths.
    return encode_frame(headers, json.dumps({**payload, "p": "abcdefghij"}).encode())


def exception_frame(exception_type: str, payload: Mapping[str, Any]) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, json.dumps(payload).encode())


# --- canned answers ------------------------------------------------------------------


def usage_block(input_tokens: int = 12, output_tokens: int = 5, cache_read: int = 0) -> dict[str, int]:
    block = {"inputTokens": input_tokens, "outputTokens": output_tokens}
    block["totalTokens"] = input_tokens + output_tokens + cache_read
    if cache_read:
        block["cacheReadInputTokens"] = cache_read
    return block


def text_answer(text: str, stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop_reason,
        "usage": usage_block(**usage),
        "metrics": {"latencyMs": 42},
    }


def tool_use_answer(tool_use_id: str, name: str, arguments: dict[str, Any], text: str = "") -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": text}] if text else []
    content.append({"toolUse": {"toolUseId": tool_use_id, "name": name, "input": arguments}})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "tool_use",
        "usage": usage_block(30, 20),
        "metrics": {"latencyMs": 42},
    }


def text_stream(*pieces: str, stop_reason: str = "end_turn", **usage: int) -> list[StreamEvent]:
    events: list[StreamEvent] = [("messageStart", {"role": "assistant"})]
    events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}) for piece in pieces]
    events += [("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": stop_reason})]
    events.append(("metadata", {"usage": usage_block(**usage), "metrics": {"latencyMs": 42}}))
    return events


def tool_stream(tool_use_id: str, name: str, fragments: list[str]) -> list[StreamEvent]:
    """Some text in block 0, then one tool call in block 1 whose input arrives in fragments."""
    start = {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": tool_use_id, "name": name}}}
    return [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockStart", start),
        *[
            ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": fragment}}})
            for fragment in fragments
        ],
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("messageStop", {"stopReason": "tool_use"}),
        ("metadata", {"usage": usage_block(40, 25), "metrics": {"latencyMs": 42}}),
    ]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str  # decoded
    raw_path: str  # as sent, percent-encoding and query included
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class AwsError:
    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class FakeBedrock:
    credentials: Mapping[str, str]  # access key id -> secret access key
    region: str = "us-east-1"
    ssl_context: ssl.SSLContext | None = None  # serve HTTPS with this context
    session_tokens: Mapping[str, str] = field(default_factory=dict)  # key id -> required token
    # Knobs, settable at any time.
    converse_answers: list[dict[str, Any]] = field(default_factory=list)  # popped in order
    stream_events: list[StreamEvent] = field(default_factory=lambda: text_stream("Hello", ", world"))
    stream_exception: StreamEvent | None = None  # sent after stream_events
    cut_stream: bool = False  # after stream_events, send half a frame and drop the connection
    hold_stream: bool = False  # after stream_events, keep the stream open until the client leaves
    event_delay: float = 0.0
    hang: bool = False  # accept the request, then answer nothing until the client leaves
    force_error: AwsError | None = None
    models: list[str] = field(
        default_factory=lambda: ["amazon.nova-micro-v1:0", "amazon.titan-embed-text-v2:0"]
    )
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnected_at: list[float] = field(default_factory=list)  # loop.time() of each client departure
    _runner: web.AppRunner | None = None
    _port: int = 0
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _departed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeBedrock is not running; use `async with FakeBedrock(...)`")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    def options(self, **overrides: str) -> dict[str, str]:
        """Credential options pointing both the runtime and the control plane here."""
        here = {"region": self.region, "endpoint_url": self.url, "control_endpoint_url": self.url}
        return {**here, **overrides}

    async def __aenter__(self) -> FakeBedrock:
        app = web.Application(middlewares=[self._guard])
        app.router.add_post("/model/{model_id}/converse", self._converse)
        app.router.add_post("/model/{model_id}/converse-stream", self._converse_stream)
        app.router.add_post("/model/{model_id}/invoke", self._invoke)
        app.router.add_get("/foundation-models", self._foundation_models)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
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
        """Until a request has reached its handler (past the auth check)."""
        await asyncio.wait_for(self._arrived.wait(), timeout)

    async def wait_for_disconnect(self, timeout: float = 5.0) -> float:
        """Until a held request's client has gone; returns when (loop time)."""
        await asyncio.wait_for(self._departed.wait(), timeout)
        return self.disconnected_at[-1]

    # --- plumbing: recording, auth, forced errors ----------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                request.method, request.path, request.raw_path, CIMultiDict(request.headers), body
            )
        )
        rejection = self._check_signature(request, body)
        if rejection is not None:
            return rejection
        if self.force_error is not None:
            forced = self.force_error
            return aws_error(forced.status, forced.code, forced.message, forced.headers)
        self._arrived.set()
        if self.hang:
            await self._hold_until_client_leaves(request)
            return web.Response(status=204)  # never read: the client is gone
        return await handler(request)

    def _check_signature(self, request: web.Request, body: bytes) -> web.Response | None:
        header = request.headers.get("Authorization")
        if header is None:
            return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        found = _AUTHORIZATION.match(header)
        if found is None:
            return aws_error(
                403, "IncompleteSignatureException", f"Authorization header is malformed: {header!r}"
            )
        key = found["key"]
        secret = self.credentials.get(key)
        token = request.headers.get("X-Amz-Security-Token")
        if secret is None or self.session_tokens.get(key, token) != token:
            return aws_error(403, "UnrecognizedClientException", UNKNOWN_KEY)
        if found["service"] != "bedrock" or found["region"] != self.region:
            message = (
                f"Credential should be scoped to a valid region and to service 'bedrock', not {header!r}"
            )
            return aws_error(403, "InvalidSignatureException", message)
        expected = expected_signature(
            request, body, found["signed"].split(";"), key, secret, token, self.region
        )
        if expected != found["signature"]:
            return aws_error(403, "InvalidSignatureException", BAD_SIGNATURE)
        return None

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

    # --- routes ----------------------------------------------------------------------

    async def _converse(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        problem = converse_problem(body)
        if problem is not None:
            return aws_error(400, "ValidationException", problem)
        answer = self.converse_answers.pop(0) if self.converse_answers else text_answer("Hello!")
        return web.json_response(answer, headers=_request_id_header())

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        problem = converse_problem(json.loads(await request.read()))
        if problem is not None:
            return aws_error(400, "ValidationException", problem)
        response = web.StreamResponse(
            headers={"Content-Type": "application/vnd.amazon.eventstream", **_request_id_header()}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for event_type, payload in self.stream_events:
                if self.event_delay:
                    await asyncio.sleep(self.event_delay)
                await response.write(event_frame(event_type, payload))
            if self.stream_exception is not None:
                await response.write(exception_frame(*self.stream_exception))
            if self.cut_stream:
                await response.write(event_frame("contentBlockDelta", {"contentBlockIndex": 0})[:20])
                assert request.transport is not None
                request.transport.abort()
                return response
            if self.hold_stream:
                await self._hold_until_client_leaves(request)
                return response
            await response.write_eof()
        return response

    async def _invoke(self, request: web.Request) -> web.Response:
        model = request.match_info["model_id"]
        body = json.loads(await request.read())
        if "amazon.titan-embed" in model:
            return titan_embedding(body)
        if "cohere.embed" in model:
            return cohere_embedding(model, body)
        return aws_error(400, "ValidationException", f"The provided model identifier is invalid: {model}")

    async def _foundation_models(self, request: web.Request) -> web.Response:
        summaries = [
            {"modelArn": f"arn:aws:bedrock:{self.region}::foundation-model/{m}", "modelId": m}
            for m in self.models
        ]
        return web.json_response({"modelSummaries": summaries}, headers=_request_id_header())


# --- helpers shared by the routes ---------------------------------------------------


def _request_id_header() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


def aws_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    namespace = "com.amazon.coral.service" if status == 403 else "com.amazon.bedrock"
    all_headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/{namespace}/"}
    all_headers.update(_request_id_header())
    all_headers.update(headers or {})
    return web.json_response({"message": message}, status=status, headers=all_headers)


def expected_signature(
    request: web.Request,
    body: bytes,
    signed_headers: list[str],
    key: str,
    secret: str,
    token: str | None,
    region: str,
) -> str:
    """The SigV4 signature of this request, computed by botocore's own signer."""
    headers = {name: request.headers.get(name, "") for name in signed_headers}
    aws_request = AWSRequest(
        method=request.method, url=f"http://{request.host}{request.raw_path}", data=body, headers=headers
    )
    aws_request.context["timestamp"] = request.headers.get("X-Amz-Date", "")
    signer = SigV4Auth(Credentials(key, secret, token), "bedrock", region)
    canonical = signer.canonical_request(aws_request)
    return str(signer.signature(signer.string_to_sign(aws_request, canonical), aws_request))


def converse_problem(body: Mapping[str, Any]) -> str | None:
    """The ValidationException Bedrock would answer, for the rules callers can get wrong."""
    messages = body.get("messages") or []
    if not messages:
        return "A conversation must start with a user message."
    roles = [m["role"] for m in messages]
    if any(a == b for a, b in itertools.pairwise(roles)):
        return (
            "A conversation must alternate between user and assistant roles. Make sure the conversation "
            "alternates between user and assistant roles and try again."
        )
    uses_tools = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    if uses_tools and "toolConfig" not in body:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 4) for i in range(dimensions)]


def titan_embedding(body: Mapping[str, Any]) -> web.Response:
    dimensions = body.get("dimensions", 1024)
    if dimensions not in (256, 512, 1024):
        message = f"Malformed input request: #/dimensions: {dimensions} is not a valid enum value"
        return aws_error(400, "ValidationException", f"{message}, please reformat your input and try again.")
    text = body["inputText"]
    tokens = len(text.split())
    answer = {"embedding": _vector(text, dimensions), "inputTextTokenCount": tokens}
    headers = {"X-Amzn-Bedrock-Input-Token-Count": str(tokens), **_request_id_header()}
    return web.json_response(answer, headers=headers)


def cohere_embedding(model: str, body: Mapping[str, Any]) -> web.Response:
    texts = body.get("texts", [])
    if "input_type" not in body:
        message = "Malformed input request: #: required key [input_type] not found"
        return aws_error(400, "ValidationException", f"{message}, please reformat your input and try again.")
    if len(texts) > 96:
        message = f"Malformed input request: #/texts: expected maximum item count: 96, found: {len(texts)}"
        return aws_error(400, "ValidationException", f"{message}, please reformat your input and try again.")
    dimensions = body.get("output_dimension", 1536 if "embed-v4" in model else 1024)
    answer = {
        "embeddings": [_vector(f"{body['input_type']}:{t}", dimensions) for t in texts],
        "id": str(uuid.uuid4()),
        "response_type": "embeddings_floats",
        "texts": texts,
    }
    tokens = sum(len(t.split()) for t in texts)
    headers = {"X-Amzn-Bedrock-Input-Token-Count": str(tokens), **_request_id_header()}
    return web.json_response(answer, headers=headers)
