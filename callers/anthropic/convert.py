"""ChatRequest -> Messages API request: plain functions, no network, no SDK import.

Choices the neutral types leave open, made here once:
- System messages, wherever they stand, are joined into the top-level `system`.
- Tool results become `tool_result` blocks of a user turn; consecutive results (and a
  user message right after them) share one user turn, results first, as the API
  requires the results to answer the previous assistant turn at the start of the next.
- max_tokens is required by Anthropic; absent from the request it is DEFAULT_MAX_TOKENS.
- JSON: `json_schema` uses the API's structured outputs (output_config.format), so the
  answer is ordinary text that matches the schema. Anthropic has no schema-less JSON
  mode, and structured outputs require a closed schema, so `json_object` forces a tool
  whose input is any object and returns that input as the text (see parse.py).
- Sampling: API version 2026-10-21 rejects temperature/top_p. They are sent only when
  the request opts in to the older version; otherwise they are refused here, clearly,
  instead of being dropped in silence (see _sampling for the no-op values let through).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from callers.anthropic import API_VERSION, LEGACY_API_VERSION
from callers.base import InvalidRequest
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    ResponseFormatKind,
    SystemMessage,
    TextPart,
    Tool,
    ToolChoice,
    ToolChoiceMode,
    ToolResultMessage,
    UserMessage,
)

# Claude's output budget when the request states none: enough for a long answer on every
# current model (all allow at least 8192), small enough not to reserve huge budgets.
DEFAULT_MAX_TOKENS = 4096
# The forced tool that carries a json_object answer.
JSON_TOOL_NAME = "json_response"
# provider_options key selecting the API version; every other key is sent as a body field.
VERSION_OPTION = "anthropic_version"

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class MessagesCall:
    params: dict[str, Any]  # keyword arguments for messages.create
    extra_body: dict[str, Any]  # provider_options, sent as top-level body fields
    api_version: str
    json_tool: str | None  # the forced tool whose input is the answer, for json_object


def messages_call(request: ChatRequest) -> MessagesCall:
    options = dict(request.provider_options)
    api_version = options.pop(VERSION_OPTION, API_VERSION)
    if api_version not in (API_VERSION, LEGACY_API_VERSION):
        raise InvalidRequest(f"{VERSION_OPTION} must be {API_VERSION} or {LEGACY_API_VERSION}")
    system, turns = conversation(request.messages)
    params: dict[str, Any] = {
        "model": request.model,
        "messages": turns,
        "max_tokens": request.sampling.max_output_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        params["system"] = system
    if request.sampling.stop:
        params["stop_sequences"] = list(request.sampling.stop)
    if request.tools:
        params["tools"] = [tool_definition(tool) for tool in request.tools]
    if request.tool_choice is not None and request.tools:
        params["tool_choice"] = tool_choice(request.tool_choice)
    json_tool = _apply_response_format(params, request.response_format)
    clashes = sorted(set(options) & set(params))
    if clashes:
        raise InvalidRequest(f"provider_options may not set {', '.join(clashes)}: the request already does")
    # Body fields rather than keyword arguments: SDK 2.x no longer has parameters for them.
    options.update(_sampling(request, api_version))
    return MessagesCall(params=params, extra_body=options, api_version=str(api_version), json_tool=json_tool)


def _sampling(request: ChatRequest, api_version: str) -> dict[str, Any]:
    """temperature/top_p as body fields, on the version that takes them; refusals otherwise.

    Values equal to the API's own defaults (temperature 1, top_p 1, penalties 0) change
    nothing, so they are dropped rather than refused: OpenAI-style clients send them
    unasked. Anthropic has no seed or penalties at all, so other values are refused.
    """
    s = request.sampling
    absent = [
        name
        for name, value in (
            ("seed", s.seed),
            ("presence_penalty", s.presence_penalty or None),
            ("frequency_penalty", s.frequency_penalty or None),
        )
        if value is not None
    ]
    if absent:
        raise InvalidRequest(f"Anthropic does not support {', '.join(absent)}")
    wanted = {"temperature": s.temperature, "top_p": s.top_p}
    given = {name: value for name, value in wanted.items() if value is not None and value != 1}
    if given and api_version != LEGACY_API_VERSION:
        raise InvalidRequest(
            f"Anthropic API version {api_version} does not accept {' or '.join(given)}; omit it, or set "
            f'provider_options {{"{VERSION_OPTION}": "{LEGACY_API_VERSION}"}} to use the version that does'
        )
    return given


def _apply_response_format(params: dict[str, Any], response_format: ResponseFormat | None) -> str | None:
    if response_format is None or response_format.kind == ResponseFormatKind.TEXT:
        return None
    if response_format.kind == ResponseFormatKind.JSON_SCHEMA:
        if not response_format.json_schema:
            raise InvalidRequest("response_format json_schema needs a schema")
        params["output_config"] = {"format": {"type": "json_schema", "schema": response_format.json_schema}}
        return None
    if "tools" in params:
        # Forcing the JSON tool would keep the model from calling the caller's tools.
        raise InvalidRequest("Anthropic cannot combine json_object with tools; use json_schema instead")
    params["tools"] = [
        {
            "name": JSON_TOOL_NAME,
            "description": "Give the complete answer as one JSON object.",
            "input_schema": {"type": "object"},
        }
    ]
    params["tool_choice"] = {"type": "tool", "name": JSON_TOOL_NAME}
    return JSON_TOOL_NAME


def tool_definition(tool: Tool) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": tool.name,
        "input_schema": tool.parameters or {"type": "object", "properties": {}},
    }
    if tool.description:
        definition["description"] = tool.description
    if tool.strict is not None:
        definition["strict"] = tool.strict
    return definition


def tool_choice(choice: ToolChoice) -> dict[str, Any]:
    if choice.mode == ToolChoiceMode.TOOL:
        if not choice.tool_name:
            raise InvalidRequest("tool_choice 'tool' needs a tool_name")
        return {"type": "tool", "name": choice.tool_name}
    if choice.mode == ToolChoiceMode.REQUIRED:
        return {"type": "any"}
    return {"type": choice.mode.value}  # "auto" and "none" have the same names


def conversation(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """The top-level system text and the alternating user/assistant turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            system.append(message.text)
        elif isinstance(message, UserMessage):
            _append(turns, "user", [user_block(part) for part in message.parts])
        elif isinstance(message, AssistantMessage):
            _append(turns, "assistant", assistant_blocks(message))
        else:
            _append(turns, "user", [tool_result_block(message)])
    for turn in turns:
        # sorted() is stable: tool results move to the front, everything else keeps its order.
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return "\n\n".join(system), turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[Block]) -> None:
    if not blocks:
        return  # the API rejects empty content
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def user_block(part: ContentPart) -> Block:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    return {"type": "image", "source": image_source(part)}


def image_source(image: ImagePart) -> dict[str, Any]:
    if image.data is not None:
        if not image.media_type:
            raise InvalidRequest("an inline image needs its media_type (e.g. image/png)")
        data = base64.b64encode(image.data).decode("ascii")
        return {"type": "base64", "media_type": image.media_type, "data": data}
    if not image.url:
        raise InvalidRequest("an image needs a url or data")
    if image.url.startswith("data:"):
        return _data_url_source(image.url)
    return {"type": "url", "url": image.url}


def _data_url_source(url: str) -> dict[str, Any]:
    """data:image/png;base64,... (what OpenAI-style clients send) as a base64 source."""
    header, _, payload = url.partition(",")
    media_type, _, encoding = header.removeprefix("data:").partition(";")
    if encoding != "base64" or not media_type:
        raise InvalidRequest("an image data URL must be data:<media type>;base64,<data>")
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("an image data URL holds invalid base64") from None
    return {"type": "base64", "media_type": media_type, "data": payload}


def assistant_blocks(message: AssistantMessage) -> list[Block]:
    blocks: list[Block] = []
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)}
        )
    return blocks


def _tool_input(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise InvalidRequest("tool call arguments must be a JSON object; got invalid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object")
    return value


def tool_result_block(message: ToolResultMessage) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
    if message.is_error:
        block["is_error"] = True
    return block
