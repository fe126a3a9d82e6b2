"""Pooled HTTP clients shared by every call to the same upstream.

The rule is: pool connections, never keys. A call's key is attached to that
call's request (a header) and dropped with it; what outlives the call is only
a connection pool keyed by (kind, upstream), e.g. ("aiohttp", "https://api.openai.com").
Clients are bound to the event loop that made them, so the pool is kept per
loop (each worker process has one loop; each test has its own).

Redirects are never followed, by any pooled client: a request carries its call's key,
and a redirect would resend it to an address nobody configured. aiohttp and httpx drop
only Authorization on a cross-origin redirect, not the custom key headers most
providers use (xi-api-key, api-key, Ocp-Apim-Subscription-Key, Token, ...).

The hub closes every pool at shutdown with `close_all()`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from callers.errors import ProviderUnavailable
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


# The statuses aiohttp and httpx follow (Location), and so resend the request on.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def redirect_refused(status: int, host: str | None, location: str | None = None) -> ProviderUnavailable:
    """The error for a redirect answer, which is never followed.

    Names the status and at most the host of the Location: its path and query may
    carry anything (a signed URL, the request's own query), and no header is quoted.
    """
    where = ""
    if location:
        try:
            url = URL(location)
        except ValueError:
            url = URL()
        # Host and port only: the userinfo, path and query are not quoted.
        target = f"{url.host}:{url.explicit_port}" if url.host and url.explicit_port else url.host
        if target and target != host:
            where = f" to {target}"
    return ProviderUnavailable(
        f"{host or 'the provider'} answered with a redirect (HTTP {status}{where}), which is not "
        "followed so that the key is never sent to another address: check the configured URL",
        provider_status=status,
    )


async def _refuse_redirects(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Session middleware: a redirect answer ends the request with ProviderUnavailable.

    `allow_redirects=False` per request is not enough: `ws_connect` and a plain
    `session.get/post` follow redirects by default, and one forgotten flag would send
    the key elsewhere. aiohttp runs middlewares once per attempt inside its redirect
    loop, so raising here stops the redirect before it is followed. Not an
    aiohttp.ClientError, so callers' `except aiohttp.ClientError` does not turn it into
    "could not reach"; raised outside any except block, it chains no request.
    """
    response = await handler(request)
    if response.status in REDIRECT_STATUSES:
        location = response.headers.get("Location")
        response.release()
        raise redirect_refused(response.status, request.url.host, location)
    return response


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
    # the hub's environment are not used. Redirects are refused for every request,
    # websocket upgrades included (_refuse_redirects).
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        middlewares=(_refuse_redirects,),
    )


def aiohttp_session(upstream: str) -> aiohttp.ClientSession:
    """A pooled aiohttp session for `upstream` (scheme://host[:port])."""
    return shared("aiohttp", upstream, _new_aiohttp_session, _close_aiohttp)


def httpx_client(upstream: str) -> Any:
    """A pooled httpx.AsyncClient for SDKs that accept one (cohere, deepgram, elevenlabs)."""
    import httpx

    async def close(client: Any) -> None:
        await client.aclose()

    def make() -> Any:
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=256, keepalive_expiry=KEEPALIVE_SECONDS
        )
        # No client-wide timeout: each call sets its own from its deadline, and connecting
        # is bounded by the call's connect timeout (callers.timeouts). No redirects: httpx's
        # default, stated so that it stays visible, since the SDKs given this client
        # (cohere, deepgram, elevenlabs) would send their key headers wherever one points.
        hooks = {"request": [limit_connect]}
        return httpx.AsyncClient(
            limits=limits,
            timeout=None,  # noqa: S113
            follow_redirects=False,
            event_hooks=hooks,
        )

    return shared("httpx", upstream, make, close)


async def close_all() -> None:
    """Close every pooled client of the running loop."""
    pool = _POOLS.pop(asyncio.get_running_loop(), {})
    for (kind, _), client in pool.items():
        await _CLOSERS[kind](client)
