"""CHAT and STREAM_CHAT over OpenAI's wire, for every vendor row (no SDK).

One implementation serves openai, azure_openai, openrouter, openai_compatible and
huggingface: the vendor row says where to send, how to present the key and which
length field to use; the bodies and the event stream are the same.

Streaming: the answer is read as it arrives (`iter_any`), split into server-sent
events by `SSEParser`, each event decoded by `StreamDecoder`. The call's `timeout`
bounds the whole stream. The response is held in `async with`, so when the consumer
stops early or its task is cancelled the connection is closed, and the provider
stops generating (and billing) for a client that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp
import orjson

from callers import pools
from callers.base import SecretFields
from callers.openai import WIRE
from callers.openai import transport as http
from callers.openai.targets import Operation, VendorTargets
from callers.openai.vendor import OpenAIWireVendor
from callers.openai.wire import StreamDecoder, chat_body, parse_chat
from callers.types import ChatEvent, ChatRequest, ChatResponse, ChatStreamEnd, TextDelta, ToolCallDelta

_DONE = b"[DONE]"
# After [DONE], how long the rest of the HTTP body (the chunked terminator) may take
# to arrive: reaching its end is what lets the connection return to the pool.
_DRAIN_SECONDS = 1.0


def events_of(response: ChatResponse) -> list[ChatEvent]:
    """A whole answer as the events a stream of it would have produced."""
    events: list[ChatEvent] = []
    if response.message.text:
        events.append(TextDelta(response.message.text))
    for index, call in enumerate(response.message.tool_calls):
        events.append(ToolCallDelta(index, call.id, call.name, call.arguments))
    events.append(ChatStreamEnd(response.finish_reason, response.usage, response.request_id))
    return events


class OpenAIWireChat:
    __slots__ = ("targets", "vendor")

    def __init__(self, vendor: OpenAIWireVendor) -> None:
        self.vendor = vendor
        self.targets = VendorTargets(vendor)

    async def chat(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: ChatRequest,
        *,
        timeout: float,
    ) -> ChatResponse:
        target = self.targets.target(options, request.model, Operation.CHAT)
        body = chat_body(request, target.max_tokens_field, stream=False)
        headers = self.targets.headers(target, secret)
        data, request_id = await http.send(target.endpoint, headers, body, timeout)
        return parse_chat(data, request_id)

    async def stream_chat(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: ChatRequest,
        *,
        timeout: float,
    ) -> AsyncIterator[ChatEvent]:
        target = self.targets.target(options, request.model, Operation.CHAT)
        body = chat_body(request, target.max_tokens_field, stream=True, stream_usage=target.stream_usage)
        headers = self.targets.headers(target, secret)
        endpoint = target.endpoint
        session = pools.aiohttp_session(endpoint.upstream)
        try:
            async with session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=http.client_timeout(timeout),
                allow_redirects=False,  # the key goes to the configured address only
            ) as response:
                if not 200 <= response.status < 300:
                    raise http.http_error(response.status, await response.read(), response.headers)
                if response.content_type == "application/json":
                    # A server that ignored "stream": the whole answer (or an error) at once.
                    try:
                        data = orjson.loads(await response.read())
                    except orjson.JSONDecodeError:
                        raise http.not_json(endpoint) from None
                    for event in events_of(parse_chat(data, http.request_id(response.headers))):
                        yield event
                    return
                decoder = StreamDecoder(http.request_id(response.headers))
                parser = http.SSEParser()
                done = False
                async for chunk in response.content.iter_any():
                    for payload in parser.feed(chunk):
                        if payload == _DONE:
                            done = True
                            break
                        for event in decoder.feed(payload):
                            yield event
                    if done:
                        break
                if not done:
                    for payload in parser.finish():
                        if payload == _DONE:
                            done = True
                            break
                        for event in decoder.feed(payload):
                            yield event
                yield decoder.end() if done else decoder.end_without_done()
                if not response.content.at_eof():
                    # Best effort, after the end was delivered: never an error.
                    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                        async with asyncio.timeout(_DRAIN_SECONDS):
                            while await response.content.readany():
                                pass
        except TimeoutError:
            raise http.timeout_error(endpoint) from None
        except aiohttp.ClientError as exc:
            raise http.connection_error(endpoint, exc) from None


CALLER = OpenAIWireChat(WIRE)
