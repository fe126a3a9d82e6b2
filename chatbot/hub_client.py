"""The chatbot's only way to the hub: a typed async client over its gRPC API.

One grpc.aio channel to the hub; every call carries the hub token as
`authorization: Bearer <token>` metadata (what the hub's auth reads) and a deadline.
Each method speaks the chatbot's small types (hub_types.py) and turns any gRPC
failure into one HubCallError with the hub's stable reason (common.proto's
ErrorReason, from the google.rpc.ErrorInfo in the status details), so callers
branch on `reason`, never on message texts.

Models are named as the hub names them: a ModelRef of a credential and its model,
or a route (empty credential); a string is parsed with ModelRef.parse
("openai/gpt-4o-mini", "smart").

Streams are async generators: a consumer that stops early should close them
(`contextlib.aclosing`, or `await stream.aclose()`), which cancels the gRPC call,
and the hub then closes its provider connection.

Imports nothing of integration_hub but its generated stubs (integration_hub.v1).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from chatbot import hub_convert as convert
from chatbot.hub_errors import RETRYABLE_REASONS, HubCallError, hub_error
from chatbot.hub_types import (
    FLUSH,
    AudioFormat,
    AudioPiece,
    ChatAnswer,
    ChatEnd,
    Embeddings,
    Flush,
    Identity,
    InputType,
    Message,
    ModelRef,
    Reranked,
    RerankHit,
    Speech,
    SpeechEnd,
    SpeechStarted,
    TextDelta,
    Transcript,
    TranscriptionEnd,
    TranscriptPiece,
    Usage,
    UtteranceEnd,
    Voice,
)
from integration_hub.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    identity_pb2,
    identity_pb2_grpc,
    speech_pb2,
    speech_pb2_grpc,
)

# The client and every type its methods take or give: the chatbot imports them from here.
__all__ = [
    "FLUSH",
    "RETRYABLE_REASONS",
    "AudioFormat",
    "AudioPiece",
    "ChatAnswer",
    "ChatEnd",
    "Embeddings",
    "Flush",
    "HubCallError",
    "HubClient",
    "Identity",
    "InputType",
    "Message",
    "ModelRef",
    "RerankHit",
    "Reranked",
    "Speech",
    "SpeechEnd",
    "SpeechStarted",
    "TextDelta",
    "Transcript",
    "TranscriptPiece",
    "TranscriptionEnd",
    "Usage",
    "UtteranceEnd",
    "Voice",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = 120.0  # the hub's own default budget for a call
# Audio both ways (a recording to transcribe, a synthesized answer) exceeds gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_EMBED_BATCH = 2048


class HubClient:
    """An open connection to the hub for one tenant's token, made inside the event loop that
    uses it (a grpc.aio channel belongs to one loop). Use as `async with`, or close()."""

    def __init__(
        self,
        target: str,
        token: str,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """`target` is host:port; TLS when `tls` or `root_certificates` (PEM) is given."""
        if not token:
            raise ValueError("a hub token is required")
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._chat = chat_pb2_grpc.ChatServiceStub(self._channel)
        self._speech = speech_pb2_grpc.SpeechServiceStub(self._channel)
        self._identity = identity_pb2_grpc.IdentityServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"HubClient(target={self.target!r})"  # never the token

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    # --- embeddings and rerank ------------------------------------------------------------

    async def embed(
        self,
        texts: Sequence[str],
        model: ModelRef | str,
        *,
        batch_size: int = 64,
        concurrency: int = 2,
        input_type: InputType | None = None,
        dimensions: int | None = None,
        timeout: float | None = None,
    ) -> Embeddings:
        """Every text's vector, in order: `batch_size` texts per Embed call, `concurrency` at once.

        A failed batch fails the whole call (the other batches are cancelled): a source is
        ingested whole or not at all. No texts: no call, no vectors. `timeout` bounds each
        Embed call, not the whole list.
        """
        if not 0 < batch_size <= MAX_EMBED_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_EMBED_BATCH}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        ref = convert.model_ref(model)
        if not texts:
            return Embeddings(vectors=[], usage=Usage(), model=ref.model)
        slots = asyncio.Semaphore(concurrency)

        async def one(start: int) -> chat_pb2.EmbedResponse:
            request = chat_pb2.EmbedRequest(
                credential=ref.credential,
                model=ref.model,
                inputs=list(texts[start : start + batch_size]),
                input_type=convert.INPUT_TYPES[input_type],
            )
            if dimensions is not None:
                request.dimensions = dimensions
            async with slots:
                return await self._unary("Embed", self._chat.Embed(request, **self._call(timeout)))

        answers = await _all([one(start) for start in range(0, len(texts), batch_size)])
        vectors: list[list[float]] = []
        usage = Usage()
        for answer in answers:
            vectors += [list(e.values) for e in sorted(answer.embeddings, key=lambda e: e.index)]
            usage += convert.usage(answer.usage)
        if len(vectors) != len(texts):
            raise HubCallError(
                "Embed", grpc.StatusCode.INTERNAL, "", f"{len(vectors)} vectors for {len(texts)} texts"
            )
        return Embeddings(vectors=vectors, usage=usage, model=answers[0].model or ref.model)

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        model: ModelRef | str,
        *,
        top_n: int | None = None,
        timeout: float | None = None,
    ) -> Reranked:
        ref = convert.model_ref(model)
        request = chat_pb2.RerankRequest(
            credential=ref.credential,
            model=ref.model,
            query=query,
            documents=list(documents),
            top_n=top_n or 0,
        )
        answer = await self._unary("Rerank", self._chat.Rerank(request, **self._call(timeout)))
        hits = [RerankHit(index=r.index, score=r.score) for r in answer.results]
        return Reranked(hits=hits, usage=convert.usage(answer.usage))

    # --- chat ------------------------------------------------------------------------------

    async def chat(
        self,
        model: ModelRef | str,
        messages: Sequence[Message],
        *,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        timeout: float | None = None,
    ) -> ChatAnswer:
        request = convert.chat_request(convert.model_ref(model), messages, temperature, max_output_tokens)
        answer = await self._unary("Chat", self._chat.Chat(request, **self._call(timeout)))
        return convert.chat_answer(answer)

    async def stream_chat(
        self,
        model: ModelRef | str,
        messages: Sequence[Message],
        *,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[TextDelta | ChatEnd, None]:
        """Text deltas as the model writes them, then one ChatEnd with the usage."""
        request = convert.chat_request(convert.model_ref(model), messages, temperature, max_output_tokens)
        call = self._chat.StreamChat(request, **self._call(timeout))
        ended = False
        try:
            async for event in call:
                kind = event.WhichOneof("event")
                if kind == "text_delta" and event.text_delta.text:
                    yield TextDelta(event.text_delta.text)
                elif kind == "end":
                    ended = True
                    yield convert.chat_end(event.end)
                # tool_call_delta: the chatbot offers the model no tools, so it calls none.
        except grpc.aio.AioRpcError as error:
            raise hub_error("StreamChat", error) from None
        finally:
            call.cancel()  # a no-op once the stream is over; stops it when the consumer left early
        if not ended:
            raise HubCallError("StreamChat", grpc.StatusCode.UNKNOWN, "", "the stream ended without its end")

    # --- speech ----------------------------------------------------------------------------

    async def transcribe(
        self,
        audio: bytes,
        model: ModelRef | str,
        *,
        audio_format: AudioFormat,
        language: str = "",
        word_timestamps: bool = False,
        timeout: float | None = None,
    ) -> Transcript:
        """A whole recording to text. `model` "voice/" is credential voice, the provider's default."""
        ref = convert.model_ref(model)
        request = speech_pb2.TranscribeRequest(
            credential=ref.credential,
            model=ref.model,
            audio=audio,
            audio_format=convert.audio_format(audio_format),
            options=speech_pb2.TranscriptionOptions(language=language, word_timestamps=word_timestamps),
        )
        answer = await self._unary("Transcribe", self._speech.Transcribe(request, **self._call(timeout)))
        return convert.transcript(answer)

    async def stream_transcribe(
        self,
        audio: AsyncIterable[bytes],
        model: ModelRef | str,
        *,
        audio_format: AudioFormat,
        language: str = "",
        interim_results: bool = True,
        timeout: float | None = None,
    ) -> AsyncGenerator[TranscriptPiece | SpeechStarted | UtteranceEnd | TranscriptionEnd, None]:
        """Live transcription of `audio` chunks (raw, or a container stream); ends with
        TranscriptionEnd once `audio` ends. No deadline unless `timeout`: a phone call
        lasts as long as it lasts."""
        ref = convert.model_ref(model)
        config = speech_pb2.StreamTranscribeConfig(
            credential=ref.credential,
            model=ref.model,
            audio_format=convert.audio_format(audio_format),
            options=speech_pb2.TranscriptionOptions(language=language),
            interim_results=interim_results,
        )

        async def requests() -> AsyncIterator[speech_pb2.StreamTranscribeRequest]:
            yield speech_pb2.StreamTranscribeRequest(config=config)
            async for chunk in audio:
                if chunk:
                    yield speech_pb2.StreamTranscribeRequest(audio=chunk)

        call = self._speech.StreamTranscribe(requests(), metadata=self._metadata, timeout=timeout)
        try:
            async for event in call:
                item = convert.transcription_event(event)
                if item is not None:
                    yield item
        except grpc.aio.AioRpcError as error:
            raise hub_error("StreamTranscribe", error) from None
        finally:
            call.cancel()

    async def synthesize(
        self,
        text: str,
        model: ModelRef | str,
        *,
        voice: str,
        output_format: AudioFormat,
        language: str = "",
        speed: float | None = None,
        timeout: float | None = None,
    ) -> Speech:
        request = convert.synthesize_request(
            convert.model_ref(model), text, voice, output_format, language, speed
        )
        answer = await self._unary("Synthesize", self._speech.Synthesize(request, **self._call(timeout)))
        return convert.speech(answer)

    async def stream_synthesize(
        self,
        text: str,
        model: ModelRef | str,
        *,
        voice: str,
        output_format: AudioFormat,
        language: str = "",
        speed: float | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[AudioPiece | SpeechEnd, None]:
        """The audio of `text` in pieces as the provider makes them, then one SpeechEnd."""
        request = convert.synthesize_request(
            convert.model_ref(model), text, voice, output_format, language, speed
        )
        call = self._speech.StreamSynthesize(request, **self._call(timeout))
        async for item in _speech_events("StreamSynthesize", call):
            yield item

    async def stream_synthesize_input(
        self,
        text: AsyncIterable[str | Flush],
        model: ModelRef | str,
        *,
        voice: str,
        output_format: AudioFormat,
        language: str = "",
        speed: float | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[AudioPiece | SpeechEnd, None]:
        """Text fragments as an LLM streams them (FLUSH: speak what is buffered) to audio
        pieces, for providers with input streaming; ends with SpeechEnd once `text` ends."""
        ref = convert.model_ref(model)
        config = speech_pb2.StreamSynthesizeInputConfig(
            credential=ref.credential,
            model=ref.model,
            voice=voice,
            language=language,
            output_format=convert.audio_format(output_format),
        )
        if speed is not None:
            config.speed = speed

        async def requests() -> AsyncIterator[speech_pb2.StreamSynthesizeInputRequest]:
            yield speech_pb2.StreamSynthesizeInputRequest(config=config)
            async for fragment in text:
                if isinstance(fragment, Flush):
                    yield speech_pb2.StreamSynthesizeInputRequest(flush=True)
                elif fragment:
                    yield speech_pb2.StreamSynthesizeInputRequest(text=fragment)

        call = self._speech.StreamSynthesizeInput(requests(), metadata=self._metadata, timeout=timeout)
        async for item in _speech_events("StreamSynthesizeInput", call):
            yield item

    async def list_voices(
        self, credential: str, *, language: str = "", timeout: float | None = None
    ) -> list[Voice]:
        """The voices a credential can speak with; `language` a BCP-47 prefix ("en")."""
        request = speech_pb2.ListVoicesRequest(credential=credential, language=language)
        answer = await self._unary("ListVoices", self._speech.ListVoices(request, **self._call(timeout)))
        return [convert.voice(wire) for wire in answer.voices]

    # --- identity ---------------------------------------------------------------------------

    async def whoami(self, token: str | None = None, *, timeout: float | None = None) -> Identity:
        """The tenant and scopes of this client's token, or of `token` (a caller's) when given."""
        options = self._call(timeout)
        if token is not None:
            options["metadata"] = (("authorization", f"Bearer {token}"),)
        answer = await self._unary("WhoAmI", self._identity.WhoAmI(identity_pb2.WhoAmIRequest(), **options))
        scopes = frozenset(common_pb2.Scope.Name(s).removeprefix("SCOPE_").lower() for s in answer.scopes)
        return Identity(tenant=answer.tenant_id, token_id=answer.token_id, scopes=scopes)

    # --- plumbing ----------------------------------------------------------------------------

    def _call(self, timeout: float | None) -> dict[str, Any]:
        return {"metadata": self._metadata, "timeout": self.timeout if timeout is None else timeout}

    @staticmethod
    async def _unary(method: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise hub_error(method, error) from None


async def _all(calls: list[Any]) -> list[Any]:
    """Await every call; on the first failure cancel the rest and raise that failure."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _speech_events(method: str, call: Any) -> AsyncGenerator[AudioPiece | SpeechEnd, None]:
    ended = False
    try:
        async for event in call:
            kind = event.WhichOneof("event")
            if kind == "audio" and event.audio:
                yield AudioPiece(event.audio)
            elif kind == "end":
                ended = True
                end = event.end
                yield SpeechEnd(convert.seconds(end.audio_duration), end.characters, end.provider)
    except grpc.aio.AioRpcError as error:
        raise hub_error(method, error) from None
    finally:
        call.cancel()
    if not ended:
        raise HubCallError(method, grpc.StatusCode.UNKNOWN, "", "the stream ended without its end")
