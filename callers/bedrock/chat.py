"""Chat and streaming chat through Bedrock's Converse and ConverseStream APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from callers.base import SecretFields
from callers.bedrock.convert import converse_request
from callers.bedrock.responses import chat_response, request_id
from callers.bedrock.runner import BlockingCall
from callers.bedrock.session import RUNTIME_SERVICE, AwsKeys, region_of
from callers.bedrock.stream import StreamAssembler
from callers.types import ChatEvent, ChatRequest, ChatResponse

# What a blocking read of the event stream returns when the stream is over.
_END = None


def runtime_call(secret: SecretFields, options: Mapping[str, str], *, timeout: float) -> BlockingCall:
    return BlockingCall(
        RUNTIME_SERVICE,
        AwsKeys.from_secret(secret),
        region=region_of(options),
        endpoint_url=options.get("endpoint_url") or None,
        timeout=timeout,
    )


class BedrockChat:
    async def chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> ChatResponse:
        kwargs = converse_request(request)  # an unsupported request fails before any I/O
        call = runtime_call(secret, options, timeout=timeout)
        try:
            response = await call.run(lambda client: client.converse(**kwargs))
        finally:
            call.close()
        return chat_response(response, request.model)

    async def stream_chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> AsyncIterator[ChatEvent]:
        kwargs = converse_request(request)
        call = runtime_call(secret, options, timeout=timeout)
        try:
            response = await call.run(lambda client: client.converse_stream(**kwargs))
            events: Iterator[Mapping[str, Any]] = iter(response["stream"])
            assembler = StreamAssembler()
            # One blocking read per event, each in a worker thread and within the deadline.
            while (event := await call.run(lambda _: next(events, _END))) is not _END:
                for chat_event in assembler.feed(event):
                    yield chat_event
            yield assembler.end(request_id(response))
        finally:
            # Closes the connection, which is what ends botocore's EventStream too.
            call.close()


CALLER = BedrockChat()
