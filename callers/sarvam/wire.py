"""Sarvam's API on the wire, over the pooled aiohttp session: REST and websockets.

Why not the `sarvamai` SDK (0.1.39, whose source is the wire reference used here): its
client holds the key for its whole life (a client per key would have to be cached,
and the hub pools connections, never keys); its websocket errors are `ApiError`s that
carry the request's headers, the key among them; and its websockets (the `websockets`
library) have no connect timeout. Speaking the same wire directly keeps the key in
one request's headers, bounds every step with the call's timeout, and reuses the
pooled aiohttp session for REST and websockets alike.

The wire, as the SDK sends it:
- auth: header ``api-subscription-key: <key>`` on every request and websocket upgrade;
- REST root: the ``base_url`` option (https://api.sarvam.ai); websockets: the same
  host with ws(s):// (the SDK's ``production`` environment, wss://api.sarvam.ai);
- errors: ``{"error": {"message", "code", "request_id"}}`` with codes such as
  ``invalid_api_key_error`` (Sarvam answers a bad key with 403, not 401),
  ``insufficient_quota_error``, ``rate_limit_exceeded_error``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from callers import pools
from callers.base import (
    AuthenticationFailed,
    CallerError,
    InvalidRequest,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SecretFields,
    error_from_http_status,
    parse_retry_after,
)
from callers.sarvam import SPEC
from callers.timeouts import connect_timeout

KEY_FIELD = "api_key"
KEY_HEADER = "api-subscription-key"
_QUOTED_BODY_CHARS = 300  # of a body that is not Sarvam's JSON envelope
_MESSAGE_CHARS = 1200  # of Sarvam's own error message
# How long a closing websocket waits for the provider's close answer.
WS_CLOSE_SECONDS = 0.5

# Sarvam's error codes (sarvamai.types.ErrorCode) that say more than the status does.
_CODE_KINDS: dict[str, type[CallerError]] = {
    "invalid_api_key_error": AuthenticationFailed,
    "authentication_error": AuthenticationFailed,
    # Out of credits: retrying cannot succeed, so it is not throttling.
    "insufficient_quota_error": PermissionDenied,
    "rate_limit_exceeded_error": RateLimited,
    "invalid_request_error": InvalidRequest,
    "unprocessable_entity_error": InvalidRequest,
    "gateway_timeout_error": ProviderTimeout,
    "internal_server_error": ProviderUnavailable,
    "model_call_error": ProviderUnavailable,
    "billing_service_unavailable_error": ProviderUnavailable,
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One resolved target; never holds a key."""

    url: URL
    upstream: str  # the pool key: scheme://host[:port] of the REST root
    host: str


def _root(options: Mapping[str, str]) -> URL:
    raw = SPEC.with_defaults(options)["base_url"].rstrip("/")
    try:
        root = URL(raw)
    except ValueError:
        root = URL()
    if root.scheme not in ("http", "https") or not root.host:
        raise InvalidRequest("options.base_url must be an http(s) URL")
    return root


def endpoint(options: Mapping[str, str], path: str) -> Endpoint:
    root = _root(options)
    return Endpoint(url=URL(f"{root}/{path}"), upstream=str(root.origin()), host=root.host or "")


def ws_endpoint(options: Mapping[str, str], path: str, query: Mapping[str, str]) -> Endpoint:
    """The websocket URL of `path`: the REST root with ws:// or wss://."""
    root = _root(options)
    scheme = "wss" if root.scheme == "https" else "ws"
    url = URL(f"{root.with_scheme(scheme)}/{path}").with_query(dict(query))
    return Endpoint(url=url, upstream=str(root.origin()), host=root.host or "")


def key_headers(secret: SecretFields, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The request's headers with the key, read from the secret at the last moment."""
    headers = dict(extra or {})
    headers[KEY_HEADER] = secret.reveal(KEY_FIELD)
    return headers


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, connect_timeout()))


# --- errors ---------------------------------------------------------------------


def _error_parts(body: bytes) -> tuple[str, str | None]:
    """(message, code) from Sarvam's error envelope, or the body quoted, shortened."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:_QUOTED_BODY_CHARS] or "(empty body)", None
    if isinstance(data, dict):
        found = data.get("error", data)
        if isinstance(found, dict):
            message = found.get("message") or found.get("error") or found.get("detail")
            code = found.get("code")
            text = message if isinstance(message, str) and message else orjson.dumps(found).decode()
            return text[:_MESSAGE_CHARS], code if isinstance(code, str) else None
        if isinstance(found, str) and found:
            return found, None
        detail = data.get("detail")
        if detail:
            text = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
            return text[:_MESSAGE_CHARS], None
    return orjson.dumps(data).decode()[:_QUOTED_BODY_CHARS], None


def http_error(status: int, body: bytes, headers: Mapping[str, str], host: str) -> CallerError:
    """Classify an error answer: by status, refined by Sarvam's error code."""
    if 300 <= status < 400:
        return ProviderUnavailable(
            f"{host} answered with a redirect (HTTP {status}), which is not followed so that the key "
            "is never sent to another address: check options.base_url",
            provider_status=status,
        )
    message, code = _error_parts(body)
    text = f"Sarvam: {message}" + (f" ({code})" if code else "")
    retry_after = headers.get("Retry-After")
    kind = _CODE_KINDS.get(code or "")
    if kind is not None and 400 <= status < 500 and status != 429:
        return kind(text, retry_after=parse_retry_after(retry_after), provider_status=status)
    return error_from_http_status(status, text, retry_after)


def message_error(data: object) -> CallerError:
    """An error a websocket reported in a message: ``{"type": "error", "data": {...}}``.

    Speech to text sends ``{"error", "code"}``, text to speech ``{"message", "code",
    "details", "request_id"}`` (code an int there, HTTP-like)."""
    if not isinstance(data, dict):
        return ProviderUnavailable(f"Sarvam reported an error: {data}")
    message = data.get("message") or data.get("error") or orjson.dumps(data).decode()
    code = data.get("code")
    text = f"Sarvam: {message}" + (f" ({code})" if code not in (None, "") else "")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and 400 <= code < 600:
        return error_from_http_status(code, text, None)
    kind = _CODE_KINDS.get(code if isinstance(code, str) else "", ProviderUnavailable)
    return kind(text)


def timeout_error(host: str) -> ProviderTimeout:
    return ProviderTimeout(f"{host} did not answer within the timeout")


def connection_error(host: str, exc: aiohttp.ClientError) -> CallerError:
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        # The upgrade was refused with an HTTP status; aiohttp does not keep the body.
        return error_from_http_status(
            exc.status, f"Sarvam refused the websocket (HTTP {exc.status}: {exc.message})", None
        )
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ProviderUnavailable(f"{host} closed the connection mid-answer ({type(exc).__name__})")
    return ProviderUnavailable(f"could not reach {host} ({type(exc).__name__})")


def decode_base64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise ProviderUnavailable(f"unexpected answer from Sarvam: {what} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderUnavailable(f"unexpected answer from Sarvam: {what} is not valid base64") from None


# --- requests -------------------------------------------------------------------


async def send(
    target: Endpoint,
    headers: Mapping[str, str],
    *,
    timeout: float,
    json: object = None,
    form: aiohttp.FormData | None = None,
    method: str = "POST",
) -> Any:
    """One REST call; the parsed JSON answer."""
    session = pools.aiohttp_session(target.upstream)
    body: Any = form
    sent = dict(headers)
    if json is not None:
        body = orjson.dumps(json)
        sent["Content-Type"] = "application/json"
    # Failures are raised outside the `except` blocks, so that no exception chains back
    # (__context__) to an aiohttp error whose request_info holds the key header.
    failure: CallerError | None = None
    try:
        async with session.request(
            method,
            target.url,
            data=body,
            headers=sent,
            timeout=client_timeout(timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            status, answer_headers = response.status, response.headers
    except TimeoutError:
        failure = timeout_error(target.host)
    except aiohttp.ClientError as exc:
        failure = connection_error(target.host, exc)
    if failure is not None:
        raise failure
    if not 200 <= status < 300:
        raise http_error(status, payload, answer_headers, target.host)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable(f"unexpected answer from {target.host}: the body is not JSON") from None


async def ws_connect(
    target: Endpoint, headers: Mapping[str, str], timeout: float
) -> aiohttp.ClientWebSocketResponse:
    """Open a websocket on the pooled session; the handshake is bounded by `timeout`.

    (aiohttp follows a redirect of the upgrade request, as it does for any request
    made through ws_connect; the address is the configured base_url's host.)"""
    session = pools.aiohttp_session(target.upstream)
    failure: CallerError
    try:
        async with asyncio.timeout(timeout):
            return await session.ws_connect(
                target.url,
                headers=dict(headers),
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=WS_CLOSE_SECONDS),
                autoping=True,
                max_msg_size=64 * 1024 * 1024,
            )
    except TimeoutError:
        failure = timeout_error(target.host)
    except aiohttp.ClientError as exc:
        failure = connection_error(target.host, exc)
    raise failure  # outside the except blocks: no __context__ holding the request's headers


async def ws_close(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Close at once: the close frame goes out now; the answer is awaited briefly."""
    if ws.closed:
        return
    with contextlib.suppress(Exception):
        await ws.close()
