"""What the cohere SDK and its httpx transport raise, classified into caller errors.

Every capability wraps its SDK call in `provider_errors(...)`. The SDK raises one
ApiError subclass per documented status (BadRequestError 400, UnauthorizedError 401,
ForbiddenError 403, NotFoundError 404, UnprocessableEntityError 422,
TooManyRequestsError 429, InvalidTokenError 498, ClientClosedRequestError 499,
InternalServerError 500, ServiceUnavailableError 503, GatewayTimeoutError 504) and a
plain ApiError for the rest; all carry `status_code`, so the status decides, and the
subclasses add nothing to classify by.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from cohere.core import ApiError, ParsingError

from callers import pools
from callers.base import CallerError, ProviderTimeout, ProviderUnavailable, error_from_http_status

# Cohere answers 499 when it believes the client went away. Reaching us, it means
# the request was dropped on the way, not that it was wrong: retrying is the cure,
# so it is the provider's fault rather than InvalidRequest.
_DROPPED_BY_PROVIDER = 499


def provider_message(body: Any) -> str:
    """Cohere's error text: the body is {"id": ..., "message": ...}, or text when not JSON."""
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    if isinstance(body, str) and body:
        return body
    return "no error message in the response"


def from_api_error(exc: ApiError) -> CallerError:
    status = exc.status_code if exc.status_code is not None else 0
    message = provider_message(exc.body)
    retry_after = (exc.headers or {}).get("retry-after")  # httpx headers, lower-cased
    if status == _DROPPED_BY_PROVIDER:
        return ProviderUnavailable(message, provider_status=status)
    return error_from_http_status(status, message, retry_after)


@contextmanager
def provider_errors(host: str, timeout: float) -> Iterator[None]:
    """Turn the SDK's, httpx's and the call deadline's exceptions into caller errors.

    Raised `from None`: the SDK and httpx exceptions hold the outgoing request, whose
    Authorization header would otherwise reach the hub's logs in a chained traceback.
    """
    try:
        yield
    except ApiError as exc:
        if exc.status_code is not None and 300 <= exc.status_code < 400:
            # Not followed (callers.pools.httpx_client): the SDK sends its key on any request.
            location = (exc.headers or {}).get("location")
            raise pools.redirect_refused(exc.status_code, host, location) from None
        raise from_api_error(exc) from None
    except ParsingError:
        # A 2xx whose body is not what the API promises: typically a base_url that
        # points at something other than Cohere.
        raise ProviderUnavailable(f"unexpected answer from {host}: not a Cohere response") from None
    except (TimeoutError, httpx.TimeoutException):
        # TimeoutError: the whole-call deadline; httpx's: one connect/read of the SDK.
        raise ProviderTimeout(f"{host} did not answer within the timeout ({timeout:g} s)") from None
    except httpx.ConnectError as exc:
        raise ProviderUnavailable(f"could not reach {host} ({exc})") from None
    except httpx.TransportError as exc:
        # Reset or cut mid-answer (e.g. a stream without its end): the request was sent.
        raise ProviderUnavailable(f"connection to {host} failed ({type(exc).__name__}: {exc})") from None
