"""CHAT and STREAM_CHAT through the Messages API (POST /v1/messages).

`timeout` bounds the whole call: the SDK gets it per connect/read, and an absolute
deadline covers the rest (a slow trickle of stream events, or the consumer's own
pace). Cancelling the awaiting task closes the HTTP response, and with it the
connection, so the provider stops generating for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import anthropic
import httpx2
from anthropic.types import Message, RawMessageStreamEvent

from callers.anthropic.client import AnthropicConnection, connect
from callers.anthropic.convert import MessagesCall, messages_call
from callers.anthropic.errors import caller_error, transport_error
from callers.anthropic.parse import StreamState, chat_response
from callers.base import ProviderTimeout, SecretFields
from callers.types import ChatEvent, ChatRequest, ChatResponse


def _deadline_passed(timeout: float) -> ProviderTimeout:
    return ProviderTimeout(f"Anthropic did not finish within the {timeout:g} s timeout")


class AnthropicChat:
    async def chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> ChatResponse:
        call = messages_call(request)
        connection = connect(secret, options, timeout=timeout, api_version=call.api_version)
        try:
            async with asyncio.timeout(timeout):
                message: Message = await connection.client.messages.create(
                    **call.params,
                    extra_headers=connection.headers,
                    extra_body=call.extra_body,
                    timeout=timeout,
                )
        except TimeoutError:
            raise _deadline_passed(timeout) from None
        except anthropic.APIError as exc:
            raise caller_error(exc) from None
        return chat_response(message, json_tool=call.json_tool)

    async def stream_chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> AsyncIterator[ChatEvent]:
        call = messages_call(request)
        connection = connect(secret, options, timeout=timeout, api_version=call.api_version)
        deadline = asyncio.get_running_loop().time() + timeout
        stream = await _open_stream(connection, call, deadline, timeout)
        # `async with` closes the response however this generator ends: finished,
        # failed, cancelled, or dropped by the consumer (aclose).
        async with stream:
            state = StreamState(json_tool=call.json_tool)
            events = aiter(stream)
            while True:
                event = await _next_event(events, deadline, timeout)
                if event is None:
                    break
                for out in state.feed(event):
                    yield out
            yield state.end(stream.response.headers.get("request-id"))


async def _open_stream(
    connection: AnthropicConnection, call: MessagesCall, deadline: float, timeout: float
) -> anthropic.AsyncStream[RawMessageStreamEvent]:
    try:
        async with asyncio.timeout_at(deadline):
            stream: anthropic.AsyncStream[RawMessageStreamEvent] = await connection.client.messages.create(
                **call.params,
                stream=True,
                extra_headers=connection.headers,
                extra_body=call.extra_body,
                timeout=timeout,
            )
            return stream
    except TimeoutError:
        raise _deadline_passed(timeout) from None
    except anthropic.APIError as exc:
        raise caller_error(exc) from None


async def _next_event(
    events: AsyncIterator[RawMessageStreamEvent], deadline: float, timeout: float
) -> RawMessageStreamEvent | None:
    """The next raw event, None at the end of the body; every failure as a caller error."""
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(events)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise _deadline_passed(timeout) from None
    except anthropic.APIConnectionError as exc:
        # Since anthropic 2.17 a body that breaks off mid-stream comes wrapped (it used to be
        # the transport error itself): either way it is the stream breaking, not a connect.
        if isinstance(exc.__cause__, httpx2.TransportError):
            raise transport_error(exc.__cause__) from None
        raise caller_error(exc) from None
    except anthropic.APIError as exc:  # includes an `error` event sent mid-stream
        raise caller_error(exc) from None
    except httpx2.TransportError as exc:
        raise transport_error(exc) from None


CALLER = AnthropicChat()
