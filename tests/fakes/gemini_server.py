"""A real HTTP server on 127.0.0.1 that speaks Google's Gemini wire formats, both of them:

- the Gemini Developer API (Generative Language REST, v1beta paths, `x-goog-api-key`);
- Vertex AI (v1 .../projects/{p}/locations/{l}/publishers/google/models/...), with an
  OAuth token endpoint (POST /token) for the service-account JWT bearer grant, which
  checks the assertion's RS256 signature against the service account's public key.

Tests point the real google-genai SDK at it through HttpOptions.base_url.

    async with FakeGoogle(api_keys={"AIza-good"}) as fake:               # Gemini
    async with FakeGoogle(service_accounts={email: public_key}) as fake:  # Vertex
        fake.replies.append(generate_response([text_part("Hi")]))  # the next answer
        fake.requests[-1].json                                     # what the SDK sent
        fake.force_status = 429; fake.retry_delay = "7s"           # RetryInfo in the error
        fake.stream_error = (2, 503)    # an {"error": ...} chunk after 2 chunks
        fake.cut_after / fake.end_after / fake.hang_after = n      # break / end / stall after n chunks
        fake.disconnects                                           # loop times the client went away

Streams (streamGenerateContent?alt=sse) are rendered from the same scripted answer as
unary calls: text split over several chunks, each function call whole in its own chunk,
finishReason and usageMetadata in the last, as `data: <json>` SSE events.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JsonDict = dict[str, Any]

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FORCED_MESSAGES = {
    404: "models/gemini-nonexistent is not found for API version v1beta, "
    "or is not supported for generateContent.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}
API_KEY_INVALID = "API key not valid. Please pass a valid API key."


def text_part(text: str) -> JsonDict:
    return {"text": text}


def function_call_part(
    name: str, args: JsonDict, *, id_: str | None = None, signature: bytes | None = None
) -> JsonDict:
    call: JsonDict = {"name": name, "args": args}
    if id_ is not None:
        call["id"] = id_
    part: JsonDict = {"functionCall": call}
    if signature is not None:
        part["thoughtSignature"] = base64.b64encode(signature).decode()
    return part


def generate_response(
    parts: list[JsonDict],
    *,
    finish_reason: str = "STOP",
    prompt_tokens: int = 20,
    output_tokens: int = 10,
    cached_tokens: int | None = None,
    thoughts_tokens: int | None = None,
    model_version: str = "gemini-2.5-flash",
    response_id: str = "resp-fake-0001",
) -> JsonDict:
    usage: JsonDict = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens + (thoughts_tokens or 0),
    }
    if cached_tokens is not None:
        usage["cachedContentTokenCount"] = cached_tokens
    if thoughts_tokens is not None:
        usage["thoughtsTokenCount"] = thoughts_tokens
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": finish_reason, "index": 0}
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model_version,
        "responseId": response_id,
    }


def google_error(code: int, message: str, details: list[JsonDict] | None = None) -> JsonDict:
    error: JsonDict = {"code": code, "message": message, "status": STATUS_NAMES.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return {"error": error}


def stream_chunks(reply: JsonDict) -> list[JsonDict]:
    """The SSE chunks that stream `reply`."""
    candidate = reply["candidates"][0]
    pieces: list[JsonDict] = []
    for part in candidate["content"]["parts"]:
        if "text" in part:
            text = part["text"]
            cut = [text[i : i + 6] for i in range(0, len(text), 6)] or [""]
            pieces.extend({"text": piece} for piece in cut)
        else:
            pieces.append(part)
    common = {"modelVersion": reply["modelVersion"], "responseId": reply["responseId"]}
    chunks = [
        {"candidates": [{"content": {"role": "model", "parts": [piece]}, "index": 0}], **common}
        for piece in pieces
    ]
    if not chunks:
        chunks.append({"candidates": [{"content": {"role": "model", "parts": []}, "index": 0}], **common})
    chunks[-1]["candidates"][0]["finishReason"] = candidate["finishReason"]
    chunks[-1]["usageMetadata"] = reply["usageMetadata"]
    return chunks


def embedding_values(text: str, dimensions: int) -> list[float]:
    """A deterministic vector for `text`, so tests can check order."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 4) for i in range(dimensions)]


def _b64url_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


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
class FakeGoogle:
    api_keys: Collection[str] = ()
    service_accounts: Mapping[str, RSAPublicKey] = field(default_factory=dict)  # client_email -> key
    project: str = "fake-project"
    location: str = "us-central1"
    replies: list[JsonDict] = field(default_factory=list)
    models: tuple[str, ...] = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001")
    force_status: int | None = None
    retry_after: str | None = None  # Retry-After header with a forced status
    retry_delay: str | None = None  # google.rpc.RetryInfo retryDelay with a forced status, e.g. "7s"
    token_error: tuple[int, str, str] | None = None  # (status, error, error_description) from /token
    token_delay: float = 0.0  # seconds before /token answers
    delay: float = 0.0
    stream_error: tuple[int, int] | None = None  # (after n chunks, error code)
    cut_after: int | None = None
    end_after: int | None = None
    hang_after: int | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    assertions: list[JsonDict] = field(default_factory=list)  # verified JWT claims, per token request
    _tokens: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    _port: int = 0

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeGoogle is not running; use `async with FakeGoogle(...)`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    async def __aenter__(self) -> FakeGoogle:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1beta/models", self._list_gemini_models)
        app.router.add_post("/v1beta/models/{target}", self._gemini_method)
        vertex = "/v1/projects/{project}/locations/{location}"
        app.router.add_post(vertex + "/publishers/google/models/{target}", self._vertex_method)
        app.router.add_get(vertex + "/models", self._list_vertex_models)
        app.router.add_post("/token", self._token)
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

    # --- plumbing --------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                CIMultiDict(request.headers),
                await request.read(),
            )
        )
        if request.path == "/token":
            return await handler(request)
        if self.delay > 0 and await self._client_left(request, self.delay):
            return web.Response(status=499)
        if self.force_status is not None:
            return self._forced()
        return await handler(request)

    def _forced(self) -> web.Response:
        status = self.force_status or 500
        details = []
        if self.retry_delay is not None:
            details.append(
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": self.retry_delay}
            )
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
        body = google_error(status, FORCED_MESSAGES.get(status, f"forced status {status}"), details)
        return web.json_response(body, status=status, headers=headers)

    async def _client_left(self, request: web.Request, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until and not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnects.append(loop.time())
                return True
            await asyncio.sleep(0.005)
        return False

    def _next_reply(self) -> JsonDict:
        return (
            self.replies.pop(0)
            if self.replies
            else generate_response([text_part("Hello from the fake Gemini.")])
        )

    # --- Gemini Developer API ------------------------------------------------------------

    def _check_api_key(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            text = (
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
            return web.json_response(google_error(403, text), status=403)
        if key not in self.api_keys:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            return web.json_response(google_error(400, API_KEY_INVALID, [info]), status=400)
        return None

    async def _list_gemini_models(self, request: web.Request) -> web.Response:
        rejection = self._check_api_key(request)
        if rejection is not None:
            return rejection
        models = [{"name": f"models/{m}", "displayName": m, "version": "001"} for m in self.models]
        return web.json_response({"models": models})

    async def _gemini_method(self, request: web.Request) -> web.StreamResponse:
        rejection = self._check_api_key(request)
        if rejection is not None:
            return rejection
        return await self._method(request, request.match_info["target"])

    # --- Vertex AI ---------------------------------------------------------------------

    def _check_token(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self._tokens:
            text = (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential."
            )
            return web.json_response(google_error(401, text), status=401)
        project, location = request.match_info["project"], request.match_info["location"]
        if (project, location) != (self.project, self.location):
            resource = f"projects/{project}/locations/{location}"
            text = (
                f"Permission 'aiplatform.endpoints.predict' denied on resource '{resource}' "
                "(or it may not exist)."
            )
            return web.json_response(google_error(403, text), status=403)
        return None

    async def _list_vertex_models(self, request: web.Request) -> web.Response:
        rejection = self._check_token(request)
        if rejection is not None:
            return rejection
        return web.json_response({"models": []})

    async def _vertex_method(self, request: web.Request) -> web.StreamResponse:
        rejection = self._check_token(request)
        if rejection is not None:
            return rejection
        return await self._method(request, request.match_info["target"])

    async def _token(self, request: web.Request) -> web.Response:
        if self.token_delay > 0 and await self._client_left(request, self.token_delay):
            return web.Response(status=499)
        if self.token_error is not None:
            status, error, description = self.token_error
            return web.json_response({"error": error, "error_description": description}, status=status)
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        claims = self._verified_claims(form.get("assertion", ""))
        if claims is None:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
            )
        self.assertions.append(claims)
        token = f"ya29.fake-{next(self._ids)}"
        self._tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _verified_claims(self, assertion: str) -> JsonDict | None:
        """The JWT's claims if it is a well-formed, correctly signed grant for this endpoint."""
        try:
            header_segment, payload_segment, signature_segment = assertion.split(".")
            header, claims = _b64url_json(header_segment), _b64url_json(payload_segment)
            signature = base64.urlsafe_b64decode(signature_segment + "=" * (-len(signature_segment) % 4))
        except ValueError:
            return None
        public_key = self.service_accounts.get(claims.get("iss", ""))
        if header.get("alg") != "RS256" or public_key is None:
            return None
        try:
            public_key.verify(
                signature, f"{header_segment}.{payload_segment}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return None
        now = time.time()
        fresh = claims.get("iat", 0) <= now + 60 and 0 < claims.get("exp", 0) - claims.get("iat", 0) <= 3600
        if claims.get("aud") != self.token_uri or claims.get("scope") != CLOUD_PLATFORM or not fresh:
            return None
        return {"header": header, **claims}

    # --- methods shared by both APIs ---------------------------------------------------------

    async def _method(self, request: web.Request, target: str) -> web.StreamResponse:
        model, _, method = target.partition(":")
        body = await request.json()
        if model not in self.models and not model.startswith("text-embedding"):
            return web.json_response(google_error(404, f"models/{model} is not found"), status=404)
        if method == "generateContent":
            return web.json_response(self._next_reply())
        if method == "streamGenerateContent":
            if request.query.get("alt") != "sse":
                return web.json_response(google_error(400, "this fake streams only with alt=sse"), status=400)
            return await self._stream(request, stream_chunks(self._next_reply()))
        if method == "batchEmbedContents":
            return web.json_response(
                {"embeddings": [self._embedding(r, r.get("content", {})) for r in body["requests"]]}
            )
        if method == "predict":
            return web.json_response(self._predict(body))
        return web.json_response(google_error(400, f"unknown method {method}"), status=400)

    def _embedding(self, item: JsonDict, content: JsonDict) -> JsonDict:
        config = item.get("embedContentConfig", item)  # Vertex nests it; Gemini puts it beside the content
        text = "".join(part.get("text", "") for part in content.get("parts", []))
        return {"values": embedding_values(text, int(config.get("outputDimensionality", 8)))}

    def _predict(self, body: JsonDict) -> JsonDict:
        dimensions = int(body.get("parameters", {}).get("outputDimensionality", 8))
        predictions = [
            {
                "embeddings": {
                    "values": embedding_values(instance["content"], dimensions),
                    "statistics": {"token_count": len(instance["content"].split()), "truncated": False},
                }
            }
            for instance in body["instances"]
        ]
        billable = sum(len(instance["content"]) for instance in body["instances"])
        return {"predictions": predictions, "metadata": {"billableCharacterCount": billable}}

    async def _stream(self, request: web.Request, chunks: list[JsonDict]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for sent, chunk in enumerate(chunks):
            if self.stream_error is not None and sent == self.stream_error[0]:
                code = self.stream_error[1]
                error = google_error(code, FORCED_MESSAGES.get(code, f"error {code}"))
                await response.write(f"data: {json.dumps(error)}\r\n\r\n".encode())
                return response
            if self.cut_after is not None and sent == self.cut_after:
                assert request.transport is not None
                request.transport.abort()
                return response
            if self.end_after is not None and sent == self.end_after:
                break
            if self.hang_after is not None and sent == self.hang_after:
                await self._client_left(request, 30.0)
                return response
            await response.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response
