"""GET /console/chatbot/...: the admin console reads the chatbot layer's bots and ingestion tasks.

The console runs under connect-src 'self', so it cannot call the chatbot's own origin; the hub
forwards exactly two read-only paths to HUB_CHATBOT_URL, nothing else (no open proxy):

- /console/chatbot/v1/bots                              -> {chatbot}/v1/bots
- /console/chatbot/v1/bots/{bot_id}/ingestion-tasks     -> {chatbot}/v1/bots/{bot_id}/ingestion-tasks

The caller's Authorization header goes along unchanged and the chatbot checks it (it resolves
hub tokens with the hub itself): the hub adds no authority of its own, so a caller sees through
here only what its token already lets it see there. The chatbot's status and JSON body come
back as they are. Without HUB_CHATBOT_URL every such path is 404, and the console hides its page.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import grpc
from aiohttp import web
from yarl import URL

from integration_hub.errors import HubError

PREFIX = "/console/chatbot/"
# The chatbot answers these from its own database: a slow answer means it is in trouble,
# and the console should say so rather than hang.
TIMEOUT = aiohttp.ClientTimeout(total=5.0, connect=2.0)
MAX_BODY_BYTES = 4 * 1024 * 1024
# Bot ids are "bot_" + base32 (chatbot/ids.py); anything else in the path is refused, so no
# "..", "%2F" or query can make the hub ask the chatbot for another resource.
BOT_ID = r"[A-Za-z0-9_-]{1,64}"

Refuse = Callable[[HubError], web.Response]


class ChatbotProxy:
    def __init__(self, chatbot_url: str | None, refuse: Refuse) -> None:
        self._base = URL(chatbot_url) if chatbot_url else None
        self._refuse = refuse
        # One pooled client for every console request, made on the first (it needs the loop).
        self._session: aiohttp.ClientSession | None = None

    def routes(self) -> list[web.RouteDef]:
        # Registered before the console's static files, whose /console/{name} would match these.
        return [
            web.get(PREFIX + "v1/bots", self._bots),
            web.get(PREFIX + "v1/bots/{bot_id:" + BOT_ID + "}/ingestion-tasks", self._tasks),
            web.route("*", PREFIX + "{tail:.*}", self._other),
        ]

    async def close(self, _: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _bots(self, request: web.Request) -> web.Response:
        return await self._forward(request, ("v1", "bots"))

    async def _tasks(self, request: web.Request) -> web.Response:
        return await self._forward(request, ("v1", "bots", request.match_info["bot_id"], "ingestion-tasks"))

    async def _other(self, request: web.Request) -> web.Response:
        if self._base is None:
            return self._refuse(_not_configured())
        return self._refuse(
            HubError(
                grpc.StatusCode.NOT_FOUND,
                "NOT_A_CHATBOT_PATH",
                "the console reads only the chatbot's bots and tasks",
            )
        )

    async def _forward(self, request: web.Request, parts: tuple[str, ...]) -> web.Response:
        if self._base is None:
            return self._refuse(_not_configured())
        url = self._base.joinpath(*parts)
        page_token = request.query.get("page_token", "")
        if page_token:
            url = url.with_query(page_token=page_token)
        headers = {"Accept": "application/json"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        try:
            async with self._client().get(url, headers=headers, allow_redirects=False) as answer:
                body = await answer.content.read(MAX_BODY_BYTES + 1)
                status, content_type = answer.status, answer.content_type
        except TimeoutError:
            return self._refuse(_unavailable(grpc.StatusCode.DEADLINE_EXCEEDED, "did not answer in time"))
        except aiohttp.ClientError as error:
            return self._refuse(
                _unavailable(grpc.StatusCode.UNAVAILABLE, f"is unreachable ({type(error).__name__})")
            )
        if len(body) > MAX_BODY_BYTES or content_type != "application/json":
            return self._refuse(_unavailable(grpc.StatusCode.UNAVAILABLE, "answered with something not JSON"))
        return web.Response(status=status, body=body, content_type="application/json")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # trust_env=False: no HTTP(S)_PROXY variable may route the hub's tokens elsewhere.
            self._session = aiohttp.ClientSession(
                timeout=TIMEOUT, trust_env=False, connector=aiohttp.TCPConnector(limit=20)
            )
        return self._session


def _not_configured() -> HubError:
    return HubError(
        grpc.StatusCode.NOT_FOUND, "CHATBOT_NOT_CONFIGURED", "no chatbot is configured (HUB_CHATBOT_URL)"
    )


def _unavailable(code: grpc.StatusCode, problem: str) -> HubError:
    return HubError(code, "CHATBOT_UNAVAILABLE", f"the chatbot {problem}")
