"""The chat API's protobuf messages <-> the callers' provider-neutral types.

Plain functions, no I/O. Bad input is reported with the field path it came from
(INVALID_ARGUMENT naming the field), before any provider is called.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from callers.types import llm as t
from integration_hub.errors import invalid_field
from integration_hub.v1 import chat_pb2 as pb

_TOOL_CHOICE = {
    pb.TOOL_CHOICE_MODE_AUTO: t.ToolChoiceMode.AUTO,
    pb.TOOL_CHOICE_MODE_NONE: t.ToolChoiceMode.NONE,
    pb.TOOL_CHOICE_MODE_REQUIRED: t.ToolChoiceMode.REQUIRED,
    pb.TOOL_CHOICE_MODE_TOOL: t.ToolChoiceMode.TOOL,
}
_RESPONSE_FORMAT = {
    pb.RESPONSE_FORMAT_KIND_TEXT: t.ResponseFormatKind.TEXT,
    pb.RESPONSE_FORMAT_KIND_JSON_OBJECT: t.ResponseFormatKind.JSON_OBJECT,
    pb.RESPONSE_FORMAT_KIND_JSON_SCHEMA: t.ResponseFormatKind.JSON_SCHEMA,
}
FINISH_REASON_TO_PROTO = {
    t.FinishReason.STOP: pb.FINISH_REASON_STOP,
    t.FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    t.FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
    t.FinishReason.CONTENT_FILTER: pb.FINISH_REASON_CONTENT_FILTER,
    t.FinishReason.ERROR: pb.FINISH_REASON_ERROR,
}
_INPUT_TYPE = {
    pb.EMBED_INPUT_TYPE_QUERY: t.EmbedInputType.QUERY,
    pb.EMBED_INPUT_TYPE_DOCUMENT: t.EmbedInputType.DOCUMENT,
}


def struct_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


def _text_of(message: pb.ChatMessage, path: str) -> str:
    texts = []
    for i, part in enumerate(message.content):
        if part.WhichOneof("part") != "text":
            raise invalid_field(f"{path}.content[{i}]", "only text is allowed in this role")
        texts.append(part.text)
    return "".join(texts)


def _part(part: pb.ContentPart, path: str) -> t.ContentPart:
    kind = part.WhichOneof("part")
    if kind == "text":
        return t.TextPart(part.text)
    if kind == "image":
        image = part.image
        if bool(image.url) == bool(image.data):
            raise invalid_field(f"{path}.image", "give exactly one of url or data")
        if image.data and not image.media_type:
            raise invalid_field(f"{path}.image.media_type", "required with inline data")
        return t.ImagePart(
            url=image.url or None,
            data=image.data or None,
            media_type=image.media_type or None,
            detail=image.detail or None,
        )
    raise invalid_field(path, "empty content part: set text or image")


def message_from_proto(message: pb.ChatMessage, path: str) -> t.Message:
    if message.role == pb.ROLE_SYSTEM:
        return t.SystemMessage(_text_of(message, path))
    if message.role == pb.ROLE_USER:
        if not message.content:
            raise invalid_field(f"{path}.content", "a user message needs content")
        return t.UserMessage([_part(p, f"{path}.content[{i}]") for i, p in enumerate(message.content)])
    if message.role == pb.ROLE_ASSISTANT:
        calls = [t.ToolCall(c.id, c.name, c.arguments or "{}") for c in message.tool_calls]
        text = _text_of(message, path) if message.content else None
        if text is None and not calls:
            raise invalid_field(path, "an assistant message needs content or tool_calls")
        return t.AssistantMessage(text=text, tool_calls=calls)
    if message.role == pb.ROLE_TOOL:
        if not message.tool_call_id:
            raise invalid_field(f"{path}.tool_call_id", "required for a tool message")
        return t.ToolResultMessage(message.tool_call_id, _text_of(message, path), is_error=message.is_error)
    raise invalid_field(f"{path}.role", "required: ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL")


def chat_request_from_proto(request: pb.ChatRequest) -> t.ChatRequest:
    if not request.model:
        raise invalid_field("model", "required")
    if not request.messages:
        raise invalid_field("messages", "at least one message is required")
    messages = [message_from_proto(m, f"messages[{i}]") for i, m in enumerate(request.messages)]
    tools = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(request.tools)]
    return t.ChatRequest(
        model=request.model,
        messages=messages,
        tools=tools,
        tool_choice=_tool_choice(request) if request.HasField("tool_choice") else None,
        response_format=_response_format(request) if request.HasField("response_format") else None,
        sampling=t.SamplingParams(
            temperature=request.temperature if request.HasField("temperature") else None,
            top_p=request.top_p if request.HasField("top_p") else None,
            max_output_tokens=_positive(request, "max_output_tokens"),
            stop=list(request.stop),
            seed=request.seed if request.HasField("seed") else None,
            presence_penalty=request.presence_penalty if request.HasField("presence_penalty") else None,
            frequency_penalty=request.frequency_penalty if request.HasField("frequency_penalty") else None,
        ),
        provider_options=struct_to_dict(request.provider_options),
    )


def _positive(request: pb.ChatRequest, name: str) -> int | None:
    if not request.HasField(name):  # type: ignore[arg-type]
        return None
    value: int = getattr(request, name)
    if value <= 0:
        raise invalid_field(name, "must be greater than 0")
    return value


def _tool(tool: pb.Tool, path: str) -> t.Tool:
    if not tool.name:
        raise invalid_field(f"{path}.name", "required")
    return t.Tool(
        name=tool.name,
        description=tool.description,
        parameters=struct_to_dict(tool.parameters),
        strict=tool.strict if tool.HasField("strict") else None,
    )


def _tool_choice(request: pb.ChatRequest) -> t.ToolChoice:
    choice = request.tool_choice
    mode = _TOOL_CHOICE.get(choice.mode)
    if mode is None:
        raise invalid_field("tool_choice.mode", "required")
    if mode is t.ToolChoiceMode.TOOL and choice.tool_name not in {tool.name for tool in request.tools}:
        raise invalid_field("tool_choice.tool_name", "must name one of the request's tools")
    return t.ToolChoice(mode=mode, tool_name=choice.tool_name or None)


def _response_format(request: pb.ChatRequest) -> t.ResponseFormat:
    fmt = request.response_format
    kind = _RESPONSE_FORMAT.get(fmt.kind)
    if kind is None:
        raise invalid_field("response_format.kind", "required")
    if kind is t.ResponseFormatKind.JSON_SCHEMA and not fmt.HasField("json_schema"):
        raise invalid_field("response_format.json_schema", "required for RESPONSE_FORMAT_KIND_JSON_SCHEMA")
    return t.ResponseFormat(
        kind=kind,
        schema_name=fmt.schema_name or None,
        json_schema=struct_to_dict(fmt.json_schema) if fmt.HasField("json_schema") else None,
        strict=fmt.strict if fmt.HasField("strict") else None,
    )


def usage_to_proto(usage: t.Usage) -> pb.Usage:
    total = usage.total_tokens or usage.input_tokens + usage.output_tokens
    return pb.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_input_tokens,
        total_tokens=total,
    )


def assistant_to_proto(message: t.AssistantMessage) -> pb.ChatMessage:
    proto = pb.ChatMessage(role=pb.ROLE_ASSISTANT)
    if message.text:
        proto.content.add(text=message.text)
    for call in message.tool_calls:
        proto.tool_calls.add(id=call.id, name=call.name, arguments=call.arguments)
    return proto


def chat_response_to_proto(response: t.ChatResponse, provider: str) -> pb.ChatResponse:
    return pb.ChatResponse(
        message=assistant_to_proto(response.message),
        finish_reason=FINISH_REASON_TO_PROTO[response.finish_reason],
        usage=usage_to_proto(response.usage),
        provider_request_id=response.request_id or "",
        model=response.model,
        provider=provider,
    )


def chat_event_to_proto(event: t.ChatEvent, provider: str) -> pb.StreamChatResponse:
    if isinstance(event, t.TextDelta):
        return pb.StreamChatResponse(text_delta=pb.TextDelta(text=event.text))
    if isinstance(event, t.ToolCallDelta):
        return pb.StreamChatResponse(
            tool_call_delta=pb.ToolCallDelta(
                index=event.index,
                id=event.id or "",
                name=event.name or "",
                arguments_fragment=event.arguments_fragment,
            )
        )
    return pb.StreamChatResponse(
        end=pb.StreamEnd(
            finish_reason=FINISH_REASON_TO_PROTO[event.finish_reason],
            usage=usage_to_proto(event.usage),
            provider_request_id=event.request_id or "",
            provider=provider,
        )
    )


def embed_request_from_proto(request: pb.EmbedRequest) -> t.EmbedRequest:
    if not request.model:
        raise invalid_field("model", "required")
    if not request.inputs:
        raise invalid_field("inputs", "at least one input is required")
    if request.HasField("dimensions") and request.dimensions <= 0:
        raise invalid_field("dimensions", "must be greater than 0")
    return t.EmbedRequest(
        model=request.model,
        inputs=list(request.inputs),
        dimensions=request.dimensions if request.HasField("dimensions") else None,
        input_type=_INPUT_TYPE.get(request.input_type),
        provider_options=struct_to_dict(request.provider_options),
    )


def embed_response_to_proto(response: t.EmbedResponse) -> pb.EmbedResponse:
    return pb.EmbedResponse(
        embeddings=[pb.Embedding(index=i, values=v) for i, v in enumerate(response.vectors)],
        usage=usage_to_proto(response.usage),
        model=response.model,
        provider_request_id=response.request_id or "",
    )


def rerank_request_from_proto(request: pb.RerankRequest) -> t.RerankRequest:
    if not request.model:
        raise invalid_field("model", "required")
    if not request.query:
        raise invalid_field("query", "required")
    if not request.documents:
        raise invalid_field("documents", "at least one document is required")
    if request.top_n < 0:
        raise invalid_field("top_n", "must not be negative")
    return t.RerankRequest(
        model=request.model,
        query=request.query,
        documents=list(request.documents),
        top_n=request.top_n or None,
        provider_options=struct_to_dict(request.provider_options),
    )


def rerank_response_to_proto(response: t.RerankResponse) -> pb.RerankResponse:
    return pb.RerankResponse(
        results=[pb.RerankResult(index=r.index, score=r.score) for r in response.results],
        usage=usage_to_proto(response.usage),
        provider_request_id=response.request_id or "",
    )
