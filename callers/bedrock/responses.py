"""Converse answers -> ChatResponse, and what the stream shares with it; no network."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from callers.types import AssistantMessage, ChatResponse, FinishReason, ToolCall, Usage

_FINISH_REASONS: Mapping[str, FinishReason] = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "guardrail_intervened": FinishReason.CONTENT_FILTER,
    "content_filtered": FinishReason.CONTENT_FILTER,
    "malformed_model_output": FinishReason.ERROR,
    "malformed_tool_use": FinishReason.ERROR,
}


def finish_reason(stop_reason: str | None) -> FinishReason:
    # A reason AWS adds later is reported as ERROR rather than guessed to be a normal end.
    return _FINISH_REASONS.get(stop_reason or "", FinishReason.ERROR)


def usage(raw: Mapping[str, Any] | None) -> Usage:
    """Bedrock counts cache reads and writes apart from inputTokens; Usage counts them in it."""
    if not raw:
        return Usage()
    cache_read = int(raw.get("cacheReadInputTokens") or 0)
    cache_write = int(raw.get("cacheWriteInputTokens") or 0)
    input_tokens = int(raw.get("inputTokens") or 0) + cache_read + cache_write
    output_tokens = int(raw.get("outputTokens") or 0)
    # Computed rather than taken from totalTokens, so that it matches the inclusive input.
    return Usage(input_tokens, output_tokens, cache_read, input_tokens + output_tokens)


def request_id(response: Mapping[str, Any]) -> str | None:
    """botocore puts the x-amzn-RequestId header in ResponseMetadata.RequestId."""
    found = response.get("ResponseMetadata", {}).get("RequestId")
    return found if isinstance(found, str) and found else None


def chat_response(response: Mapping[str, Any], model: str) -> ChatResponse:
    blocks: list[Mapping[str, Any]] = response.get("output", {}).get("message", {}).get("content", [])
    text = "".join(block["text"] for block in blocks if "text" in block)
    calls = [
        ToolCall(id=use["toolUseId"], name=use["name"], arguments=json.dumps(use.get("input", {})))
        for use in (block["toolUse"] for block in blocks if "toolUse" in block)
    ]
    return ChatResponse(
        message=AssistantMessage(text=text or None, tool_calls=calls),
        finish_reason=finish_reason(response.get("stopReason")),
        usage=usage(response.get("usage")),
        model=model,
        request_id=request_id(response),
    )
