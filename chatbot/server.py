"""The chatbot server: ChatbotService over gRPC, the HTTP API and web page, the background jobs.

`Chatbot.open(settings)` opens everything in order (database and its migrations, the
vector store, one hub client per service token, the answerer), `serve()` starts the
gRPC and HTTP servers and the ingestion worker and purge job, `close()` stops them in
reverse order. Everything runs on one event loop; blocking work (Milvus, PDF parsing)
runs in threads, model calls in the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from chatbot import schema
from chatbot.answer import Answerer
from chatbot.auth import CallerResolver
from chatbot.bots import BotStore
from chatbot.catalog import Catalog
from chatbot.chunking import default_counter
from chatbot.config import Settings
from chatbot.db import Database, open_database
from chatbot.fetch import FetchPolicy, parse_allow_list
from chatbot.history import History
from chatbot.http import http_app
from chatbot.ingest import IngestSettings, IngestWorker
from chatbot.retrieval import HubChat, HubRetriever
from chatbot.service import ChatbotService, Parts
from chatbot.tasks import TaskQueue
from chatbot.tenants import TenantHubs
from chatbot.v1 import chatbot_pb2_grpc
from chatbot.vectors import VectorStore

log = logging.getLogger("chatbot.server")

PURGE_EVERY_SECONDS = 3600.0
MAX_MESSAGE_BYTES = 40 * 1024 * 1024  # an upload of 32 MiB and its framing


@dataclass
class Chatbot:
    settings: Settings
    db: Database
    vectors: VectorStore
    hubs: TenantHubs
    parts: Parts
    worker: IngestWorker
    grpc_port: int = 0
    http_port: int = 0
    _grpc: grpc.aio.Server | None = None
    _http: web.AppRunner | None = None
    _jobs: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings) -> Chatbot:
        db = await open_database(settings.database_url)
        try:
            await schema.migrate(db)
            vectors = await VectorStore.open(settings.vectors_uri)
            try:
                hubs = await TenantHubs.open(
                    settings.hub_target, settings.service_tokens(), tls=settings.hub_tls
                )
            except BaseException:
                await vectors.close()
                raise
        except BaseException:
            await db.close()
            raise
        counter = default_counter()
        bots, catalog, tasks, history = BotStore(db), Catalog(db), TaskQueue(db), History(db)
        ingest_settings = IngestSettings(
            fetch=FetchPolicy(allow_networks=parse_allow_list(settings.fetch_allow))
        )
        worker = IngestWorker(tasks, bots, catalog, vectors, hubs, counter, ingest_settings)
        answerer = Answerer(
            bots,
            history,
            HubRetriever(hubs, vectors, catalog, hybrid=settings.hybrid_search),
            HubChat(hubs),
            lambda text: counter.count([text])[0],
        )
        parts = Parts(
            bots=bots,
            catalog=catalog,
            tasks=tasks,
            history=history,
            vectors=vectors,
            answerer=answerer,
            hubs=hubs,
            callers=CallerResolver(hubs.identify, hubs.tenants),
            wake_ingestion=worker.wake,
        )
        return cls(settings, db, vectors, hubs, parts, worker)

    async def serve(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        chatbot_pb2_grpc.add_ChatbotServiceServicer_to_server(ChatbotService(self.parts), server)  # type: ignore[arg-type]
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        self.grpc_port = server.add_insecure_port(f"{self.settings.host}:{self.settings.grpc_port}")
        await server.start()
        await health.set("chatbot.v1.ChatbotService", health_pb2.HealthCheckResponse.SERVING)
        self._grpc = server
        runner = web.AppRunner(http_app(self.parts, self.db), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.http_port)
        await site.start()
        self._http = runner
        self.http_port = _bound_port(site)
        self._jobs = [
            asyncio.create_task(self.worker.run_forever(), name="chatbot-ingest"),
            asyncio.create_task(self._purge_forever(), name="chatbot-purge"),
        ]
        log.info(
            "chatbot serving gRPC on %s:%d, HTTP on %s:%d",
            self.settings.host,
            self.grpc_port,
            self.settings.host,
            self.http_port,
        )

    async def _purge_forever(self) -> None:
        while True:
            try:
                await self.purge_once()
            except Exception:
                log.exception("session purge failed; retrying at the next period")
            await asyncio.sleep(PURGE_EVERY_SECONDS)

    async def purge_once(self) -> int:
        """Deletes every tenant's sessions older than their bot's retention."""
        rows = await self.db.fetch_all("SELECT id, settings FROM bots")
        retention = {str(row["id"]): _retention_days(row["settings"]) for row in rows}
        purged = await self.parts.history.purge_expired(retention)
        if purged:
            log.info("purged %d sessions past their retention", purged)
        return purged

    async def close(self) -> None:
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        if self._grpc is not None:
            await self._grpc.stop(2.0)
        if self._http is not None:
            await self._http.cleanup()
        await self.hubs.close()
        await self.vectors.close()
        await self.db.close()


def _retention_days(settings_json: Any) -> int:
    import orjson

    return int(orjson.loads(settings_json).get("retention_days") or 90)


def _bound_port(site: web.TCPSite) -> int:
    server: Any = site._server  # aiohttp keeps the asyncio server here; read for port 0
    return int(server.sockets[0].getsockname()[1])
