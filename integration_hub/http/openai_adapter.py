"""The OpenAI-compatible endpoint under /openai/v1: chat/completions (JSON, or
server-sent events with `stream: true`), embeddings, models, and the audio endpoints
(integration_hub.http.openai_audio).

The API key is a hub token (scope invoke); the model is "<credential name>/<model>",
routing to that credential of the token's tenant. So an OpenAI client library
pointed at base_url=http://host:9005/openai/v1 works unchanged against every
provider the hub has a chat caller for.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiohttp import web

from callers.types import llm as t
from integration_hub.credentials import CredentialService
from integration_hub.dispatch import Dispatcher, new_request_id, to_hub_error
from integration_hub.http import openai_wire as wire
from integration_hub.http.app import ClientGone, close_stream, finish, prepare, send
from integration_hub.http.openai_audio import OpenAIAudio
from integration_hub.llm import DEFAULT_TIMEOUT, LlmService, Timing
from integration_hub.rpc import CallContext
from integration_hub.speech import SpeechService

log = logging.getLogger("integration_hub.openai")
INVOKE = frozenset({"invoke"})
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _json(data: Any, status: int = 200, request_id: str = "") -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers={"x-request-id": request_id} if request_id else None,
    )


def _sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class OpenAIAdapter:
    def __init__(
        self,
        dispatcher: Dispatcher,
        llm: LlmService,
        credentials: CredentialService,
        speech: SpeechService | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._llm = llm
        self._credentials = credentials
        self._audio = OpenAIAudio(self, speech) if speech is not None else None

    def routes(self) -> list[web.RouteDef]:
        routes = [
            web.post("/openai/v1/chat/completions", self.chat_completions),
            web.post("/openai/v1/embeddings", self.embeddings),
            web.get("/openai/v1/models", self.models),
        ]
        if self._audio is not None:
            routes += self._audio.routes()
        return routes

    async def _begin(self, request: web.Request, name: str, rid: str) -> CallContext:
        return await self._dispatcher.begin_operation(
            f"/openai/v1/{name}",
            INVOKE,
            authorization=request.headers.get("Authorization"),
            request_id=rid,
            time_remaining=None,
            peer=request.remote or "",
        )

    @staticmethod
    async def _body(request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise wire.bad_request("body", f"malformed JSON ({exc})") from None

    def _error(self, exc: BaseException, name: str, rid: str) -> web.Response:
        if isinstance(exc, web.HTTPException):
            raise exc
        error = to_hub_error(exc, name, rid)
        log.info("openai %s failed: %s %s", name, error.code.name, error.reason, extra={"request_id": rid})
        response = _json(wire.error_json(error), error.http_status, rid)
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
        return response

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        rid = new_request_id(request.headers.get("x-request-id"))
        try:
            call = await self._begin(request, "chat/completions", rid)
            body = await self._body(request)
            credential, neutral = wire.chat_request(body)
            if body.get("stream") is True:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return await self._stream(
                    request, call, credential, neutral, body["model"], include_usage, rid
                )
            response, _, _ = await self._llm.chat(call, credential, neutral, call.time_left(DEFAULT_TIMEOUT))
            completion = wire.chat_completion(
                response, completion_id=f"chatcmpl-{rid}", model=body["model"], created=int(time.time())
            )
            return _json(completion, request_id=rid)
        except Exception as exc:
            return self._error(exc, "chat/completions", rid)

    async def _stream(
        self,
        request: web.Request,
        call: CallContext,
        credential: str,
        neutral: t.ChatRequest,
        model: str,
        include_usage: bool,
        rid: str,
    ) -> web.StreamResponse:
        timing = Timing(started=call.started)
        # Resolve, open and start before the 200 goes out: a bad credential is still a clean HTTP error.
        _, events = await self._llm.stream_chat(
            call, credential, neutral, call.time_left(DEFAULT_TIMEOUT), timing
        )
        completion_id, created = f"chatcmpl-{rid}", int(time.time())
        stream = web.StreamResponse(headers={**SSE_HEADERS, "x-request-id": rid})
        try:
            await prepare(stream, request)
            await send(
                stream, _sse(wire.chunk(completion_id, model, created, {"role": "assistant", "content": ""}))
            )
            try:
                async for event in events:
                    if isinstance(event, t.ChatStreamEnd):
                        reason = wire.FINISH_REASONS[event.finish_reason]
                        await send(stream, _sse(wire.chunk(completion_id, model, created, {}, reason)))
                        if include_usage:
                            await send(
                                stream,
                                _sse(
                                    {
                                        "id": completion_id,
                                        "object": "chat.completion.chunk",
                                        "created": created,
                                        "model": model,
                                        "choices": [],
                                        "usage": wire.usage_json(event.usage),
                                    }
                                ),
                            )
                    else:
                        await send(
                            stream, _sse(wire.chunk(completion_id, model, created, wire.delta_of(event)))
                        )
                await send(stream, b"data: [DONE]\n\n")
            except (ClientGone, web.HTTPException):
                raise
            except Exception as exc:
                # After the 200 the status cannot change: end with an error event and no [DONE],
                # so that clients see a failure, never a normal end.
                error = to_hub_error(exc, "chat/completions", rid)
                log.info(
                    "openai chat/completions failed mid-stream: %s %s",
                    error.code.name,
                    error.reason,
                    extra={"request_id": rid},
                )
                await send(stream, _sse(wire.error_json(error)))
            await finish(stream)
        except ClientGone:
            log.info("openai chat/completions: the client went away mid-stream", extra={"request_id": rid})
        finally:
            # However the stream ended: closing it closes the upstream response it reads.
            await close_stream(events)
        return stream

    async def embeddings(self, request: web.Request) -> web.Response:
        rid = new_request_id(request.headers.get("x-request-id"))
        try:
            call = await self._begin(request, "embeddings", rid)
            body = await self._body(request)
            credential, neutral, encoding = wire.embed_request(body)
            response, _ = await self._llm.embed(call, credential, neutral, call.time_left(DEFAULT_TIMEOUT))
            return _json(
                wire.embedding_list(response, model=body["model"], encoding=encoding), request_id=rid
            )
        except Exception as exc:
            return self._error(exc, "embeddings", rid)

    async def models(self, request: web.Request) -> web.Response:
        """The tenant's credentials, each usable as the "<credential name>/" prefix of a model."""
        rid = new_request_id(request.headers.get("x-request-id"))
        try:
            call = await self._begin(request, "models", rid)
            rows = await self._credentials.all_of_tenant(call.principal.tenant_id)
            data = [
                {
                    "id": row.name,
                    "object": "model",
                    "created": int(row.created_at.timestamp()),
                    "owned_by": row.provider,
                }
                for row in rows
            ]
            return _json({"object": "list", "data": data}, request_id=rid)
        except Exception as exc:
            return self._error(exc, "models", rid)
