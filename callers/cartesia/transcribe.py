"""STT: POST {base_url}/stt (batch, multipart) and {base_url as ws}/stt/websocket (live).

Batch: the file (see convert.upload), model (ink-whisper), language (ISO 639-1; Cartesia
assumes English when none is given: it does not detect), and timestamp_granularities[]=word
when word timings are asked; the answer is {text, language, duration, words:[{word,
start, end}], request_id}.

Live: the query names model, encoding, sample_rate and language (plus
max_silence_duration_secs for endpointing_ms, keyterm for keywords); binary frames carry
the audio, and when the client's audio ends the text frames "finalize" (transcribe what
is buffered; Cartesia answers flush_done) and "done" (close; Cartesia answers done, the
last message) are sent. Cartesia's transcript messages carry is_final, the text (a delta
since the last final one), the audio duration and words. Its /stt/websocket emits no
speech-started or utterance-end events, so none are yielded: endpointing shows as a
final transcript after max_silence_duration_secs of silence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from callers import audio
from callers.base import ProviderUnavailable, SecretFields
from callers.cartesia import client
from callers.cartesia.convert import stream_input, stream_query, transcription_form
from callers.cartesia.errors import websocket_error
from callers.types import (
    StreamTranscribeEnd,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    TranscribeRequest,
    TranscribeResponse,
    TranscriptEvent,
    Word,
)

_FRAME_BYTES = 32 * 1024  # audio frames at most this big (about 1 s of 16 kHz PCM)


def _words(items: object) -> list[Word]:
    words: list[Word] = []
    if not isinstance(items, list):
        return words
    for item in items:
        if not isinstance(item, dict):
            continue
        start, end = item.get("start"), item.get("end")
        if isinstance(start, int | float) and isinstance(end, int | float):
            words.append(Word(text=str(item.get("word", "")).strip(), start=float(start), end=float(end)))
    return words


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_transcription(body: bytes, request_id: str | None) -> TranscribeResponse:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable("Cartesia answered a transcription that is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise ProviderUnavailable("Cartesia answered a transcription without text")
    language = data.get("language")
    answered_id = data.get("request_id")
    return TranscribeResponse(
        transcript=data["text"].strip(),
        words=_words(data.get("words")),
        language=language if isinstance(language, str) else None,
        duration=_number(data.get("duration")),
        request_id=answered_id if isinstance(answered_id, str) else request_id,
    )


def transcript_event(data: Mapping[str, Any]) -> TranscriptEvent:
    words = _words(data.get("words"))
    return TranscriptEvent(
        transcript=str(data.get("text") or ""),
        is_final=data.get("is_final") is True,
        words=words,
        start=words[0].start if words else None,
        end=words[-1].end if words else None,
    )


class CartesiaTranscriber:
    async def transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: TranscribeRequest,
        *,
        timeout: float,
    ) -> TranscribeResponse:
        form = transcription_form(request)  # bad input is refused before the key is read
        target = client.url(options, "stt")
        body, request_id = await client.request("POST", target, secret, options, timeout=timeout, form=form)
        return parse_transcription(body, request_id)

    async def stream_transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: StreamTranscribeRequest,
        audio_in: AsyncIterator[bytes],
        *,
        timeout: float,
    ) -> AsyncIterator[StreamTranscribeEvent]:
        stream = stream_input(request.audio_format)
        query = stream_query(
            request.model,
            request.language,
            stream,
            diarize=request.diarize,
            keywords=request.keywords,
            endpointing_ms=request.endpointing_ms,
            provider_options=request.provider_options,
        )
        target = client.ws_url(options, "stt/websocket", query)
        converter = audio.StreamConverter(stream.source, stream.target) if stream.convert else None
        received = 0

        async def send(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal received
            async for chunk in audio_in:
                received += len(chunk)
                out = converter.feed(chunk) if converter is not None else chunk
                for at in range(0, len(out), _FRAME_BYTES):
                    await ws.send_bytes(out[at : at + _FRAME_BYTES])
            tail = converter.flush() if converter is not None else b""
            if tail:
                await ws.send_bytes(tail)
            await ws.send_str("finalize")
            await ws.send_str("done")

        duplex = await client.connect(target, secret, options, timeout=timeout, sender=send)
        request_id: str | None = None
        interim_open = False
        try:
            while True:
                message = await duplex.next(timeout)
                if isinstance(message.get("request_id"), str):
                    request_id = message["request_id"]
                kind = message.get("type")
                if kind == "error":
                    raise websocket_error(message, secret)
                if kind == "transcript":
                    event = transcript_event(message)
                    if not event.is_final and request.interim_results and event.transcript:
                        interim_open = True
                        yield event
                    elif event.is_final and (event.transcript or interim_open):
                        # an empty final still closes the interim results it replaces
                        interim_open = False
                        yield event
                elif kind == "done":
                    break
                # flush_done: the finalize was honoured; "done" follows
            duration = audio.raw_seconds(received, stream.source)
            yield StreamTranscribeEnd(duration=duration, request_id=request_id)
        finally:
            await duplex.aclose()


CALLER = CartesiaTranscriber()
