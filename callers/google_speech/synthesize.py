"""TTS: Text-to-Speech v1 SynthesizeSpeech over gRPC, in the asked format natively or
converted; STREAM_TTS and STREAM_TTS_INPUT: StreamingSynthesize (synthesis_stream.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from callers import audio
from callers.base import SecretFields
from callers.google_speech import convert
from callers.google_speech.client import auth_metadata, tts_client, tts_target
from callers.google_speech.errors import call_errors, from_grpc
from callers.google_speech.synthesis_stream import sentences, single, streaming_config, synthesis_stream
from callers.types import AudioChunk, AudioContainer, SynthesizeRequest, SynthesizeResponse, TextInput

SERVICE = "Text-to-Speech"


class GoogleSynthesizer:
    async def synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> SynthesizeResponse:
        output = request.output_format
        rate = audio.check_output_format(output)
        encoding, needs_conversion = convert.synthesis_plan(output)
        message = convert.synthesize_request(request, encoding, rate)
        metadata = await auth_metadata(secret, timeout=timeout)
        client = tts_client(tts_target(options))
        try:
            response = await client.synthesize_speech(
                request=message, retry=None, timeout=timeout, metadata=metadata
            )
        except call_errors() as exc:
            raise from_grpc(exc, SERVICE) from None
        data = bytes(response.audio_content)
        if needs_conversion:
            # LINEAR16 comes as a WAV file (RIFF header included).
            data = audio.convert(data, AudioContainer.WAV, output)
        info = audio.probe(data, output)
        return SynthesizeResponse(audio=data, audio_format=output, duration=info.duration)

    def stream_synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> AsyncIterator[AudioChunk]:
        streaming_config(request)  # refuse bad input now, not at the first chunk
        return synthesis_stream(secret, options, request, single(request.text), timeout=timeout)

    def stream_synthesize_input(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        text: AsyncIterator[TextInput],
        *,
        timeout: float,
    ) -> AsyncIterator[AudioChunk]:
        streaming_config(request)
        return synthesis_stream(secret, options, request, sentences(text), timeout=timeout)


CALLER = GoogleSynthesizer()
