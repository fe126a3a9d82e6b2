"""Per-call google-genai clients, for Gemini (API key) and Vertex AI (access token).

A genai.Client holds the credential, so one is built for each call and dropped with it.
What outlives the call is only the loop's pooled httpx transport (the connections).
Each call reaches it through a thin httpx client and a transport wrapper of its own,
which remembers the responses the call opened: `GoogleConnection.release()` closes
them, so a stream the consumer abandons closes its connection at once. (Closing the
SDK's stream generator does not: its inner generators, which hold the response, are
left for the garbage collector.) Handing the SDK ready httpx clients also spares it
building two SSL contexts per client (~30 ms).

Everything is passed explicitly so that nothing comes from the hub's environment:
vertexai, api_key/credentials, project/location, base_url and api_version all win over
GOOGLE_API_KEY, GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_CLOUD_PROJECT,
GOOGLE_GEMINI_BASE_URL, GOOGLE_GENAI_API_VERSION and the like; an explicit DebugConfig
keeps GOOGLE_GENAI_CLIENT_MODE from switching on the SDK's request recorder; and the
httpx clients ignore proxy variables (trust_env=False), as the hub's pools do.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias
from urllib.parse import urlsplit

import httpx
from google import genai
from google.auth.credentials import Credentials
from google.genai import types
from google.genai.client import DebugConfig

from callers import pools
from callers.base import SecretFields
from callers.gemini import API_VERSION, SPEC
from callers.timeouts import limit_connect


class CallTransport(httpx.AsyncBaseTransport):
    """The pooled transport, as seen by one call: it records the responses it hands out."""

    def __init__(self, pooled: httpx.AsyncBaseTransport) -> None:
        self._pooled = pooled
        self._responses: list[httpx.Response] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._pooled.handle_async_request(request)
        self._responses.append(response)
        return response

    async def close_responses(self) -> None:
        """Close this call's responses; an unfinished one takes its connection with it.

        Never closes the pooled transport (which aclose() would): other calls use it.
        """
        for response in self._responses:
            await response.aclose()


@dataclass(frozen=True, slots=True)
class GoogleConnection:
    client: genai.Client
    transport: CallTransport

    async def release(self) -> None:
        """End the call's use of the network; call it however the call ends."""
        await self.transport.close_responses()


# How a shared caller gets its per-call client: Gemini with a key, Vertex with a token.
Connector: TypeAlias = Callable[[SecretFields, Mapping[str, str], float], Awaitable[GoogleConnection]]


def upstream(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@functools.cache
def _websocket_ssl_context() -> ssl.SSLContext:
    # The SDK prepares an SSL context for its Live (websocket) API in every client unless
    # given one; these callers never use Live, so one shared default context suffices.
    return ssl.create_default_context()


def _pooled_transport(pool_key: str) -> httpx.AsyncHTTPTransport:
    def make() -> httpx.AsyncHTTPTransport:
        limits = httpx.Limits(
            max_connections=pools.MAX_CONNECTIONS,
            max_keepalive_connections=256,
            keepalive_expiry=pools.KEEPALIVE_SECONDS,
        )
        return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)

    async def close(transport: httpx.AsyncHTTPTransport) -> None:
        await transport.aclose()

    return pools.shared("httpx-transport", pool_key, make, close)


def _pooled_sync_client(pool_key: str) -> httpx.Client:
    # Never used (the callers are async), but without it the SDK builds its own per client.
    async def close(client: httpx.Client) -> None:
        client.close()  # noqa: ASYNC212 - it never opened a connection, so nothing blocks

    return pools.shared("httpx-sync", pool_key, lambda: httpx.Client(timeout=60.0, trust_env=False), close)


def open_connection(
    pool_key: str,
    *,
    base_url: str | None,
    api_version: str,
    timeout: float,
    build: Callable[[types.HttpOptions], genai.Client],
) -> GoogleConnection:
    """A per-call client over the pooled connections: the call's timeout, no SDK retries.

    retry_options with a single attempt also turns off the SDK's hidden one-off retry of
    a failed connection (made when no retry_options are set): the hub owns retries.
    """
    transport = CallTransport(_pooled_transport(pool_key))
    options = types.HttpOptions(
        base_url=base_url,
        api_version=api_version,
        timeout=max(1, round(timeout * 1000)),  # milliseconds, per request
        retry_options=types.HttpRetryOptions(attempts=1),
        httpx_client=_pooled_sync_client(pool_key),
        httpx_async_client=httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            trust_env=False,
            # httpx's default, stated to stay visible (the SDK's own clients follow
            # redirects): a redirect would resend x-goog-api-key or the token elsewhere.
            follow_redirects=False,
            # Connecting within the call's connect timeout (callers.timeouts), not `timeout`.
            event_hooks={"request": [limit_connect]},
        ),
        async_client_args={"ssl": _websocket_ssl_context()},
    )
    return GoogleConnection(client=build(options), transport=transport)


def gemini_client(api_key: str, options: types.HttpOptions) -> genai.Client:
    """A Gemini Developer API client; the key travels as the x-goog-api-key header."""
    return genai.Client(vertexai=False, api_key=api_key, http_options=options, debug_config=_no_debug())


def vertex_client(
    credentials: Credentials, project: str, location: str, options: types.HttpOptions
) -> genai.Client:
    """A Vertex AI client whose credentials already hold a fresh access token."""
    return genai.Client(
        vertexai=True,
        credentials=credentials,
        project=project,
        location=location,
        http_options=options,
        debug_config=_no_debug(),
    )


def _no_debug() -> DebugConfig:
    return DebugConfig(client_mode=None, replays_directory=None, replay_id=None)


async def connect_with_api_key(
    secret: SecretFields, options: Mapping[str, str], timeout: float
) -> GoogleConnection:
    """The Connector of the gemini provider."""
    base_url = SPEC.with_defaults(options)["base_url"]
    key = secret.reveal("api_key")
    return open_connection(
        upstream(base_url),
        base_url=base_url,
        api_version=API_VERSION,
        timeout=timeout,
        build=lambda settings: gemini_client(key, settings),
    )
