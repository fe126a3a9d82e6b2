"""`integration-hub serve`: gRPC and HTTP on one event loop, and a graceful stop.

On SIGTERM (or SIGINT) the hub reports NOT_SERVING on grpc.health.v1, stops
accepting connections on both ports, lets in-flight calls finish within
HUB_DRAIN_SECONDS, cancels what is left, flushes the audit trail and exits 0.

Under a supervisor (`serve --workers N`, integration_hub/workers.py) this is one
worker: it tells the supervisor when it serves or why it cannot start, tags its
log lines and HTTP responses (`x-hub-worker: <index>/<pid>`) with its worker
index, and stops the same way when the supervisor is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1._async import HealthServicer

from integration_hub.config import Settings
from integration_hub.grpc.server import build_grpc_server
from integration_hub.http.app import build_http_app
from integration_hub.hub import Hub
from integration_hub.workers import SupervisorLink

log = logging.getLogger("integration_hub.serve")


@dataclass
class RunningServers:
    grpc_server: grpc.aio.Server
    health: HealthServicer
    http_runner: web.AppRunner
    grpc_port: int
    http_port: int

    async def stop(self, drain_seconds: float) -> None:
        await self.health.enter_graceful_shutdown()
        await asyncio.gather(self.grpc_server.stop(grace=drain_seconds), self.http_runner.cleanup())


async def start_servers(hub: Hub, settings: Settings, *, worker_index: int | None = None) -> RunningServers:
    grpc_server, health, grpc_port = await build_grpc_server(settings, hub.dispatcher, settings.grpc_port)
    app = build_http_app(
        hub.dispatcher,
        hub.readiness,
        max_request_bytes=settings.max_request_bytes,
        extra_routes=hub.openai.routes() + (hub.webhooks.routes() if hub.webhooks else []),
        chatbot_url=settings.chatbot_url,
    )
    if worker_index is not None:
        _name_worker_in_responses(app, worker_index)
    # handler_cancellation: a client that hangs up cancels its handler, and with it the upstream call.
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=settings.drain_seconds, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.http_port, reuse_port=True)
    await site.start()
    http_port = _bound_port(site) or settings.http_port
    return RunningServers(grpc_server, health, runner, grpc_port, http_port)


def _name_worker_in_responses(app: web.Application, worker_index: int) -> None:
    # Which worker answered: for operators following one request, and for the test that
    # checks every worker receives connections on the shared port.
    value = f"{worker_index}/{os.getpid()}"

    async def add_header(_: web.Request, response: web.StreamResponse) -> None:
        response.headers["x-hub-worker"] = value

    app.on_response_prepare.append(add_header)


async def serve(settings: Settings, *, migrate: bool = False, link: SupervisorLink | None = None) -> int:
    hub = await Hub.open(settings, migrate=migrate)
    try:
        servers = await start_servers(hub, settings, worker_index=link.index if link else None)
        log.info(
            "serving",
            extra={
                "grpc_port": servers.grpc_port,
                "http_port": servers.http_port,
                "host": settings.host,
                "store": "postgres" if settings.database_url else "sqlite",
                "cache": "redis" if hub.credential_cache.shared else "in-process",
            },
        )
        await _wait_for_stop_signal(link)
        log.info("stopping: draining in-flight calls", extra={"drain_seconds": settings.drain_seconds})
        if hub.campaigns is not None:
            # No new campaign calls while draining; calls being placed finish first.
            await hub.campaigns.close()
        await servers.stop(settings.drain_seconds)
    finally:
        await hub.close()
    log.info("stopped")
    return 0


async def _wait_for_stop_signal(link: SupervisorLink | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if link is not None:
        _stop_when_supervisor_is_gone(loop, link, stop)
        link.report_ready()  # only now: a signal forwarded from here on is a graceful stop
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    if link is not None:
        loop.remove_reader(link.fileno())


def _stop_when_supervisor_is_gone(
    loop: asyncio.AbstractEventLoop, link: SupervisorLink, stop: asyncio.Event
) -> None:
    def on_readable() -> None:
        if link.supervisor_gone():
            loop.remove_reader(link.fileno())
            log.warning("the supervisor is gone: stopping")
            stop.set()

    loop.add_reader(link.fileno(), on_readable)


def _bound_port(site: web.TCPSite) -> int | None:
    server: Any = site._server  # aiohttp keeps the asyncio server here; read for port 0
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else None


def run(settings: Settings, *, migrate: bool = False) -> int:
    link = SupervisorLink.from_env()
    if link is not None:
        _tag_log_lines(link.index)
    try:
        return _run_on_fastest_loop(serve(settings, migrate=migrate, link=link))
    except Exception as exc:
        if link is not None:  # the supervisor ignores this once the worker has served
            link.report_failed(str(exc) or type(exc).__name__)
        raise


def _run_on_fastest_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.run(main)
    return uvloop.run(main)


class _WorkerTag(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._index
        return True


def _tag_log_lines(worker_index: int) -> None:
    # On the handlers, not a logger: every library's records get the field too.
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(worker_index))
