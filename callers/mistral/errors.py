"""What the mistralai SDK and its httpx2 transport raise, classified into caller errors.

The SDK raises MistralError subclasses carrying the status and the raw body: SDKError
for any 4xx/5xx, HTTPValidationError for 422, ResponseValidationError when a body
(even a 2xx one, or one event of a stream) is not what the API promises. Mistral's
bodies come in three shapes, all handled by `provider_message`: its own
{"object": "error", "message", "type", "code"}, its gateway's {"message",
"request_id"} (e.g. a bad key), and FastAPI's {"detail": [...]} for 422.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from mistralai.client.errors import MistralError, NoResponseError

from callers import pools
from callers.base import (
    CallerError,
    InvalidRequest,
    NotFound,
    ProviderTimeout,
    ProviderUnavailable,
    error_from_http_status,
)


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def provider_message(parsed: Any) -> str | None:
    """The human text of a Mistral error body (already parsed), if it has one."""
    if not isinstance(parsed, dict):
        return None
    message = parsed.get("message")
    if isinstance(message, str) and message:
        return message
    if message:  # sometimes a nested object: keep it readable rather than lose it
        return json.dumps(message)
    detail = parsed.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(_validation_item(item) for item in detail)
    return None


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc") or [])
    return f"{where}: {item.get('msg')}" if where else str(item.get("msg"))


def from_mistral_error(exc: MistralError, host: str) -> CallerError:
    if 300 <= exc.status_code < 400:  # not followed (callers.mistral.client)
        return pools.redirect_refused(exc.status_code, host, exc.headers.get("location"))
    parsed = _json(exc.body)
    if 200 <= exc.status_code < 300:
        # A 2xx the SDK could not read. Inside a stream the body is one event,
        # {"data": ...}: an error object there is the provider failing mid-stream.
        event = parsed.get("data") if isinstance(parsed, dict) else None
        message = provider_message(event)
        if message:
            return ProviderUnavailable(f"mistral stream failed: {message}", provider_status=exc.status_code)
        return ProviderUnavailable(f"unexpected answer from {host}: not a Mistral response")
    message = provider_message(parsed) or exc.body or "no error message in the response"
    error = error_from_http_status(exc.status_code, message, exc.headers.get("retry-after"))
    # Mistral answers an unknown model with 400 and type "invalid_model"; for the hub
    # that is a model that does not exist, the same as any provider's 404.
    error_type = parsed.get("type") if isinstance(parsed, dict) else None
    if isinstance(error, InvalidRequest) and error_type == "invalid_model":
        return NotFound(message, provider_status=exc.status_code)
    return error


@contextmanager
def provider_errors(host: str, timeout: float) -> Iterator[None]:
    """Turn the SDK's, httpx2's and the call deadline's exceptions into caller errors.

    Raised `from None`: the SDK's errors hold the raw response, and with it the
    request and its Authorization header, which a chained traceback would log.
    """
    try:
        yield
    except MistralError as exc:
        raise from_mistral_error(exc, host) from None
    except NoResponseError:
        raise ProviderUnavailable(f"no answer from {host}") from None
    except (TimeoutError, httpx2.TimeoutException):
        # TimeoutError: the whole-call deadline; httpx2's: one connect/read of the SDK.
        raise ProviderTimeout(f"{host} did not answer within the timeout ({timeout:g} s)") from None
    except httpx2.ConnectError as exc:
        raise ProviderUnavailable(f"could not reach {host} ({exc})") from None
    except httpx2.TransportError as exc:
        # Reset or cut mid-answer (e.g. a stream without its end): the request was sent.
        raise ProviderUnavailable(f"connection to {host} failed ({type(exc).__name__}: {exc})") from None
