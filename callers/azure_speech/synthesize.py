"""TTS and STREAM_TTS: POST {tts host}/cognitiveservices/v1 with an SSML body.

The body is SSML: a plain-text request becomes <speak><voice><prosody rate>text</...>,
the text XML-escaped, `language` (else the voice name's locale, en-US-JennyNeural ->
en-US) as xml:lang and `speed` as a relative prosody rate (Azure takes 0.5x to 2x);
an `is_ssml` request is sent as it is (its own <prosody> governs the speed).

The audio format is the `X-Microsoft-OutputFormat` header. An asked format Azure writes
itself is asked for as it is: WAV/raw PCM at 8, 16, 22.05, 24, 44.1 and 48 kHz, mu-law
and A-law 8 kHz (raw or WAV), MP3 at 16/24/48 kHz, Ogg/Opus at 16/24/48 kHz. Any other
(PCM at 32 kHz, FLAC, MP3 or Opus at another rate, stereo) is made with callers.audio
from raw PCM at 24 kHz (48 kHz when more is asked).

Azure sends the audio as it is generated, so StreamSynthesize hands each piece on as it
arrives. Azure's streaming formats are the raw, MP3 and Ogg ones (its WAV "riff" formats
are non-streaming), so a stream is raw samples (converted chunk by chunk when Azure does
not write the asked rate), MP3 or Ogg/Opus at a rate Azure writes; anything else is
refused before any call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import aiohttp

from callers import audio, pools
from callers.audio import formats
from callers.azure_speech import wire
from callers.base import InvalidRequest, SecretFields
from callers.types import (
    AudioChunk,
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SynthesizeRequest,
    SynthesizeResponse,
)

C, E = AudioContainer, AudioEncoding
_READ_BYTES = 16 * 1024
MIN_SPEED, MAX_SPEED = 0.5, 2.0

_PCM_RATES = {
    8000: "8khz",
    16000: "16khz",
    22050: "22050hz",
    24000: "24khz",
    44100: "44100hz",
    48000: "48khz",
}
# (container, encoding, rate) -> X-Microsoft-OutputFormat, for mono output.
NATIVE: dict[tuple[AudioContainer, AudioEncoding, int], str] = {
    **{(C.WAV, E.PCM_S16LE, r): f"riff-{n}-16bit-mono-pcm" for r, n in _PCM_RATES.items()},
    **{(C.RAW, E.PCM_S16LE, r): f"raw-{n}-16bit-mono-pcm" for r, n in _PCM_RATES.items()},
    (C.RAW, E.MULAW, 8000): "raw-8khz-8bit-mono-mulaw",
    (C.WAV, E.MULAW, 8000): "riff-8khz-8bit-mono-mulaw",
    (C.RAW, E.ALAW, 8000): "raw-8khz-8bit-mono-alaw",
    (C.WAV, E.ALAW, 8000): "riff-8khz-8bit-mono-alaw",
    **{
        (container, E.MP3, rate): name
        for container in (C.MP3, C.RAW)
        for rate, name in (
            (16000, "audio-16khz-128kbitrate-mono-mp3"),
            (24000, "audio-24khz-48kbitrate-mono-mp3"),
            (48000, "audio-48khz-96kbitrate-mono-mp3"),
        )
    },
    (C.OGG, E.OPUS, 16000): "ogg-16khz-16bit-mono-opus",
    (C.OGG, E.OPUS, 24000): "ogg-24khz-16bit-mono-opus",
    (C.OGG, E.OPUS, 48000): "ogg-48khz-16bit-mono-opus",
}


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """What to ask Azure for, and the format of its answer when it still needs converting."""

    output_format: str
    convert_from: AudioFormat | None


def plan(asked: AudioFormat, *, stream: bool) -> OutputPlan:
    rate = formats.check_output_format(asked)
    native = NATIVE.get((asked.container, asked.encoding, rate)) if asked.channels == 1 else None
    if native is not None and not (stream and asked.container is C.WAV):
        return OutputPlan(native, None)
    if stream and not formats.is_sample_format(asked):
        raise InvalidRequest(
            f"output_format: Azure streams {asked.encoding} in {asked.container} only as raw samples, or MP3 "
            "at 16000/24000/48000 Hz or Ogg/Opus at 16000/24000/48000 Hz, mono; WAV is not a streaming format"
        )
    base = 48000 if rate > 24000 else 24000
    return OutputPlan(NATIVE[(C.RAW, E.PCM_S16LE, base)], AudioFormat(E.PCM_S16LE, C.RAW, base))


def speech_ssml(request: SynthesizeRequest) -> bytes:
    if request.is_ssml:
        if not request.text.strip():
            raise InvalidRequest("text: the SSML document is empty")
        return request.text.encode()
    if not request.voice:
        raise InvalidRequest("voice: Azure needs a voice name, e.g. en-US-JennyNeural")
    if not request.text:
        raise InvalidRequest("text: nothing to say")
    language = request.language or _voice_locale(request.voice)
    text = escape(request.text)
    if request.speed is not None and request.speed != 1.0:
        if not MIN_SPEED <= request.speed <= MAX_SPEED:
            raise InvalidRequest(f"speed: Azure speaks at {MIN_SPEED} to {MAX_SPEED} times the normal rate")
        text = f"<prosody rate={quoteattr(f'{(request.speed - 1.0) * 100:+.2f}%')}>{text}</prosody>"
    for name in request.provider_options:
        raise InvalidRequest(f"provider_options.{name}: not an option of Azure TTS (send SSML instead)")
    return (
        f"<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang={quoteattr(language)}>"
        f"<voice name={quoteattr(request.voice)}>{text}</voice></speak>"
    ).encode()


def _voice_locale(voice: str) -> str:
    parts = voice.split("-")
    return "-".join(parts[:2]) if len(parts) >= 3 else "en-US"


def _headers(secret: SecretFields, output_format: str) -> dict[str, str]:
    return wire.key_headers(
        secret, {"Content-Type": "application/ssml+xml", "X-Microsoft-OutputFormat": output_format}
    )


def _duration(data: bytes, fmt: AudioFormat) -> float | None:
    if formats.is_sample_format(fmt):
        return audio.raw_seconds(len(data), fmt)
    if fmt.container is C.WAV:
        return audio.probe(data, fmt).duration
    return None


class AzureSynthesizer:
    async def synthesize(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        *,
        timeout: float,
    ) -> SynthesizeResponse:
        output = plan(request.output_format, stream=False)
        body = speech_ssml(request)
        url = wire.endpoints(options).tts
        data, request_id = await wire.send("POST", url, _headers(secret, output.output_format), body, timeout)
        if output.convert_from is not None:
            data = audio.convert(data, output.convert_from, request.output_format)
        return SynthesizeResponse(
            audio=data,
            audio_format=request.output_format,
            duration=_duration(data, request.output_format),
            request_id=request_id,
        )

    async def stream_synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> AsyncIterator[AudioChunk]:
        output = plan(request.output_format, stream=True)
        converter = (
            audio.StreamConverter(output.convert_from, request.output_format)
            if output.convert_from is not None
            else None
        )
        body = speech_ssml(request)
        url = wire.endpoints(options).tts
        headers = _headers(secret, output.output_format)
        session = pools.aiohttp_session(wire.upstream(url))
        try:
            async with session.post(
                url, data=body, headers=headers, timeout=wire.client_timeout(timeout), allow_redirects=False
            ) as response:
                if not 200 <= response.status < 300:
                    raise wire.http_error(
                        response.status, await response.read(), response.headers, url.host or ""
                    )
                request_id = wire.request_id(response.headers)
                async for piece in response.content.iter_chunked(_READ_BYTES):
                    out = converter.feed(piece) if converter is not None else piece
                    if out:
                        yield AudioChunk(audio=out, request_id=request_id)
                tail = converter.flush() if converter is not None else b""
                yield AudioChunk(audio=tail, is_last=True, request_id=request_id)
        except TimeoutError:
            raise wire.timeout_error(url) from None
        except aiohttp.ClientError as exc:
            raise wire.connection_error(url, exc) from None


CALLER = AzureSynthesizer()
