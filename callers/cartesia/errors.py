"""Cartesia's error answers classified into caller errors (status first, then its text).

Cartesia answers an HTTP error with JSON, either {"error": "..."} (older API versions) or
{"title": "...", "message": "...", "error_code": "...", "status_code": ..., "request_id": ...}
(newer ones), or now and then with plain text; a websocket reports an error as a message
{"type": "error", ..., "status_code": ...} before closing. The provider's words are kept,
shortened, and the key is cut out of them should the provider ever quote it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from callers.base import CallerError, ProviderUnavailable, SecretFields, error_from_http_status

_QUOTED_CHARS = 300
REDACTED = "[redacted]"


def redact(text: str, secret: SecretFields) -> str:
    key = secret.get("api_key")
    if key and len(key) >= 4:
        text = text.replace(key, REDACTED)
    return text


def describe(data: Mapping[str, Any]) -> str:
    """The human part of a Cartesia error object: title and message, or error."""
    parts: list[str] = []
    for name in ("title", "message", "error", "detail"):
        found = data.get(name)
        if isinstance(found, str) and found and found not in parts:
            parts.append(found)
    code = data.get("error_code")
    text = ": ".join(parts) if parts else "(no message)"
    if isinstance(code, str) and code:
        text = f"{text} [{code}]"
    return text


def error_text(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:_QUOTED_CHARS] or "(empty body)"
    if isinstance(data, dict):
        return describe(data)[:_QUOTED_CHARS]
    return str(data)[:_QUOTED_CHARS]


def http_error(status: int, body: bytes, retry_after: str | None, secret: SecretFields) -> CallerError:
    message = redact(f"Cartesia ({status}): {error_text(body)}", secret)
    return error_from_http_status(status, message, retry_after)


def websocket_error(data: Mapping[str, Any], secret: SecretFields) -> CallerError:
    """An {"type": "error"} message of a websocket, by its status_code (5xx when it has none)."""
    status = data.get("status_code", data.get("code"))
    message = redact(f"Cartesia: {describe(data)[:_QUOTED_CHARS]}", secret)
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status < 600:
        return error_from_http_status(status, message, None)
    return ProviderUnavailable(message)
