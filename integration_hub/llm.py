"""Chat, streaming chat, embeddings and rerank: the one path every transport takes.

credential (id or name, the caller's tenant) -> ciphertext row -> Vault.open ->
the provider's caller -> the provider. LlmService speaks the callers' neutral
types, so both the proto API (ChatApi, below) and the OpenAI-compatible adapter
use it unchanged. The opened secret is a local of one call: it is passed to the
caller and dropped when the call (or the stream) ends.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from callers.base import Capability, ProviderUnavailable
from callers.types import llm as t
from integration_hub.call_record import CallRecord
from integration_hub.llm_convert import (
    chat_event_to_proto,
    chat_request_from_proto,
    chat_response_to_proto,
    embed_request_from_proto,
    embed_response_to_proto,
    rerank_request_from_proto,
    rerank_response_to_proto,
)
from integration_hub.policy import Target
from integration_hub.policy.budget import Amounts
from integration_hub.policy.budget_spend import Spend, estimate_tokens
from integration_hub.provider_calls import DEFAULT_TIMEOUT, MAX_TIMEOUT, ProviderCalls, Timing, timeout_from
from integration_hub.rpc import CallContext
from integration_hub.v1 import chat_pb2 as pb

# Re-exported: the OpenAI adapter and the bench import them from here.
__all__ = ["DEFAULT_TIMEOUT", "MAX_TIMEOUT", "ChatApi", "LlmService", "Timing", "timeout_from"]


class LlmService(ProviderCalls):
    """Chat, streaming chat, embeddings and rerank over the shared provider-call path."""

    async def _account(self, call: CallContext, record: CallRecord, target: Target, usage: t.Usage) -> None:
        record.input_tokens, record.output_tokens = usage.input_tokens, usage.output_tokens
        record.cached_tokens = usage.cached_input_tokens
        total = usage.total_tokens or usage.input_tokens + usage.output_tokens
        await self._engine.account(call.principal.tenant_id, target.credential, total)

    async def chat(
        self, call: CallContext, credential_ref: str, request: t.ChatRequest, timeout: float
    ) -> tuple[t.ChatResponse, str, Timing]:
        timing, record = Timing(started=call.started), self._start(call, "chat", request.model)
        spend = self._chat_spend(call, request)
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                return await caller.chat(secret, options, _with_model(request, model), timeout=budget)

            response, target = await self._unary(
                call,
                credential_ref,
                request.model,
                Capability.CHAT,
                record,
                timing,
                timeout,
                invoke,
                spend=spend,
            )
            timing.finished = time.monotonic()
            await self._account(call, record, target, response.usage)
            return response, record.provider, timing
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)
            await self._settle(spend, record)

    def _chat_spend(self, call: CallContext, request: t.ChatRequest) -> Spend:
        bound = request.sampling.max_output_tokens

        def estimate() -> Amounts:
            return Amounts(input_tokens=_input_estimate(request), output_tokens=bound or 0)

        return self._spend(call, estimate, output_bounded=bound is not None)

    async def stream_chat(
        self, call: CallContext, credential_ref: str, request: t.ChatRequest, timeout: float, timing: Timing
    ) -> tuple[str, AsyncIterator[t.ChatEvent]]:
        record = self._start(call, "stream_chat", request.model)
        spend = self._chat_spend(call, request)
        # The provider's share starts when the last attempt's caller is called: not the
        # planning, credential lookup and decrypt before it (0 if no attempt got that far).
        upstream_start: float | None = None

        def upstream_so_far() -> float:
            return 0.0 if upstream_start is None else time.monotonic() - upstream_start

        try:
            plan, resolved = await self._plan(call, credential_ref, request.model, record)

            async def attempt(target: Target, budget: float) -> AsyncIterator[t.ChatEvent]:
                nonlocal upstream_start
                caller, options, secret = await self._prepare(
                    call, target, Capability.STREAM_CHAT, record, resolved
                )
                upstream_start = time.monotonic()
                stream: AsyncIterator[t.ChatEvent] = caller.stream_chat(
                    secret, options, _with_model(request, target.model), timeout=budget
                )
                return stream

            stream, target = await self._engine.run_stream(
                call.principal.tenant_id, plan, timeout, attempt, spend
            )
            timing.first_token = time.monotonic()
        except BaseException as exc:
            timing.upstream = upstream_so_far()
            self._finish(record, timing, exc)
            raise

        async def events() -> AsyncIterator[t.ChatEvent]:
            # The record is written when the stream ends, however it ends (a client that
            # goes away mid-stream is CANCELLED), with the usage of the end event.
            error: BaseException | None = None
            try:
                async for event in stream:
                    if isinstance(event, t.ChatStreamEnd):
                        await self._account(call, record, target, event.usage)
                    yield event
                timing.finished = time.monotonic()
            except BaseException as exc:
                error = exc
                raise
            finally:
                # Closed at a yield (the client went away while an event was being written),
                # `async for` does not close what it reads: without this the upstream response
                # stays open, and billed, until garbage collection.
                await _aclose(stream)
                timing.upstream = upstream_so_far()
                # Counted when it ends: with the usage of its end event, none if cut before it.
                self._finish(record, timing, error)
                await self._settle(spend, record)

        return record.provider, events()

    async def embed(
        self, call: CallContext, credential_ref: str, request: t.EmbedRequest, timeout: float
    ) -> tuple[t.EmbedResponse, Timing]:
        timing, record = Timing(started=call.started), self._start(call, "embed", request.model)
        spend = self._spend(call, lambda: _texts_estimate(request.inputs))
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                response = await caller.embed(secret, options, _with_model(request, model), timeout=budget)
                got, asked = len(response.vectors), len(request.inputs)
                if got != asked:
                    raise ProviderUnavailable(f"the provider returned {got} vectors for {asked} inputs")
                return response

            response, target = await self._unary(
                call,
                credential_ref,
                request.model,
                Capability.EMBED,
                record,
                timing,
                timeout,
                invoke,
                spend=spend,
            )
            timing.finished = time.monotonic()
            await self._account(call, record, target, response.usage)
            return response, timing
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)
            await self._settle(spend, record)

    async def rerank(
        self, call: CallContext, credential_ref: str, request: t.RerankRequest, timeout: float
    ) -> tuple[t.RerankResponse, Timing]:
        timing, record = Timing(started=call.started), self._start(call, "rerank", request.model)
        spend = self._spend(call, lambda: _texts_estimate([request.query, *request.documents]))
        error: BaseException | None = None
        try:

            async def invoke(
                caller: Any, options: dict[str, str], secret: Any, model: str, budget: float
            ) -> Any:
                return await caller.rerank(secret, options, _with_model(request, model), timeout=budget)

            response, target = await self._unary(
                call,
                credential_ref,
                request.model,
                Capability.RERANK,
                record,
                timing,
                timeout,
                invoke,
                spend=spend,
            )
            timing.finished = time.monotonic()
            await self._account(call, record, target, response.usage)
            return response, timing
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(record, timing, error)
            await self._settle(spend, record)


# What an image counts for in the input estimate, in characters (about 800 tokens: more
# than a low-detail image, less than the largest high-detail ones).
_IMAGE_CHARACTERS = 3200


def _texts_estimate(texts: list[str]) -> Amounts:
    """An embedding's or a rerank's input estimate (see policy/budget_spend.py)."""
    return Amounts(input_tokens=estimate_tokens(sum(len(text) for text in texts), len(texts)))


def _input_estimate(request: t.ChatRequest) -> int:
    """Input tokens a chat may use, estimated from its text (see policy/budget_spend.py)."""
    characters = 0
    for message in request.messages:
        if isinstance(message, t.SystemMessage):
            characters += len(message.text)
        elif isinstance(message, t.UserMessage):
            characters += sum(
                len(part.text) if isinstance(part, t.TextPart) else _IMAGE_CHARACTERS
                for part in message.parts
            )
        elif isinstance(message, t.AssistantMessage):
            characters += len(message.text or "") + sum(
                len(tool_call.name) + len(tool_call.arguments) for tool_call in message.tool_calls
            )
        else:
            characters += len(message.content)
    characters += sum(
        len(tool.name) + len(tool.description) + len(str(tool.parameters)) for tool in request.tools
    )
    return estimate_tokens(characters, len(request.messages))


async def _aclose(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


R = TypeVar("R", t.ChatRequest, t.EmbedRequest, t.RerankRequest)


def _with_model(request: R, model: str) -> R:
    """The request for one target: a route's targets may use different models."""
    return request if request.model == model else dataclasses.replace(request, model=model)


class ChatApi:
    """The ChatService RPCs: protobuf in and out, the logic in LlmService."""

    def __init__(self, llm: LlmService) -> None:
        self._llm = llm

    async def Chat(self, request: pb.ChatRequest, call: CallContext) -> pb.ChatResponse:
        neutral = chat_request_from_proto(request)
        response, provider, timing = await self._llm.chat(
            call, request.credential, neutral, timeout_from(request.timeout, call)
        )
        proto = chat_response_to_proto(response, provider)
        timing.finished = time.monotonic()
        proto.timings.CopyFrom(timing.to_proto())
        return proto

    async def StreamChat(
        self, request: pb.ChatRequest, call: CallContext
    ) -> AsyncIterator[pb.StreamChatResponse]:
        neutral = chat_request_from_proto(request)
        timing = Timing(started=call.started)
        provider, events = await self._llm.stream_chat(
            call, request.credential, neutral, timeout_from(request.timeout, call), timing
        )
        try:
            async for event in events:
                proto = chat_event_to_proto(event, provider)
                if isinstance(event, t.ChatStreamEnd):
                    timing.finished = time.monotonic()
                    proto.end.timings.CopyFrom(timing.to_proto())
                yield proto
        finally:
            await _aclose(events)  # closed itself (the client gone), close the stream it reads

    async def Embed(self, request: pb.EmbedRequest, call: CallContext) -> pb.EmbedResponse:
        response, timing = await self._llm.embed(
            call, request.credential, embed_request_from_proto(request), timeout_from(request.timeout, call)
        )
        proto = embed_response_to_proto(response)
        timing.finished = time.monotonic()
        proto.timings.CopyFrom(timing.to_proto())
        return proto

    async def Rerank(self, request: pb.RerankRequest, call: CallContext) -> pb.RerankResponse:
        response, timing = await self._llm.rerank(
            call, request.credential, rerank_request_from_proto(request), timeout_from(request.timeout, call)
        )
        proto = rerank_response_to_proto(response)
        timing.finished = time.monotonic()
        proto.timings.CopyFrom(timing.to_proto())
        return proto
