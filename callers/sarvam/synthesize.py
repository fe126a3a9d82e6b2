"""TTS, STREAM_TTS and STREAM_TTS_INPUT: Sarvam Bulbul, on the wire (see wire.py).

REST: POST {base_url}/text-to-speech, JSON ``{text, language_code, speaker, model
(default bulbul:v2), speech_sample_rate, pace}`` (the SDK 0.1.39 sends
``language_code``; older docs call it ``target_language_code``) and provider_options
such as pitch, loudness, temperature, enable_preprocessing, dict_id. Answer:
``{request_id, audios: [<base64 WAV>]}``. The WAV is asked for at the output rate when
the model writes it (bulbul:v2: 8, 16, 22.05, 24 kHz; bulbul:v3 and v4-flash also 32,
44.1, 48 kHz), else at the nearest higher (or highest) rate, and converted to exactly
the asked output format with callers.audio.

Streaming: websocket {base_url as ws(s)}/text-to-speech/ws?model=..&send_completion_event=true.
The client sends ``{"type": "config", "data": {language_code, speaker, pace,
speech_sample_rate, output_audio_codec, ...}}`` first, then ``{"type": "text", "data":
{"text"}}`` fragments and ``{"type": "flush"}``; Sarvam answers ``{"type": "audio",
"data": {content_type, audio: <base64>, request_id}}`` pieces, ``{"type": "event",
"data": {"event_type": "final"}}`` when the audio of a flush is complete, and
``{"type": "error", "data": {message, code}}``. Output: raw linear16 / mu-law / A-law
at any output rate (Sarvam's ``linear16``, headerless PCM at 8, 16, 22.05 or 24 kHz,
converted chunk by chunk), or mp3 at one of those rates, written by Sarvam. The stream
ends when every flush sent has its ``final`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from callers import audio
from callers.audio import formats
from callers.base import InvalidRequest, ProviderTimeout, ProviderUnavailable, SecretFields
from callers.sarvam import languages, wire
from callers.sarvam.voices import speakers_of
from callers.types import (
    AudioChunk,
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SynthesizeRequest,
    SynthesizeResponse,
    TextInput,
)

C, E = AudioContainer, AudioEncoding
DEFAULT_MODEL = "bulbul:v2"
STREAM_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000)
_HIGH_RATES: tuple[int, ...] = (*STREAM_RATES, 32000, 44100, 48000)
_RESERVED = frozenset({"text", "inputs", "language_code", "target_language_code", "speaker", "model"})
_STREAM_RESERVED = _RESERVED | {"speech_sample_rate", "output_audio_codec"}


def rest_rates(model: str) -> tuple[int, ...]:
    return STREAM_RATES if model.startswith("bulbul:v2") or model.startswith("bulbul:v1") else _HIGH_RATES


def provider_rate(asked: int, offered: tuple[int, ...]) -> int:
    """The rate to ask Sarvam for: the asked one, else the next higher, else the highest."""
    if asked in offered:
        return asked
    higher = [r for r in offered if r > asked]
    return min(higher) if higher else max(offered)


@dataclass(frozen=True, slots=True)
class _Voice:
    model: str
    language: str
    speaker: str | None


def _voice(request: SynthesizeRequest, text_for_language: str) -> _Voice:
    if request.is_ssml:
        raise InvalidRequest("ssml: Sarvam's text to speech takes plain text only")
    model = request.model or DEFAULT_MODEL
    if request.language:
        language = languages.sarvam_language(
            request.language, languages.ELEVEN, f"Sarvam text to speech ({model})"
        )
    else:
        language = languages.language_of_text(text_for_language)
    speaker = request.voice.strip() or None
    known = speakers_of(model)
    if speaker is not None and known and speaker not in known:
        raise InvalidRequest(f"voice: {speaker!r} is not a {model} speaker; its speakers: {', '.join(known)}")
    return _Voice(model=model, language=language, speaker=speaker)


def _settings(request: SynthesizeRequest, voice: _Voice, reserved: frozenset[str]) -> dict[str, object]:
    body: dict[str, object] = {"language_code": voice.language}
    if voice.speaker is not None:
        body["speaker"] = voice.speaker
    if request.speed is not None:
        body["pace"] = request.speed
    for name, value in request.provider_options.items():
        if name in reserved or name in body:
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        body[name] = value
    return body


def speech_body(request: SynthesizeRequest, rate: int) -> tuple[dict[str, object], _Voice]:
    if not request.text.strip():
        raise InvalidRequest("text: nothing to synthesize")
    voice = _voice(request, request.text)
    body: dict[str, object] = {"text": request.text, "model": voice.model, "speech_sample_rate": rate}
    body.update(_settings(request, voice, _RESERVED))
    return body, voice


def _first_audio(data: object) -> tuple[bytes, str | None]:
    if not isinstance(data, dict) or not isinstance(data.get("audios"), list) or not data["audios"]:
        raise ProviderUnavailable("unexpected text to speech answer from Sarvam: no audios")
    pieces = [wire.decode_base64(a, "audios[]") for a in data["audios"]]
    request_id = data.get("request_id")
    if len(pieces) > 1:
        raise ProviderUnavailable("unexpected text to speech answer from Sarvam: several audios for one text")
    return pieces[0], request_id if isinstance(request_id, str) else None


# --- streaming ------------------------------------------------------------------


@dataclass(slots=True)
class _StreamPlan:
    model: str
    codec: str  # linear16 or mp3
    rate: int
    converter: audio.StreamConverter | None


def stream_plan(output: AudioFormat, model: str) -> _StreamPlan:
    """How the asked output is made from what Sarvam streams; checked before connecting."""
    rate = audio.check_output_format(output)
    if formats.is_sample_format(output):
        source_rate = provider_rate(rate, STREAM_RATES)
        source = AudioFormat(E.PCM_S16LE, C.RAW, source_rate, 1)
        same = (output.encoding, output.channels, rate) == (E.PCM_S16LE, 1, source_rate)
        return _StreamPlan(
            model, "linear16", source_rate, None if same else audio.StreamConverter(source, output)
        )
    if output.encoding is E.MP3 and output.channels == 1 and rate in STREAM_RATES:
        return _StreamPlan(model, "mp3", rate, None)
    raise InvalidRequest(
        f"output_format: Sarvam streams {output.encoding} in {output.container} at {rate} Hz "
        f"({output.channels} channel(s)) neither natively nor convertibly as a stream; stream raw "
        f"pcm_s16le/mulaw/alaw at any rate, or mono mp3 at {', '.join(map(str, STREAM_RATES))} Hz"
    )


async def _fragments(text: str) -> AsyncIterator[TextInput]:
    yield text


class SarvamSynthesizer:
    async def synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> SynthesizeResponse:
        asked = audio.check_output_format(request.output_format)
        model = request.model or DEFAULT_MODEL
        rate = provider_rate(asked, rest_rates(model))
        body, _ = speech_body(request, rate)
        target = wire.endpoint(options, "text-to-speech")
        data = await wire.send(target, wire.key_headers(secret), json=body, timeout=timeout)
        wav, request_id = _first_audio(data)
        try:
            pcm = audio.decode(wav, C.WAV)
        except audio.AudioError as exc:
            raise ProviderUnavailable(f"Sarvam's audio is not the WAV it should be ({exc.problem})") from None
        out = audio.encode(pcm, request.output_format)
        return SynthesizeResponse(
            audio=out, audio_format=request.output_format, duration=pcm.duration, request_id=request_id
        )

    async def stream_synthesize(
        self, secret: SecretFields, options: Mapping[str, str], request: SynthesizeRequest, *, timeout: float
    ) -> AsyncIterator[AudioChunk]:
        if not request.text.strip():
            raise InvalidRequest("text: nothing to synthesize")
        stream = self._stream(secret, options, request, _fragments(request.text), request.text, timeout)
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                yield chunk

    async def stream_synthesize_input(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        text: AsyncIterator[TextInput],
        *,
        timeout: float,
    ) -> AsyncIterator[AudioChunk]:
        async with contextlib.aclosing(self._stream(secret, options, request, text, "", timeout)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _stream(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: SynthesizeRequest,
        text: AsyncIterator[TextInput],
        sample_text: str,
        timeout: float,
    ) -> AsyncGenerator[AudioChunk, None]:
        voice = _voice(request, sample_text)
        plan = stream_plan(request.output_format, voice.model)
        config: dict[str, object] = {
            **_settings(request, voice, _STREAM_RESERVED),
            "speech_sample_rate": plan.rate,
            "output_audio_codec": plan.codec,
        }
        query = {"model": voice.model, "send_completion_event": "true"}
        target = wire.ws_endpoint(options, "text-to-speech/ws", query)
        ws = await wire.ws_connect(target, wire.key_headers(secret), timeout)
        state = _Flushes()
        sender = asyncio.ensure_future(_send_text(ws, config, text, state))
        receive: asyncio.Future[aiohttp.WSMessage] | None = None
        converter = plan.converter
        request_id: str | None = None
        try:
            while True:
                if state.done and state.finals >= state.sent:
                    break
                if receive is None:
                    receive = asyncio.ensure_future(ws.receive())
                if not sender.done():
                    # Text still comes: a quiet provider is only a timeout once it owes audio.
                    wait = timeout if state.sent > state.finals else None
                    either: set[asyncio.Future[Any]] = {receive, sender}
                    done, _ = await asyncio.wait(either, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                    if not done:
                        raise ProviderTimeout(f"Sarvam sent no audio within {timeout:g} s")
                    if sender.done():
                        sender.result()
                    if not receive.done():
                        continue
                else:
                    if not (await asyncio.wait({receive}, timeout=timeout))[0]:
                        raise ProviderTimeout(f"Sarvam sent no audio within {timeout:g} s")
                msg = receive.result()
                receive = None
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    raise ProviderUnavailable(
                        f"Sarvam closed the stream before the audio was complete (code {ws.close_code})"
                    )
                if msg.type is aiohttp.WSMsgType.ERROR:
                    raise ProviderUnavailable(f"the Sarvam stream failed ({type(msg.data).__name__})")
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    message = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    raise ProviderUnavailable("unexpected streaming message from Sarvam: not JSON") from None
                kind = message.get("type") if isinstance(message, dict) else None
                data = message.get("data") if isinstance(message, dict) else None
                if kind == "error":
                    raise wire.message_error(data)
                if kind == "audio" and isinstance(data, dict):
                    rid = data.get("request_id")
                    if isinstance(rid, str):
                        request_id = rid
                    piece = wire.decode_base64(data.get("audio"), "audio")
                    out = converter.feed(piece) if converter is not None else piece
                    if out:
                        yield AudioChunk(audio=out, request_id=request_id)
                elif kind == "event" and isinstance(data, dict) and data.get("event_type") == "final":
                    state.finals += 1
            tail = converter.flush() if converter is not None else b""
            yield AudioChunk(audio=tail, is_last=True, request_id=request_id)
        finally:
            sender.cancel()
            if receive is not None:
                receive.cancel()
            await wire.ws_close(ws)
            if sender.done() and not sender.cancelled():
                sender.exception()


@dataclass(slots=True)
class _Flushes:
    sent: int = 0  # flush messages sent
    finals: int = 0  # "final" events received
    done: bool = False  # the text has ended and its last flush is sent


async def _send_text(
    ws: aiohttp.ClientWebSocketResponse,
    config: dict[str, object],
    text: AsyncIterator[TextInput],
    state: _Flushes,
) -> None:
    try:
        await ws.send_str(orjson.dumps({"type": "config", "data": config}).decode())
        buffered = False
        async for item in text:
            if isinstance(item, str):
                if item:
                    await ws.send_str(orjson.dumps({"type": "text", "data": {"text": item}}).decode())
                    buffered = True
            elif buffered:
                await ws.send_str('{"type":"flush"}')
                state.sent += 1
                buffered = False
        if buffered:
            await ws.send_str('{"type":"flush"}')
            state.sent += 1
    except (aiohttp.ClientError, ConnectionError):
        # Sarvam went away: the receiving side reports why (its error, or the close).
        state.sent += 1  # audio is owed, so the receiver waits for that report
        return
    state.done = True


CALLER = SarvamSynthesizer()
