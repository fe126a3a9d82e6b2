"""One Bedrock call: botocore's blocking work in worker threads, within a deadline, abortable.

The event loop never blocks: the client is built and every request (and every read
of a stream) runs in a bounded pool of worker threads. The call's `timeout` is one
deadline for the whole call, streams included. When the deadline passes or the
awaiting task is cancelled, the call's transport shuts its sockets down, which wakes
the worker thread at once and closes the upstream connection (transport.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from callers.base import ProviderTimeout
from callers.bedrock.errors import caller_error
from callers.bedrock.session import AwsKeys, new_client
from callers.bedrock.transport import AbortableTransport
from callers.timeouts import connect_timeout

T = TypeVar("T")

# Threads blocked on Bedrock at once, per process; beyond it, calls queue (and their
# deadline keeps running). A stream holds a thread while it waits for its next event.
MAX_BLOCKING_CALLS = 128
_executor = concurrent.futures.ThreadPoolExecutor(
    max_workers=MAX_BLOCKING_CALLS, thread_name_prefix="bedrock"
)


class BlockingCall:
    """A client (built lazily, in a worker thread), a transport and a deadline; not pooled."""

    def __init__(
        self,
        service: str,
        keys: AwsKeys,
        *,
        region: str,
        endpoint_url: str | None,
        timeout: float,
        max_connections: int = 10,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + timeout
        # For messages only: where the requests go (botocore's default host when no override).
        default_host = f"{service}.{region}.amazonaws.com"
        self.host = (urlsplit(endpoint_url).hostname or default_host) if endpoint_url else default_host
        # Connecting is bounded by the call's connect timeout (callers.timeouts), read here,
        # in the call's context: the worker threads do not see it.
        connect = min(timeout, connect_timeout())
        self._transport = AbortableTransport(
            connect_timeout=connect, read_timeout=timeout, max_connections=max_connections
        )
        self._make_client: Callable[[], Any] = lambda: new_client(
            service,
            keys,
            region=region,
            endpoint_url=endpoint_url,
            timeout=timeout,
            connect_timeout=connect,
            max_connections=max_connections,
        )
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._jobs: list[concurrent.futures.Future[Any]] = []

    async def run(self, operation: Callable[[Any], T]) -> T:
        """`operation(client)` in a worker thread; its errors classified as caller errors."""
        job = _executor.submit(lambda: operation(self._client_in_thread()))
        self._jobs.append(job)
        deadline = asyncio.timeout_at(self._deadline)
        try:
            async with deadline:
                return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            self._transport.abort()
            raise
        except Exception as exc:
            if deadline.expired():
                self._transport.abort()
                raise ProviderTimeout(f"{self.host} did not answer within the timeout") from None
            raise caller_error(exc, self.host) from None
        finally:
            if job.done():  # forget finished jobs: a stream runs one per event
                self._jobs.remove(job)

    def close(self) -> None:
        """Release the connections: now if no thread uses them, else when the last one returns."""
        busy = [job for job in self._jobs if not job.done()]
        if not busy:
            self._transport.close()
            return
        # Only reached when the call was abandoned mid-request (cancelled, or an error
        # in a sibling request): wake the threads, and close after the last one.
        self._transport.abort()
        for job in busy:
            job.add_done_callback(self._close_if_idle)

    def _close_if_idle(self, _: concurrent.futures.Future[Any]) -> None:
        if all(job.done() for job in self._jobs):
            self._transport.close()

    def _client_in_thread(self) -> Any:
        with self._client_lock:
            if self._client is None:
                client = self._make_client()
                self._transport.attach(client)
                self._client = client
            return self._client
