"""Deepgram's errors as caller errors.

Deepgram answers an error with its HTTP status and a JSON body
`{"err_code": ..., "err_msg": ..., "request_id": ...}` (older endpoints: `{"category",
"message", "details"}`); a refused websocket upgrade carries the same in its `dg-error`
header, with `dg-request-id`. The status decides the class (callers.errors), 402 (no
credits left) being "the key may not do this" rather than a malformed request; the
message quotes Deepgram's text and request id, never a header we sent.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import orjson
from deepgram.core.api_error import ApiError
from deepgram.core.parse_error import ParsingError

from callers.base import (
    CallerError,
    InvalidRequest,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    error_from_http_status,
)

# What the SDK raises: its API errors, and httpx's transport errors and timeouts.
SDK_ERRORS = (ApiError, ParsingError, httpx.HTTPError)
_QUOTED_CHARS = 300


def error_text(body: object) -> str:
    """Deepgram's own words from an error body (parsed JSON, bytes or text)."""
    if isinstance(body, bytes | bytearray):
        raw = bytes(body)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
    if isinstance(body, str):
        text = body.strip()
        if text.startswith("{"):
            try:
                return error_text(orjson.loads(text))
            except orjson.JSONDecodeError:
                pass
        return text[:_QUOTED_CHARS] or "(empty body)"
    if isinstance(body, dict):
        message = body.get("err_msg") or body.get("message") or body.get("reason") or body.get("error")
        code = body.get("err_code") or body.get("category")
        rid = body.get("request_id")
        text = str(message) if message else orjson.dumps(body).decode()[:_QUOTED_CHARS]
        if code and str(code) not in text:
            text = f"{text} [{code}]"
        if rid:
            text = f"{text} (request {rid})"
        return text
    return str(body)[:_QUOTED_CHARS] if body is not None else "(empty body)"


def http_error(status: int, body: object, headers: Mapping[str, str] | None, host: str) -> CallerError:
    if 300 <= status < 400:
        return ProviderUnavailable(
            f"{host} answered with a redirect (HTTP {status}), which is not followed so that the key "
            "is never sent to another address: check the configured base_url",
            provider_status=status,
        )
    message = f"Deepgram: {error_text(body)}"
    if status == 402:  # out of credits: retrying cannot succeed
        return PermissionDenied(message, provider_status=status)
    retry_after = _header(headers, "retry-after")
    return error_from_http_status(status, message, retry_after)


def from_sdk(exc: BaseException, host: str) -> CallerError:
    """Classify what the SDK raised; raise the result `from None` (no chained request)."""
    if isinstance(exc, ApiError):
        status = exc.status_code or 0
        if 200 <= status < 300:
            return ProviderUnavailable(f"unexpected answer from {host}: the body is not JSON")
        return http_error(status, exc.body, exc.headers, host)
    if isinstance(exc, ParsingError):
        return ProviderUnavailable(f"unexpected answer from {host}: {type(exc).__name__}")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(f"{host} did not answer within the timeout")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return ProviderUnavailable(f"{host} closed the connection mid-answer ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPError):
        return ProviderUnavailable(f"could not reach {host} ({type(exc).__name__})")
    return ProviderUnavailable(f"{host}: {type(exc).__name__}")


def handshake_error(status: int, headers: Mapping[str, str] | None, host: str) -> CallerError:
    """A refused websocket upgrade: Deepgram's error text is in its `dg-error` header."""
    said = _header(headers, "dg-error")
    rid = _header(headers, "dg-request-id")
    body: object = said if said else f"the websocket upgrade was refused (HTTP {status})"
    error = http_error(status, body, headers, host)
    if rid and rid not in error.message:
        error.message = f"{error.message} (request {rid})"
        error.args = (error.message,)
    return error


def close_error(code: int | None, reason: str, host: str) -> CallerError:
    """Deepgram closed a live stream with an error: 1008 is audio it cannot decode
    (DATA-0000), 1011 its own failure, or NET-0001 when it received no audio in time."""
    said = f"Deepgram closed the stream ({code}): {reason or 'no reason given'}"
    if code == 1008:
        return InvalidRequest(said)
    if reason.startswith("NET-0001"):
        return ProviderTimeout(said)
    return ProviderUnavailable(said)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        for key, found in headers.items():
            if key.lower() == name:
                return found
    return value
