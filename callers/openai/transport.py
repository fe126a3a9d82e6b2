"""HTTP for the hot path: JSON and server-sent events over the pooled aiohttp session.

Everything that does not depend on the call is built once: an `Endpoint` (the
parsed yarl.URL, its pool key, its key-less headers) is cached by whoever resolves
options to targets (callers.openai.targets, callers.huggingface.targets), and
timeouts are cached per value. A call adds only its key header to a copy of a
cached dict, and its own body.

Redirects are not followed (a redirect answer is an error): every request carries a
key, which must reach only the configured address. The pooled sessions keep no cookies
and ignore the hub's proxy environment (callers.pools).

Why aiohttp and not pyreqwest, which costs about half the CPU per request: pyreqwest
0.15 cannot abandon a request cancelled before its response headers (measured on a
loopback fake: the upstream kept generating until it answered, so a cancelled call
kept costing tokens). Re-measure before switching.

Errors: an HTTP error answer is classified by status (callers.errors) and refined by
the body where OpenAI-style vendors say more; aiohttp's own exceptions become
ProviderTimeout / ProviderUnavailable, raised `from None` so that no traceback chains
back to an aiohttp object holding the request (and its key header).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from callers import pools
from callers.base import (
    CallerError,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    SecretFields,
    error_from_http_status,
)
from callers.timeouts import connect_timeout

# How much of an error body is quoted when it is not JSON (an HTML gateway page...).
_QUOTED_BODY_CHARS = 300
# Response headers that carry the provider's id for the request, best first.
_REQUEST_ID_HEADERS = ("x-request-id", "apim-request-id", "x-generation-id")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One target, resolved from options once: never holds a key."""

    url: URL
    upstream: str  # scheme://host[:port]: the key of the connection pool
    host: str  # for messages
    headers: Mapping[str, str]  # everything but the key


def endpoint(url: str, headers: Mapping[str, str]) -> Endpoint:
    try:
        parsed = URL(url)
    except ValueError:
        parsed = URL()
    if parsed.scheme not in ("http", "https") or not parsed.host:
        # Options are validated as http(s) URLs when stored; this guards a direct call.
        raise ProviderUnavailable(f"not an http(s) URL: {url!r}")
    return Endpoint(url=parsed, upstream=str(parsed.origin()), host=parsed.host, headers=dict(headers))


# Keyed by (total, connect): the connect bound is the call's policy (callers.timeouts),
# so two calls with the same total may need different timeouts.
_TIMEOUTS: dict[tuple[float, float], aiohttp.ClientTimeout] = {}


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """`total` bounds the whole call, streams included; connecting is bounded more tightly,
    by the current call's connect timeout (callers.timeouts)."""
    key = (seconds, connect_timeout())
    found = _TIMEOUTS.get(key)
    if found is None:
        if len(_TIMEOUTS) >= 256:
            _TIMEOUTS.clear()
        found = _TIMEOUTS[key] = aiohttp.ClientTimeout(total=seconds, sock_connect=min(key))
    return found


def with_key(
    endpoint: Endpoint,
    secret: SecretFields,
    key_field: str,
    *,
    required: bool,
    header: str = "Authorization",
    prefix: str = "Bearer ",
) -> dict[str, str]:
    """The endpoint's headers plus the key, read from the secret at the last moment."""
    headers = dict(endpoint.headers)
    key = secret.reveal(key_field) if required else secret.get(key_field)
    if key:
        headers[header] = prefix + key
    return headers


def request_id(headers: Mapping[str, str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


# --- errors ---------------------------------------------------------------------


def error_message(body: bytes) -> str:
    """The provider's own error text from any of the shapes OpenAI-wire servers use.

    OpenAI / Azure / OpenRouter: {"error": {"message": ...}}; Hugging Face and TGI:
    {"error": "..."}; vLLM: {"object": "error", "message": ...}; FastAPI servers:
    {"detail": ...}. Anything else is quoted, shortened.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:_QUOTED_BODY_CHARS] or "(empty body)"
    if isinstance(data, dict):
        found = data.get("error")
        if isinstance(found, dict):
            found = found.get("message") or found
        if not found:
            found = data.get("message") or data.get("detail")
        if isinstance(found, str) and found:
            return found
        if found:
            return orjson.dumps(found).decode()[:_QUOTED_BODY_CHARS]
    return orjson.dumps(data).decode()[:_QUOTED_BODY_CHARS]


def _error_code(body: bytes) -> object:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    found = data.get("error") if isinstance(data, dict) else None
    return found.get("code") if isinstance(found, dict) else None


def http_error(status: int, body: bytes, headers: Mapping[str, str]) -> CallerError:
    """Classify an HTTP error answer: by status first, then the vendor's error code."""
    if 300 <= status < 400:
        # Redirects are never followed (`allow_redirects=False` below): the request carries
        # the key, and a redirect target is an address nobody configured. aiohttp would drop
        # Authorization on a cross-origin redirect but not Azure's `api-key` header.
        return ProviderUnavailable(
            f"the provider answered with a redirect (HTTP {status}), which is not followed so that "
            "the key is never sent to another address: check the configured URL",
            provider_status=status,
        )
    message = error_message(body)
    retry_after = headers.get("Retry-After")
    # Out of money is not throttling: OpenAI answers an exhausted quota with 429
    # `insufficient_quota` and OpenRouter with 402; retrying either cannot succeed,
    # so they are classified as "the key may not do this" rather than as RateLimited
    # (429) or a malformed request (402).
    if status == 402 or (status == 429 and _error_code(body) == "insufficient_quota"):
        return PermissionDenied(message, provider_status=status)
    return error_from_http_status(status, message, retry_after)


def stream_error(error: object) -> CallerError:
    """An error the provider reported inside a 200 answer (a stream event, a body)."""
    if isinstance(error, dict):
        message = error.get("message")
        text = message if isinstance(message, str) and message else orjson.dumps(error).decode()
        code = error.get("code")
        # OpenRouter puts the HTTP-like status in `code` (int); Azure sometimes as a string.
        if isinstance(code, str) and code.isdigit():
            code = int(code)
        if isinstance(code, int) and 400 <= code < 600:
            return error_from_http_status(code, text, None)
        return ProviderUnavailable(f"the provider reported an error: {text}")
    return ProviderUnavailable(f"the provider reported an error: {error}")


def timeout_error(endpoint: Endpoint) -> ProviderTimeout:
    return ProviderTimeout(f"{endpoint.host} did not answer within the timeout")


def connection_error(endpoint: Endpoint, exc: aiohttp.ClientError) -> ProviderUnavailable:
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ProviderUnavailable(f"{endpoint.host} closed the connection mid-answer ({type(exc).__name__})")
    return ProviderUnavailable(f"could not reach {endpoint.host} ({type(exc).__name__}: {exc})")


def not_json(endpoint: Endpoint) -> ProviderUnavailable:
    return ProviderUnavailable(f"unexpected answer from {endpoint.host}: the body is not JSON")


# --- requests -------------------------------------------------------------------


async def send(
    endpoint: Endpoint, headers: Mapping[str, str], body: bytes | None, timeout: float
) -> tuple[Any, str | None]:
    """POST `body` (or GET when None), return (the parsed JSON answer, request id)."""
    session = pools.aiohttp_session(endpoint.upstream)
    try:
        async with session.request(
            "GET" if body is None else "POST",
            endpoint.url,
            data=body,
            headers=headers,
            timeout=client_timeout(timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            status = response.status
            if not 200 <= status < 300:
                raise http_error(status, payload, response.headers)
            rid = request_id(response.headers)
    except TimeoutError:
        raise timeout_error(endpoint) from None
    except aiohttp.ClientError as exc:
        raise connection_error(endpoint, exc) from None
    try:
        return orjson.loads(payload), rid
    except orjson.JSONDecodeError:
        raise not_json(endpoint) from None


class SSEParser:
    """Server-sent events to their `data` payloads, fed with bytes as they arrive.

    Lines may be split anywhere across network chunks, so the unfinished tail of a
    chunk waits for the next one. Per the SSE format an event ends at a blank line and
    its `data:` lines are joined with newlines; comment lines (`: OPENROUTER
    PROCESSING`), `event:`, `id:` and `retry:` lines are skipped.
    """

    __slots__ = ("_data", "_tail")

    # An unfinished line longer than this is not an event stream (or is an attack).
    MAX_LINE = 16 * 1024 * 1024

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._tail:
            chunk = self._tail + chunk
        lines = chunk.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > self.MAX_LINE:
            raise ProviderUnavailable("the provider sent an over-long server-sent event line")
        return self._lines(lines)

    def finish(self) -> list[bytes]:
        """At end of stream: the last event, even without its closing blank line."""
        lines = [self._tail, b""] if self._tail else [b""]
        self._tail = b""
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[bytes]:
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
        return events
