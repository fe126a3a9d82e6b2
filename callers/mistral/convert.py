"""The common chat types to and from Mistral's chat completions JSON (/v1/chat/completions).

Plain functions over dicts in the wire's own shape, as the API reference documents
it. The capability modules hand the request dicts to the SDK as keyword arguments,
whose names are the wire's field names, and dump the SDK's answers back to
wire-shaped dicts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from callers.base import InvalidRequest, ProviderUnavailable
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
    ToolChoice,
    ToolChoiceMode,
    ToolResultMessage,
    Usage,
    UserMessage,
)

Json = dict[str, Any]

# "model_length" is the model's context window running out, a length stop all the
# same. A reason added later is not assumed to be a clean stop.
FINISH_REASONS: Mapping[str, FinishReason] = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "model_length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "error": FinishReason.ERROR,
}


def finish_reason(value: Any) -> FinishReason:
    return FINISH_REASONS.get(str(value), FinishReason.ERROR)


# --- request ----------------------------------------------------------------------


def chat_body(request: ChatRequest) -> Json:
    """The JSON body of POST /v1/chat/completions, without `stream` (the SDK method sets it)."""
    body: Json = {"model": request.model, "messages": _messages(request.messages)}
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.response_format is not None and request.response_format.kind is not ResponseFormatKind.TEXT:
        body["response_format"] = _response_format(request.response_format)
    body.update(_sampling(request.sampling))
    # Mistral-only parameters (safe_prompt, parallel_tool_calls, prompt_cache_key, ...)
    # pass through; the caller checks their names against the SDK's signature.
    body.update(request.provider_options)
    return body


def _messages(messages: list[Message]) -> list[Json]:
    # Mistral's tool message may name its function; the name is known from the call.
    names = {call.id: call.name for m in messages if isinstance(m, AssistantMessage) for call in m.tool_calls}
    return [_message(message, names) for message in messages]


def _message(message: Message, tool_names: Mapping[str, str]) -> Json:
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message.text}
    if isinstance(message, UserMessage):
        return {"role": "user", "content": _user_content(message)}
    if isinstance(message, AssistantMessage):
        wire: Json = {"role": "assistant", "content": message.text or ""}
        if message.tool_calls:
            wire["tool_calls"] = [_tool_call(call) for call in message.tool_calls]
        return wire
    return _tool_result(message, tool_names)


def _user_content(message: UserMessage) -> str | list[Json]:
    if len(message.parts) == 1 and isinstance(message.parts[0], TextPart):
        return message.parts[0].text
    return [_part(part) for part in message.parts]


def _part(part: TextPart | ImagePart) -> Json:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    url = _image_url(part)
    image: str | Json = {"url": url, "detail": part.detail} if part.detail is not None else url
    return {"type": "image_url", "image_url": image}


def _image_url(part: ImagePart) -> str:
    if part.url is not None:
        return part.url
    if part.data is None or not part.media_type:
        raise InvalidRequest("an inline image needs both data and media_type")
    return f"data:{part.media_type};base64,{base64.b64encode(part.data).decode('ascii')}"


def _tool_call(call: ToolCall) -> Json:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _tool_result(message: ToolResultMessage, tool_names: Mapping[str, str]) -> Json:
    # Mistral has no error flag on tool results: a failed tool says so in its content.
    wire: Json = {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_call_id in tool_names:
        wire["name"] = tool_names[message.tool_call_id]
    return wire


def _tool(tool: Tool) -> Json:
    function: Json = {
        "name": tool.name,
        "parameters": tool.parameters or {"type": "object", "properties": {}},
    }
    if tool.description:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> str | Json:
    if choice.mode is ToolChoiceMode.TOOL:
        if not choice.tool_name:
            raise InvalidRequest("tool_choice 'tool' needs a tool_name")
        return {"type": "function", "function": {"name": choice.tool_name}}
    # Mistral's word for "must call a tool" is "any" ("required" is its alias).
    return {ToolChoiceMode.AUTO: "auto", ToolChoiceMode.NONE: "none", ToolChoiceMode.REQUIRED: "any"}[
        choice.mode
    ]


def _response_format(response_format: ResponseFormat) -> Json:
    if response_format.kind is ResponseFormatKind.JSON_OBJECT:
        return {"type": "json_object"}
    if response_format.json_schema is None:
        raise InvalidRequest("response_format json_schema needs a schema")
    schema: Json = {"name": response_format.schema_name or "response", "schema": response_format.json_schema}
    if response_format.strict is not None:
        schema["strict"] = response_format.strict
    return {"type": "json_schema", "json_schema": schema}


def _sampling(sampling: SamplingParams) -> Json:
    wire: Json = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_output_tokens,
        "random_seed": sampling.seed,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    }
    if sampling.stop:
        wire["stop"] = list(sampling.stop)
    return {name: value for name, value in wire.items() if value is not None}


# --- responses --------------------------------------------------------------------


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of chunks of which only
    "text" ones are answer text (thinking, references and the like are not)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(chunk.get("text") or "") for chunk in content if chunk.get("type") == "text")
    return ""


def arguments_text(arguments: Any) -> str:
    """Tool arguments as JSON text: Mistral may send them as an object rather than a string."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def chat_response(body: Mapping[str, Any], *, request_id: str | None) -> ChatResponse:
    """A ChatResponse from the JSON of a non-streamed chat completion (its first choice)."""
    choices = body.get("choices") or []
    if not choices:
        raise ProviderUnavailable("Mistral's chat answer has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    calls = [
        ToolCall(
            id=str(call.get("id") or ""),
            name=str((call.get("function") or {}).get("name") or ""),
            arguments=arguments_text((call.get("function") or {}).get("arguments") or ""),
        )
        for call in message.get("tool_calls") or []
    ]
    return ChatResponse(
        message=AssistantMessage(text=text_of(message.get("content")) or None, tool_calls=calls),
        finish_reason=finish_reason(choice.get("finish_reason")),
        usage=usage(body.get("usage")),
        model=str(body.get("model") or ""),
        request_id=request_id or body.get("id"),
    )


def usage(wire: Mapping[str, Any] | None) -> Usage:
    wire = wire or {}
    input_tokens = int(wire.get("prompt_tokens") or 0)
    output_tokens = int(wire.get("completion_tokens") or 0)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        # Prompt caching reports hits like OpenAI does, in prompt_tokens_details.
        cached_input_tokens=int((wire.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        total_tokens=int(wire.get("total_tokens") or input_tokens + output_tokens),
    )
