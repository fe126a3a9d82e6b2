"""TTS: POST {base_url}/tts/bytes (whole and streamed) and the /tts/websocket (input streaming).

- `synthesize`: /tts/bytes, the whole utterance in the asked format.
- `stream_synthesize`: the same /tts/bytes, whose body Cartesia streams as it generates.
  It gives the earliest first audio: the request rides a pooled keep-alive HTTPS
  connection (no TCP/TLS/upgrade per call, which a websocket opened per call pays) and
  the body is raw audio, not base64 in JSON. Raw samples at a rate Cartesia lacks are
  converted chunk by chunk.
- `stream_synthesize_input`: text fragments in, audio out, over /tts/websocket. One
  websocket per stream, with one context: a pooled socket would be authenticated with
  one credential's key and outlive the call, which the pools' rule (pool connections,
  never keys) forbids, and a socket of its own is what cancelling closes. Each fragment
  is a generation request with the stream's context_id and "continue": true; FLUSH is
  {"transcript": "", "continue": true, "flush": true} (Cartesia answers flush_done after
  the audio of what it had); the end of the text is {"transcript": "", "continue": false},
  after which Cartesia sends the rest and {"type": "done"}, and the last chunk has
  is_last. Closing the generator closes the socket at once.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from callers import audio
from callers.base import ProviderUnavailable, SecretFields
from callers.cartesia import client
from callers.cartesia.convert import stream_output, tts_body, tts_fields, tts_output
from callers.cartesia.errors import websocket_error
from callers.types import AudioChunk, SynthesizeRequest, SynthesizeResponse, TextInput
from callers.types.speech import Flush

_READ_BYTES = 16 * 1024


class CartesiaSynthesizer:
    async def synthesize(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        *,
        timeout: float,
    ) -> SynthesizeResponse:
        output = tts_output(request.output_format)
        body = tts_body(request, output)
        target = client.url(options, "tts/bytes")
        data, request_id = await client.request("POST", target, secret, options, timeout=timeout, json=body)
        if output.convert:
            data = audio.convert(data, output.produced, request.output_format)
        return SynthesizeResponse(audio=data, audio_format=request.output_format, request_id=request_id)

    async def stream_synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> AsyncIterator[AudioChunk]:
        output = stream_output(request.output_format, websocket=False)
        converter = audio.StreamConverter(output.produced, request.output_format) if output.convert else None
        body = tts_body(request, output)
        target = client.url(options, "tts/bytes")
        async with client.stream_post(target, secret, options, body, timeout=timeout) as response:
            request_id = client.request_id(response.headers)
            try:
                async for piece in response.content.iter_chunked(_READ_BYTES):
                    out = converter.feed(piece) if converter is not None else piece
                    if out:
                        yield AudioChunk(audio=out, request_id=request_id)
            except TimeoutError:
                raise client.timeout_error(target, timeout) from None
            except aiohttp.ClientError as exc:
                raise client.connection_error(target, exc) from None
            tail = converter.flush() if converter is not None else b""
            yield AudioChunk(audio=tail, is_last=True, request_id=request_id)

    async def stream_synthesize_input(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        text: AsyncIterator[TextInput],
        *,
        timeout: float,
    ) -> AsyncIterator[AudioChunk]:
        output = stream_output(request.output_format, websocket=True)
        converter = audio.StreamConverter(output.produced, request.output_format) if output.convert else None
        context_id = uuid.uuid4().hex
        fields = {**tts_fields(request, output), "context_id": context_id}
        target = client.ws_url(options, "tts/websocket")

        async def send(ws: aiohttp.ClientWebSocketResponse) -> None:
            async def generation(transcript: str, *, more: bool, **extra: Any) -> None:
                message = {**fields, "transcript": transcript, "continue": more, **extra}
                await ws.send_str(orjson.dumps(message).decode())

            if request.text:
                await generation(request.text, more=True)
            async for item in text:
                if isinstance(item, Flush):
                    await generation("", more=True, flush=True)
                elif item:
                    await generation(item, more=True)
            await generation("", more=False)

        duplex = await client.connect(target, secret, options, timeout=timeout, sender=send)
        try:
            while True:
                message = await duplex.next(timeout)
                if message.get("context_id") not in (None, context_id):
                    continue
                kind = message.get("type")
                if kind == "error":
                    raise websocket_error(message, secret)
                if kind == "chunk":
                    piece = _audio_of(message)
                    out = converter.feed(piece) if converter is not None else piece
                    if out:
                        yield AudioChunk(audio=out)
                if kind == "done" or (kind == "chunk" and message.get("done") is True):
                    break
                # flush_done, timestamps, phoneme_timestamps: nothing to hand on
            tail = converter.flush() if converter is not None else b""
            yield AudioChunk(audio=tail, is_last=True)
        finally:
            await duplex.aclose()


def _audio_of(message: Mapping[str, Any]) -> bytes:
    data = message.get("data")
    if not data:
        return b""
    if not isinstance(data, str):
        raise ProviderUnavailable("Cartesia sent a chunk whose data is not base64 text")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderUnavailable("Cartesia sent a chunk whose data is not base64") from None


CALLER = CartesiaSynthesizer()
