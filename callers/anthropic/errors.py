"""The anthropic SDK's exceptions (and its transport's), classified into caller errors.

Raise the result `from None`: the SDK exception holds the outgoing request, headers
and all, and a traceback showing it as the cause would carry the key into logs.
"""

from __future__ import annotations

import anthropic
import httpx2

from callers import pools
from callers.base import CallerError, ProviderTimeout, ProviderUnavailable, error_from_http_status

# Anthropic's documented error types and the HTTP status each comes with. Needed for
# an `error` event inside a stream: the HTTP status was already 200 when it arrived,
# so the type in its body is the only classification there is.
_STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def provider_message(exc: anthropic.APIStatusError) -> str:
    """The provider's own text: error.message of {"type": "error", "error": {...}}."""
    return exc.api_message or exc.message


def rejection_reason(exc: anthropic.APIStatusError) -> str:
    return f"provider rejected the key ({exc.status_code}): {provider_message(exc)}"


def effective_status(exc: anthropic.APIStatusError) -> int:
    """The HTTP status, or for an error event in a 200 stream the status its type implies."""
    if exc.status_code >= 400:
        return exc.status_code
    return _STATUS_OF_ERROR_TYPE.get(str(exc.type or ""), 500)


def caller_error(exc: anthropic.APIError) -> CallerError:
    host = exc.request.url.host
    # APITimeoutError subclasses APIConnectionError, so it must be tested first.
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderTimeout(f"{host} did not answer within the timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
        return ProviderUnavailable(f"could not reach {host} ({reason})")
    if isinstance(exc, anthropic.APIStatusError):
        if 300 <= exc.status_code < 400:  # not followed (callers.anthropic.client)
            return pools.redirect_refused(exc.status_code, host, exc.response.headers.get("location"))
        # Status first (529 overloaded is a 5xx, so ProviderUnavailable); the body's
        # error type only decides when the status cannot (see effective_status).
        return error_from_http_status(
            effective_status(exc), provider_message(exc), exc.response.headers.get("retry-after")
        )
    # A 2xx whose body is not a Messages API answer (APIResponseValidationError).
    return ProviderUnavailable(f"unexpected answer from {host}: {exc.message}")


def transport_error(exc: httpx2.TransportError) -> CallerError:
    """A failure while reading a stream's body, which the SDK passes on unwrapped."""
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeout("the provider stopped sending within the timeout")
    # e.g. RemoteProtocolError "peer closed connection without sending complete message body"
    return ProviderUnavailable(f"the stream broke off: {type(exc).__name__}: {exc}")
