"""The common chat types to and from Cohere's v2 chat JSON (POST /v2/chat).

Plain functions over plain dicts in the wire's own shape, as the API reference
documents it; the chat module hands these dicts to the SDK as keyword arguments and
turns the SDK's answer back into a dict first, so everything here runs without it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from callers.base import InvalidRequest
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoiceMode,
    ToolResultMessage,
    Usage,
    UserMessage,
)

Json = dict[str, Any]

# Cohere's finish reasons. TIMEOUT is the provider giving up on the generation, so,
# like ERROR, the answer is incomplete. A reason added later is not assumed clean.
FINISH_REASONS: Mapping[str, FinishReason] = {
    "COMPLETE": FinishReason.STOP,
    "STOP_SEQUENCE": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "TOOL_CALL": FinishReason.TOOL_CALLS,
    "ERROR": FinishReason.ERROR,
    "TIMEOUT": FinishReason.ERROR,
}


def finish_reason(value: Any) -> FinishReason:
    return FINISH_REASONS.get(str(value), FinishReason.ERROR)


# --- request ----------------------------------------------------------------------


def chat_body(request: ChatRequest) -> Json:
    """The JSON body of POST /v2/chat, without `stream` (the SDK method sets it)."""
    body: Json = {"model": request.model, "messages": [_message(m) for m in request.messages]}
    body.update(_tools(request))
    if request.response_format is not None:
        body.update(_response_format(request.response_format))
    body.update(_sampling(request.sampling))
    # Cohere-only parameters (safety_mode, thinking, documents, k, ...) pass through;
    # the caller checks their names against the SDK's signature before sending.
    body.update(request.provider_options)
    return body


def _message(message: Message) -> Json:
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message.text}
    if isinstance(message, UserMessage):
        return {"role": "user", "content": _user_content(message)}
    if isinstance(message, AssistantMessage):
        return _assistant(message)
    return _tool_result(message)


def _user_content(message: UserMessage) -> str | list[Json]:
    if len(message.parts) == 1 and isinstance(message.parts[0], TextPart):
        return message.parts[0].text
    return [_part(part) for part in message.parts]


def _part(part: TextPart | ImagePart) -> Json:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: Json = {"url": _image_url(part)}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _image_url(part: ImagePart) -> str:
    if part.url is not None:
        return part.url
    if part.data is None or not part.media_type:
        raise InvalidRequest("an inline image needs both data and media_type")
    return f"data:{part.media_type};base64,{base64.b64encode(part.data).decode('ascii')}"


def _assistant(message: AssistantMessage) -> Json:
    wire: Json = {"role": "assistant"}
    if message.tool_calls:
        # Cohere's shape for a tool-calling turn: the model's reasoning goes back in
        # `tool_plan` (where it came from, see `chat_response`), not in `content`.
        wire["tool_calls"] = [_tool_call(call) for call in message.tool_calls]
        if message.text:
            wire["tool_plan"] = message.text
    else:
        wire["content"] = message.text or ""
    return wire


def _tool_call(call: ToolCall) -> Json:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _tool_result(message: ToolResultMessage) -> Json:
    # Cohere has no error flag on tool results: a failed tool says so in its content.
    return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}


def _tools(request: ChatRequest) -> Json:
    tools = list(request.tools)
    choice = request.tool_choice.mode if request.tool_choice is not None else ToolChoiceMode.AUTO
    wire: Json = {}
    if choice is ToolChoiceMode.TOOL:
        # Cohere can require *a* tool call but not name one; offering only the named
        # tool and requiring a call is the same contract.
        name = request.tool_choice.tool_name if request.tool_choice is not None else None
        tools = [tool for tool in tools if tool.name == name]
        if not tools:
            raise InvalidRequest(f"tool_choice names tool {name!r}, which is not among the request's tools")
        wire["tool_choice"] = "REQUIRED"
    elif choice is ToolChoiceMode.REQUIRED:
        wire["tool_choice"] = "REQUIRED"
    elif choice is ToolChoiceMode.NONE:
        wire["tool_choice"] = "NONE"
    if tools:
        wire["tools"] = [_tool(tool) for tool in tools]
        # Cohere's strictness is one switch for the whole request.
        if any(tool.strict for tool in tools):
            wire["strict_tools"] = True
    return wire


def _tool(tool: Tool) -> Json:
    function: Json = {
        "name": tool.name,
        "parameters": tool.parameters or {"type": "object", "properties": {}},
    }
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _response_format(response_format: ResponseFormat) -> Json:
    if response_format.kind is ResponseFormatKind.TEXT:
        return {}
    wire: Json = {"type": "json_object"}
    if response_format.kind is ResponseFormatKind.JSON_SCHEMA:
        if response_format.json_schema is None:
            raise InvalidRequest("response_format json_schema needs a schema")
        # Cohere takes the schema alone: it has no schema name, and is always strict.
        wire["json_schema"] = response_format.json_schema
    return {"response_format": wire}


def _sampling(sampling: SamplingParams) -> Json:
    wire: Json = {
        "temperature": sampling.temperature,
        "p": sampling.top_p,
        "max_tokens": sampling.max_output_tokens,
        "seed": sampling.seed,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    }
    if sampling.stop:
        wire["stop_sequences"] = list(sampling.stop)
    return {name: value for name, value in wire.items() if value is not None}


# --- response ---------------------------------------------------------------------


def chat_response(body: Mapping[str, Any], *, model: str, request_id: str | None) -> ChatResponse:
    """A ChatResponse from the JSON of a non-streamed POST /v2/chat answer."""
    message = body.get("message") or {}
    text = "".join(
        item.get("text") or "" for item in message.get("content") or [] if item.get("type") == "text"
    )
    calls = [
        ToolCall(
            id=str(call.get("id") or ""),
            name=str((call.get("function") or {}).get("name") or ""),
            arguments=str((call.get("function") or {}).get("arguments") or ""),
        )
        for call in message.get("tool_calls") or []
    ]
    # The tool plan is the visible text of a tool-calling turn (thinking is not).
    answer = text or message.get("tool_plan") or None
    return ChatResponse(
        message=AssistantMessage(text=answer, tool_calls=calls),
        finish_reason=finish_reason(body.get("finish_reason")),
        usage=usage(body.get("usage")),
        # Cohere's answer does not name the model; it is the one that was asked for.
        model=model,
        request_id=request_id or body.get("id"),
    )


def usage(wire: Mapping[str, Any] | None) -> Usage:
    """Usage from Cohere's {tokens, billed_units, cached_tokens}.

    `tokens` is what the model processed; `billed_units` what was charged (it leaves
    out e.g. the system preamble). Tokens are preferred, billed units are the fallback.
    """
    wire = wire or {}
    counted = wire.get("tokens") or wire.get("billed_units") or {}
    input_tokens = int(counted.get("input_tokens") or 0)
    output_tokens = int(counted.get("output_tokens") or 0)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=int(wire.get("cached_tokens") or 0),
        total_tokens=input_tokens + output_tokens,
    )
