"""The openai SDK's exceptions, classified into caller errors.

Shared by every caller that goes through the SDK (OpenAI, Azure OpenAI, OpenRouter,
OpenAI-compatible servers): that is verify only. Chat, streaming and embeddings speak
the wire without the SDK and classify errors in `callers.openai.transport`.
"""

from __future__ import annotations

import openai

from callers import pools
from callers.base import CallerError, ProviderTimeout, ProviderUnavailable, error_from_http_status


def provider_message(exc: openai.APIStatusError) -> str:
    """The provider's own error text: OpenAI and Azure both put it in error.message."""
    # The SDK has already unwrapped {"error": {...}} into `body` when it was JSON.
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return exc.message


def rejection_reason(exc: openai.APIStatusError) -> str:
    return f"provider rejected the key ({exc.status_code}): {provider_message(exc)}"


def caller_error(exc: openai.APIError) -> CallerError:
    """The caller error for an SDK exception; raise it `from None`.

    Raise without chaining: the SDK exception holds the outgoing request, headers and
    all, and a traceback showing it as the cause would carry the key into the hub's logs.
    """
    host = exc.request.url.host
    # APITimeoutError subclasses APIConnectionError, so it must be tested first.
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(f"{host} did not answer within the timeout")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
        return ProviderUnavailable(f"could not reach {host} ({reason})")
    if isinstance(exc, openai.APIStatusError):
        if 300 <= exc.status_code < 400:  # not followed (callers.openai.client)
            return pools.redirect_refused(exc.status_code, host, exc.response.headers.get("location"))
        return error_from_http_status(
            exc.status_code, provider_message(exc), exc.response.headers.get("retry-after")
        )
    # A 2xx whose body is not what the API promises (APIResponseValidationError):
    # typically a base_url pointing at something that is not an OpenAI-style API.
    return ProviderUnavailable(f"unexpected answer from {host}: {exc.message}")
