"""A mistralai SDK client per call, over a pooled httpx2 client of the upstream.

mistralai 3.x is built on httpx2 (not httpx), so it gets its own pool entry, kind
"httpx2", through `callers.pools.shared`: connections are pooled, never keys. The SDK
object holds the key and lives for one call; it is never used as a context manager,
whose exit would close the clients it was given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx2
from mistralai.client import Mistral

from callers import pools
from callers.base import InvalidRequest, SecretFields
from callers.mistral import SPEC
from callers.timeouts import limit_connect


def base_url(options: Mapping[str, str]) -> str:
    return SPEC.with_defaults(options)["base_url"]


def host(options: Mapping[str, str]) -> str:
    """The provider's host name, for error messages."""
    return urlsplit(base_url(options)).hostname or "mistral"


def server_url(url: str) -> str:
    """The SDK's server URL: the API root without its /v1, which every SDK path starts with."""
    return url.rstrip("/").removesuffix("/v1")


def _pooled(url: str) -> httpx2.AsyncClient:
    parts = urlsplit(url)

    def make() -> httpx2.AsyncClient:
        limits = httpx2.Limits(
            max_connections=pools.MAX_CONNECTIONS,
            max_keepalive_connections=256,
            keepalive_expiry=pools.KEEPALIVE_SECONDS,
        )
        # No client-wide timeout: every request carries the call's own (timeout_ms), and
        # connecting is bounded by the call's connect timeout (callers.timeouts). No
        # redirects either: the API has none, and following one would carry the key along.
        return httpx2.AsyncClient(
            limits=limits, timeout=None, follow_redirects=False, event_hooks={"request": [limit_connect]}
        )

    async def close(client: httpx2.AsyncClient) -> None:
        await client.aclose()

    return pools.shared("httpx2", f"{parts.scheme}://{parts.netloc}", make, close)


class ResponseRecorder:
    """The SDK's async HTTP client for one call: the pooled client, remembering its answers.

    The SDK returns parsed bodies only; the request id Mistral puts in its headers is
    read from here. `aclose` is a no-op (the pool, not the call, owns the connections);
    `close_responses` releases what this call opened, which matters for a stream when
    a cancellation lands between the answer's arrival and the SDK handing it over.
    """

    def __init__(self, pooled: httpx2.AsyncClient) -> None:
        self._pooled = pooled
        self._responses: list[httpx2.Response] = []

    def build_request(self, *args: Any, **kwargs: Any) -> httpx2.Request:
        return self._pooled.build_request(*args, **kwargs)

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        response = await self._pooled.send(request, **kwargs)
        self._responses.append(response)
        return response

    async def aclose(self) -> None:
        return None

    async def close_responses(self) -> None:
        for response in self._responses:
            await response.aclose()  # idempotent: a no-op for one already read or closed

    def request_id(self) -> str | None:
        if not self._responses:
            return None
        headers = self._responses[-1].headers
        # Mistral's own correlation id, else the id of its API gateway (Kong).
        return headers.get("mistral-correlation-id") or headers.get("x-kong-request-id")


class NoSyncClient:
    """Stands in for the SDK's synchronous client, which the hub never uses.

    Left unset, the SDK would build a new httpx2.Client (and its TLS context, ~15 ms)
    for every call.
    """

    def send(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("the hub calls Mistral asynchronously only")

    def build_request(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("the hub calls Mistral asynchronously only")

    def close(self) -> None:
        return None


_NO_SYNC_CLIENT = NoSyncClient()


class SilentLogger:
    """The SDK's debug logger. Left unset, MISTRAL_DEBUG in the hub's environment would
    make the SDK reconfigure the root logger and log every request and answer body."""

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        return None


_SILENT = SilentLogger()


def connect(
    secret: SecretFields, options: Mapping[str, str], *, timeout: float
) -> tuple[Mistral, ResponseRecorder]:
    """The SDK for this call, and the recorder of its answers' headers.

    Everything is explicit: with an api_key given, the SDK reads neither
    MISTRAL_API_KEY nor a service-account token file from the hub's environment,
    and with a logger given, not MISTRAL_DEBUG.
    retry_config=None: no SDK retries, the hub owns them. timeout_ms bounds each
    request; the callers bound the whole call on top of it.
    """
    url = base_url(options)
    recorder = ResponseRecorder(_pooled(url))
    sdk = Mistral(
        api_key=secret.reveal("api_key"),
        server_url=server_url(url),
        client=_NO_SYNC_CLIENT,
        async_client=recorder,
        retry_config=None,
        timeout_ms=max(1, round(timeout * 1000)),
        debug_logger=_SILENT,
    )
    return sdk, recorder


# Set by the call itself; a provider option must not override them.
_RESERVED_PARAMETERS = frozenset({"stream", "retries", "server_url", "timeout_ms", "http_headers"})


def check_parameters(method: Callable[..., Any], body: Mapping[str, Any]) -> None:
    """Refuse body fields the SDK method has no parameter for, naming them.

    Bodies (provider options included) are passed to the SDK as keyword arguments;
    an unknown one would otherwise surface as a TypeError from inside the call.
    """
    accepted = set(inspect.signature(method).parameters) - _RESERVED_PARAMETERS
    unknown = sorted(set(body) - accepted)
    if unknown:
        raise InvalidRequest(f"unknown Mistral parameter(s): {', '.join(unknown)}")
