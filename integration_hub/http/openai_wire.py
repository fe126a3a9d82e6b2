"""OpenAI's chat/embeddings JSON <-> the callers' neutral types, for the hub's
OpenAI-compatible endpoint. Plain functions; errors name the OpenAI field (`param`).

Fields the neutral types model are converted; every other request field is
passed to the provider as a provider option (the OpenAI-wire providers send it
on unchanged), so a client's extra parameters are not silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any

import grpc

from callers.types import llm as t
from integration_hub.errors import HubError

_CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "response_format",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "stream",
        "stream_options",
        "n",
        "user",
    }
)
FINISH_REASONS = {
    t.FinishReason.STOP: "stop",
    t.FinishReason.LENGTH: "length",
    t.FinishReason.TOOL_CALLS: "tool_calls",
    t.FinishReason.CONTENT_FILTER: "content_filter",
    t.FinishReason.ERROR: "stop",
}


def bad_request(param: str, message: str) -> HubError:
    return HubError(
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", f"{param}: {message}", {"field": param}
    )


def split_model(value: Any) -> tuple[str, str]:
    """ "main/gpt-4o-mini" -> ("main", "gpt-4o-mini"): a credential of the token's tenant, and its model;
    "gpt4" (no slash) -> ("", "gpt4"): a route of the tenant."""
    if not isinstance(value, str) or not value:
        raise bad_request(
            "model", "must be '<credential name>/<model>' (e.g. 'main/gpt-4o-mini') or a route name"
        )
    if "/" not in value:
        return "", value
    credential, _, model = value.partition("/")
    if not credential or not model:
        raise bad_request("model", "must be '<credential name>/<model>', e.g. 'main/gpt-4o-mini'")
    return credential, model


def _text(content: Any, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise bad_request(f"{param}[{i}]", "only text parts are allowed here")
            texts.append(part["text"])
        return "".join(texts)
    raise bad_request(param, "must be a string or a list of content parts")


def _image(part: dict[str, Any], param: str) -> t.ImagePart:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise bad_request(f"{param}.image_url.url", "required")
    detail = image.get("detail") if isinstance(image, dict) else None
    if url.startswith("data:"):
        # Inline images travel as bytes, so providers that need bytes (Anthropic, Bedrock) get them.
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise bad_request(f"{param}.image_url.url", "a data: URL must be base64-encoded")
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise bad_request(f"{param}.image_url.url", "malformed base64 in data: URL") from None
        return t.ImagePart(data=data, media_type=header[5:].split(";")[0] or None, detail=detail)
    return t.ImagePart(url=url, detail=detail)


def _user_parts(content: Any, param: str) -> list[t.ContentPart]:
    if isinstance(content, str):
        return [t.TextPart(content)]
    if not isinstance(content, list) or not content:
        raise bad_request(param, "must be a string or a non-empty list of content parts")
    parts: list[t.ContentPart] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(t.TextPart(part["text"]))
        elif kind == "image_url":
            parts.append(_image(part, f"{param}[{i}]"))
        else:
            raise bad_request(f"{param}[{i}]", "supported parts are text and image_url")
    return parts


def _tool_calls(calls: Any, param: str) -> list[t.ToolCall]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise bad_request(param, "must be a list")
    result = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"{param}[{i}].function.name", "required")
        result.append(
            t.ToolCall(str(call.get("id", "")), function["name"], str(function.get("arguments") or "{}"))
        )
    return result


def _message(message: Any, i: int) -> t.Message:
    param = f"messages[{i}]"
    if not isinstance(message, dict):
        raise bad_request(param, "must be an object")
    role = message.get("role")
    if role in ("system", "developer"):
        return t.SystemMessage(_text(message.get("content"), f"{param}.content"))
    if role == "user":
        return t.UserMessage(_user_parts(message.get("content"), f"{param}.content"))
    if role == "assistant":
        calls = _tool_calls(message.get("tool_calls"), f"{param}.tool_calls")
        text = _text(message.get("content"), f"{param}.content") or None
        return t.AssistantMessage(text=text, tool_calls=calls)
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise bad_request(f"{param}.tool_call_id", "required for a tool message")
        return t.ToolResultMessage(call_id, _text(message.get("content"), f"{param}.content"))
    raise bad_request(f"{param}.role", "must be system, developer, user, assistant or tool")


def _tools(tools: Any) -> list[t.Tool]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise bad_request("tools", "must be a list")
    result = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"tools[{i}]", "must be {'type': 'function', 'function': {'name': ...}}")
        result.append(
            t.Tool(
                name=function["name"],
                description=function.get("description") or "",
                parameters=function.get("parameters") or {},
                strict=function.get("strict"),
            )
        )
    return result


def _tool_choice(choice: Any) -> t.ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return t.ToolChoice(mode=t.ToolChoiceMode(choice))
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return t.ToolChoice(mode=t.ToolChoiceMode.TOOL, tool_name=choice["function"].get("name"))
    raise bad_request(
        "tool_choice", "must be 'auto', 'none', 'required' or {'type': 'function', 'function': {...}}"
    )


def _response_format(fmt: Any) -> t.ResponseFormat | None:
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return t.ResponseFormat(kind=t.ResponseFormatKind.TEXT)
    if kind == "json_object":
        return t.ResponseFormat(kind=t.ResponseFormatKind.JSON_OBJECT)
    if kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        spec = fmt["json_schema"]
        return t.ResponseFormat(
            kind=t.ResponseFormatKind.JSON_SCHEMA,
            schema_name=spec.get("name"),
            json_schema=spec.get("schema") or {},
            strict=spec.get("strict"),
        )
    raise bad_request("response_format", "type must be text, json_object or json_schema (with json_schema)")


def _number(body: dict[str, Any], name: str, kind: type = float) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not isinstance(value, int))
    ):
        raise bad_request(name, f"must be {'an integer' if kind is int else 'a number'}")
    return value


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise bad_request("stop", "must be a string or a list of strings")


def chat_request(body: Any) -> tuple[str, t.ChatRequest]:
    """An OpenAI chat.completions body -> (credential name, neutral request)."""
    if not isinstance(body, dict):
        raise bad_request("body", "must be a JSON object")
    credential, model = split_model(body.get("model"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages", "must be a non-empty list")
    if body.get("n", 1) != 1:
        raise bad_request("n", "only n=1 is supported")
    max_tokens = _number(body, "max_completion_tokens", int) or _number(body, "max_tokens", int)
    request = t.ChatRequest(
        model=model,
        messages=[_message(m, i) for i, m in enumerate(messages)],
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        response_format=_response_format(body.get("response_format")),
        sampling=t.SamplingParams(
            temperature=_number(body, "temperature"),
            top_p=_number(body, "top_p"),
            max_output_tokens=max_tokens,
            stop=_stop(body.get("stop")),
            seed=_number(body, "seed", int),
            presence_penalty=_number(body, "presence_penalty"),
            frequency_penalty=_number(body, "frequency_penalty"),
        ),
        provider_options={k: v for k, v in body.items() if k not in _CHAT_FIELDS},
    )
    return credential, request


def usage_json(usage: t.Usage) -> dict[str, Any]:
    total = usage.total_tokens or usage.input_tokens + usage.output_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": total,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }


def tool_calls_json(calls: list[t.ToolCall]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def chat_completion(
    response: t.ChatResponse, *, completion_id: str, model: str, created: int
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.message.text, "refusal": None}
    if response.message.tool_calls:
        message["tool_calls"] = tool_calls_json(response.message.tool_calls)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": FINISH_REASONS[response.finish_reason],
                "logprobs": None,
            }
        ],
        "usage": usage_json(response.usage),
        "system_fingerprint": None,
    }


def chunk(
    completion_id: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def delta_of(event: t.TextDelta | t.ToolCallDelta) -> dict[str, Any]:
    if isinstance(event, t.TextDelta):
        return {"content": event.text}
    call: dict[str, Any] = {"index": event.index, "function": {"arguments": event.arguments_fragment}}
    if event.id:
        call["id"] = event.id
        call["type"] = "function"
    if event.name:
        call["function"]["name"] = event.name
    return {"tool_calls": [call]}


def embed_request(body: Any) -> tuple[str, t.EmbedRequest, str]:
    """An OpenAI embeddings body -> (credential name, neutral request, encoding_format)."""
    if not isinstance(body, dict):
        raise bad_request("body", "must be a JSON object")
    credential, model = split_model(body.get("model"))
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise bad_request(
            "input", "must be a string or a non-empty list of strings (token arrays are not supported)"
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad_request("encoding_format", "must be float or base64")
    input_type = body.get("input_type")
    if input_type not in (None, "query", "document"):
        raise bad_request("input_type", "must be query or document")
    known = {"model", "input", "encoding_format", "dimensions", "input_type", "user"}
    request = t.EmbedRequest(
        model=model,
        inputs=inputs,
        dimensions=_number(body, "dimensions", int),
        input_type=t.EmbedInputType(input_type) if input_type else None,
        provider_options={k: v for k, v in body.items() if k not in known},
    )
    return credential, request, encoding


def embedding_list(response: t.EmbedResponse, *, model: str, encoding: str) -> dict[str, Any]:
    def encode(vector: list[float]) -> Any:
        if encoding == "base64":  # little-endian float32, as OpenAI returns it
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        return vector

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v)}
            for i, v in enumerate(response.vectors)
        ],
        "model": model,
        "usage": {
            "prompt_tokens": response.usage.input_tokens,
            "total_tokens": response.usage.total_tokens or response.usage.input_tokens,
        },
    }


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_json(error: HubError, status: int | None = None) -> dict[str, Any]:
    """OpenAI's error shape, so OpenAI client libraries raise their usual exceptions."""
    return {
        "error": {
            "message": error.message,
            "type": _ERROR_TYPES.get(status or error.http_status, "api_error"),
            "param": error.metadata.get("field"),
            "code": error.reason.lower(),
        }
    }
