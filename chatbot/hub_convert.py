"""The chatbot's types (hub_types.py) to and from the hub's generated messages.

Plain functions, one per message; the only place that knows the protos' shapes
besides the calls in hub_client.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import duration_pb2

from chatbot.hub_types import (
    AudioFormat,
    ChatAnswer,
    ChatEnd,
    Message,
    ModelRef,
    Speech,
    SpeechStarted,
    Transcript,
    TranscriptionEnd,
    TranscriptPiece,
    Usage,
    UtteranceEnd,
    Voice,
    Word,
)
from integration_hub.v1 import chat_pb2, speech_pb2

ROLES = {"system": chat_pb2.ROLE_SYSTEM, "user": chat_pb2.ROLE_USER, "assistant": chat_pb2.ROLE_ASSISTANT}
INPUT_TYPES = {
    None: chat_pb2.EMBED_INPUT_TYPE_UNSPECIFIED,
    "query": chat_pb2.EMBED_INPUT_TYPE_QUERY,
    "document": chat_pb2.EMBED_INPUT_TYPE_DOCUMENT,
}


def transcription_event(
    event: speech_pb2.StreamTranscribeResponse,
) -> TranscriptPiece | SpeechStarted | UtteranceEnd | TranscriptionEnd | None:
    kind = event.WhichOneof("event")
    if kind == "result":
        result = event.result
        return TranscriptPiece(result.transcript, result.is_final, seconds(result.start), seconds(result.end))
    if kind == "speech_started":
        return SpeechStarted(seconds(event.speech_started.at))
    if kind == "utterance_end":
        return UtteranceEnd(seconds(event.utterance_end.at))
    if kind == "end":
        return TranscriptionEnd(seconds(event.end.audio_duration), event.end.provider)
    return None


def model_ref(model: ModelRef | str) -> ModelRef:
    return model if isinstance(model, ModelRef) else ModelRef.parse(model)


def chat_request(
    ref: ModelRef, messages: Sequence[Message], temperature: float | None, max_output_tokens: int | None
) -> chat_pb2.ChatRequest:
    request = chat_pb2.ChatRequest(
        credential=ref.credential,
        model=ref.model,
        messages=[
            chat_pb2.ChatMessage(role=ROLES[m.role], content=[chat_pb2.ContentPart(text=m.content)])
            for m in messages
        ],
    )
    if temperature is not None:
        request.temperature = temperature
    if max_output_tokens is not None:
        request.max_output_tokens = max_output_tokens
    return request


def chat_end(end: chat_pb2.StreamEnd) -> ChatEnd:
    first = end.timings.time_to_first_token if end.HasField("timings") else None
    return ChatEnd(
        finish_reason=finish_reason(end.finish_reason),
        usage=usage(end.usage),
        provider=end.provider,
        provider_request_id=end.provider_request_id,
        time_to_first_token=seconds(first) if first is not None and first.ByteSize() else None,
    )


def synthesize_request(
    ref: ModelRef, text: str, voice: str, output_format: AudioFormat, language: str, speed: float | None
) -> speech_pb2.SynthesizeRequest:
    request = speech_pb2.SynthesizeRequest(
        credential=ref.credential,
        model=ref.model,
        text=text,
        voice=voice,
        language=language,
        output_format=audio_format(output_format),
    )
    if speed is not None:
        request.speed = speed
    return request


def usage(usage: chat_pb2.Usage) -> Usage:
    return Usage(usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.total_tokens)


def seconds(duration: duration_pb2.Duration) -> float:
    return duration.ToNanoseconds() / 1e9


def enum_name(name: str, prefix: str) -> str:
    short = name.removeprefix(prefix).lower()
    return "" if short == "unspecified" else short


def audio_format(audio_format: AudioFormat) -> speech_pb2.AudioFormat:
    return speech_pb2.AudioFormat(
        container=enum_value(speech_pb2.AudioContainer, "AUDIO_CONTAINER_", audio_format.container),
        encoding=enum_value(speech_pb2.AudioEncoding, "AUDIO_ENCODING_", audio_format.encoding),
        sample_rate_hz=audio_format.sample_rate_hz,
        channels=audio_format.channels,
    )


def from_audio_format(audio_format: speech_pb2.AudioFormat) -> AudioFormat:
    return AudioFormat(
        container=enum_name(speech_pb2.AudioContainer.Name(audio_format.container), "AUDIO_CONTAINER_"),
        encoding=enum_name(speech_pb2.AudioEncoding.Name(audio_format.encoding), "AUDIO_ENCODING_"),
        sample_rate_hz=audio_format.sample_rate_hz,
        channels=audio_format.channels,
    )


def enum_value(enum: Any, prefix: str, name: str) -> Any:
    if not name:
        return 0  # unspecified
    full, names = prefix + name.upper(), list(enum.keys())
    if full not in names:
        choices = ", ".join(key.removeprefix(prefix).lower() for key in names[1:])
        raise ValueError(f"{name!r} is not one of: {choices}")
    return enum.Value(full)


def chat_answer(answer: chat_pb2.ChatResponse) -> ChatAnswer:
    text = "".join(part.text for part in answer.message.content if part.WhichOneof("part") == "text")
    return ChatAnswer(
        text=text,
        finish_reason=finish_reason(answer.finish_reason),
        usage=usage(answer.usage),
        model=answer.model,
        provider=answer.provider,
        provider_request_id=answer.provider_request_id,
    )


def finish_reason(value: chat_pb2.FinishReason.ValueType) -> str:
    return enum_name(chat_pb2.FinishReason.Name(value), "FINISH_REASON_")


def transcript(answer: speech_pb2.TranscribeResponse) -> Transcript:
    return Transcript(
        text=answer.transcript,
        language=answer.language,
        audio_seconds=seconds(answer.audio_duration),
        provider=answer.provider,
        confidence=answer.confidence if answer.HasField("confidence") else None,
        words=[Word(w.text, seconds(w.start), seconds(w.end)) for w in answer.words],
    )


def speech(answer: speech_pb2.SynthesizeResponse) -> Speech:
    return Speech(
        audio=answer.audio,
        audio_format=from_audio_format(answer.audio_format),
        audio_seconds=seconds(answer.audio_duration),
        characters=answer.characters,
        provider=answer.provider,
    )


def voice(wire: speech_pb2.Voice) -> Voice:
    return Voice(
        id=wire.id,
        name=wire.name,
        languages=list(wire.languages),
        gender=enum_name(speech_pb2.VoiceGender.Name(wire.gender), "VOICE_GENDER_"),
    )
