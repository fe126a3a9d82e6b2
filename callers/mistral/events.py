"""Mistral's chat stream chunks, as dicts, to the common stream events.

The stream is OpenAI-like server-sent events: `data: {chunk}` lines, then
`data: [DONE]`. Each chunk holds choices[0].delta (text, or tool calls that arrive
whole, one delta per call, numbered by `index`) and, on the last one, the finish
reason and usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callers.base import ProviderUnavailable
from callers.mistral.convert import arguments_text, finish_reason, text_of, usage
from callers.types import ChatEvent, ChatStreamEnd, FinishReason, TextDelta, ToolCallDelta, Usage


class StreamState:
    """Feeds one stream's chunks through, and knows whether it ended properly."""

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id  # Mistral's correlation id, when its header came
        self.reason: FinishReason | None = None
        self.usage = Usage()

    def feed(self, chunk: Mapping[str, Any]) -> list[ChatEvent]:
        self.request_id = self.request_id or chunk.get("id")
        if chunk.get("usage"):
            self.usage = usage(chunk["usage"])
        out: list[ChatEvent] = []
        for choice in (chunk.get("choices") or [])[:1]:  # one choice is all the hub asks for
            delta = choice.get("delta") or {}
            text = text_of(delta.get("content"))
            if text:
                out.append(TextDelta(text))
            for position, call in enumerate(delta.get("tool_calls") or []):
                function = call.get("function") or {}
                index = call.get("index")
                out.append(
                    ToolCallDelta(
                        index=int(index if index is not None else position),
                        id=call.get("id"),
                        name=function.get("name"),
                        arguments_fragment=arguments_text(function.get("arguments") or ""),
                    )
                )
            if choice.get("finish_reason") is not None:
                self.reason = finish_reason(choice["finish_reason"])
                if self.reason is FinishReason.ERROR:
                    # The provider failed mid-generation: raised, never an ordinary end.
                    raise ProviderUnavailable(
                        f"mistral stream failed: finish_reason {choice['finish_reason']}"
                    )
        return out

    def finish(self) -> ChatStreamEnd:
        """The stream's last event; raises when no chunk ever carried a finish reason."""
        if self.reason is None:
            raise ProviderUnavailable("mistral stream ended without a finish reason (connection dropped?)")
        return ChatStreamEnd(finish_reason=self.reason, usage=self.usage, request_id=self.request_id)
