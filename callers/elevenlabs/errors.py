"""ElevenLabs's errors as caller errors, over HTTP and over the stream-input websocket.

HTTP errors answer JSON {"detail": {"status": "<code>", "message": "..."}} (newer
endpoints also put the code in "code" and add "type"), or FastAPI's validation list
{"detail": [{"loc": [...], "msg": "..."}]} with 422. The status decides first
(callers.errors); the code refines where ElevenLabs uses a status for several things:
401 is a bad key (invalid_api_key) but also an exhausted quota (quota_exceeded), a
flagged account (detected_unusual_activity) or a key without a scope
(missing_permissions), which no retry with the same key fixes and which are not
"the key is wrong": those are PermissionDenied.

Websocket errors arrive as a message {"message": "...", "error": "<code>", "code": 1008}
followed by a close frame (1008 policy violation, 1011 internal error), or as a close
frame alone.

Messages quote ElevenLabs's text with the key scrubbed out, should it ever be echoed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson
from elevenlabs.core.api_error import ApiError

from callers.base import (
    AuthenticationFailed,
    CallerError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    error_from_http_status,
    parse_retry_after,
)

_QUOTED_CHARS = 300

_AUTHENTICATION = frozenset({"invalid_api_key", "needs_authorization", "invalid_authorization", "auth_error"})
_PERMISSION = frozenset(
    {
        "quota_exceeded",
        "insufficient_quota",
        "detected_unusual_activity",
        "missing_permissions",
        "payment_required",
        "free_users_not_allowed",
        "subscription_required",
        "voice_access_denied",
    }
)
_RATE = frozenset({"too_many_concurrent_requests", "system_busy", "rate_limit_exceeded", "concurrent_limit"})
_NOT_FOUND = frozenset({"voice_not_found", "model_not_found", "not_found"})
_TIMEOUT = frozenset({"input_timeout_exceeded"})


def scrub(text: str, key: str | None) -> str:
    if key and len(key) >= 4 and key in text:
        text = text.replace(key, "[redacted]")
    return text


def _detail(body: Any) -> tuple[str | None, str]:
    """(code, message) from an ElevenLabs error body (parsed JSON, bytes or text)."""
    if isinstance(body, bytes | bytearray):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        return None, body.strip()[:_QUOTED_CHARS] or "(empty body)"
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        code = detail.get("status") or detail.get("code") or detail.get("error")
        message = detail.get("message") or detail.get("msg")
        return (str(code) if code else None), (
            str(message) if message else orjson.dumps(detail).decode()[:_QUOTED_CHARS]
        )
    if isinstance(detail, list):  # FastAPI validation errors
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc") or ())
                parts.append(f"{where}: {item.get('msg', '')}".strip(": "))
        return "validation_error", "; ".join(parts) or "invalid request"
    if isinstance(detail, str):
        return None, detail[:_QUOTED_CHARS]
    return None, orjson.dumps(body).decode()[:_QUOTED_CHARS]


def _by_code(code: str | None) -> type[CallerError] | None:
    if code is None:
        return None
    if code in _AUTHENTICATION:
        return AuthenticationFailed
    if code in _PERMISSION:
        return PermissionDenied
    if code in _RATE:
        return RateLimited
    if code in _NOT_FOUND:
        return NotFound
    if code in _TIMEOUT:
        return ProviderTimeout
    return None


def http_error(status: int, body: Any, headers: Mapping[str, str] | None, *, key: str | None) -> CallerError:
    """Classify an HTTP error answer of ElevenLabs."""
    if 300 <= status < 400:
        return ProviderUnavailable(
            f"ElevenLabs answered with a redirect (HTTP {status}), which is not followed so that the key "
            "is never sent to another address: check options.base_url",
            provider_status=status,
        )
    code, message = _detail(body)
    text = scrub(f"ElevenLabs: {message}" + (f" ({code})" if code else ""), key)
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    retry_after = lowered.get("retry-after")
    if status == 402:
        return PermissionDenied(text, provider_status=status)
    kind = _by_code(code)
    if kind is not None and 400 <= status < 500:
        return kind(text, retry_after=parse_retry_after(retry_after), provider_status=status)
    return error_from_http_status(status, text, retry_after)


def websocket_message_error(data: Mapping[str, Any], *, key: str | None) -> CallerError:
    """An error message on the stream-input websocket: {"message", "error", "code"}."""
    code = data.get("error")
    code = str(code) if code else None
    message = data.get("message") or data.get("error") or "unknown error"
    text = scrub(f"ElevenLabs: {message}" + (f" ({code})" if code else ""), key)
    kind = _by_code(code)
    if kind is None:
        lowered = str(message).lower()
        if "api key" in lowered or "api_key" in lowered:
            kind = AuthenticationFailed
        elif "quota" in lowered:
            kind = PermissionDenied
    if kind is None:
        close_code = data.get("code")
        kind = ProviderUnavailable if close_code == 1011 else InvalidRequest
    return kind(text)


def websocket_close_error(code: int | None, reason: str, *, key: str | None) -> CallerError:
    """The websocket closed before the end of the stream, with only a close frame to go by."""
    said = scrub(reason.strip()[:_QUOTED_CHARS], key) or "no reason given"
    text = f"ElevenLabs closed the stream (websocket close {code}): {said}"
    lowered = said.lower()
    if "api key" in lowered or "api_key" in lowered or "unauthorized" in lowered:
        return AuthenticationFailed(text)
    if "quota" in lowered:
        return PermissionDenied(text)
    if "timeout" in lowered:
        return ProviderTimeout(text)
    if code == 1008:
        return InvalidRequest(text)
    return ProviderUnavailable(text)


def handshake_error(status: int, headers: Mapping[str, str] | None) -> CallerError:
    """ElevenLabs refused to open the websocket with an HTTP status."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return error_from_http_status(
        status, f"ElevenLabs refused the stream-input websocket (HTTP {status})", lowered.get("retry-after")
    )


def from_sdk(exc: BaseException, where: str, *, key: str | None) -> CallerError:
    """An exception of the SDK (or of httpx underneath) as a caller error."""
    if isinstance(exc, ApiError):
        return http_error(exc.status_code or 0, exc.body, exc.headers, key=key)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(f"{where} did not answer within the timeout")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return ProviderUnavailable(f"{where} closed the connection mid-answer ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return ProviderUnavailable(f"could not reach {where} ({type(exc).__name__})")
    return ProviderUnavailable(scrub(f"unexpected answer from {where}: {type(exc).__name__}: {exc}", key))


def sdk_errors() -> tuple[type[BaseException], ...]:
    """What `from_sdk` classifies: the SDK's ApiError and httpx's transport errors."""
    return _SDK_ERRORS


_SDK_ERRORS: tuple[type[BaseException], ...] = (ApiError, httpx.HTTPError)
