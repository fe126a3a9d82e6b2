"""CHAT and STREAM_CHAT through Mistral's chat completions (POST /v1/chat/completions).

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
from callers.mistral import convert
from callers.mistral.client import check_parameters, connect, host
from callers.mistral.errors import provider_errors
from callers.mistral.events import StreamState
from callers.types import ChatEvent, ChatRequest, ChatResponse


class MistralChat:
    async def chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> ChatResponse:
        body = convert.chat_body(request)
        sdk, recorder = connect(secret, options, timeout=timeout)
        check_parameters(sdk.chat.complete_async, body)
        with provider_errors(host(options), timeout):
            async with asyncio.timeout(timeout):
                response = await sdk.chat.complete_async(**body)
        return convert.chat_response(
            response.model_dump(by_alias=True, mode="json"), request_id=recorder.request_id()
        )

    async def stream_chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> AsyncIterator[ChatEvent]:
        body = convert.chat_body(request)
        sdk, recorder = connect(secret, options, timeout=timeout)
        check_parameters(sdk.chat.stream_async, body)
        deadline = asyncio.get_running_loop().time() + timeout
        with provider_errors(host(options), timeout):
            # The stack owns the open HTTP response: leaving it, by the end, an error, a
            # cancellation or the consumer closing this generator, closes the connection.
            async with AsyncExitStack() as stack:
                stack.push_async_callback(recorder.close_responses)
                async with asyncio.timeout_at(deadline):
                    events = await stack.enter_async_context(await sdk.chat.stream_async(**body))
                state = StreamState(request_id=recorder.request_id())
                while True:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events, None)
                    if event is None:
                        break
                    for out in state.feed(event.data.model_dump(by_alias=True, mode="json")):
                        yield out
                yield state.finish()


CALLER = MistralChat()
