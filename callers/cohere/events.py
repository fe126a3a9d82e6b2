"""Cohere's v2 chat stream events, as dicts, to the common stream events.

The stream (server-sent events, each `data:` a JSON object named by its `type`) is:
message-start, then text as content-start / content-delta* / content-end, or, when
the model calls tools, tool-plan-delta* and per call tool-call-start (id, name) /
tool-call-delta* (argument fragments) / tool-call-end, and last message-end with the
finish reason and usage. citation-* and debug events carry nothing we forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callers.base import ProviderTimeout, ProviderUnavailable
from callers.cohere.convert import finish_reason, usage
from callers.types import ChatEvent, ChatStreamEnd, TextDelta, ToolCallDelta


class StreamState:
    """Feeds one stream's events through, and knows whether it ended properly."""

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id  # from the response header, when Cohere sent one
        self.end: ChatStreamEnd | None = None

    def feed(self, event: Mapping[str, Any]) -> list[ChatEvent]:
        kind = event.get("type")
        message = (event.get("delta") or {}).get("message") or {}
        if kind == "message-start":
            self.request_id = self.request_id or event.get("id")
        elif kind in ("content-start", "content-delta"):
            # Only text: a reasoning model's `thinking` is not part of the answer.
            text = (message.get("content") or {}).get("text")
            if text:
                return [TextDelta(text)]
        elif kind == "tool-plan-delta":
            # The tool plan is the visible text of a tool-calling turn, as in chat().
            if message.get("tool_plan"):
                return [TextDelta(message["tool_plan"])]
        elif kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            delta = ToolCallDelta(
                index=int(event.get("index") or 0),
                id=call.get("id"),
                name=function.get("name"),
                arguments_fragment=function.get("arguments") or "",
            )
            return [delta]
        elif kind == "tool-call-delta":
            fragment = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
            if fragment:
                return [ToolCallDelta(index=int(event.get("index") or 0), arguments_fragment=fragment)]
        elif kind == "message-end":
            self.end = self._end(event.get("delta") or {})
        return []

    def _end(self, delta: Mapping[str, Any]) -> ChatStreamEnd:
        reason = delta.get("finish_reason")
        # A generation that failed or timed out at the provider is an error, raised,
        # never a stream that merely ends: the text so far is incomplete.
        if reason == "TIMEOUT":
            raise ProviderTimeout(f"cohere stopped the generation: {delta.get('error') or 'timeout'}")
        if reason == "ERROR" or delta.get("error"):
            raise ProviderUnavailable(f"cohere stream failed: {delta.get('error') or 'finish reason ERROR'}")
        return ChatStreamEnd(
            finish_reason=finish_reason(reason), usage=usage(delta.get("usage")), request_id=self.request_id
        )

    def finish(self) -> ChatStreamEnd:
        """The stream's last event; raises when the provider never sent message-end."""
        if self.end is None:
            raise ProviderUnavailable("cohere stream ended before message-end (connection dropped?)")
        return self.end
