"""ConverseStream events (as botocore decodes them) -> ChatEvents; no network.

Bedrock numbers content blocks (text and tool use alike) with contentBlockIndex; a
tool call's index in ToolCallDelta counts tool calls only, in order of appearance.
The stop reason comes in messageStop and the usage in the final metadata event, so
the stream ends with ChatStreamEnd only once both have arrived: a stream that ends
before them was cut, and is an error, not a shorter answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callers.base import ProviderUnavailable
from callers.bedrock.responses import finish_reason, usage
from callers.types import ChatEvent, ChatStreamEnd, FinishReason, TextDelta, ToolCallDelta, Usage


class StreamAssembler:
    def __init__(self) -> None:
        self._tool_index_by_block: dict[int, int] = {}
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    def feed(self, event: Mapping[str, Any]) -> list[ChatEvent]:
        if "contentBlockStart" in event:
            return self._block_start(event["contentBlockStart"])
        if "contentBlockDelta" in event:
            return self._block_delta(event["contentBlockDelta"])
        if "messageStop" in event:
            self._finish = finish_reason(event["messageStop"].get("stopReason"))
        elif "metadata" in event:
            self._usage = usage(event["metadata"].get("usage"))
        # messageStart, contentBlockStop and anything newer carry nothing to forward.
        return []

    def end(self, request_id: str | None) -> ChatStreamEnd:
        if self._finish is None:
            raise ProviderUnavailable("the Bedrock stream ended before its messageStop event")
        if self._usage is None:
            raise ProviderUnavailable("the Bedrock stream ended before its metadata (usage) event")
        return ChatStreamEnd(finish_reason=self._finish, usage=self._usage, request_id=request_id)

    def _block_start(self, start_event: Mapping[str, Any]) -> list[ChatEvent]:
        tool_use = start_event.get("start", {}).get("toolUse")
        if tool_use is None:
            return []
        index = len(self._tool_index_by_block)
        self._tool_index_by_block[int(start_event["contentBlockIndex"])] = index
        return [ToolCallDelta(index=index, id=tool_use["toolUseId"], name=tool_use["name"])]

    def _block_delta(self, delta_event: Mapping[str, Any]) -> list[ChatEvent]:
        delta = delta_event.get("delta", {})
        if delta.get("text"):
            return [TextDelta(delta["text"])]
        tool_use = delta.get("toolUse")
        if tool_use is not None:
            block = int(delta_event["contentBlockIndex"])
            index = self._tool_index_by_block.get(block)
            if index is None:
                raise ProviderUnavailable(f"tool input for content block {block}, which never started")
            return [ToolCallDelta(index=index, arguments_fragment=tool_use.get("input", ""))]
        # Reasoning and citation deltas have no place in the common types.
        return []
