"""Cartesia's wire over the pooled aiohttp session: URLs, headers, requests, websockets.

Why aiohttp and not the cartesia SDK (4.2): the SDK builds one httpx client per API key
and keeps the key in it, which would mean caching keys or paying TCP+TLS per call; its
websockets are opened with the `websockets` package, outside any pool, and its
version pin (Cartesia-Version 2026-08-14) differs from the API version a credential
chooses (option `api_version`). The pooled session (callers.pools) keeps connections,
never keys: the key is read from the secret when a request's headers are built and
goes as the `X-API-Key` header, on HTTP and on the websocket handshake alike (never in
a URL, where it could reach a log line). Redirects are not followed, so the key
reaches only base_url.

A websocket is one `Duplex`: a task sends (audio, or text fragments) while a task
reads into a small bounded queue that the caller's generator drains, so neither side
waits for the other, nothing piles up (the queue is bounded) and closing the Duplex
closes the socket at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from callers import pools
from callers.base import ProviderTimeout, ProviderUnavailable, SecretFields
from callers.cartesia.errors import http_error
from callers.timeouts import connect_timeout

DEFAULT_BASE_URL = "https://api.cartesia.ai"
DEFAULT_VERSION = "2025-04-16"
_QUEUE = 8  # websocket messages read ahead of the consumer at most
_CLOSE_SECONDS = 1.0  # how long a closing websocket waits for the server's close frame


def base_url(options: Mapping[str, str]) -> URL:
    base = (options.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    try:
        parsed = URL(base)
    except ValueError:
        parsed = URL()
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ProviderUnavailable(f"not an http(s) URL: {base!r}")
    return parsed


Query = Mapping[str, str] | list[tuple[str, str]]


def url(options: Mapping[str, str], path: str, query: Query | None = None) -> URL:
    base = base_url(options)
    target = base.with_path(f"{base.path.rstrip('/')}/{path}")
    return target.with_query(query) if query else target


def ws_url(options: Mapping[str, str], path: str, query: Query | None = None) -> URL:
    """The websocket URL of `path`: ws for an http base, wss for https (as the SDK makes it)."""
    target = url(options, path, query)
    return target.with_scheme("wss" if target.scheme == "https" else "ws")


def version(options: Mapping[str, str]) -> str:
    return options.get("api_version") or DEFAULT_VERSION


def headers(secret: SecretFields, options: Mapping[str, str]) -> dict[str, str]:
    return {"X-API-Key": secret.reveal("api_key"), "Cartesia-Version": version(options)}


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A whole request within `seconds`, connecting within the call's connect timeout."""
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, connect_timeout()))


def stream_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A streamed answer: connecting, and each silence of the body, within `seconds`."""
    return aiohttp.ClientTimeout(total=None, sock_connect=min(seconds, connect_timeout()), sock_read=seconds)


def request_id(response_headers: Mapping[str, str]) -> str | None:
    return response_headers.get("x-request-id") or response_headers.get("cartesia-request-id")


def timeout_error(target: URL, seconds: float) -> ProviderTimeout:
    return ProviderTimeout(f"Cartesia ({target.host}) did not answer within {seconds:g} s")


def connection_error(target: URL, exc: BaseException) -> ProviderUnavailable:
    return ProviderUnavailable(f"Cartesia ({target.host}) unreachable: {type(exc).__name__}")


async def request(
    method: str,
    target: URL,
    secret: SecretFields,
    options: Mapping[str, str],
    *,
    timeout: float,
    json: Any = None,
    form: aiohttp.FormData | None = None,
) -> tuple[bytes, str | None]:
    """The body of a 2xx answer and its request id; an error answer is raised classified."""
    session = pools.aiohttp_session(str(target.origin()))
    sent = headers(secret, options)
    body: Any = form
    if json is not None:
        body = orjson.dumps(json)
        sent["Content-Type"] = "application/json"
    try:
        async with session.request(
            method, target, data=body, headers=sent, timeout=client_timeout(timeout), allow_redirects=False
        ) as response:
            payload = await response.read()
            if not 200 <= response.status < 300:
                raise http_error(response.status, payload, response.headers.get("Retry-After"), secret)
            return payload, request_id(response.headers)
    except TimeoutError:
        raise timeout_error(target, timeout) from None
    except aiohttp.ClientError as exc:
        raise connection_error(target, exc) from None


@contextlib.asynccontextmanager
async def stream_post(
    target: URL, secret: SecretFields, options: Mapping[str, str], json: Any, *, timeout: float
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A POST whose 2xx answer is read as it arrives; leaving the block drops the connection."""
    session = pools.aiohttp_session(str(target.origin()))
    sent = {**headers(secret, options), "Content-Type": "application/json"}
    try:
        async with session.post(
            target,
            data=orjson.dumps(json),
            headers=sent,
            timeout=stream_timeout(timeout),
            allow_redirects=False,
        ) as response:
            if not 200 <= response.status < 300:
                payload = await response.read()
                raise http_error(response.status, payload, response.headers.get("Retry-After"), secret)
            try:
                yield response
            except GeneratorExit:
                response.close()  # the consumer left mid-answer: do not drain, drop the socket
                raise
            except asyncio.CancelledError:
                response.close()
                raise
    except TimeoutError:
        raise timeout_error(target, timeout) from None
    except aiohttp.ClientError as exc:
        raise connection_error(target, exc) from None


# --- websockets ---------------------------------------------------------------------

Sender = Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]]


class Duplex:
    """One Cartesia websocket: `sender` runs in a task, the messages are read by `next`.

    `next(silence)` returns the next text message (decoded JSON) or raises: the sender's
    own exception (the caller's input failed), ProviderTimeout when the provider stayed
    silent for `silence` seconds after everything was sent (while input still flows the
    provider may rightly be quiet), ProviderUnavailable when the socket closed first.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, target: URL, sender: Sender) -> None:
        self.ws = ws
        self.target = target
        self.sent_all = False
        self._send_failed: BaseException | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(_QUEUE)
        self._reader = asyncio.ensure_future(self._read())
        self._sender = asyncio.ensure_future(self._send(sender))

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            await self._queue.put(("message", message))
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return

    async def _send(self, sender: Sender) -> None:
        try:
            await sender(self.ws)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the input iterator's own error, or the socket failing
            await self._queue.put(("send_error", exc))
        else:
            await self._queue.put(("sent", None))

    async def next(self, silence: float) -> dict[str, Any]:
        while True:
            try:
                async with asyncio.timeout(silence if self.sent_all else None):
                    kind, value = await self._queue.get()
            except TimeoutError:
                raise timeout_error(self.target, silence) from None
            if kind == "sent":
                self.sent_all = True
                continue
            if kind == "send_error":
                if not isinstance(value, aiohttp.ClientError | ConnectionError):
                    raise value  # the caller's input failed: its own error, as it is
                # The socket broke under the sender: what the provider said before it
                # closed (an error message) is still in the queue and explains it best.
                self._send_failed = value
                continue
            message: aiohttp.WSMessage = value
            if message.type is aiohttp.WSMsgType.TEXT:
                try:
                    data = orjson.loads(message.data)
                except orjson.JSONDecodeError:
                    raise ProviderUnavailable("Cartesia sent a websocket message that is not JSON") from None
                if isinstance(data, dict):
                    return data
                continue
            if message.type is aiohttp.WSMsgType.BINARY:
                continue  # not part of Cartesia's protocol: nothing to hand on
            if self._send_failed is not None:
                raise connection_error(self.target, self._send_failed)
            code = self.ws.close_code
            raise ProviderUnavailable(f"Cartesia ({self.target.host}) closed the websocket (code {code})")

    async def aclose(self) -> None:
        """Stop both tasks and close the socket now (the server sees the close at once)."""
        for task in (self._sender, self._reader):
            task.cancel()
        for task in (self._sender, self._reader):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.ws.close()


async def connect(
    target: URL, secret: SecretFields, options: Mapping[str, str], *, timeout: float, sender: Sender
) -> Duplex:
    """Open the websocket (the handshake within `timeout`) and start `sender` on it."""
    session = pools.aiohttp_session(str(base_url(options).origin()))
    try:
        async with asyncio.timeout(timeout):
            ws = await session.ws_connect(
                target,
                headers=headers(secret, options),
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_SECONDS),
                heartbeat=max(timeout, 5.0),
                autoping=True,
                max_msg_size=16 * 1024 * 1024,
            )
    except TimeoutError:
        raise timeout_error(target, timeout) from None
    except aiohttp.WSServerHandshakeError as exc:
        # Cartesia refuses a bad key, version or parameter at the handshake, with the
        # HTTP status (the body is not kept by aiohttp; the status is what classifies).
        retry_after = exc.headers.get("Retry-After") if exc.headers is not None else None
        raise http_error(exc.status, b"websocket handshake refused", retry_after, secret) from None
    except aiohttp.ClientError as exc:
        raise connection_error(target, exc) from None
    return Duplex(ws, target, sender)
