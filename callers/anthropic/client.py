"""One AsyncAnthropic per call, over the event loop's pooled connections to the API.

The SDK client is cheap to build and holds the key, so it lives for one call only; what
outlives the call is the pooled httpx2 client (connections, no key). The SDK uses
`httpx2`, not `httpx`, and refuses an `httpx.AsyncClient`, hence a pool of its own kind
through `callers.pools.shared` rather than `pools.httpx_client`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

import anthropic
import httpx2

from callers import pools
from callers.anthropic import API_VERSION, SPEC
from callers.base import SecretFields
from callers.timeouts import limit_connect

RequestHeaders: TypeAlias = dict[str, str | anthropic.Omit]


def base_url(options: Mapping[str, str]) -> str:
    return SPEC.with_defaults(options)["base_url"]


def _upstream(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _pooled_http_client(url: str) -> httpx2.AsyncClient:
    def make() -> httpx2.AsyncClient:
        limits = httpx2.Limits(
            max_connections=pools.MAX_CONNECTIONS,
            max_keepalive_connections=256,
            keepalive_expiry=pools.KEEPALIVE_SECONDS,
        )
        # No client-wide timeout: every request carries the call's own, and connecting is
        # bounded by the call's connect timeout (callers.timeouts). No redirects (httpx2's
        # default, stated to stay visible): following one would carry the key along.
        return httpx2.AsyncClient(
            limits=limits, timeout=None, follow_redirects=False, event_hooks={"request": [limit_connect]}
        )

    async def close(client: httpx2.AsyncClient) -> None:
        await client.aclose()

    return pools.shared("httpx2", _upstream(url), make, close)


def pinned_headers(key: str, api_version: str) -> RequestHeaders:
    """Headers stated on every request, so that the hub's environment cannot supply them.

    The SDK merges ANTHROPIC_CUSTOM_HEADERS from the process environment over its own
    auth header; request-level headers win over both. The key goes as a Bearer token,
    as the SDK itself sends it; X-Api-Key is omitted because the API prefers it over
    Authorization when both arrive, so an X-Api-Key from the environment would win.
    """
    return {
        "Authorization": f"Bearer {key}",
        "X-Api-Key": anthropic.omit,
        "anthropic-version": api_version,
        "anthropic-beta": anthropic.omit,
    }


@dataclass(frozen=True, slots=True)
class AnthropicConnection:
    client: anthropic.AsyncAnthropic
    # Pass as `extra_headers=` on every request made through `client`.
    headers: RequestHeaders


def connect(
    secret: SecretFields, options: Mapping[str, str], *, timeout: float, api_version: str = API_VERSION
) -> AnthropicConnection:
    """An SDK client for this call; never closed, since closing would close the pool.

    Every setting is explicit so that nothing comes from the environment: with api_key
    given, the SDK reads no credential variable; base_url given, no ANTHROPIC_BASE_URL;
    open_telemetry=False, no ANTHROPIC_OPEN_TELEMETRY_* (which can copy prompts into
    spans). max_retries=0: the hub owns retries and the call's deadline.
    """
    url = base_url(options)
    key = secret.reveal("api_key")
    client = anthropic.AsyncAnthropic(
        api_key=key,
        base_url=url,
        timeout=timeout,
        max_retries=0,
        http_client=_pooled_http_client(url),
        open_telemetry=False,
    )
    return AnthropicConnection(client=client, headers=pinned_headers(key, api_version))
