"""botocore's HTTP exchange over connections that the event loop can abort.

botocore is synchronous, so every call runs in a worker thread. Cancelling the task
that awaits it does not stop the thread: it stays blocked in recv() until the model
answers or the read timeout fires, holding the upstream connection open. Closing the
socket from another thread does not help either (the blocked syscall keeps the file
open, so no FIN is sent). What does is shutdown(2): it wakes the blocked reader and
sends the FIN at once. botocore does not expose its sockets, so this module performs
the exchange itself through botocore's documented `before-send` event, whose handler
may return the response: botocore still serialises, signs and parses every request
and decodes the event stream; only the bytes travel through here, over urllib3
(botocore's own HTTP library) with a connection class that registers each socket.

One transport serves one call and is closed with it: its connections carry signed
requests of that call's key and are never reused by another call.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any
from urllib.parse import SplitResult, urlsplit

import urllib3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import get_cert_path
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry


class _TrackedHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, transport: AbortableTransport, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transport = transport

    def connect(self) -> None:
        super().connect()
        self._transport.track(self)


class _TrackedHTTPSConnection(HTTPSConnection):
    def __init__(self, *args: Any, transport: AbortableTransport, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transport = transport

    def connect(self) -> None:
        # Registered once the TLS handshake is done: an abort during the handshake
        # waits for it, which the connect timeout bounds.
        super().connect()
        self._transport.track(self)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class AbortableTransport:
    def __init__(self, *, connect_timeout: float, read_timeout: float, max_connections: int) -> None:
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._aborted = False
        self._connections: list[HTTPConnection] = []
        self._pools: dict[tuple[str, str, int], HTTPConnectionPool] = {}

    def attach(self, client: Any) -> None:
        """Make `client` send every request through this transport."""
        client.meta.events.register("before-send", self.send)

    def send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        parts = urlsplit(request.url)
        pool = self._pool(parts)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            raw = pool.urlopen(
                method=request.method,
                url=target,
                body=request.body,
                headers=request.headers,
                retries=Retry(False),
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                release_conn=False,
                timeout=self._timeout,
            )
        # The same translation botocore's own URLLib3Session does, so that errors.py
        # sees botocore's exception classes whichever transport ran.
        # NewConnectionError first: urllib3 derives it from ConnectTimeoutError.
        except urllib3.exceptions.NewConnectionError as exc:
            raise EndpointConnectionError(endpoint_url=request.url, error=exc) from None
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=request.url, error=exc) from None
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=request.url, error=exc) from None
        except urllib3.exceptions.SSLError as exc:
            raise SSLError(endpoint_url=request.url, error=exc) from None
        except (urllib3.exceptions.ProtocolError, OSError) as exc:
            raise ConnectionClosedError(endpoint_url=request.url, error=exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise HTTPClientError(error=exc) from None
        return AWSResponse(request.url, raw.status, raw.headers, raw)

    def track(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            aborted = self._aborted
        if aborted:  # connected after the call was abandoned: drop it at once
            _shut_down(connection)

    def abort(self) -> None:
        """Interrupt every read or write in progress; safe from any thread."""
        with self._lock:
            self._aborted = True
            connections = list(self._connections)
        for connection in connections:
            _shut_down(connection)

    def close(self) -> None:
        """Close every connection; call once no worker thread is using them."""
        with self._lock:
            self._aborted = True
            connections, self._connections = self._connections, []
            pools, self._pools = list(self._pools.values()), {}
        for connection in connections:
            connection.close()
        for pool in pools:
            pool.close()

    def _pool(self, parts: SplitResult) -> HTTPConnectionPool:
        host = parts.hostname or ""
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        key = (parts.scheme, host, port)
        with self._lock:
            if self._aborted:
                raise ConnectionClosedError(endpoint_url=parts.geturl())
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = self._new_pool(host, port, secure=secure)
            return pool

    def _new_pool(self, host: str, port: int, *, secure: bool) -> HTTPConnectionPool:
        if secure:
            return _TrackedHTTPSPool(
                host,
                port,
                maxsize=self._max_connections,
                block=False,
                cert_reqs="CERT_REQUIRED",
                ca_certs=get_cert_path(True),  # botocore's bundle, as its own transport uses
                transport=self,
            )
        return _TrackedHTTPPool(host, port, maxsize=self._max_connections, block=False, transport=self)


def _shut_down(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is None:
        return
    # The plain socket's shutdown, also for a TLS socket: SSLSocket.shutdown would tear
    # down its SSL object under the thread that is reading through it. OSError: the
    # socket is already closed.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
