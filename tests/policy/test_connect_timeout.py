"""The policy's connect_timeout reaches the aiohttp transports (callers.timeouts).

A listener whose accept queue is full drops new SYNs, so a connection to it neither
succeeds nor fails: only a connect timeout ends it. That is a deterministic "host that
does not accept connections" on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from callers import pools
from callers.base import ProviderTimeout
from callers.openai import transport
from callers.replicate.api import ReplicateApi
from callers.timeouts import DEFAULT_CONNECT_TIMEOUT, connect_timeout, connect_timeout_of
from callers.voyageai import wire as voyage
from tests.fakes.secret_fields import PlainSecret

pytestmark = pytest.mark.timeout(20)
CONNECT = 0.3
# Far more than CONNECT: what ends the call must be the connect bound, not the total.
TOTAL = 8.0


@contextlib.contextmanager
def unaccepting_listener() -> Iterator[str]:
    """http://127.0.0.1:<port> of a socket whose backlog is full: connections hang in SYN_SENT."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in (*fillers, server):
            sock.close()


@pytest.fixture
async def blackhole() -> AsyncIterator[str]:
    with unaccepting_listener() as url:
        yield url
    await pools.close_all()


def test_the_connect_timeout_is_the_calls_or_the_default() -> None:
    assert connect_timeout() == DEFAULT_CONNECT_TIMEOUT
    with connect_timeout_of(2.0):
        assert connect_timeout() == 2.0
        with connect_timeout_of(0.5):
            assert connect_timeout() == 0.5
        assert connect_timeout() == 2.0
    assert connect_timeout() == DEFAULT_CONNECT_TIMEOUT
    with pytest.raises(ValueError, match="positive"), connect_timeout_of(0):
        pass


def test_the_openai_timeout_cache_is_keyed_by_total_and_connect() -> None:
    outside = transport.client_timeout(30.0)
    with connect_timeout_of(0.5):
        inside = transport.client_timeout(30.0)
    assert (outside.total, outside.sock_connect) == (30.0, DEFAULT_CONNECT_TIMEOUT)
    assert (inside.total, inside.sock_connect) == (30.0, 0.5)
    assert transport.client_timeout(30.0) is outside  # still cached
    assert transport.client_timeout(0.2).sock_connect == 0.2  # never more than the total


async def test_openai_transport_gives_up_connecting_after_the_connect_timeout(blackhole: str) -> None:
    endpoint = transport.endpoint(f"{blackhole}/v1/chat/completions", {})
    started = time.monotonic()
    with pytest.raises(ProviderTimeout), connect_timeout_of(CONNECT):
        await transport.send(endpoint, {}, b"{}", TOTAL)
    assert CONNECT <= time.monotonic() - started < CONNECT + 1.0


async def test_replicate_gives_up_connecting_after_the_connect_timeout(blackhole: str) -> None:
    with connect_timeout_of(CONNECT):
        api = ReplicateApi(PlainSecret(api_token="r8_test"), {"base_url": f"{blackhole}/v1"}, timeout=TOTAL)
    started = time.monotonic()
    # Read when the API object is made (the call's context), used for all of its requests.
    with pytest.raises(ProviderTimeout):
        await api.request("GET", f"{blackhole}/v1/account")
    assert CONNECT <= time.monotonic() - started < CONNECT + 1.0


async def test_voyage_gives_up_connecting_after_the_connect_timeout(blackhole: str) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderTimeout), connect_timeout_of(CONNECT):
        await voyage.post(
            PlainSecret(api_key="pa-test"),
            {"base_url": f"{blackhole}/v1"},
            "embeddings",
            {"input": ["x"], "model": "voyage-3"},
            timeout=TOTAL,
        )
    assert CONNECT <= time.monotonic() - started < CONNECT + 1.0
