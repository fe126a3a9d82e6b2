"""Messages API answers -> the common types: a whole Message, or a raw event stream.

Both paths share the finish-reason and usage rules, so a streamed answer ends with the
same ChatStreamEnd values as the unary answer to the same request.

Usage: Anthropic's `input_tokens` counts only the input after the last cache breakpoint;
cache reads and cache writes are reported beside it. Usage.input_tokens is the whole
input (all three), cached_input_tokens the cache reads. Cache writes count as input,
not as cached: they were processed (and are billed above the normal input price).

Content blocks the common types cannot carry (thinking, server tools) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from anthropic.types import (
    InputJSONDelta,
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
)

from callers.base import ProviderUnavailable
from callers.types import (
    AssistantMessage,
    ChatEvent,
    ChatResponse,
    ChatStreamEnd,
    FinishReason,
    ToolCall,
    Usage,
)

# Under other names: the SDK's own TextDelta shares the name.
from callers.types import TextDelta as TextOut
from callers.types import ToolCallDelta as ToolCallOut

_FINISH_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    # A server-tool turn paused by the API; the answer so far is complete as it stands.
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}


def finish_reason(stop_reason: str | None, *, json_tool: str | None) -> FinishReason:
    if stop_reason == "tool_use" and json_tool is not None:
        return FinishReason.STOP  # the forced JSON tool is how the answer ends, not a tool call
    return _FINISH_REASONS.get(stop_reason or "", FinishReason.ERROR)


def usage(input_tokens: int, output_tokens: int, cache_creation: int | None, cache_read: int | None) -> Usage:
    whole_input = input_tokens + (cache_creation or 0) + (cache_read or 0)
    return Usage(
        input_tokens=whole_input,
        output_tokens=output_tokens,
        cached_input_tokens=cache_read or 0,
        total_tokens=whole_input + output_tokens,
    )


def chat_response(message: Message, *, json_tool: str | None) -> ChatResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            if json_tool is None:  # in JSON mode the answer is the tool's input alone
                texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = json.dumps(block.input, ensure_ascii=False)
            if block.name == json_tool:
                texts.append(arguments)
            else:
                calls.append(ToolCall(id=block.id, name=block.name, arguments=arguments))
    u = message.usage
    return ChatResponse(
        message=AssistantMessage(text="".join(texts) if texts else None, tool_calls=calls),
        finish_reason=finish_reason(message.stop_reason, json_tool=json_tool),
        usage=usage(
            u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens
        ),
        model=message.model,
        request_id=message._request_id,
    )


class StreamState:
    """Turns raw stream events into ChatEvents, and knows whether the stream completed."""

    def __init__(self, *, json_tool: str | None) -> None:
        self._json_tool = json_tool
        self._tool_of_block: dict[int, int] = {}  # content block index -> tool call index
        self._json_blocks: set[int] = set()  # blocks of the forced JSON tool: their input is text
        self._blocks_with_input: set[int] = set()
        self._input_tokens = self._output_tokens = 0
        self._cache_creation: int | None = None
        self._cache_read: int | None = None
        self._stop_reason: str | None = None
        self._stopped = False

    def feed(self, event: RawMessageStreamEvent) -> Iterator[ChatEvent]:
        if isinstance(event, RawMessageStartEvent):
            u = event.message.usage
            self._input_tokens, self._output_tokens = u.input_tokens, u.output_tokens
            self._cache_creation, self._cache_read = u.cache_creation_input_tokens, u.cache_read_input_tokens
        elif isinstance(event, RawContentBlockStartEvent):
            yield from self._block_start(event)
        elif isinstance(event, RawContentBlockDeltaEvent):
            yield from self._block_delta(event)
        elif isinstance(event, RawContentBlockStopEvent):
            tool = self._tool_of_block.get(event.index)
            if tool is not None and event.index not in self._blocks_with_input:
                # A tool without arguments streams no input at all; say "{}" as the unary answer does.
                yield ToolCallOut(index=tool, arguments_fragment="{}")
        elif isinstance(event, RawMessageDeltaEvent):
            self._message_delta(event)
        elif isinstance(event, RawMessageStopEvent):
            self._stopped = True

    def _block_start(self, event: RawContentBlockStartEvent) -> Iterator[ChatEvent]:
        block = event.content_block
        if not isinstance(block, ToolUseBlock):
            return
        if block.name == self._json_tool:
            self._json_blocks.add(event.index)
            return
        tool = len(self._tool_of_block)
        self._tool_of_block[event.index] = tool
        yield ToolCallOut(index=tool, id=block.id, name=block.name)

    def _block_delta(self, event: RawContentBlockDeltaEvent) -> Iterator[ChatEvent]:
        delta = event.delta
        if isinstance(delta, TextDelta) and delta.text and self._json_tool is None:
            yield TextOut(text=delta.text)  # in JSON mode the answer is the tool's input alone
        elif isinstance(delta, InputJSONDelta) and delta.partial_json:
            self._blocks_with_input.add(event.index)
            if event.index in self._json_blocks:
                yield TextOut(text=delta.partial_json)
            elif event.index in self._tool_of_block:
                yield ToolCallOut(
                    index=self._tool_of_block[event.index], arguments_fragment=delta.partial_json
                )

    def _message_delta(self, event: RawMessageDeltaEvent) -> None:
        self._stop_reason = event.delta.stop_reason or self._stop_reason
        u = event.usage  # cumulative counts; a field left out keeps message_start's value
        self._output_tokens = u.output_tokens
        if u.input_tokens is not None:
            self._input_tokens = u.input_tokens
        if u.cache_creation_input_tokens is not None:
            self._cache_creation = u.cache_creation_input_tokens
        if u.cache_read_input_tokens is not None:
            self._cache_read = u.cache_read_input_tokens

    def end(self, request_id: str | None) -> ChatStreamEnd:
        """The stream's single end event; raises if the provider never finished it."""
        if not self._stopped:
            # The body ended cleanly but without message_stop: a proxy or the provider
            # cut the answer short. Ending normally would pass a truncation off as done.
            raise ProviderUnavailable("the stream ended before message_stop")
        return ChatStreamEnd(
            finish_reason=finish_reason(self._stop_reason, json_tool=self._json_tool),
            usage=usage(self._input_tokens, self._output_tokens, self._cache_creation, self._cache_read),
            request_id=request_id,
        )
