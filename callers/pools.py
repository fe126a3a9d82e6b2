"""Pooled HTTP clients shared by every call to the same upstream.

The rule is: pool connections, never keys. A call's key is attached to that
call's request (a header) and dropped with it; what outlives the call is only
a connection pool keyed by (kind, upstream), e.g. ("aiohttp", "https://api.openai.com").
Clients are bound to the event loop that made them, so the pool is kept per
loop (each worker process has one loop; each test has its own).

The hub closes every pool at shutdown with `close_all()`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from callers.timeouts import limit_connect

T = TypeVar("T")

_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Any]] = (
    weakref.WeakKeyDictionary()
)
_CLOSERS: dict[str, Callable[[Any], Awaitable[None]]] = {}

# Generous limits: the hub is a proxy, its concurrency is its callers' concurrency.
MAX_CONNECTIONS = 1024
KEEPALIVE_SECONDS = 60.0


def _pool() -> dict[tuple[str, str], Any]:
    return _POOLS.setdefault(asyncio.get_running_loop(), {})


def shared(kind: str, upstream: str, factory: Callable[[], T], closer: Callable[[T], Awaitable[None]]) -> T:
    """The loop's client of `kind` for `upstream`, made by `factory` the first time."""
    pool = _pool()
    client = pool.get((kind, upstream))
    if client is None:
        client = factory()
        pool[(kind, upstream)] = client
        _CLOSERS[kind] = closer
    return client


async def _close_aiohttp(session: aiohttp.ClientSession) -> None:
    await session.close()


def _new_aiohttp_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=MAX_CONNECTIONS, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS, ttl_dns_cache=300
    )
    # No session-wide timeout: every request passes its own, from the call's deadline.
    # auto_decompress stays on; raise_for_status off (callers classify statuses themselves).
    # No cookie jar: a session is shared by every tenant's calls to its upstream, so a
    # cookie one answer set (Cloudflare's __cf_bm, a load balancer's affinity) must not
    # ride along on another tenant's request. trust_env stays off: proxies and .netrc from
    # the hub's environment are not used.
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def aiohttp_session(upstream: str) -> aiohttp.ClientSession:
    """A pooled aiohttp session for `upstream` (scheme://host[:port])."""
    return shared("aiohttp", upstream, _new_aiohttp_session, _close_aiohttp)


def httpx_client(upstream: str) -> Any:
    """A pooled httpx.AsyncClient for SDKs that accept one (cohere)."""
    import httpx

    async def close(client: Any) -> None:
        await client.aclose()

    def make() -> Any:
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=256, keepalive_expiry=KEEPALIVE_SECONDS
        )
        # No client-wide timeout: each call sets its own from its deadline, and connecting
        # is bounded by the call's connect timeout (callers.timeouts).
        hooks = {"request": [limit_connect]}
        return httpx.AsyncClient(limits=limits, timeout=None, event_hooks=hooks)  # noqa: S113

    return shared("httpx", upstream, make, close)


async def close_all() -> None:
    """Close every pooled client of the running loop."""
    pool = _POOLS.pop(asyncio.get_running_loop(), {})
    for (kind, _), client in pool.items():
        await _CLOSERS[kind](client)
