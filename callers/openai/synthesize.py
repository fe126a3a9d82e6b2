"""TTS over OpenAI's wire: POST {base_url}/audio/speech (tts-1, tts-1-hd, gpt-4o-mini-tts).

The answer's body is streamed by OpenAI as it is generated, so StreamSynthesize hands
each piece on as it arrives (converted chunk by chunk when the asked format is not one
OpenAI writes), and the unary call reads it whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp

from callers import audio, pools
from callers.audio import formats
from callers.base import InvalidRequest, SecretFields
from callers.openai import WIRE
from callers.openai import transport as http
from callers.openai.speech_wire import PCM_24K, SpeechEndpoints, speech_body, speech_output
from callers.openai.vendor import OpenAIWireVendor
from callers.types import AudioChunk, SynthesizeRequest, SynthesizeResponse

_READ_BYTES = 16 * 1024


class OpenAIWireSynthesizer:
    __slots__ = ("endpoints",)

    def __init__(self, vendor: OpenAIWireVendor) -> None:
        self.endpoints = SpeechEndpoints(vendor)

    async def synthesize(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        *,
        timeout: float,
    ) -> SynthesizeResponse:
        output = speech_output(request.output_format)
        body = speech_body(request, output.response_format)
        target = self.endpoints.endpoint(options, "audio/speech", json=True)
        data, request_id = await _post(target, self.endpoints.headers(target, secret), body, timeout)
        if output.convert:
            data = audio.convert(data, PCM_24K, request.output_format)
        return SynthesizeResponse(audio=data, audio_format=request.output_format, request_id=request_id)

    async def stream_synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> AsyncIterator[AudioChunk]:
        output = speech_output(request.output_format)
        if output.convert and not formats.is_sample_format(request.output_format):
            raise InvalidRequest(
                f"output_format: OpenAI streams {request.output_format.encoding} only at 24000 Hz mono; "
                "ask for that, or for raw linear16/mulaw/alaw, which are converted as they stream"
            )
        converter = audio.StreamConverter(PCM_24K, request.output_format) if output.convert else None
        body = speech_body(request, output.response_format)
        target = self.endpoints.endpoint(options, "audio/speech", json=True)
        headers = self.endpoints.headers(target, secret)
        session = pools.aiohttp_session(target.upstream)
        try:
            async with session.post(
                target.url,
                data=body,
                headers=headers,
                timeout=http.client_timeout(timeout),
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    raise http.http_error(response.status, await response.read(), response.headers)
                request_id = http.request_id(response.headers)
                async for piece in response.content.iter_chunked(_READ_BYTES):
                    out = converter.feed(piece) if converter is not None else piece
                    if out:
                        yield AudioChunk(audio=out, request_id=request_id)
                tail = converter.flush() if converter is not None else b""
                yield AudioChunk(audio=tail, is_last=True, request_id=request_id)
        except TimeoutError:
            raise http.timeout_error(target) from None
        except aiohttp.ClientError as exc:
            raise http.connection_error(target, exc) from None


async def _post(
    target: http.Endpoint, headers: Mapping[str, str], body: bytes, timeout: float
) -> tuple[bytes, str | None]:
    session = pools.aiohttp_session(target.upstream)
    try:
        async with session.post(
            target.url,
            data=body,
            headers=headers,
            timeout=http.client_timeout(timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            if not 200 <= response.status < 300:
                raise http.http_error(response.status, payload, response.headers)
            return payload, http.request_id(response.headers)
    except TimeoutError:
        raise http.timeout_error(target) from None
    except aiohttp.ClientError as exc:
        raise http.connection_error(target, exc) from None


CALLER = OpenAIWireSynthesizer(WIRE)
