"""ChatRequest -> Converse request; no network (responses.py converts the answers).

The request is the keyword arguments of botocore's `converse` / `converse_stream`
(Converse's JSON field names; botocore base64-encodes image bytes on the wire).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from callers.base import InvalidRequest
from callers.types import (
    AssistantMessage,
    ChatRequest,
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
    UserMessage,
)

_IMAGE_FORMATS: Mapping[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}


def converse_request(request: ChatRequest) -> dict[str, Any]:
    """The `converse(**kwargs)` arguments for `request`; raises InvalidRequest for what Converse lacks."""
    system = [{"text": m.text} for m in request.messages if isinstance(m, SystemMessage) and m.text]
    kwargs: dict[str, Any] = {"modelId": request.model, "messages": converse_messages(request.messages)}
    if system:
        kwargs["system"] = system
    inference = inference_config(request.sampling)
    if inference:
        kwargs["inferenceConfig"] = inference
    if request.tools:
        kwargs["toolConfig"] = tool_config(request.tools, request.tool_choice)
    elif request.tool_choice is not None and request.tool_choice.mode is not ToolChoiceMode.AUTO:
        raise InvalidRequest(f"tool_choice {request.tool_choice.mode.value!r} needs tools")
    output = output_config(request.response_format)
    if output:
        kwargs["outputConfig"] = output
    if request.provider_options:
        # Model-specific parameters (top_k, reasoning budgets...), passed to the model as is.
        kwargs["additionalModelRequestFields"] = dict(request.provider_options)
    return kwargs


def converse_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Converse messages: roles alternate, so consecutive same-role content is merged.

    Tool results travel as toolResult blocks of a user message, which is why a run of
    tool results and a following user message become one user turn.
    """
    turns: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        role = "assistant" if isinstance(message, AssistantMessage) else "user"
        blocks = _content_blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _content_blocks(message: Message) -> list[dict[str, Any]]:
    if isinstance(message, UserMessage):
        return [_user_part(part) for part in message.parts]
    if isinstance(message, AssistantMessage):
        blocks: list[dict[str, Any]] = [{"text": message.text}] if message.text else []
        blocks.extend({"toolUse": _tool_use(call)} for call in message.tool_calls)
        return blocks
    if isinstance(message, ToolResultMessage):
        result: dict[str, Any] = {"toolUseId": message.tool_call_id, "content": [{"text": message.content}]}
        if message.is_error:
            # Sent only for errors: some model families on Bedrock refuse the field,
            # and "success" is what a result without it means.
            result["status"] = "error"
        return [{"toolResult": result}]
    raise InvalidRequest(f"unsupported message type {type(message).__name__}")


def _user_part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if part.data is not None:
        image_format = _IMAGE_FORMATS.get((part.media_type or "").lower())
        if image_format is None:
            raise InvalidRequest(f"Converse takes png, jpeg, gif or webp images, not {part.media_type!r}")
        return {"image": {"format": image_format, "source": {"bytes": part.data}}}
    if part.url and part.url.startswith("s3://"):
        image_format = _IMAGE_FORMATS.get((part.media_type or "").lower()) or _format_from_name(part.url)
        return {"image": {"format": image_format, "source": {"s3Location": {"uri": part.url}}}}
    raise InvalidRequest(
        "Converse takes images as bytes or s3:// locations; fetch the URL and pass its bytes"
    )


def _format_from_name(url: str) -> str:
    extension = url.rsplit(".", 1)[-1].lower()
    found = _IMAGE_FORMATS.get(f"image/{extension}")
    if found is None:
        raise InvalidRequest(f"cannot tell the image format of {url!r}; set media_type")
    return found


def _tool_use(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        raise InvalidRequest(f"tool call {call.id!r}: arguments are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"tool call {call.id!r}: Converse needs the arguments as a JSON object")
    return {"toolUseId": call.id, "name": call.name, "input": arguments}


def inference_config(sampling: SamplingParams) -> dict[str, Any]:
    unsupported = [
        name
        for name, value in (
            ("seed", sampling.seed),
            ("presence_penalty", sampling.presence_penalty),
            ("frequency_penalty", sampling.frequency_penalty),
        )
        if value is not None
    ]
    if unsupported:
        raise InvalidRequest(
            f"Converse has no {', '.join(unsupported)}; pass it in provider_options if the model takes it"
        )
    config: dict[str, Any] = {}
    if sampling.max_output_tokens is not None:
        config["maxTokens"] = sampling.max_output_tokens
    if sampling.temperature is not None:
        config["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        config["topP"] = sampling.top_p
    if sampling.stop:
        config["stopSequences"] = list(sampling.stop)
    return config


def tool_config(tools: list[Tool], choice: ToolChoice | None) -> dict[str, Any]:
    config: dict[str, Any] = {"tools": [{"toolSpec": _tool_spec(tool)} for tool in tools]}
    mode = choice.mode if choice is not None else ToolChoiceMode.AUTO
    if mode is ToolChoiceMode.NONE:
        # Converse can only be given no tools, and a conversation holding tool calls
        # must declare its tools, so "none" cannot be expressed faithfully.
        raise InvalidRequest("Converse has no tool_choice 'none'; send the request without tools instead")
    if mode is ToolChoiceMode.REQUIRED:
        config["toolChoice"] = {"any": {}}
    elif mode is ToolChoiceMode.TOOL:
        if choice is None or not choice.tool_name:
            raise InvalidRequest("tool_choice 'tool' needs tool_name")
        config["toolChoice"] = {"tool": {"name": choice.tool_name}}
    else:
        config["toolChoice"] = {"auto": {}}
    return config


def _tool_spec(tool: Tool) -> dict[str, Any]:
    schema = tool.parameters or {"type": "object", "properties": {}}
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": schema}}
    if tool.description:  # Converse refuses an empty description
        spec["description"] = tool.description
    if tool.strict is not None:
        spec["strict"] = tool.strict
    return spec


def output_config(response_format: ResponseFormat | None) -> dict[str, Any]:
    """Structured output: Converse's outputConfig takes a JSON schema, not free-form JSON mode."""
    if response_format is None or response_format.kind is ResponseFormatKind.TEXT:
        return {}
    if response_format.kind is ResponseFormatKind.JSON_OBJECT or not response_format.json_schema:
        raise InvalidRequest("Converse offers structured output only with a JSON schema (json_schema)")
    schema = {
        "schema": json.dumps(response_format.json_schema),
        "name": response_format.schema_name or "response",
    }
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}
