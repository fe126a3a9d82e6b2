"""google-genai's exceptions (and its transport's), classified into caller errors.

Google's error body is {"error": {"code", "message", "status", "details": [...]}}. The
SDK raises it as errors.APIError (ClientError for 4xx, ServerError for 5xx), also when
it arrives as a chunk in the middle of a stream. Transport failures come through as
httpx's own exceptions. Raise the result `from None`: the SDK's exception holds the
response and, through it, the request with its credential header.
"""

from __future__ import annotations

from typing import Any

import httpx
from google.genai import errors

from callers import pools
from callers.base import (
    AuthenticationFailed,
    CallerError,
    ProviderTimeout,
    ProviderUnavailable,
    error_from_http_status,
)

# How google.rpc.ErrorInfo names a key that is not valid (or no longer is).
_BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})


def _details(exc: errors.APIError) -> list[dict[str, Any]]:
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error", body)
    found = error.get("details") if isinstance(error, dict) else None
    return [d for d in found if isinstance(d, dict)] if isinstance(found, list) else []


# A non-JSON error page (a proxy's HTML) becomes the message; keep it readable.
_MAX_MESSAGE = 1000


def message_of(exc: errors.APIError) -> str:
    return str(exc.message or exc.status or f"HTTP {exc.code}")[:_MAX_MESSAGE]


def is_bad_key(exc: errors.APIError) -> bool:
    """A key the provider does not accept.

    Gemini answers a wrong key with 400 INVALID_ARGUMENT, not 401, so the status alone
    would call it the caller's request error; its ErrorInfo reason (API_KEY_INVALID),
    or failing that its message, says what it is.
    """
    if exc.code == 401:
        return True
    if exc.code != 400:
        return False
    reasons = {d.get("reason") for d in _details(exc)}
    return bool(reasons & _BAD_KEY_REASONS) or "API key not valid" in message_of(exc)


def retry_after(exc: errors.APIError) -> str | None:
    """Retry-After when sent, else google.rpc.RetryInfo's retryDelay ("37s"), in seconds."""
    headers = getattr(exc.response, "headers", None)
    header = headers.get("retry-after") if headers is not None else None
    if header:
        return str(header)
    for detail in _details(exc):
        delay = detail.get("retryDelay")
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo") and isinstance(delay, str):
            return delay.removesuffix("s")
    return None


def caller_error(exc: Exception) -> CallerError:
    if isinstance(exc, errors.APIError):
        if 300 <= exc.code < 400:  # not followed (callers.gemini.client)
            response = exc.response
            url = getattr(response, "url", None)
            location = response.headers.get("location") if isinstance(response, httpx.Response) else None
            return pools.redirect_refused(exc.code, getattr(url, "host", None) or "Google", location)
        if is_bad_key(exc):
            return AuthenticationFailed(message_of(exc), provider_status=exc.code)
        return error_from_http_status(exc.code, message_of(exc), retry_after(exc))
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout("Google did not answer within the timeout")
    if isinstance(exc, httpx.TransportError):
        # Connection refused or reset, or a stream broken off mid-body.
        return ProviderUnavailable(
            f"could not reach Google or the answer broke off ({type(exc).__name__}: {exc})"
        )
    # errors.UnknownApiResponseError and the like: a 2xx that is not the API's JSON.
    return ProviderUnavailable(f"unexpected answer from Google: {type(exc).__name__}")


# What caller_error classifies; anything else is a bug to surface as it is.
PROVIDER_ERRORS = (errors.APIError, errors.UnknownApiResponseError, httpx.TransportError)
