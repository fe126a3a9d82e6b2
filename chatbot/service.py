"""ChatbotService over gRPC: each RPC resolves its caller, then does one thing.

The caller is whoever holds the hub token in the call's metadata (chatbot.auth); every
record touched is that caller's tenant's. A ChatbotError becomes its status with its
own message; any other exception is logged here (type only, never its text, which may
quote a request) and answered INTERNAL, so that nothing internal reaches a client.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from chatbot.auth import Caller, CallerResolver
from chatbot.bots import BotStore
from chatbot.errors import ChatbotError, InvalidArgument
from chatbot.history import History
from chatbot.tasks import TaskQueue
from chatbot.v1 import chatbot_pb2 as pb

log = logging.getLogger("chatbot.service")

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[Response]]


def caller_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode()
    return None


def rpc(handler: Handler[Request, Response]) -> Handler[Request, Response]:
    """Maps the layer's errors to statuses; anything else is INTERNAL without its text."""

    @functools.wraps(handler)
    async def wrapped(self: Any, request: Request, context: grpc.aio.ServicerContext[Any, Any]) -> Response:
        try:
            return await handler(self, request, context)
        except ChatbotError as error:
            await context.abort(error.code, error.message)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            log.error("%s failed: %s", handler.__name__, type(error).__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    return wrapped


@dataclass
class Records:
    bots: BotStore
    tasks: TaskQueue
    history: History


class BotRecordsService:
    """The record-keeping RPCs: bots, ingestion tasks, sessions."""

    def __init__(self, records: Records, callers: CallerResolver) -> None:
        self._records = records
        self._callers = callers

    async def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        return await self._callers.resolve(caller_metadata(context))

    @rpc
    async def CreateBot(self, request: pb.CreateBotRequest, context: Any) -> pb.CreateBotResponse:
        caller = await self._caller(context)
        return pb.CreateBotResponse(bot=await self._records.bots.create(caller.tenant, request.bot))

    @rpc
    async def GetBot(self, request: pb.GetBotRequest, context: Any) -> pb.GetBotResponse:
        caller = await self._caller(context)
        return pb.GetBotResponse(bot=await self._records.bots.get(caller.tenant, request.id))

    @rpc
    async def ListBots(self, request: pb.ListBotsRequest, context: Any) -> pb.ListBotsResponse:
        caller = await self._caller(context)
        bots, token = await self._records.bots.page(
            caller.tenant, page_size=request.page_size, after=request.page_token
        )
        return pb.ListBotsResponse(bots=bots, next_page_token=token)

    @rpc
    async def UpdateBot(self, request: pb.UpdateBotRequest, context: Any) -> pb.UpdateBotResponse:
        caller = await self._caller(context)
        if not request.bot.id:
            raise InvalidArgument("bot.id", "required")
        paths = list(request.update_mask.paths)
        return pb.UpdateBotResponse(bot=await self._records.bots.update(caller.tenant, request.bot, paths))

    @rpc
    async def GetIngestionTask(
        self, request: pb.GetIngestionTaskRequest, context: Any
    ) -> pb.GetIngestionTaskResponse:
        caller = await self._caller(context)
        return pb.GetIngestionTaskResponse(task=await self._records.tasks.get(caller.tenant, request.id))

    @rpc
    async def ListIngestionTasks(
        self, request: pb.ListIngestionTasksRequest, context: Any
    ) -> pb.ListIngestionTasksResponse:
        caller = await self._caller(context)
        await self._records.bots.get(caller.tenant, request.bot_id)
        tasks, token = await self._records.tasks.page(
            caller.tenant, request.bot_id, page_size=request.page_size, after=request.page_token
        )
        return pb.ListIngestionTasksResponse(tasks=tasks, next_page_token=token)

    @rpc
    async def ListSessions(self, request: pb.ListSessionsRequest, context: Any) -> pb.ListSessionsResponse:
        caller = await self._caller(context)
        await self._records.bots.get(caller.tenant, request.bot_id)
        sessions, token = await self._records.history.page(
            caller.tenant, request.bot_id, page_size=request.page_size, after=request.page_token
        )
        return pb.ListSessionsResponse(sessions=sessions, next_page_token=token)

    @rpc
    async def GetSession(self, request: pb.GetSessionRequest, context: Any) -> pb.GetSessionResponse:
        caller = await self._caller(context)
        return pb.GetSessionResponse(session=await self._records.history.export(caller.tenant, request.id))

    @rpc
    async def DeleteSession(self, request: pb.DeleteSessionRequest, context: Any) -> pb.DeleteSessionResponse:
        caller = await self._caller(context)
        await self._records.history.delete(caller.tenant, request.id)
        return pb.DeleteSessionResponse()
