"""The SpeechService RPCs: protobuf in and out, the logic in SpeechService.

The two bidirectional RPCs take their first message as the config and every later one
as input; a config anywhere else, or input before it, is INVALID_ARGUMENT naming it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from callers import types as t
from integration_hub import speech_convert as convert
from integration_hub.errors import invalid_field
from integration_hub.provider_calls import Timing, timeout_from
from integration_hub.rpc import CallContext
from integration_hub.speech import SpeechService, raw_seconds
from integration_hub.v1 import speech_pb2 as pb

# A live stream's budget is its whole life, not one answer's: an hour of audio.
STREAM_TIMEOUT = 3600.0


async def _aclose(stream: AsyncIterator[object]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def _first(requests: AsyncIterator[object], kind: str) -> object:
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise invalid_field("config", f"required: the first message of a {kind} is its config") from None
    return first


class SpeechApi:
    def __init__(self, speech: SpeechService) -> None:
        self._speech = speech

    async def Transcribe(self, request: pb.TranscribeRequest, call: CallContext) -> pb.TranscribeResponse:
        neutral = convert.transcribe_request(request, request.model)
        declared = None if neutral.audio_url else convert.input_format(request.audio_format)
        response, provider, timing, seconds = await self._speech.transcribe(
            call, request.credential, neutral, declared, timeout_from(request.timeout, call)
        )
        proto = convert.transcribe_response(response, provider, seconds)
        timing.finished = time.monotonic()
        proto.timings.CopyFrom(timing.to_proto())
        return proto

    async def Synthesize(self, request: pb.SynthesizeRequest, call: CallContext) -> pb.SynthesizeResponse:
        neutral = convert.synthesize_request(request, request.model)
        response, provider, timing, seconds = await self._speech.synthesize(
            call, request.credential, neutral, timeout_from(request.timeout, call)
        )
        proto = pb.SynthesizeResponse(
            audio=response.audio,
            audio_format=convert.format_to_proto(neutral.output_format),
            audio_duration=convert.seconds(seconds),
            characters=len(neutral.text),
            provider=provider,
            provider_request_id=response.request_id or "",
        )
        timing.finished = time.monotonic()
        proto.timings.CopyFrom(timing.to_proto())
        return proto

    async def StreamSynthesize(
        self, request: pb.SynthesizeRequest, call: CallContext
    ) -> AsyncIterator[pb.StreamSynthesizeResponse]:
        neutral = convert.synthesize_request(request, request.model)
        timing = Timing(started=call.started)
        provider, chunks = await self._speech.stream_synthesize(
            call, request.credential, neutral, timeout_from(request.timeout, call), timing
        )
        try:
            async for message in _audio_messages(chunks, neutral, provider, timing, len(neutral.text)):
                yield message
        finally:
            await _aclose(chunks)

    async def StreamTranscribe(
        self, requests: AsyncIterator[pb.StreamTranscribeRequest], call: CallContext
    ) -> AsyncIterator[pb.StreamTranscribeResponse]:
        first = await _first(requests, "StreamTranscribe")
        assert isinstance(first, pb.StreamTranscribeRequest)
        if first.WhichOneof("message") != "config":
            raise invalid_field("config", "required: the first message of a StreamTranscribe is its config")
        config = first.config
        neutral = convert.stream_transcribe_request(config)
        timing = Timing(started=call.started)
        provider, events = await self._speech.stream_transcribe(
            call, config.credential, neutral, _audio_chunks(requests), call.time_left(STREAM_TIMEOUT), timing
        )
        ended = False
        try:
            async for event in events:
                if isinstance(event, t.StreamTranscribeEnd):
                    ended = True
                    yield _transcribe_end(event, provider, timing)
                else:
                    yield convert.stream_transcribe_event(event)
            if not ended:
                yield _transcribe_end(t.StreamTranscribeEnd(), provider, timing)
        finally:
            await _aclose(events)

    async def StreamSynthesizeInput(
        self, requests: AsyncIterator[pb.StreamSynthesizeInputRequest], call: CallContext
    ) -> AsyncIterator[pb.StreamSynthesizeResponse]:
        first = await _first(requests, "StreamSynthesizeInput")
        assert isinstance(first, pb.StreamSynthesizeInputRequest)
        if first.WhichOneof("message") != "config":
            raise invalid_field(
                "config", "required: the first message of a StreamSynthesizeInput is its config"
            )
        config = first.config
        neutral = convert.input_synthesize_request(config)
        timing = Timing(started=call.started)
        counted = _CharacterCount()
        fragments = _text_fragments(requests, counted)
        provider, chunks = await self._speech.stream_synthesize_input(
            call, config.credential, neutral, fragments, call.time_left(STREAM_TIMEOUT), timing
        )
        try:
            async for message in _audio_messages(chunks, neutral, provider, timing, counted):
                yield message
        finally:
            await _aclose(chunks)

    async def ListVoices(self, request: pb.ListVoicesRequest, call: CallContext) -> pb.ListVoicesResponse:
        voices = await self._speech.list_voices(
            call, request.credential, request.language or None, call.time_left(30.0)
        )
        return pb.ListVoicesResponse(voices=[convert.voice_to_proto(v) for v in voices])


async def _audio_chunks(requests: AsyncIterator[pb.StreamTranscribeRequest]) -> AsyncIterator[bytes]:
    async for message in requests:
        if message.WhichOneof("message") != "audio":
            raise invalid_field("config", "only the first message may be the config; then audio chunks")
        if message.audio:
            yield message.audio


class _CharacterCount:
    """Characters of an input stream's text, known only when the stream has ended."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


async def _text_fragments(
    requests: AsyncIterator[pb.StreamSynthesizeInputRequest], counted: _CharacterCount
) -> AsyncIterator[t.TextInput]:
    async for message in requests:
        which = message.WhichOneof("message")
        if which == "text":
            if message.text:
                counted.value += len(message.text)
                yield message.text
        elif which == "flush":
            if message.flush:
                yield t.FLUSH
        else:
            raise invalid_field("config", "only the first message may be the config; then text or flush")


async def _audio_messages(
    chunks: AsyncIterator[t.AudioChunk],
    request: t.SynthesizeRequest,
    provider: str,
    timing: Timing,
    characters: int | _CharacterCount,
) -> AsyncIterator[pb.StreamSynthesizeResponse]:
    """Audio messages, then the end message (its duration where the format tells)."""
    produced, request_id = 0, ""
    async for chunk in chunks:
        request_id = chunk.request_id or request_id
        if chunk.audio:
            produced += len(chunk.audio)
            yield pb.StreamSynthesizeResponse(audio=chunk.audio)
    timing.finished = time.monotonic()
    end = pb.StreamSynthesizeEnd(
        characters=characters if isinstance(characters, int) else characters.value,
        provider=provider,
        provider_request_id=request_id,
        timings=timing.to_proto(),
    )
    end.audio_duration.CopyFrom(convert.seconds(raw_seconds(produced, request.output_format)))
    yield pb.StreamSynthesizeResponse(end=end)


def _transcribe_end(
    event: t.StreamTranscribeEnd, provider: str, timing: Timing
) -> pb.StreamTranscribeResponse:
    timing.finished = time.monotonic()
    end = pb.StreamTranscribeEnd(
        provider=provider, provider_request_id=event.request_id or "", timings=timing.to_proto()
    )
    if event.duration is not None:
        end.audio_duration.CopyFrom(convert.seconds(event.duration))
    return pb.StreamTranscribeResponse(end=end)
