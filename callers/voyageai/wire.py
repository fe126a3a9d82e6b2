"""One authenticated JSON POST to Voyage AI over the pooled aiohttp session.

The key goes into that request's Authorization header and nowhere else; the session
is shared per upstream and holds connections only. Voyage's errors are
{"detail": "..."} (or FastAPI's list of {"loc", "msg"} for 422).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from callers import pools
from callers.base import (
    CallerError,
    ProviderTimeout,
    ProviderUnavailable,
    SecretFields,
    error_from_http_status,
)
from callers.timeouts import connect_timeout
from callers.voyageai import SPEC


@dataclass(frozen=True, slots=True)
class Answer:
    body: Any
    request_id: str | None


def provider_message(body: Any) -> str | None:
    detail = body.get("detail") if isinstance(body, dict) else None
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


def status_error(status: int, raw: bytes, retry_after: str | None) -> CallerError:
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    message = provider_message(parsed) or raw.decode("utf-8", "replace").strip() or f"HTTP {status}"
    return error_from_http_status(status, message, retry_after)


async def post(
    secret: SecretFields, options: Mapping[str, str], path: str, body: Mapping[str, Any], *, timeout: float
) -> Answer:
    """POST `body` to {base_url}/{path}; the parsed answer, or a caller error.

    `timeout` bounds the whole exchange, answer body included. A cancelled call
    leaves the `async with` mid-request, and aiohttp then closes the connection
    instead of returning it to the pool.
    """
    base_url = SPEC.with_defaults(options)["base_url"].rstrip("/")
    parts = urlsplit(base_url)
    host = parts.hostname or "voyageai"
    session = pools.aiohttp_session(f"{parts.scheme}://{parts.netloc}")
    headers = {"Authorization": f"Bearer {secret.reveal('api_key')}"}
    # Connecting gets the call's connect timeout (callers.timeouts), within the whole bound.
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, connect_timeout()))
    try:
        async with asyncio.timeout(timeout):
            async with session.post(
                f"{base_url}/{path}", json=body, headers=headers, timeout=client_timeout
            ) as response:
                raw = await response.read()
                status, response_headers = response.status, response.headers
    # Raised `from None`: aiohttp's errors can carry the request, Authorization and all.
    except TimeoutError:  # the deadline, and aiohttp's own timeouts, which subclass it
        raise ProviderTimeout(f"{host} did not answer within the timeout ({timeout:g} s)") from None
    except aiohttp.ClientConnectorError as exc:
        raise ProviderUnavailable(f"could not reach {host} ({exc.os_error})") from None
    except aiohttp.ClientError as exc:
        # Reset, or cut mid-answer: the request was sent.
        raise ProviderUnavailable(f"connection to {host} failed ({type(exc).__name__}: {exc})") from None
    if status >= 400:
        raise status_error(status, raw, response_headers.get("Retry-After"))
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ProviderUnavailable(f"unexpected answer from {host}: not JSON") from None
    request_id = response_headers.get("x-request-id") or response_headers.get("request-id")
    return Answer(body=parsed, request_id=request_id)
