"""CHAT and STREAM_CHAT through Cohere's v2 chat endpoint (POST /v2/chat).

`timeout` bounds the whole call: for chat() the request and its answer, for
stream_chat() everything up to the stream's last event. The deadline is one instant,
checked around each wait on the provider and never across a `yield`, so it can never
fire inside the consumer's own code between two events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack

from callers.base import SecretFields
from callers.cohere import convert
from callers.cohere.client import check_parameters, connect, host
from callers.cohere.errors import provider_errors
from callers.cohere.events import StreamState
from callers.types import ChatEvent, ChatRequest, ChatResponse


class CohereChat:
    async def chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> ChatResponse:
        body = convert.chat_body(request)
        client = connect(secret, options, timeout=timeout)
        raw = client.with_raw_response
        check_parameters(raw.chat, body)
        with provider_errors(host(options), timeout):
            async with asyncio.timeout(timeout):
                response = await raw.chat(**body)
        return convert.chat_response(
            response.data.dict(), model=request.model, request_id=response.headers.get("x-request-id")
        )

    async def stream_chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> AsyncIterator[ChatEvent]:
        body = convert.chat_body(request)
        client = connect(secret, options, timeout=timeout)
        raw = client.with_raw_response
        check_parameters(raw.chat_stream, body)
        deadline = asyncio.get_running_loop().time() + timeout
        with provider_errors(host(options), timeout):
            # The stack owns the open HTTP response: leaving it, by the end, an error, a
            # cancellation or the consumer closing this generator, closes the connection.
            async with AsyncExitStack() as stack:
                async with asyncio.timeout_at(deadline):
                    response = await stack.enter_async_context(raw.chat_stream(**body))
                state = StreamState(request_id=response.headers.get("x-request-id"))
                events = aiter(response.data)
                while True:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events, None)
                    if event is None:
                        break
                    for out in state.feed(event.dict()):
                        yield out
                yield state.finish()


CALLER = CohereChat()
