"""The Vonage Voice REST API on the wire, over the hub's pooled aiohttp session.

Why not the vonage SDK's HTTP client (vonage_http_client 1.5, vonage_voice 1.5, read for
the wire used here): it is synchronous (requests), so every call would need a thread;
it builds ``https://{api_host}`` itself, so it cannot be pointed at a loopback fake over
plain http; it retries on its own (urllib3 Retry, plus a loop on RemoteDisconnected) where
the hub owns retries; at DEBUG it logs its shared headers dict, which holds the previous
request's Authorization JWT; and its client keeps the private key for its life. The wire
itself is small: JSON over HTTPS with ``Authorization: Bearer <application JWT>``, which
`auth.application_jwt` mints per call with the SDK's own JwtClient (vonage_jwt).

The wire (Voice API v1, https://developer.vonage.com/en/api/voice, and vonage_voice):
- POST /v1/calls: {to: [{type: phone, number}], from: {type: phone, number}, ncco | answer_url,
  event_url: [url], event_method, ringing_timer, length_timer, machine_detection |
  advanced_machine_detection} -> 201 {uuid, status: "started", direction, conversation_uuid};
- GET /v1/calls/{uuid} -> {uuid, conversation_uuid, to, from, status, direction, rate, price,
  duration, start_time, end_time, network, _links};
- PUT /v1/calls/{uuid} {"action": "hangup"} -> 204;
- GET /v1/calls?page_size=1 -> {count, page_size, record_index, _embedded: {calls}, _links};
- errors are RFC 7807 problems (application/problem+json): {type, title, detail, instance}
  and, for validation errors, invalid_parameters [{name, reason}]; the code is the fragment
  of `type` (https://developer.vonage.com/en/api-errors: unauthorized, invalid-params,
  throttled, ...). Numbers are E.164 digits without the "+".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from callers import pools
from callers.base import (
    CallerError,
    InvalidRequest,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    error_from_http_status,
    parse_retry_after,
)
from callers.timeouts import connect_timeout
from callers.vonage import SPEC

_MESSAGE_CHARS = 1200  # of Vonage's own problem text
_QUOTED_BODY_CHARS = 300  # of a body that is not a problem document


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One resolved target; never holds a key or a token."""

    url: URL
    upstream: str  # the pool key: scheme://host[:port] of the API root
    host: str


def _root(options: Mapping[str, str]) -> URL:
    raw = SPEC.with_defaults(options)["api_base_url"].rstrip("/")
    try:
        root = URL(raw)
    except ValueError:
        root = URL()
    if root.scheme not in ("http", "https") or not root.host:
        raise InvalidRequest("options.api_base_url must be an http(s) URL")
    return root


def endpoint(options: Mapping[str, str], path: str, query: Mapping[str, str] | None = None) -> Endpoint:
    root = _root(options)
    url = URL(f"{root}/{path.lstrip('/')}")
    if query:
        url = url.with_query(dict(query))
    return Endpoint(url=url, upstream=str(root.origin()), host=root.host or "")


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, connect_timeout()))


# --- errors ---------------------------------------------------------------------


def _problem_parts(body: bytes) -> tuple[str, str]:
    """(message, code) from Vonage's problem document, or the body quoted, shortened."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:_QUOTED_BODY_CHARS] or "(empty body)", ""
    if not isinstance(data, dict):
        return orjson.dumps(data).decode()[:_QUOTED_BODY_CHARS], ""
    title = data.get("title") or data.get("error_title")
    detail = data.get("detail")
    parts = [str(p) for p in (title, detail) if isinstance(p, str | int) and str(p).strip()]
    invalid = data.get("invalid_parameters")
    if isinstance(invalid, list) and invalid:
        named = []
        for item in invalid:
            if isinstance(item, dict):
                name, reason = item.get("name"), item.get("reason")
                named.append(f"{name}: {reason}" if reason else str(name))
            else:
                named.append(str(item))
        parts.append("invalid parameters: " + "; ".join(named))
    kind = data.get("type")
    code = ""
    if isinstance(kind, str) and kind:
        code = kind.rsplit("#", 1)[-1] if "#" in kind else kind.rstrip("/").rsplit("/", 1)[-1]
    elif isinstance(kind, int):
        code = str(kind)
    message = ": ".join(parts) if parts else orjson.dumps(data).decode()[:_QUOTED_BODY_CHARS]
    return message[:_MESSAGE_CHARS], code


def http_error(status: int, body: bytes, headers: Mapping[str, str], host: str) -> CallerError:
    """Classify an error answer: by status first, as every caller does."""
    message, code = _problem_parts(body)
    text = f"Vonage: {message}" + (f" ({code})" if code else "") + f" [HTTP {status} from {host}]"
    retry_after = headers.get("Retry-After")
    if status == 402:
        # Out of credit (low-balance): retrying cannot succeed until the account is topped up.
        return PermissionDenied(text, retry_after=parse_retry_after(retry_after), provider_status=status)
    if status == 422:
        return InvalidRequest(text, retry_after=parse_retry_after(retry_after), provider_status=status)
    return error_from_http_status(status, text, retry_after)


def timeout_error(host: str, seconds: float) -> ProviderTimeout:
    return ProviderTimeout(f"{host} did not answer within {seconds:g} s")


def connection_error(host: str, exc: aiohttp.ClientError) -> CallerError:
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ProviderUnavailable(f"{host} closed the connection mid-answer ({type(exc).__name__})")
    return ProviderUnavailable(f"could not reach {host} ({type(exc).__name__})")


# --- requests -------------------------------------------------------------------


async def send(
    target: Endpoint,
    token: str,
    *,
    method: str,
    timeout: float,
    json: object = None,
) -> Any:
    """One REST call with the application JWT; the parsed JSON answer (None when empty)."""
    session = pools.aiohttp_session(target.upstream)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    body: bytes | None = None
    if json is not None:
        body = orjson.dumps(json)
        headers["Content-Type"] = "application/json"
    # Failures are raised outside the `except` blocks, so that no exception chains back
    # (__context__) to an aiohttp error whose request_info holds the Authorization header.
    failure: CallerError | None = None
    try:
        async with session.request(
            method,
            target.url,
            data=body,
            headers=headers,
            timeout=client_timeout(timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            status, answer_headers = response.status, response.headers
    except TimeoutError:
        failure = timeout_error(target.host, timeout)
    except aiohttp.ClientError as exc:
        failure = connection_error(target.host, exc)
    if failure is not None:
        raise failure
    if not 200 <= status < 300:
        raise http_error(status, payload, answer_headers, target.host)
    if not payload.strip():
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable(f"unexpected answer from {target.host}: the body is not JSON") from None


def call_path(provider_call_id: str) -> str:
    """/v1/calls/{uuid}, for an id that can only be a Vonage call UUID (no path tricks)."""
    if (
        not provider_call_id
        or len(provider_call_id) > 64
        or not all(c.isascii() and (c.isalnum() or c == "-") for c in provider_call_id)
    ):
        raise InvalidRequest("provider_call_id is not a Vonage call UUID")
    return f"v1/calls/{provider_call_id}"
