"""TTS, STREAM_TTS and STREAM_TTS_INPUT for ElevenLabs.

- TTS: POST {base}/v1/text-to-speech/{voice_id}?output_format=... through the SDK's
  `text_to_speech.with_raw_response.convert` (the raw response gives the request-id
  header), the body read whole, converted when the asked format is not native.
- STREAM_TTS: POST {base}/v1/text-to-speech/{voice_id}/stream?output_format=... through
  `text_to_speech.with_raw_response.stream`: httpx hands each piece of the chunked body
  on as it arrives (`chunk_size=None`), and each is yielded at once. Every streamable
  format (raw PCM, mu-law, A-law, MP3 at 22.05/24/44.1 kHz) is native, so nothing is
  converted or held back. Closing the generator leaves the SDK's `async with`, which
  closes the httpx response and with it the connection, at once.
- STREAM_TTS_INPUT: the stream-input websocket, spoken directly (callers.elevenlabs.
  input_stream): the SDK's only helper for it, `text_to_speech.convert_realtime`, is
  synchronous (websockets.sync) and exists on the sync client only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from callers.base import ProviderTimeout, SecretFields
from callers.elevenlabs import client, convert, errors
from callers.elevenlabs.input_stream import stream_input
from callers.types import AudioChunk, SynthesizeRequest, SynthesizeResponse, TextInput


class ElevenLabsSynthesizer:
    async def synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> SynthesizeResponse:
        output = convert.output_for(request.output_format, stream=False)
        voice = client.voice_id(request.voice)
        arguments = convert.rest_arguments(request, output)
        where = client.host(options)
        key = client.key(secret)
        sdk = client.sdk(secret, options, timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                async with sdk.text_to_speech.with_raw_response.convert(
                    voice, **arguments, request_options=client.request_options(timeout, stream=True)
                ) as response:
                    request_id = client.request_id(response.headers)
                    data = b"".join([piece async for piece in response.data])
        except TimeoutError:
            raise ProviderTimeout(f"{where} did not answer within {timeout:g} s") from None
        except errors.sdk_errors() as exc:
            raise errors.from_sdk(exc, where, key=key) from None
        data = convert.finish(data, output, request.output_format)
        from callers import audio

        duration = audio.probe(data, request.output_format).duration
        return SynthesizeResponse(
            audio=data, audio_format=request.output_format, duration=duration, request_id=request_id
        )

    async def stream_synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> AsyncIterator[AudioChunk]:
        output = convert.output_for(request.output_format, stream=True)
        voice = client.voice_id(request.voice)
        arguments = convert.rest_arguments(request, output)
        where = client.host(options)
        key = client.key(secret)
        sdk = client.sdk(secret, options, timeout=timeout)
        try:
            async with sdk.text_to_speech.with_raw_response.stream(
                voice, **arguments, request_options=client.request_options(timeout, stream=True)
            ) as response:
                request_id = client.request_id(response.headers)
                async for piece in response.data:
                    if piece:
                        yield AudioChunk(audio=piece, request_id=request_id)
                yield AudioChunk(audio=b"", is_last=True, request_id=request_id)
        except errors.sdk_errors() as exc:
            raise errors.from_sdk(exc, where, key=key) from None

    def stream_synthesize_input(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        text: AsyncIterator[TextInput],
        *,
        timeout: float,
    ) -> AsyncIterator[AudioChunk]:
        return stream_input(secret, options, request, text, timeout=timeout)


CALLER = ElevenLabsSynthesizer()
