"""ChatbotService over gRPC: each RPC resolves its caller, then does one thing.

The caller is whoever holds the hub token in the call's metadata (chatbot.auth); every
record touched is that caller's tenant's. A ChatbotError becomes its status with its
own message; any other exception is logged here (type only, never its text, which may
quote a request) and answered INTERNAL, so that nothing internal reaches a client.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from chatbot.answer import Answerer
from chatbot.auth import Caller, CallerResolver
from chatbot.bots import BotStore
from chatbot.catalog import Catalog
from chatbot.errors import ChatbotError, FailedPrecondition, InvalidArgument
from chatbot.history import History
from chatbot.hub_client import AudioFormat, HubCallError, ModelRef
from chatbot.tasks import TaskQueue
from chatbot.tenants import TenantHubs
from chatbot.v1 import chatbot_pb2 as pb
from chatbot.vectors import VectorStore

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
        except HubCallError as error:
            await context.abort(*_hub_status(error))
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            log.error("%s failed: %s", handler.__name__, type(error).__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    return wrapped


_MIME_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "ogg": "audio/ogg", "flac": "audio/flac"}
MAX_UPLOAD_BYTES = 32 * 1024 * 1024


@dataclass
class Parts:
    """What the service works with: the records, the vectors, the answerer, the hub."""

    bots: BotStore
    catalog: Catalog
    tasks: TaskQueue
    history: History
    vectors: VectorStore
    answerer: Answerer
    hubs: TenantHubs
    callers: CallerResolver
    wake_ingestion: Callable[[], None]


class ChatbotService:
    """The ChatbotService RPCs (registered generically by chatbot.server)."""

    def __init__(self, parts: Parts) -> None:
        self._p = parts

    async def _caller(self, context: grpc.aio.ServicerContext[Any, Any], scope: str) -> Caller:
        caller = await self._p.callers.resolve(caller_metadata(context))
        caller.require(scope)
        return caller

    # --- bots ---------------------------------------------------------------------------

    @rpc
    async def CreateBot(self, request: pb.CreateBotRequest, context: Any) -> pb.CreateBotResponse:
        caller = await self._caller(context, "admin")
        return pb.CreateBotResponse(bot=await self._p.bots.create(caller.tenant, request.bot))

    @rpc
    async def GetBot(self, request: pb.GetBotRequest, context: Any) -> pb.GetBotResponse:
        caller = await self._caller(context, "invoke")
        return pb.GetBotResponse(bot=await self._p.bots.get(caller.tenant, request.id))

    @rpc
    async def ListBots(self, request: pb.ListBotsRequest, context: Any) -> pb.ListBotsResponse:
        caller = await self._caller(context, "invoke")
        bots, token = await self._p.bots.page(
            caller.tenant, page_size=request.page_size, after=request.page_token
        )
        return pb.ListBotsResponse(bots=bots, next_page_token=token)

    @rpc
    async def UpdateBot(self, request: pb.UpdateBotRequest, context: Any) -> pb.UpdateBotResponse:
        caller = await self._caller(context, "admin")
        if not request.bot.id:
            raise InvalidArgument("bot.id", "required")
        paths = list(request.update_mask.paths)
        return pb.UpdateBotResponse(bot=await self._p.bots.update(caller.tenant, request.bot, paths))

    @rpc
    async def DeleteBot(self, request: pb.DeleteBotRequest, context: Any) -> pb.DeleteBotResponse:
        caller = await self._caller(context, "admin")
        await self._p.bots.get(caller.tenant, request.id)
        # Vectors first: a bot row gone with its vectors left would make them unreachable
        # garbage; vectors gone first leave a bot that a retried delete finishes.
        await self._p.vectors.delete_bot(caller.tenant, request.id)
        await self._p.bots.delete(caller.tenant, request.id)
        return pb.DeleteBotResponse()

    # --- sources and ingestion ----------------------------------------------------------------

    @rpc
    async def AddSource(self, request: pb.AddSourceRequest, context: Any) -> pb.AddSourceResponse:
        caller = await self._caller(context, "admin")
        await self._p.bots.get(caller.tenant, request.bot_id)
        origin = _checked_content(request)
        source = await self._p.catalog.register(
            caller.tenant, request.bot_id, request.name, request.kind, origin
        )
        task = await self._p.tasks.enqueue(
            caller.tenant,
            request.bot_id,
            source_id=source.id,
            source_name=source.name,
            kind=request.kind,
            url=request.url,
            filename=request.filename or request.name,
            data=request.data if request.WhichOneof("content") == "data" else None,
        )
        self._p.wake_ingestion()
        return pb.AddSourceResponse(task=task)

    @rpc
    async def ListSources(self, request: pb.ListSourcesRequest, context: Any) -> pb.ListSourcesResponse:
        caller = await self._caller(context, "invoke")
        await self._p.bots.get(caller.tenant, request.bot_id)
        sources, token = await self._p.catalog.page(
            caller.tenant, request.bot_id, page_size=request.page_size, after=request.page_token
        )
        return pb.ListSourcesResponse(sources=sources, next_page_token=token)

    @rpc
    async def DeleteSource(self, request: pb.DeleteSourceRequest, context: Any) -> pb.DeleteSourceResponse:
        caller = await self._caller(context, "admin")
        await self._p.catalog.get(caller.tenant, request.bot_id, request.source_id)
        await self._p.vectors.delete_source(caller.tenant, request.bot_id, request.source_id)
        await self._p.catalog.delete(caller.tenant, request.bot_id, request.source_id)
        return pb.DeleteSourceResponse()

    @rpc
    async def GetIngestionTask(
        self, request: pb.GetIngestionTaskRequest, context: Any
    ) -> pb.GetIngestionTaskResponse:
        caller = await self._caller(context, "invoke")
        return pb.GetIngestionTaskResponse(task=await self._p.tasks.get(caller.tenant, request.id))

    @rpc
    async def ListIngestionTasks(
        self, request: pb.ListIngestionTasksRequest, context: Any
    ) -> pb.ListIngestionTasksResponse:
        caller = await self._caller(context, "invoke")
        await self._p.bots.get(caller.tenant, request.bot_id)
        tasks, token = await self._p.tasks.page(
            caller.tenant, request.bot_id, page_size=request.page_size, after=request.page_token
        )
        return pb.ListIngestionTasksResponse(tasks=tasks, next_page_token=token)

    # --- answers ----------------------------------------------------------------------------

    @rpc
    async def Ask(self, request: pb.AskRequest, context: Any) -> pb.AskResponse:
        caller = await self._caller(context, "invoke")
        return await self._p.answerer.ask(caller, request.bot_id, request.question, request.session_id)

    async def StreamAsk(self, request: pb.StreamAskRequest, context: Any) -> None:
        try:
            caller = await self._caller(context, "invoke")
            stream = self._p.answerer.stream(caller, request.bot_id, request.question, request.session_id)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    await context.write(event)
        except ChatbotError as error:
            await context.abort(error.code, error.message)
        except HubCallError as error:
            await context.abort(*_hub_status(error))

    @rpc
    async def AskVoice(self, request: pb.AskVoiceRequest, context: Any) -> pb.AskVoiceResponse:
        caller = await self._caller(context, "invoke")
        bot = await self._p.bots.get(caller.tenant, request.bot_id)
        if not (bot.voice.HasField("stt") and bot.voice.HasField("tts") and bot.voice.voice):
            raise FailedPrecondition("the bot has no voice settings (voice.stt, voice.tts and voice.voice)")
        if not request.audio:
            raise InvalidArgument("audio", "required")
        hub = self._p.hubs.hub(caller.tenant)
        heard = await hub.transcribe(
            request.audio,
            ModelRef(bot.voice.stt.credential, bot.voice.stt.model),
            audio_format=AudioFormat(container=sniff_container(request.audio)),
            language=bot.voice.language,
        )
        if not heard.text.strip():
            raise InvalidArgument("audio", "no speech was recognised in it")
        answer = await self._p.answerer.ask(caller, bot.id, heard.text, request.session_id)
        container = request.answer_format or "mp3"
        if container not in _MIME_TYPES:
            raise InvalidArgument("answer_format", f"one of {', '.join(sorted(_MIME_TYPES))}")
        spoken = await hub.synthesize(
            answer.answer,
            ModelRef(bot.voice.tts.credential, bot.voice.tts.model),
            voice=bot.voice.voice,
            output_format=AudioFormat(container=container),
            language=bot.voice.language,
        )
        return pb.AskVoiceResponse(
            transcript=heard.text, answer=answer, audio=spoken.audio, audio_mime_type=_MIME_TYPES[container]
        )

    # --- sessions -----------------------------------------------------------------------------

    @rpc
    async def ListSessions(self, request: pb.ListSessionsRequest, context: Any) -> pb.ListSessionsResponse:
        caller = await self._caller(context, "invoke")
        await self._p.bots.get(caller.tenant, request.bot_id)
        sessions, token = await self._p.history.page(
            caller.tenant, request.bot_id, page_size=request.page_size, after=request.page_token
        )
        return pb.ListSessionsResponse(sessions=sessions, next_page_token=token)

    @rpc
    async def GetSession(self, request: pb.GetSessionRequest, context: Any) -> pb.GetSessionResponse:
        caller = await self._caller(context, "invoke")
        return pb.GetSessionResponse(session=await self._p.history.export(caller.tenant, request.id))

    @rpc
    async def DeleteSession(self, request: pb.DeleteSessionRequest, context: Any) -> pb.DeleteSessionResponse:
        caller = await self._caller(context, "admin")
        await self._p.history.delete(caller.tenant, request.id)
        return pb.DeleteSessionResponse()


def _checked_content(request: pb.AddSourceRequest) -> str:
    """The source's origin for the catalog, or InvalidArgument naming what is wrong."""
    content = request.WhichOneof("content")
    if request.kind == pb.SOURCE_KIND_UNSPECIFIED:
        raise InvalidArgument("kind", "required: text, pdf, website or qa")
    if request.kind == pb.SOURCE_KIND_WEBSITE:
        if content != "url" or not request.url.startswith(("http://", "https://")):
            raise InvalidArgument("url", "a website source needs its http(s) start URL")
        return request.url
    if content != "data" or not request.data:
        raise InvalidArgument("data", "this kind of source needs the file's content")
    if len(request.data) > MAX_UPLOAD_BYTES:
        raise InvalidArgument("data", f"at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
    return request.filename or request.name


def sniff_container(audio: bytes) -> str:
    """The container of a recording from its first bytes (what Transcribe needs to be told)."""
    if audio[:4] == b"RIFF" and audio[8:12] == b"WAVE":
        return "wav"
    if audio[:4] == b"OggS":
        return "ogg"
    if audio[:4] == b"fLaC":
        return "flac"
    if audio[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if audio[:3] == b"ID3" or (len(audio) > 1 and audio[0] == 0xFF and audio[1] & 0xE0 == 0xE0):
        return "mp3"
    if audio[4:8] == b"ftyp":
        return "mp4"
    raise InvalidArgument("audio", "not a recording the hub can read: wav, mp3, ogg, flac, webm or mp4")


def _hub_status(error: HubCallError) -> tuple[grpc.StatusCode, str]:
    reason = f" ({error.reason})" if error.reason else ""
    return error.code, f"the hub refused the call{reason}: {error.message}"
