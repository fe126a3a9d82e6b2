"""The connect timeout of the provider call in progress, carried by a context variable.

The hub's policy (HUB_POLICY_FILE `connect_timeout`) is decided per call, per target, by
the policy engine, far above the transports that open connections. Threading one more
argument through every caller protocol would change every provider package for a
value only the transports use; a context variable reaches them without that, and is
scoped to the attempt (asyncio tasks copy the context, so concurrent calls never see
each other's value).

    with connect_timeout_of(policy.connect_timeout):   # the engine, around one attempt
        ...
    aiohttp.ClientTimeout(total=t, sock_connect=min(t, connect_timeout()))  # a transport

The SDK-based callers reach it through their HTTP clients: httpx/httpx2 clients get
`limit_connect` as a request event hook (anthropic, cohere, gemini, mistral), and
Bedrock's transport reads it when the call starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

# Outside a policy-run call (credential verification, a caller used directly): a host
# that does not accept a TCP connection within this is not going to answer usefully.
DEFAULT_CONNECT_TIMEOUT = 10.0

_connect_timeout: ContextVar[float | None] = ContextVar("integration_hub_connect_timeout", default=None)


def connect_timeout() -> float:
    """Seconds allowed to open a connection for the current call (the default outside one)."""
    value = _connect_timeout.get()
    return DEFAULT_CONNECT_TIMEOUT if value is None else value


@contextlib.contextmanager
def connect_timeout_of(seconds: float) -> Iterator[None]:
    """Within the block, `connect_timeout()` is `seconds`; the previous value is restored after."""
    if seconds <= 0:
        raise ValueError(f"connect timeout must be positive, not {seconds!r}")
    token = _connect_timeout.set(seconds)
    try:
        yield
    finally:
        _connect_timeout.reset(token)


async def limit_connect(request: Any) -> None:
    """An httpx / httpx2 `request` event hook: connecting within the call's connect timeout.

    The SDKs give each request one float, which httpx applies to every phase, connecting
    (TCP and TLS) included; this lowers the connect part to `connect_timeout()`, read at
    the moment the request is sent, so in the context of the call sending it. The other
    phases keep the SDK's value.
    """
    timeouts = request.extensions.get("timeout")
    if timeouts is None:
        return
    bound = connect_timeout()
    current = timeouts.get("connect")
    if current is None or current > bound:
        request.extensions["timeout"] = {**timeouts, "connect": bound}
