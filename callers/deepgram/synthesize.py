"""TTS and STREAM_TTS: Aura over POST {base}/v1/speak, through deepgram-sdk.

The voice is the model (`aura-2-thalia-en`); `encoding`, `container` and `sample_rate`
ride in the query and the body is `{"text": ...}`. Deepgram streams the answer as it
is made, so StreamSynthesize hands each piece on as it arrives (converted chunk by chunk
when the asked format is not one Deepgram writes), and the unary call reads it whole.
Streams are raw samples, mp3 (22.05 kHz) or Ogg/Opus (48 kHz): formats that can be cut.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from callers import audio
from callers.audio import formats
from callers.base import InvalidRequest, SecretFields
from callers.deepgram import client, convert, errors
from callers.types import AudioChunk, AudioContainer, AudioEncoding, SynthesizeRequest, SynthesizeResponse


class DeepgramSynthesizer:
    async def synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> SynthesizeResponse:
        plan = convert.speak_plan(request.output_format)
        kwargs = _arguments(request, plan)
        query = convert.speak_query(request)
        where = client.target(options)
        speak = client.sdk(where).speak.v1.audio.with_raw_response
        pieces: list[bytes] = []
        try:
            async with speak.generate(
                **kwargs, request_options=client.request_options(secret, timeout, query=query)
            ) as response:
                request_id = _request_id(response.headers)
                async for piece in response.data:
                    pieces.append(piece)
        except errors.SDK_ERRORS as exc:
            raise errors.from_sdk(exc, where.host) from None
        data = b"".join(pieces)
        if plan.convert:
            data = audio.convert(data, plan.produced, request.output_format)
        asked = request.output_format
        duration = audio.raw_seconds(len(data), asked) if formats.is_sample_format(asked) else None
        return SynthesizeResponse(audio=data, audio_format=asked, duration=duration, request_id=request_id)

    async def stream_synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> AsyncIterator[AudioChunk]:
        asked = request.output_format
        plan = convert.speak_plan(asked)
        cuttable = formats.is_sample_format(asked) or (asked.encoding, asked.container) in (
            (AudioEncoding.MP3, AudioContainer.MP3),
            (AudioEncoding.MP3, AudioContainer.RAW),
            (AudioEncoding.OPUS, AudioContainer.OGG),
        )
        if not cuttable or (plan.convert and not formats.is_sample_format(asked)):
            raise InvalidRequest(
                f"output_format: Deepgram streams {asked.encoding} in {asked.container} at "
                f"{asked.sample_rate_hz} Hz only as a whole file; stream raw linear16/mulaw/alaw, "
                f"mp3 at {convert.MP3_RATE} Hz or ogg/opus at {convert.OPUS_RATE} Hz"
            )
        converter = audio.StreamConverter(plan.produced, asked) if plan.convert else None
        kwargs = _arguments(request, plan)
        query = convert.speak_query(request)
        where = client.target(options)
        speak = client.sdk(where).speak.v1.audio.with_raw_response
        try:
            async with speak.generate(
                **kwargs, request_options=client.request_options(secret, timeout, query=query)
            ) as response:
                request_id = _request_id(response.headers)
                async for piece in response.data:
                    out = converter.feed(piece) if converter is not None else piece
                    if out:
                        yield AudioChunk(audio=out, request_id=request_id)
                tail = converter.flush() if converter is not None else b""
                yield AudioChunk(audio=tail, is_last=True, request_id=request_id)
        except errors.SDK_ERRORS as exc:
            raise errors.from_sdk(exc, where.host) from None


def _arguments(request: SynthesizeRequest, plan: convert.SpeakPlan) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"text": request.text, "model": convert.speak_model(request), **plan.params}
    if request.speed is not None:
        kwargs["speed"] = request.speed
    return kwargs


def _request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("dg-request-id") or None


CALLER = DeepgramSynthesizer()
