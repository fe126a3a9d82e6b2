"""What the chatbot sends to and gets from the hub, as small local types.

The rest of the chatbot works with these, never with the generated messages, so
that it stays readable and the proto details stay in hub_client.py. The names of
finish reasons, containers and encodings are the proto enum names, lower case and
without their prefix ("stop", "wav", "linear16").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
InputType = Literal["query", "document"]


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model the way the hub names one: a credential of the tenant and its model, or a route.

    `ModelRef.parse("openai/gpt-4o-mini")` is credential "openai", model "gpt-4o-mini"
    (the first "/" splits; the model may hold more, as OpenRouter's do);
    `ModelRef.parse("voice/")` is credential "voice" with no model: the provider's
    default (speech requests allow it; chat and embed need a model);
    `ModelRef.parse("smart")` is the route "smart" (route names have no "/"), sent
    with an empty credential, which is how the hub's requests name a route.
    """

    credential: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        credential, slash, model = text.strip().partition("/")
        if not slash:
            return cls.route(credential)
        if not credential:
            raise ValueError(f"model {text!r}: write credential/model, or a route name")
        return cls(credential, model)

    @classmethod
    def route(cls, name: str) -> ModelRef:
        if not name or "/" in name:
            raise ValueError(f"route {name!r}: a route name is not empty and has no '/'")
        return cls("", name)

    @property
    def is_route(self) -> bool:
        return not self.credential

    def __str__(self) -> str:
        return self.model if self.is_route else f"{self.credential}/{self.model}"


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # part of input_tokens, served from the provider's prompt cache
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.total_tokens + other.total_tokens,
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """Whom a hub token belongs to (IdentityService.WhoAmI): scopes are "admin", "invoke"."""

    tenant: str
    token_id: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]  # one per text, in the order given
    usage: Usage
    model: str  # as the provider reported it


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    text: str
    finish_reason: str  # "stop", "length", "content_filter", ...
    usage: Usage
    model: str
    provider: str
    provider_request_id: str = ""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ChatEnd:
    """The last item of a streamed answer."""

    finish_reason: str
    usage: Usage
    provider: str
    provider_request_id: str = ""
    time_to_first_token: float | None = None  # seconds, as the hub measured it


@dataclass(frozen=True, slots=True)
class RerankHit:
    index: int  # position in the documents given
    score: float


@dataclass(frozen=True, slots=True)
class Reranked:
    hits: list[RerankHit]  # best first
    usage: Usage


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """ "" and 0 mean unset: a file with a header (wav, mp3, ogg, webm, flac) needs only
    its container; raw audio needs encoding and sample rate."""

    container: str = ""  # raw, wav, ogg, webm, mp3, mp4, flac
    encoding: str = ""  # linear16, mulaw, alaw, mp3, opus, flac, aac
    sample_rate_hz: int = 0
    channels: int = 0


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float  # seconds from the start of the audio
    end: float


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    audio_seconds: float
    provider: str
    confidence: float | None = None
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Speech:
    audio: bytes
    audio_format: AudioFormat
    audio_seconds: float
    characters: int
    provider: str


@dataclass(frozen=True, slots=True)
class AudioPiece:
    data: bytes  # the next piece of audio, in the asked format


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """The last item of streamed speech."""

    audio_seconds: float
    characters: int
    provider: str


@dataclass(frozen=True, slots=True)
class TranscriptPiece:
    """A streamed transcription result; a final one is not revised, an interim one is replaced."""

    text: str
    is_final: bool
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    at: float  # seconds into the stream: the caller began to speak (barge-in)


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    at: float  # seconds into the stream: the provider heard the end of an utterance


@dataclass(frozen=True, slots=True)
class TranscriptionEnd:
    """The last item of a streamed transcription."""

    audio_seconds: float
    provider: str


@dataclass(frozen=True, slots=True)
class Voice:
    id: str  # what synthesize's `voice` takes
    name: str
    languages: list[str]  # BCP-47
    gender: str  # "female", "male", "neutral" or ""


@dataclass(frozen=True, slots=True)
class Flush:
    """In a stream of text fragments to synthesize: speak what is buffered now."""


FLUSH = Flush()
