"""ChatRequest -> a Replicate prediction, and a prediction -> ChatResponse; no network.

Model names: "owner/name" runs the model's latest version through
POST /models/{owner}/{name}/predictions (official models); "owner/name:version" or a
bare version id runs that version through POST /predictions {"version": ...}.

Inputs: Replicate's language models share a set of input names, and this is the
mapping onto them:
- system messages -> "system_prompt" (joined by blank lines);
- the conversation -> "prompt": a single user message is the prompt itself; a longer
  conversation is written out as a transcript ("User: ...", "Assistant: ...", blank
  line between turns), which the model's prompt template then wraps as one turn;
- max_output_tokens -> "max_tokens" (models with the older "max_new_tokens" take it
  through provider_options), temperature, top_p, seed, presence_penalty and
  frequency_penalty under their own names, stop -> "stop_sequences" as the
  comma-separated string these models take;
- provider_options are merged into the input last, so they can set or override any
  input the model's schema has.
Tools, JSON modes and images are not part of that shared set: requests using them
are refused rather than sent with the feature silently missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callers.base import InvalidRequest, ProviderUnavailable
from callers.types import (
    AssistantMessage,
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    ResponseFormatKind,
    SamplingParams,
    SystemMessage,
    ToolChoiceMode,
    ToolResultMessage,
    Usage,
    UserMessage,
)

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_OFFICIAL_MODEL = re.compile(rf"^(?P<owner>{_NAME})/(?P<name>{_NAME})$")
_MODEL_VERSION = re.compile(rf"^(?:{_NAME}/{_NAME}:)?(?P<version>[a-f0-9]{{64}})$")
_PREDICTION_ID = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True, slots=True)
class PredictionTarget:
    path: str  # under the API root
    version: str | None  # sent in the body when the model names a version


def prediction_target(model: str) -> PredictionTarget:
    versioned = _MODEL_VERSION.match(model)
    if versioned:
        return PredictionTarget("/predictions", versioned["version"])
    official = _OFFICIAL_MODEL.match(model)
    if official:
        return PredictionTarget(f"/models/{official['owner']}/{official['name']}/predictions", None)
    raise InvalidRequest(f"not a Replicate model: {model!r} (expected owner/name or owner/name:version)")


def prediction_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    target = prediction_target(request.model)
    body: dict[str, Any] = {"input": prediction_input(request)}
    if target.version is not None:
        body["version"] = target.version
    if stream:
        body["stream"] = True
    return body


def prediction_input(request: ChatRequest) -> dict[str, Any]:
    _refuse_unsupported(request)
    system = "\n\n".join(m.text for m in request.messages if isinstance(m, SystemMessage) and m.text)
    inputs: dict[str, Any] = {"prompt": prompt_text(request)}
    if system:
        inputs["system_prompt"] = system
    inputs.update(sampling_inputs(request.sampling))
    inputs.update(request.provider_options)
    return inputs


def _refuse_unsupported(request: ChatRequest) -> None:
    wants_a_tool = request.tool_choice is not None and request.tool_choice.mode in (
        ToolChoiceMode.REQUIRED,
        ToolChoiceMode.TOOL,
    )
    if request.tools or wants_a_tool:
        raise InvalidRequest(
            "Replicate's language models take no tools; this request needs a provider with tools"
        )
    if request.response_format is not None and request.response_format.kind is not ResponseFormatKind.TEXT:
        raise InvalidRequest(
            "Replicate offers no JSON mode; ask for JSON in the prompt or use another provider"
        )
    for message in request.messages:
        if isinstance(message, ToolResultMessage) or (
            isinstance(message, AssistantMessage) and message.tool_calls
        ):
            raise InvalidRequest("Replicate's language models take no tool calls or tool results")
        if isinstance(message, UserMessage) and any(isinstance(p, ImagePart) for p in message.parts):
            raise InvalidRequest(
                "images are model-specific inputs on Replicate; pass them in provider_options"
            )


def prompt_text(request: ChatRequest) -> str:
    turns = [m for m in request.messages if isinstance(m, UserMessage | AssistantMessage)]
    if not turns or not isinstance(turns[-1], UserMessage):
        raise InvalidRequest("the conversation must end with a user message")
    if len(turns) == 1:
        return _text_of(turns[0])
    return "\n\n".join(
        f"User: {_text_of(turn)}" if isinstance(turn, UserMessage) else f"Assistant: {_text_of(turn)}"
        for turn in turns
    )


def _text_of(message: UserMessage | AssistantMessage) -> str:
    if isinstance(message, AssistantMessage):
        return message.text or ""
    return "".join(getattr(part, "text", "") for part in message.parts)


def sampling_inputs(sampling: SamplingParams) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if sampling.max_output_tokens is not None:
        inputs["max_tokens"] = sampling.max_output_tokens
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(sampling, name)
        if value is not None:
            inputs[name] = value
    if sampling.stop:
        if any("," in stop for stop in sampling.stop):
            raise InvalidRequest(
                "Replicate takes stop sequences as one comma-separated string; none may hold a comma"
            )
        inputs["stop_sequences"] = ",".join(sampling.stop)
    return inputs


def prediction_id(prediction: Mapping[str, Any]) -> str:
    found = prediction.get("id")
    if not isinstance(found, str) or not _PREDICTION_ID.match(found):
        raise ProviderUnavailable("Replicate answered without a usable prediction id")
    return found


def output_text(prediction: Mapping[str, Any]) -> str:
    """Language models answer a list of text pieces (tokens) to join, or one string."""
    output = prediction.get("output")
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(isinstance(piece, str) for piece in output):
        return "".join(output)
    raise InvalidRequest("this Replicate model does not answer with text; it is not a language model")


def usage(prediction: Mapping[str, Any]) -> Usage:
    metrics = prediction.get("metrics") or {}
    input_tokens = int(metrics.get("input_token_count") or 0)
    output_tokens = int(metrics.get("output_token_count") or 0)
    return Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
    )


def finish_reason(request: ChatRequest, used: Usage) -> FinishReason:
    """Replicate reports no stop reason: a model that produced exactly its token limit hit it."""
    limit = request.sampling.max_output_tokens
    if limit is not None and used.output_tokens >= limit:
        return FinishReason.LENGTH
    return FinishReason.STOP


def failure(prediction: Mapping[str, Any]) -> ProviderUnavailable:
    """A prediction that ended without output: the model failed, or it was stopped."""
    status = prediction.get("status")
    error = prediction.get("error")
    detail = f": {error}" if error else ""
    return ProviderUnavailable(f"the Replicate prediction {status}{detail}")


def chat_response(request: ChatRequest, prediction: Mapping[str, Any]) -> ChatResponse:
    if prediction.get("status") != "succeeded":
        raise failure(prediction)
    text = output_text(prediction)
    used = usage(prediction)
    return ChatResponse(
        message=AssistantMessage(text=text),
        finish_reason=finish_reason(request, used),
        usage=used,
        model=request.model,
        request_id=prediction_id(prediction),
    )
