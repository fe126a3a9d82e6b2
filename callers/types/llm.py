"""Chat, embedding and rerank requests and responses, provider-neutral.

Plain data only: converting to and from a vendor's wire format is a set of functions
in that vendor's package, so these classes never learn any provider's quirks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from callers.types.common import JsonValue


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # Input tokens served from the provider's prompt cache (a subset of input_tokens).
    cached_input_tokens: int = 0
    total_tokens: int = 0


# --- chat: messages -------------------------------------------------------------


@dataclass(slots=True)
class TextPart:
    text: str


@dataclass(slots=True)
class ImagePart:
    """An image given either by URL or inline bytes (then media_type is needed)."""

    url: str | None = None
    data: bytes | None = None
    media_type: str | None = None  # e.g. "image/png"
    detail: str | None = None  # OpenAI's "low" / "high" / "auto"; others ignore it


ContentPart: TypeAlias = TextPart | ImagePart


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    # The arguments as the model produced them (JSON text). Kept as text because
    # models can emit invalid JSON, and the caller of the hub must see it verbatim.
    arguments: str


@dataclass(slots=True)
class SystemMessage:
    text: str


@dataclass(slots=True)
class UserMessage:
    parts: list[ContentPart]


@dataclass(slots=True)
class AssistantMessage:
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(slots=True)
class ToolResultMessage:
    tool_call_id: str
    content: str
    is_error: bool = False


Message: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage


# --- chat: request --------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, JsonValue] = field(default_factory=dict)  # a JSON Schema object
    strict: bool | None = None


class ToolChoiceMode(StrEnum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    TOOL = "tool"  # exactly the tool named in ToolChoice.tool_name


@dataclass(slots=True)
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    tool_name: str | None = None


class ResponseFormatKind(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass(slots=True)
class ResponseFormat:
    kind: ResponseFormatKind = ResponseFormatKind.TEXT
    schema_name: str | None = None
    json_schema: dict[str, JsonValue] | None = None
    strict: bool | None = None


@dataclass(slots=True)
class SamplingParams:
    # None everywhere means "the provider's default", never a value we invented.
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    provider_options: dict[str, JsonValue] = field(default_factory=dict)


# --- chat: response and stream ----------------------------------------------------


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    ERROR = "error"


@dataclass(slots=True)
class ChatResponse:
    message: AssistantMessage
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    request_id: str | None = None


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of tool call number `index`; id and name arrive with its first fragment."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments_fragment: str = ""


@dataclass(slots=True)
class ChatStreamEnd:
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    request_id: str | None = None


ChatEvent: TypeAlias = TextDelta | ToolCallDelta | ChatStreamEnd


# --- embeddings and rerank ------------------------------------------------------


class EmbedInputType(StrEnum):
    QUERY = "query"
    DOCUMENT = "document"


@dataclass(slots=True)
class EmbedRequest:
    model: str
    inputs: list[str]
    dimensions: int | None = None
    input_type: EmbedInputType | None = None
    provider_options: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(slots=True)
class EmbedResponse:
    vectors: list[list[float]]  # one per input, in input order
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    request_id: str | None = None


@dataclass(slots=True)
class RerankRequest:
    model: str
    query: str
    documents: list[str]
    top_n: int | None = None
    provider_options: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(slots=True)
class RerankResult:
    index: int  # position in RerankRequest.documents
    score: float


@dataclass(slots=True)
class RerankResponse:
    results: list[RerankResult]  # best first
    usage: Usage = field(default_factory=Usage)
    request_id: str | None = None
