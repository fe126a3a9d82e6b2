"""OpenAI's chat-completions and embeddings JSON, to and from callers.types, by hand.

This is the hot path of every OpenAI-wire vendor, so it is plain functions over
dicts: no SDK models, no pydantic, nothing compiled or built per call. Bodies are
encoded with orjson straight from the dataclasses; answers are read straight from
the decoded dicts. Any answer that does not have the documented shape is reported
as ProviderUnavailable ("the provider misbehaved"), never as a KeyError.

Reference: https://platform.openai.com/docs/api-reference/chat and /embeddings.
"""

from __future__ import annotations

import base64
from array import array
from typing import Any

import orjson

from callers.base import CallerError, InvalidRequest, ProviderUnavailable
from callers.openai.transport import stream_error
from callers.types import (
    AssistantMessage,
    ChatEvent,
    ChatRequest,
    ChatResponse,
    ChatStreamEnd,
    EmbedRequest,
    EmbedResponse,
    FinishReason,
    ImagePart,
    Message,
    ResponseFormat,
    ResponseFormatKind,
    SystemMessage,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    ToolResultMessage,
    Usage,
    UserMessage,
)

# finish_reason as OpenAI and the servers copying it spell it. "function_call" is
# the pre-tools spelling; "eos_token"/"eos" come from older TGI and vLLM builds;
# "error" is OpenRouter's. Anything else unknown reads as a normal stop.
_FINISH_REASONS: dict[object, FinishReason] = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "max_tokens": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
    "error": FinishReason.ERROR,
    "eos_token": FinishReason.STOP,
    "eos": FinishReason.STOP,
}

_TOOL_CHOICE_MODES = {
    ToolChoiceMode.AUTO: "auto",
    ToolChoiceMode.NONE: "none",
    ToolChoiceMode.REQUIRED: "required",
}

_JSON_OBJECT = {"type": "json_object"}
_STREAM_OPTIONS = {"include_usage": True}
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError)


def finish_reason(raw: object, has_tool_calls: bool) -> FinishReason:
    reason = _FINISH_REASONS.get(raw, FinishReason.STOP)
    # OpenAI answers a forced tool choice with "stop" although the message is a tool
    # call, and several servers always say "stop"; callers loop on TOOL_CALLS.
    if has_tool_calls and reason is FinishReason.STOP:
        return FinishReason.TOOL_CALLS
    return reason


# --- request ---------------------------------------------------------------------


def _image_url(part: ImagePart) -> dict[str, Any]:
    if part.url is not None:
        url = part.url
    elif part.data is not None:
        if not part.media_type:
            raise InvalidRequest("an inline image needs its media_type (e.g. image/png)")
        url = f"data:{part.media_type};base64,{base64.b64encode(part.data).decode('ascii')}"
    else:
        raise InvalidRequest("an image part needs a url or data")
    image: dict[str, Any] = {"url": url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _user_content(parts: list[TextPart | ImagePart]) -> str | list[dict[str, Any]]:
    # The plain-string form for text only: every OpenAI-compatible server takes it.
    if len(parts) == 1 and type(parts[0]) is TextPart:
        return parts[0].text
    content: list[dict[str, Any]] = []
    for part in parts:
        if type(part) is TextPart:
            content.append({"type": "text", "text": part.text})
        elif type(part) is ImagePart:
            content.append(_image_url(part))
        else:
            raise InvalidRequest(f"unsupported content part {type(part).__name__}")
    return content


def encode_messages(messages: list[Message]) -> list[dict[str, Any]]:
    encoded: list[dict[str, Any]] = []
    append = encoded.append
    for message in messages:
        kind = type(message)
        if kind is UserMessage:
            append({"role": "user", "content": _user_content(message.parts)})  # type: ignore[union-attr]
        elif kind is SystemMessage:
            append({"role": "system", "content": message.text})  # type: ignore[union-attr]
        elif kind is AssistantMessage:
            calls = message.tool_calls  # type: ignore[union-attr]
            text = message.text  # type: ignore[union-attr]
            item: dict[str, Any] = {"role": "assistant", "content": text if text is not None or calls else ""}
            if calls:
                item["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            append(item)
        elif kind is ToolResultMessage:
            # OpenAI has no error flag on a tool result: the content says what happened.
            append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}  # type: ignore[union-attr]
            )
        else:
            raise InvalidRequest(f"unsupported message type {kind.__name__}")
    return encoded


def encode_tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    if tool.parameters:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def encode_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode is ToolChoiceMode.TOOL:
        if not choice.tool_name:
            raise InvalidRequest("tool_choice TOOL needs the tool_name")
        return {"type": "function", "function": {"name": choice.tool_name}}
    return _TOOL_CHOICE_MODES[choice.mode]


def encode_response_format(fmt: ResponseFormat) -> dict[str, Any] | None:
    if fmt.kind is ResponseFormatKind.JSON_OBJECT:
        return _JSON_OBJECT
    if fmt.kind is ResponseFormatKind.JSON_SCHEMA:
        if fmt.json_schema is None:
            raise InvalidRequest("response_format JSON_SCHEMA needs the json_schema")
        # `name` is required by the API; "response" when the request did not name it.
        spec: dict[str, Any] = {"name": fmt.schema_name or "response", "schema": fmt.json_schema}
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": spec}
    return None  # TEXT is every server's default: nothing to send


def chat_payload(
    request: ChatRequest, max_tokens_field: str, *, stream: bool, stream_usage: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "messages": encode_messages(request.messages)}
    sampling = request.sampling
    if sampling.temperature is not None:
        body["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        body["top_p"] = sampling.top_p
    if sampling.max_output_tokens is not None:
        body[max_tokens_field] = sampling.max_output_tokens
    if sampling.stop:
        body["stop"] = sampling.stop
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.presence_penalty is not None:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty is not None:
        body["frequency_penalty"] = sampling.frequency_penalty
    if request.tools:
        body["tools"] = [encode_tool(tool) for tool in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = encode_tool_choice(request.tool_choice)
    if request.response_format is not None:
        fmt = encode_response_format(request.response_format)
        if fmt is not None:
            body["response_format"] = fmt
    if stream:
        body["stream"] = True
        if stream_usage:  # without it the stream carries no token counts at all
            body["stream_options"] = _STREAM_OPTIONS
    if request.provider_options:
        # Documented pass-through: the vendor's own fields, top level, winning over ours.
        body.update(request.provider_options)
    return body


def chat_body(
    request: ChatRequest, max_tokens_field: str, *, stream: bool, stream_usage: bool = True
) -> bytes:
    return orjson.dumps(chat_payload(request, max_tokens_field, stream=stream, stream_usage=stream_usage))


def embed_body(request: EmbedRequest) -> bytes:
    # input_type has no OpenAI equivalent (it is Cohere's and Voyage's): not sent.
    body: dict[str, Any] = {"model": request.model, "input": request.inputs, "encoding_format": "float"}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if request.provider_options:
        body.update(request.provider_options)
    return orjson.dumps(body)


# --- response --------------------------------------------------------------------


def decode_usage(usage: Any) -> Usage:
    if not usage:
        return Usage()
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") or 0) if details else 0
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cached_input_tokens=cached,
        total_tokens=usage.get("total_tokens") or prompt + completion,
    )


def _arguments(value: Any) -> str:
    # Always JSON text on OpenAI; a few compatible servers send the decoded object.
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def parse_chat(data: Any, request_id: str | None) -> ChatResponse:
    try:
        choices = data.get("choices")
        if not choices:
            error = data.get("error")
            if error:  # OpenRouter reports some failures in a 200 body
                raise stream_error(error)
            raise ProviderUnavailable("the provider answered without any choice")
        choice = choices[0]
        message = choice["message"]
        raw_calls = message.get("tool_calls")
        calls = (
            [
                ToolCall(
                    id=call.get("id") or f"call_{index}",
                    name=call["function"]["name"],
                    arguments=_arguments(call["function"].get("arguments", "")),
                )
                for index, call in enumerate(raw_calls)
            ]
            if raw_calls
            else []
        )
        return ChatResponse(
            message=AssistantMessage(text=message.get("content"), tool_calls=calls),
            finish_reason=finish_reason(choice.get("finish_reason"), bool(calls)),
            usage=decode_usage(data.get("usage")),
            model=data.get("model") or "",
            request_id=request_id or data.get("id"),
        )
    except _SHAPE_ERRORS:
        raise ProviderUnavailable("unexpected chat completion from the provider (missing fields)") from None


def parse_embeddings(data: Any, request_id: str | None, model: str) -> EmbedResponse:
    try:
        items = data["data"]
        vectors: list[list[float]] = [[]] * len(items)
        for position, item in enumerate(items):
            vector = item["embedding"]
            if isinstance(vector, str):  # encoding_format "base64" through provider_options
                floats = array("f")
                floats.frombytes(base64.b64decode(vector))
                vector = floats.tolist()
            vectors[item.get("index", position)] = vector
        usage = data.get("usage") or {}
        prompt = usage.get("prompt_tokens") or 0
        return EmbedResponse(
            vectors=vectors,
            usage=Usage(input_tokens=prompt, total_tokens=usage.get("total_tokens") or prompt),
            model=data.get("model") or model,
            request_id=request_id,
        )
    except _SHAPE_ERRORS:
        raise ProviderUnavailable("unexpected embeddings answer from the provider (missing fields)") from None


class StreamDecoder:
    """Chat-completion chunks (decoded JSON) to ChatEvents, with what the end needs.

    Tool calls arrive as fragments keyed by `index`: the first names the call (id,
    function.name), later ones carry pieces of the arguments; several calls may be
    interleaved. Usage comes in a last chunk with empty `choices` (stream_options
    include_usage), after the chunk carrying finish_reason.
    """

    __slots__ = ("_finish", "_last_call_index", "_saw_tool_call", "_usage", "request_id")

    def __init__(self, request_id: str | None = None) -> None:
        self.request_id = request_id
        self._finish: object = None
        self._usage: Any = None
        self._saw_tool_call = False
        self._last_call_index = -1

    def feed(self, payload: bytes) -> list[ChatEvent]:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ProviderUnavailable("the provider sent a malformed stream event (not JSON)") from None
        try:
            return self._events(chunk)
        except CallerError:
            raise
        except _SHAPE_ERRORS:
            raise ProviderUnavailable("the provider sent a stream event of unexpected shape") from None

    def _events(self, chunk: Any) -> list[ChatEvent]:
        # Errors mid-stream arrive as data: OpenAI/OpenRouter {"error": {...}}, vLLM
        # {"object": "error", "message": ...}.
        error = chunk.get("error")
        if error:
            raise stream_error(error)
        if chunk.get("object") == "error":
            raise stream_error(chunk)
        if not self.request_id:  # no request-id header: the completion's id (Azure opens with "")
            self.request_id = chunk.get("id") or None
        usage = chunk.get("usage")
        if usage:
            self._usage = usage
        events: list[ChatEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not part of the common types
            delta = choice.get("delta")
            if delta:
                text = delta.get("content")
                if text:
                    events.append(TextDelta(text))
                calls = delta.get("tool_calls")
                if calls:
                    self._saw_tool_call = True
                    for call in calls:
                        events.append(self._call_delta(call))
            reason = choice.get("finish_reason")
            if reason:
                self._finish = reason
        return events

    def _call_delta(self, call: Any) -> ToolCallDelta:
        index = call.get("index")
        call_id = call.get("id")
        if index is None:
            # A few servers omit the index: a fragment with a new id starts a new call.
            last = self._last_call_index
            index = last + 1 if call_id or last < 0 else last
        self._last_call_index = index
        function = call.get("function") or {}
        arguments = function.get("arguments")
        return ToolCallDelta(
            index=index,
            id=call_id or None,
            name=function.get("name") or None,
            arguments_fragment=_arguments(arguments) if arguments else "",
        )

    def end(self) -> ChatStreamEnd:
        return ChatStreamEnd(
            finish_reason=finish_reason(self._finish, self._saw_tool_call),
            usage=decode_usage(self._usage),
            request_id=self.request_id,
        )

    def end_without_done(self) -> ChatStreamEnd:
        """The stream closed cleanly but without `data: [DONE]`.

        Complete if a finish_reason was seen (some servers skip [DONE]); otherwise
        the answer was cut short, which must not pass for a finished one.
        """
        if self._finish is None:
            raise ProviderUnavailable("the provider ended the stream before the answer was complete")
        return self.end()
