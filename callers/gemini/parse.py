"""GenerateContentResponse -> the common types, for a whole answer or a stream of chunks.

Usage: promptTokenCount (plus toolUsePromptTokenCount, the tool results Gemini read)
is the input, of which cachedContentTokenCount came from the context cache; the output
is candidatesTokenCount plus thoughtsTokenCount, since thinking is billed as output.
Thought parts (thought=true) are the model's reasoning summary, not its answer: skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from google.genai import types

from callers.base import ProviderUnavailable
from callers.gemini.ids import tool_call_id
from callers.types import (
    AssistantMessage,
    ChatEvent,
    ChatResponse,
    ChatStreamEnd,
    FinishReason,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

_G = types.FinishReason
_FINISH_REASONS = {
    _G.STOP: FinishReason.STOP,
    _G.MAX_TOKENS: FinishReason.LENGTH,
    # Paused with a continuation token that the common types cannot carry: the text is cut short.
    _G.CONTINUATION: FinishReason.LENGTH,
    **dict.fromkeys(
        (
            _G.SAFETY,
            _G.RECITATION,
            _G.BLOCKLIST,
            _G.PROHIBITED_CONTENT,
            _G.SPII,
            _G.IMAGE_SAFETY,
            _G.IMAGE_PROHIBITED_CONTENT,
            _G.IMAGE_RECITATION,
            _G.MODEL_ARMOR,
        ),
        FinishReason.CONTENT_FILTER,
    ),
    # Everything else (MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, MISSING_THOUGHT_SIGNATURE,
    # LANGUAGE, OTHER, ...) means the model failed to produce a usable answer: ERROR.
}


def finish_reason(reason: types.FinishReason | None, *, called_tools: bool) -> FinishReason:
    mapped = _FINISH_REASONS.get(reason, FinishReason.ERROR) if reason is not None else FinishReason.ERROR
    # Gemini ends a turn that calls functions with STOP; the common types say tool_calls.
    return FinishReason.TOOL_CALLS if mapped == FinishReason.STOP and called_tools else mapped


def usage(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if meta is None:
        return Usage()
    input_tokens = (meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)
    output_tokens = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=meta.cached_content_token_count or 0,
        total_tokens=meta.total_token_count or input_tokens + output_tokens,
    )


def _answer_parts(candidate: types.Candidate | None) -> list[types.Part]:
    if candidate is None or candidate.content is None or not candidate.content.parts:
        return []
    return [part for part in candidate.content.parts if not part.thought]


def _tool_call(position: int, part: types.Part, call: types.FunctionCall) -> ToolCall:
    arguments = json.dumps(call.args or {}, ensure_ascii=False)
    return ToolCall(
        id=tool_call_id(position, call, part.thought_signature), name=call.name or "", arguments=arguments
    )


def _blocked(response: types.GenerateContentResponse) -> bool:
    """No candidate because the prompt itself was blocked (promptFeedback.blockReason)."""
    return response.prompt_feedback is not None and response.prompt_feedback.block_reason is not None


def chat_response(response: types.GenerateContentResponse, *, model: str) -> ChatResponse:
    candidate = response.candidates[0] if response.candidates else None
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in _answer_parts(candidate):
        if part.function_call is not None:
            calls.append(_tool_call(len(calls), part, part.function_call))
        elif part.text:
            texts.append(part.text)
    if candidate is None:
        finish = FinishReason.CONTENT_FILTER if _blocked(response) else FinishReason.ERROR
    else:
        finish = finish_reason(candidate.finish_reason, called_tools=bool(calls))
    return ChatResponse(
        message=AssistantMessage(text="".join(texts) if texts else None, tool_calls=calls),
        finish_reason=finish,
        usage=usage(response.usage_metadata),
        model=response.model_version or model,
        request_id=response.response_id,
    )


@dataclass
class StreamState:
    """Turns streamed chunks into ChatEvents. Gemini sends each function call whole, in one
    chunk, so one ToolCallDelta carries its id, name and all its arguments."""

    _calls: int = 0
    _finish: types.FinishReason | None = None
    _blocked: bool = False
    _usage: types.GenerateContentResponseUsageMetadata | None = None
    _response_id: str | None = None

    def feed(self, chunk: types.GenerateContentResponse) -> Iterator[ChatEvent]:
        self._response_id = chunk.response_id or self._response_id
        self._usage = chunk.usage_metadata or self._usage  # running totals: the latest wins
        self._blocked = self._blocked or _blocked(chunk)
        candidate = chunk.candidates[0] if chunk.candidates else None
        for part in _answer_parts(candidate):
            if part.function_call is not None:
                call = _tool_call(self._calls, part, part.function_call)
                yield ToolCallDelta(
                    index=self._calls, id=call.id, name=call.name, arguments_fragment=call.arguments
                )
                self._calls += 1
            elif part.text:
                yield TextDelta(text=part.text)
        if candidate is not None and candidate.finish_reason is not None:
            self._finish = candidate.finish_reason

    def end(self) -> ChatStreamEnd:
        if self._blocked:
            finish = FinishReason.CONTENT_FILTER
        elif self._finish is None:
            # The body ended without a finishReason: cut short by a proxy or the provider.
            # Ending normally would pass a truncated answer off as complete.
            raise ProviderUnavailable("the stream ended without a finish reason")
        else:
            finish = finish_reason(self._finish, called_tools=self._calls > 0)
        return ChatStreamEnd(finish_reason=finish, usage=usage(self._usage), request_id=self._response_id)
