"""ChatRequest -> Gemini `contents` and GenerateContentConfig; shared by gemini and vertex_ai.

Choices the neutral types leave open, made here once:
- System messages, wherever they stand, are joined into `systemInstruction`.
- Roles: user -> "user", assistant -> "model"; tool results are functionResponse parts
  of a "user" turn. Consecutive turns of one role are merged, so the answers to
  parallel calls travel together, as Gemini expects.
- Tool results: functionResponse.response must be an object; the result goes under
  "output" (or "error" when is_error), parsed as JSON when it is JSON, as Google
  documents. Gemini needs the function's name there: it is looked up from the
  assistant turn that made the call, by its id.
- Tool-call ids (Gemini mostly gives none; Gemini 3 signs its calls): see ids.py.
- JSON: json_object -> responseMimeType application/json; json_schema adds the schema
  as responseJsonSchema (plain JSON Schema, as the neutral type carries it).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from dataclasses import dataclass
from typing import Any

from google.genai import types

from callers.base import InvalidRequest
from callers.gemini.ids import split_tool_call_id
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormatKind,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolResultMessage,
    UserMessage,
)

# GenerateContentConfig fields a request may set through provider_options. A whitelist:
# other fields either are set from the neutral request or must never come from a
# request (http_options would redirect the call, key and all).
PROVIDER_OPTIONS = frozenset(
    {
        "thinking_config",
        "safety_settings",
        "top_k",
        "cached_content",
        "labels",
        "media_resolution",
        "response_logprobs",
        "logprobs",
        "service_tier",
    }
)


@dataclass(frozen=True, slots=True)
class GenerateCall:
    contents: list[types.Content]
    config: types.GenerateContentConfig


def generate_call(request: ChatRequest) -> GenerateCall:
    system, contents = conversation(request.messages)
    settings: dict[str, Any] = {
        # The SDK's own loops, off: the hub's caller handles tool calls and continuation.
        "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
        "automatic_continuation": False,
    }
    if system:
        settings["system_instruction"] = types.Content(parts=[types.Part(text=system)])
    settings.update(_sampling(request))
    if request.tools:
        declarations = [
            types.FunctionDeclaration(
                name=tool.name,
                description=tool.description or None,
                parameters_json_schema=tool.parameters or None,
            )
            for tool in request.tools
        ]
        settings["tools"] = [types.Tool(function_declarations=declarations)]
        if request.tool_choice is not None:
            settings["tool_config"] = types.ToolConfig(
                function_calling_config=calling_config(request.tool_choice)
            )
    settings.update(_response_format(request))
    unknown = sorted(set(request.provider_options) - PROVIDER_OPTIONS)
    if unknown:
        raise InvalidRequest(f"unsupported provider_options: {', '.join(unknown)}")
    settings.update(request.provider_options)
    try:
        config = types.GenerateContentConfig(**settings)
    except ValueError as exc:  # pydantic's ValidationError, from a malformed provider option
        raise InvalidRequest(f"invalid provider_options: {exc}") from None
    return GenerateCall(contents=contents, config=config)


def _sampling(request: ChatRequest) -> dict[str, Any]:
    s = request.sampling
    wanted = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_output_tokens": s.max_output_tokens,
        "stop_sequences": list(s.stop) or None,
        "seed": s.seed,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
    }
    return {name: value for name, value in wanted.items() if value is not None}


def _response_format(request: ChatRequest) -> dict[str, Any]:
    rf = request.response_format
    if rf is None or rf.kind == ResponseFormatKind.TEXT:
        return {}
    if rf.kind == ResponseFormatKind.JSON_OBJECT:
        return {"response_mime_type": "application/json"}
    if not rf.json_schema:
        raise InvalidRequest("response_format json_schema needs a schema")
    return {"response_mime_type": "application/json", "response_json_schema": rf.json_schema}


def calling_config(choice: ToolChoice) -> types.FunctionCallingConfig:
    if choice.mode == ToolChoiceMode.TOOL:
        if not choice.tool_name:
            raise InvalidRequest("tool_choice 'tool' needs a tool_name")
        return types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=[choice.tool_name]
        )
    modes = {
        ToolChoiceMode.AUTO: types.FunctionCallingConfigMode.AUTO,
        ToolChoiceMode.NONE: types.FunctionCallingConfigMode.NONE,
        ToolChoiceMode.REQUIRED: types.FunctionCallingConfigMode.ANY,
    }
    return types.FunctionCallingConfig(mode=modes[choice.mode])


def conversation(messages: list[Message]) -> tuple[str, list[types.Content]]:
    """The system instruction's text and the user/model turns."""
    system: list[str] = []
    turns: list[types.Content] = []
    names = {call.id: call.name for m in messages if isinstance(m, AssistantMessage) for call in m.tool_calls}
    for message in messages:
        if isinstance(message, SystemMessage):
            system.append(message.text)
        elif isinstance(message, UserMessage):
            _append(turns, "user", [user_part(part) for part in message.parts])
        elif isinstance(message, AssistantMessage):
            _append(turns, "model", model_parts(message))
        else:
            _append(turns, "user", [function_response_part(message, names)])
    return "\n\n".join(system), turns


def _append(turns: list[types.Content], role: str, parts: list[types.Part]) -> None:
    if not parts:
        return
    if turns and turns[-1].role == role and turns[-1].parts is not None:
        turns[-1].parts.extend(parts)
    else:
        turns.append(types.Content(role=role, parts=parts))


def user_part(part: ContentPart) -> types.Part:
    if isinstance(part, TextPart):
        return types.Part(text=part.text)
    return image_part(part)


def image_part(image: ImagePart) -> types.Part:
    if image.data is not None:
        if not image.media_type:
            raise InvalidRequest("an inline image needs its media_type (e.g. image/png)")
        return types.Part(inline_data=types.Blob(data=image.data, mime_type=image.media_type))
    if not image.url:
        raise InvalidRequest("an image needs a url or data")
    if image.url.startswith("data:"):
        return _data_url_part(image.url)
    media_type = image.media_type or mimetypes.guess_type(image.url)[0]
    return types.Part(file_data=types.FileData(file_uri=image.url, mime_type=media_type))


def _data_url_part(url: str) -> types.Part:
    """data:image/png;base64,... (what OpenAI-style clients send) as inline data."""
    header, _, payload = url.partition(",")
    media_type, _, encoding = header.removeprefix("data:").partition(";")
    if encoding != "base64" or not media_type:
        raise InvalidRequest("an image data URL must be data:<media type>;base64,<data>")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("an image data URL holds invalid base64") from None
    return types.Part(inline_data=types.Blob(data=data, mime_type=media_type))


def model_parts(message: AssistantMessage) -> list[types.Part]:
    parts = [types.Part(text=message.text)] if message.text else []
    return parts + [function_call_part(call) for call in message.tool_calls]


def function_call_part(call: ToolCall) -> types.Part:
    provider_id, signature = split_tool_call_id(call.id)
    return types.Part(
        function_call=types.FunctionCall(id=provider_id, name=call.name, args=_arguments(call.arguments)),
        thought_signature=signature,
    )


def _arguments(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise InvalidRequest("tool call arguments must be a JSON object; got invalid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object")
    return value


def function_response_part(result: ToolResultMessage, names: dict[str, str]) -> types.Part:
    name = names.get(result.tool_call_id)
    if name is None:
        raise InvalidRequest(f"tool result {result.tool_call_id!r} answers no tool call in the conversation")
    try:
        value: Any = json.loads(result.content)
    except ValueError:
        value = result.content
    provider_id, _ = split_tool_call_id(result.tool_call_id)
    response = {"error": value} if result.is_error else {"output": value}
    return types.Part(function_response=types.FunctionResponse(id=provider_id, name=name, response=response))
