"""Replicate's HTTP API for one call: the key header, one deadline, error classification.

Requests go over the hub's pooled aiohttp sessions (connections are pooled, the key is
not: it is read from the secret when the call starts and put on this call's requests
only). `timeout` is one deadline for the whole call, polling and streams included.

Errors are RFC 7807 problem documents, {"title", "detail", "status"}: classified by
status first; the detail is the provider's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from yarl import URL

from callers import pools
from callers.base import (
    CallerError,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    SecretFields,
    error_from_http_status,
)
from callers.replicate import SPEC
from callers.timeouts import connect_timeout

logger = logging.getLogger(__name__)

# Cancelling a prediction upstream is a courtesy to the account's bill, done after the
# call has already given up, so it gets its own short bound.
CANCEL_TIMEOUT = 2.0
_QUOTED_BODY_CHARS = 300
# Cancellation requests still in flight; held so that they are not garbage-collected.
_background: set[asyncio.Task[None]] = set()


def problem_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:_QUOTED_BODY_CHARS] or "(empty body)"
    if isinstance(data, dict):
        for name in ("detail", "title", "error"):
            if isinstance(data.get(name), str) and data[name]:
                return str(data[name])
    return orjson.dumps(data).decode()[:_QUOTED_BODY_CHARS]


def http_error(status: int, body: bytes, headers: Mapping[str, str]) -> CallerError:
    message = problem_message(body)
    if status == 402:  # billing: no credit or spend limit reached; retrying cannot help
        return PermissionDenied(message, provider_status=status)
    return error_from_http_status(status, message, headers.get("Retry-After"))


class ReplicateApi:
    def __init__(self, secret: SecretFields, options: Mapping[str, str], *, timeout: float) -> None:
        self.base_url = SPEC.with_defaults(options)["base_url"].rstrip("/")
        base = URL(self.base_url)
        self.host = base.host or self.base_url
        self._origin = base.origin()
        self._auth = {"Authorization": f"Bearer {secret.reveal('api_token')}"}
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + timeout
        # Read once, now: the call's context (its policy) is the one creating the API object;
        # a stream's later requests may run where that context is no longer current.
        self._connect_timeout = connect_timeout()

    def remaining(self) -> float:
        left = self._deadline - self._loop.time()
        if left <= 0:
            raise ProviderTimeout(f"{self.host} did not answer within the timeout")
        return left

    def _timeout(self) -> aiohttp.ClientTimeout:
        left = self.remaining()
        return aiohttp.ClientTimeout(total=left, sock_connect=min(left, self._connect_timeout))

    def _headers_for(self, url: URL, extra: Mapping[str, str]) -> dict[str, str]:
        headers = dict(extra)
        if self._trusted(url):
            headers.update(self._auth)
        return headers

    def _trusted(self, url: URL) -> bool:
        """Whether `url` may see the key: the API's own host, or a sibling host of it.

        Stream URLs come from the API's answer and live on another host of the same
        site (stream.replicate.com next to api.replicate.com), where Replicate's docs
        send the token too; any other host is sent no key.
        """
        if url.scheme != self._origin.scheme or not url.host or not self._origin.host:
            return False
        if url.host == self._origin.host:
            return True
        parent = self._origin.host.split(".", 1)[-1]
        return "." in parent and not parent.replace(".", "").isdigit() and url.host.endswith(f".{parent}")

    async def request(
        self, method: str, url: str, *, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """One JSON request; the parsed JSON answer, or the classified error raised."""
        target = URL(url, encoded=True)
        data = orjson.dumps(body) if body is not None else None
        all_headers = self._headers_for(target, {"Content-Type": "application/json", **(headers or {})})
        session = pools.aiohttp_session(str(target.origin()))
        try:
            async with session.request(
                method, target, data=data, headers=all_headers, timeout=self._timeout()
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise http_error(response.status, raw, response.headers)
        except TimeoutError:  # aiohttp's timeouts subclass it
            raise ProviderTimeout(f"{self.host} did not answer within the timeout") from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(f"could not reach {target.host} ({type(exc).__name__})") from None
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise ProviderUnavailable(f"unexpected answer from {self.host}: the body is not a JSON object")
        return answer

    @asynccontextmanager
    async def event_stream(self, url: str) -> AsyncIterator[aiohttp.StreamReader]:
        """GET a prediction's SSE stream; yields the body to read lines from."""
        target = URL(url, encoded=True)
        headers = self._headers_for(target, {"Accept": "text/event-stream", "Cache-Control": "no-store"})
        session = pools.aiohttp_session(str(target.origin()))
        try:
            async with session.get(target, headers=headers, timeout=self._timeout()) as response:
                if response.status >= 400:
                    raise http_error(response.status, await response.read(), response.headers)
                yield response.content
        except TimeoutError:
            raise ProviderTimeout(f"{target.host} did not answer within the timeout") from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(f"{target.host} broke off the stream ({type(exc).__name__})") from None

    def cancel_in_background(self, prediction_id: str) -> None:
        """Best effort: ask Replicate to stop a prediction this call no longer waits for."""
        if self._loop.is_closed():  # a stream abandoned and collected after its loop ended
            return
        task = self._loop.create_task(self._cancel(prediction_id))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _cancel(self, prediction_id: str) -> None:
        url = URL(f"{self.base_url}/predictions/{prediction_id}/cancel", encoded=True)
        session = pools.aiohttp_session(str(url.origin()))
        timeout = aiohttp.ClientTimeout(total=CANCEL_TIMEOUT)
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with session.post(url, headers=dict(self._auth), timeout=timeout) as response:
                if response.status >= 400:
                    logger.info(
                        "replicate: cancelling prediction %s answered %s", prediction_id, response.status
                    )
