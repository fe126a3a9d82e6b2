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
    WebhookRejected,
    error_from_http_status,
    parse_retry_after,
)
from callers.types import (
    AudioChunk,
    AudioFormat,
    CallAction,
    CallEvent,
    CallState,
    ChatEvent,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    FindCallsRequest,
    HangupRequest,
    Instructions,
    MediaEvent,
    MediaOptions,
    OutgoingFrame,
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
    WebhookRequest,
)

__all__ = [
    "AuthenticationFailed",
    "CallEventHandler",
    "CallMedia",
    "CallerError",
    "Capability",
    "ChatCaller",
    "Embedder",
    "InvalidRequest",
    "MediaSession",
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
    "WebhookRejected",
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
    TELEPHONY = "telephony"  # place, hang up and read calls
    CALL_EVENTS = "call_events"  # the provider's signed webhooks, and call instructions
    CALL_MEDIA = "call_media"  # the provider's live call audio websocket
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


# Telephony. The hub validates numbers (E.164), makes call ids and the per-call public
# URLs (each with an unguessable token in its path, checked before any caller is asked),
# applies events once and in order, and converts and paces media; a caller only speaks
# its provider's API, its webhooks and its media framing.


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

    # Hanging up a call that already ended is not an error (returns normally).
    async def hangup(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: HangupRequest,
        *,
        timeout: float,
    ) -> None: ...

    # The call's state as the provider has it now (NotFound for an unknown call id).
    async def get_call(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        provider_call_id: str,
        *,
        timeout: float,
    ) -> CallState: ...

    # The provider's calls matching the request (any order; [] when it has none), each
    # with its created_at: the hub asks this about a call whose place answer was lost and
    # that never had an event, before it places that call again.
    async def find_calls(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: FindCallsRequest,
        *,
        timeout: float,
    ) -> list[CallState]: ...


@runtime_checkable
class CallEventHandler(Protocol):
    # Sync: no network, only the provider's signature scheme (HMAC, JWT) over the
    # request. Raises WebhookRejected (the hub answers 403 and stores nothing) when the
    # request is not signed as the provider signs it; a provider without a signature
    # scheme (exotel) returns at once, the per-call URL token being its authentication.
    def authenticate(
        self, secret: SecretFields, options: Mapping[str, str], request: WebhookRequest
    ) -> None: ...

    # The opening request of the call's media websocket (method GET, `url` the ws:// or
    # wss:// URL the provider was given, no body or form), checked as the provider signs
    # it: Twilio signs the Media Streams handshake like a webhook (X-Twilio-Signature
    # over the wss:// URL and no parameters). WebhookRejected when it is not; a provider
    # that signs no websocket (vonage, exotel) returns at once, the URL token being its
    # authentication.
    def authenticate_media(
        self, secret: SecretFields, options: Mapping[str, str], request: WebhookRequest
    ) -> None: ...

    # The call events in an authenticated request (usually one). InvalidRequest names
    # what is malformed. Events for a status the hub does not track have status None.
    def parse_events(self, options: Mapping[str, str], request: WebhookRequest) -> list[CallEvent]: ...

    # The call's instructions, for providers that ask for them when the call is
    # answered (Vonage answer_url, Exotel's dynamic URL); NotSupported where the
    # instructions go with the call itself (Twilio's inline TwiML).
    def answer(
        self, options: Mapping[str, str], request: WebhookRequest, action: CallAction
    ) -> Instructions: ...


@runtime_checkable
class MediaSession(Protocol):
    """One provider media websocket, framed both ways; made per connection."""

    # The audio the provider sends and takes, once known (from the start / connected
    # message); None before. The hub converts to and from the client's format.
    @property
    def native_format(self) -> AudioFormat | None: ...

    # Bytes of one outgoing frame in native_format (20 ms, or the provider's size).
    @property
    def frame_bytes(self) -> int: ...

    # One websocket message from the provider -> its events ([] for keep-alives and
    # messages of no interest). InvalidRequest names what is malformed.
    def decode(self, message: str | bytes) -> list[MediaEvent]: ...

    # One frame of native audio (frame_bytes long; the last of a stretch may be shorter).
    def audio_frame(self, frame: bytes) -> OutgoingFrame: ...

    # A mark after the audio sent so far: the provider reports it played (MARK event).
    # None when the provider has no marks: the hub then reports the mark itself when
    # its pacer has sent the audio before it.
    def mark(self, name: str) -> OutgoingFrame | None: ...

    # Drop what the provider has buffered (barge-in). None when it buffers nothing the
    # hub did not pace out itself.
    def clear(self) -> OutgoingFrame | None: ...


@runtime_checkable
class CallMedia(Protocol):
    def open_session(self, options: Mapping[str, str], connection: MediaOptions) -> MediaSession: ...
