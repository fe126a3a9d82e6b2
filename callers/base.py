"""What every caller shares: capabilities, the secret it is handed, errors, protocols.

A caller knows one provider and nothing of the hub: it is given the decrypted secret
fields and the credential's options for the duration of one call, talks to the
provider, and answers with the common types or raises one of the errors below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from callers.errors import (
    AuthenticationFailed,
    CallerError,
    InvalidRequest,
    MissingExtra,
    NotFound,
    NotSupported,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    error_from_http_status,
    parse_retry_after,
)
from callers.types import (
    AudioChunk,
    ChatEvent,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    HangupRequest,
    PlaceCallRequest,
    PlaceCallResponse,
    RerankRequest,
    RerankResponse,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    SynthesizeRequest,
    SynthesizeResponse,
    TextInput,
    TranscribeRequest,
    TranscribeResponse,
    Voice,
)

__all__ = [
    "AuthenticationFailed",
    "CallerError",
    "Capability",
    "ChatCaller",
    "Embedder",
    "InvalidRequest",
    "MissingExtra",
    "NotFound",
    "NotSupported",
    "PermissionDenied",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "Reranker",
    "SecretFields",
    "StreamChatCaller",
    "StreamSynthesizer",
    "StreamTextSynthesizer",
    "StreamTranscriber",
    "Synthesizer",
    "Telephony",
    "Transcriber",
    "Verifier",
    "VerifyResult",
    "VoiceLister",
    "error_from_http_status",
    "parse_retry_after",
]


class Capability(StrEnum):
    CHAT = "chat"
    STREAM_CHAT = "stream_chat"
    EMBED = "embed"
    RERANK = "rerank"
    STT = "stt"
    STREAM_STT = "stream_stt"
    TTS = "tts"
    STREAM_TTS = "stream_tts"
    STREAM_TTS_INPUT = "stream_tts_input"  # text fragments in, audio out (websocket TTS)
    VOICES = "voices"
    TELEPHONY = "telephony"
    VERIFY = "verify"


class SecretFields(Protocol):
    """The decrypted secret of one credential, as the hub's vault hands it over.

    Valid for one call only: never store it, cache it, or put a value from it into an
    exception or a log line. Read a field at the moment it goes on the wire.
    """

    def reveal(self, name: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None: ...

    def field_names(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class VerifyResult:
    # False only when the provider definitively rejected the credential (401/403);
    # "could not tell" (outage, throttling, timeout) is raised as an error instead.
    valid: bool
    reason: str
    detail: dict[str, str] = field(default_factory=dict)  # e.g. {"models": "12"}


# The protocols below are runtime-checkable so that the registry can confirm that a
# capability module really exports what its capability promises before calling it.
# Every method receives the secret and the options afresh, so implementations are
# stateless objects that may be shared by concurrent calls.
#
# `timeout` (seconds) is a parameter rather than the caller's `asyncio.timeout`: it is
# handed to the provider's SDK or HTTP client, which applies it per connect/read and
# reports it as its own timeout error, so the caller can classify it as ProviderTimeout
# instead of being cancelled mid-request.


@runtime_checkable
class Verifier(Protocol):
    async def verify(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        *,
        timeout: float,
    ) -> VerifyResult: ...


@runtime_checkable
class ChatCaller(Protocol):
    async def chat(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: ChatRequest,
        *,
        timeout: float,
    ) -> ChatResponse: ...


# Streaming methods are declared with a plain `def` returning an AsyncIterator: that is
# the type of an `async def ... yield` generator, which is how implementations write them.


@runtime_checkable
class StreamChatCaller(Protocol):
    def stream_chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> AsyncIterator[ChatEvent]: ...


@runtime_checkable
class Embedder(Protocol):
    async def embed(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: EmbedRequest,
        *,
        timeout: float,
    ) -> EmbedResponse: ...


@runtime_checkable
class Reranker(Protocol):
    async def rerank(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: RerankRequest,
        *,
        timeout: float,
    ) -> RerankResponse: ...


@runtime_checkable
class Transcriber(Protocol):
    async def transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: TranscribeRequest,
        *,
        timeout: float,
    ) -> TranscribeResponse: ...


# Speech, the contract on audio (the hub holds its side before a caller is called):
# - input audio has been probed against its declared format; a caller converts it to
#   what its provider accepts with `callers.audio` (decode/convert/StreamConverter);
# - output audio is exactly the request's `output_format`, natively or converted;
# - streams never hold a whole utterance: chunk in, chunk out;
# - when the consumer stops iterating (cancel, client gone), the generator is closed,
#   and its `finally` must close the provider connection at once (within 100 ms).


@runtime_checkable
class StreamTranscriber(Protocol):
    # `timeout` bounds connecting and each silence from the provider, not the whole
    # stream, whose length is the caller's audio. When `audio` ends (the client
    # half-closed), the caller tells the provider to flush, yields the last results and
    # ends with one StreamTranscribeEnd.
    def stream_transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: StreamTranscribeRequest,
        audio: AsyncIterator[bytes],
        *,
        timeout: float,
    ) -> AsyncIterator[StreamTranscribeEvent]: ...


@runtime_checkable
class Synthesizer(Protocol):
    async def synthesize(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        *,
        timeout: float,
    ) -> SynthesizeResponse: ...


@runtime_checkable
class StreamSynthesizer(Protocol):
    # Streamed output is raw samples (linear16, mulaw, alaw), mp3 or ogg/opus: formats
    # that can be cut into chunks. The last chunk has is_last=True.
    def stream_synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> AsyncIterator[AudioChunk]: ...


@runtime_checkable
class StreamTextSynthesizer(Protocol):
    # Input streaming (ElevenLabs, Cartesia websockets): `request.text` is empty and the
    # text arrives in fragments as an LLM streams them; FLUSH asks for what is buffered.
    # When `text` ends, the caller flushes, yields the rest and a chunk with is_last.
    def stream_synthesize_input(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        text: AsyncIterator[TextInput],
        *,
        timeout: float,
    ) -> AsyncIterator[AudioChunk]: ...


@runtime_checkable
class VoiceLister(Protocol):
    # `language`: a BCP-47 prefix ("en" matches "en-US"); None lists every voice.
    async def list_voices(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        *,
        language: str | None,
        timeout: float,
    ) -> list[Voice]: ...


@runtime_checkable
class Telephony(Protocol):
    async def place_call(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: PlaceCallRequest,
        *,
        timeout: float,
    ) -> PlaceCallResponse: ...

    async def hangup(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: HangupRequest,
        *,
        timeout: float,
    ) -> None: ...
