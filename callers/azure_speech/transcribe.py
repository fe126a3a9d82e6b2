"""STT and STREAM_STT: Azure's short-audio REST, fast transcription, and the real-time websocket.

STT picks one of two REST APIs:
- fast transcription, POST .../speechtotext/transcriptions:transcribe?api-version=2024-11-15
  (multipart: the audio file and a JSON `definition`), when diarization is asked, when no
  language is given (Azure identifies it), or when the audio is longer than 60 s, the
  short-audio limit. Files Azure reads (WAV, MP3, Ogg/Opus, FLAC, WebM, MP4/AAC) go as they
  came; raw samples go as WAV. A `model` (a Custom Speech endpoint id) is refused there:
  this API version takes none.
- otherwise the short-audio API, POST .../speech/recognition/conversation/cognitiveservices/v1
  ?language=..&format=detailed&profanity=raw (&wordLevelTimestamps=true, &cid=<model>),
  whose only inputs are WAV PCM 16 kHz mono or Ogg/Opus: the audio is converted to WAV
  PCM 16 kHz mono with callers.audio.
Neither API takes a phrase list at these versions, so `keywords` apply to streams only.
`punctuate=False` answers the ITN form (no punctuation) where Azure gives one (short audio
and streams); fast transcription answers only the display form. Provider options:
`max_speakers` (2-36, default 2, with diarization) and `profanity` (raw | masked | removed).

STREAM_STT speaks the real-time websocket (callers.azure_speech.realtime) to the same
conversation path: speech.config, then speech.context with the keywords, then audio as
PCM s16le 16 kHz mono, converted chunk by chunk from what the client sends (raw PCM,
mu-law or A-law at any input rate), and an empty audio message at half-close.
`endpointing_ms` is Azure's segmentationSilenceTimeoutMs. The real-time endpoint needs a
language and has no diarization; both are refused before connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from callers import audio as hub_audio
from callers import pools
from callers.azure_speech import realtime, wire
from callers.base import InvalidRequest, ProviderTimeout, ProviderUnavailable, SecretFields
from callers.errors import error_from_http_status
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SpeechStarted,
    StreamTranscribeEnd,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    TranscribeRequest,
    TranscribeResponse,
    TranscriptEvent,
    UtteranceEnd,
    Word,
)
from callers.types.common import JsonValue

C, E = AudioContainer, AudioEncoding
SHORT_AUDIO_MAX_SECONDS = 60.0
WAV_16K = AudioFormat(E.PCM_S16LE, C.WAV, realtime.SAMPLE_RATE, 1)
PCM_16K = AudioFormat(E.PCM_S16LE, C.RAW, realtime.SAMPLE_RATE, 1)
SHORT_AUDIO_CONTENT_TYPE = "audio/wav; codecs=audio/pcm; samplerate=16000"
STREAM_CHUNK_BYTES = 6400  # 200 ms of PCM 16 kHz per audio message
_PROFANITY = {"raw": "None", "masked": "Masked", "removed": "Removed"}

# Files fast transcription reads as they are: (container, encoding) -> (file name, content type).
_FAST_AS_IS: dict[tuple[AudioContainer, AudioEncoding], tuple[str, str]] = {
    (C.WAV, E.PCM_S16LE): ("audio.wav", "audio/wav"),
    (C.WAV, E.MULAW): ("audio.wav", "audio/wav"),
    (C.WAV, E.ALAW): ("audio.wav", "audio/wav"),
    (C.MP3, E.MP3): ("audio.mp3", "audio/mpeg"),
    (C.RAW, E.MP3): ("audio.mp3", "audio/mpeg"),
    (C.RAW, E.FLAC): ("audio.flac", "audio/flac"),
    (C.OGG, E.OPUS): ("audio.ogg", "audio/ogg"),
    (C.WEBM, E.OPUS): ("audio.webm", "audio/webm"),
    (C.MP4, E.AAC): ("audio.m4a", "audio/mp4"),
}


def _options(provider_options: Mapping[str, JsonValue]) -> tuple[int, str]:
    max_speakers, profanity = 2, "raw"
    for name, value in provider_options.items():
        if name == "max_speakers":
            if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 36:
                raise InvalidRequest("provider_options.max_speakers: a whole number from 2 to 36")
            max_speakers = value
        elif name == "profanity":
            if value not in _PROFANITY:
                raise InvalidRequest("provider_options.profanity: one of raw, masked, removed")
            profanity = str(value)
        else:
            raise InvalidRequest(
                f"provider_options.{name}: not an Azure Speech option (known: max_speakers, profanity)"
            )
    return max_speakers, profanity


def _best(result: dict[str, Any], punctuate: bool) -> tuple[str, dict[str, Any]]:
    nbest = result.get("NBest")
    best = nbest[0] if isinstance(nbest, list) and nbest and isinstance(nbest[0], dict) else {}
    text = best.get("Display") if punctuate else best.get("ITN") or best.get("Lexical")
    if not isinstance(text, str):
        text = result.get("DisplayText") or result.get("Text") or ""
    return str(text), best


def _words(best: dict[str, Any]) -> list[Word]:
    words: list[Word] = []
    for w in best.get("Words") or ():
        if not isinstance(w, dict):
            continue
        start = realtime.seconds(w.get("Offset")) or 0.0
        length = realtime.seconds(w.get("Duration")) or 0.0
        confidence = w.get("Confidence")
        words.append(
            Word(
                text=str(w.get("Word", "")),
                start=start,
                end=start + length,
                confidence=float(confidence) if isinstance(confidence, int | float) else None,
            )
        )
    return words


def _confidence(best: dict[str, Any]) -> float | None:
    value = best.get("Confidence")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- STT ------------------------------------------------------------------------


def use_fast_transcription(request: TranscribeRequest, seconds: float | None) -> bool:
    """The routing rule: fast transcription for diarization, language identification or
    audio over the short-audio limit; the short-audio API otherwise."""
    return (
        request.diarize or not request.language or (seconds is not None and seconds > SHORT_AUDIO_MAX_SECONDS)
    )


class AzureTranscriber:
    async def transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: TranscribeRequest,
        *,
        timeout: float,
    ) -> TranscribeResponse:
        if request.audio_url:
            raise InvalidRequest(
                "audio_url: Azure's speech-to-text REST APIs take the audio itself, not a URL"
            )
        max_speakers, profanity = _options(request.provider_options)
        urls = wire.endpoints(options)
        pcm = None
        if not use_fast_transcription(request, None):
            pcm = hub_audio.decode(
                request.audio, request.audio_format, sample_rate_hz=realtime.SAMPLE_RATE, channels=1
            )
        if pcm is None or use_fast_transcription(request, pcm.duration):
            if request.model:
                raise InvalidRequest(
                    "model: Azure's fast transcription (used for diarization, language identification and "
                    "audio over 60 s) takes no Custom Speech endpoint id"
                )
            return await self._fast(secret, urls, request, max_speakers, profanity, timeout)
        return await self._short(
            secret, urls, request, hub_audio.encode(pcm, WAV_16K), pcm.duration, profanity, timeout
        )

    async def _short(
        self,
        secret: SecretFields,
        urls: wire.Endpoints,
        request: TranscribeRequest,
        wav: bytes,
        duration: float,
        profanity: str,
        timeout: float,
    ) -> TranscribeResponse:
        query = {"language": request.language or "", "format": "detailed", "profanity": profanity}
        if request.word_timestamps:
            query["wordLevelTimestamps"] = "true"
        if request.model:
            query["cid"] = request.model
        url = urls.short_audio.with_query(query)
        headers = wire.key_headers(
            secret, {"Content-Type": SHORT_AUDIO_CONTENT_TYPE, "Accept": "application/json"}
        )
        payload, request_id = await wire.send("POST", url, headers, wav, timeout)
        data = wire.parse_json(payload, url)
        if not isinstance(data, dict):
            raise ProviderUnavailable(f"unexpected answer from {url.host}: not a recognition result")
        status = str(data.get("RecognitionStatus", ""))
        if status in realtime.SILENT_STATUSES:
            return TranscribeResponse(
                transcript="", language=request.language, duration=duration, request_id=request_id
            )
        if status != "Success":
            raise realtime.status_error(
                status or "(no RecognitionStatus)", str(data.get("DisplayText") or "")
            )
        text, best = _best(data, request.punctuate)
        return TranscribeResponse(
            transcript=text,
            words=_words(best) if request.word_timestamps else [],
            language=request.language,
            duration=duration,
            confidence=_confidence(best),
            request_id=request_id,
        )

    async def _fast(
        self,
        secret: SecretFields,
        urls: wire.Endpoints,
        request: TranscribeRequest,
        max_speakers: int,
        profanity: str,
        timeout: float,
    ) -> TranscribeResponse:
        fmt = request.audio_format
        as_is = _FAST_AS_IS.get((fmt.container, fmt.encoding))
        if as_is is not None:
            data, filename, content_type = request.audio, *as_is
        else:
            wav = AudioFormat(E.PCM_S16LE, C.WAV, fmt.sample_rate_hz or realtime.SAMPLE_RATE, fmt.channels)
            data, filename, content_type = (
                hub_audio.convert(request.audio, fmt, wav),
                "audio.wav",
                "audio/wav",
            )
        definition: dict[str, Any] = {"profanityFilterMode": _PROFANITY[profanity]}
        if request.language:
            definition["locales"] = [request.language]
        if request.diarize:
            definition["diarization"] = {"enabled": True, "maxSpeakers": max_speakers}
        form = aiohttp.FormData()
        form.add_field("audio", data, filename=filename, content_type=content_type)
        form.add_field("definition", orjson.dumps(definition).decode(), content_type="application/json")
        url = urls.fast_transcription.with_query({"api-version": wire.FAST_TRANSCRIPTION_API_VERSION})
        headers = wire.key_headers(secret, {"Accept": "application/json"})
        payload, request_id = await wire.send("POST", url, headers, form, timeout)
        answer = wire.parse_json(payload, url)
        if not isinstance(answer, dict):
            raise ProviderUnavailable(f"unexpected answer from {url.host}: not a transcription")
        return _fast_response(answer, request, request_id)


def _fast_response(
    answer: dict[str, Any], request: TranscribeRequest, request_id: str | None
) -> TranscribeResponse:
    combined = [p.get("text", "") for p in answer.get("combinedPhrases") or () if isinstance(p, dict)]
    phrases = [p for p in answer.get("phrases") or () if isinstance(p, dict)]
    words: list[Word] = []
    confidences: list[float] = []
    for phrase in phrases:
        confidence = phrase.get("confidence")
        if isinstance(confidence, int | float):
            confidences.append(float(confidence))
        speaker = phrase.get("speaker")
        label = str(speaker) if request.diarize and speaker is not None else None
        for w in phrase.get("words") or ():
            if not isinstance(w, dict):
                continue
            start = float(w.get("offsetMilliseconds", 0)) / 1000
            words.append(
                Word(
                    text=str(w.get("text", "")),
                    start=start,
                    end=start + float(w.get("durationMilliseconds", 0)) / 1000,
                    confidence=float(confidence) if isinstance(confidence, int | float) else None,
                    speaker=label,
                )
            )
    locale = next((p["locale"] for p in phrases if isinstance(p.get("locale"), str)), None)
    duration = answer.get("durationMilliseconds")
    return TranscribeResponse(
        transcript=" ".join(str(t).strip() for t in combined if t).strip(),
        words=words if request.word_timestamps or request.diarize else [],
        language=locale or request.language,
        duration=float(duration) / 1000 if isinstance(duration, int | float) else None,
        confidence=sum(confidences) / len(confidences) if confidences else None,
        request_id=request_id,
    )


# --- STREAM_STT -------------------------------------------------------------------


def _stream_url(urls: wire.Endpoints, request: StreamTranscribeRequest, profanity: str) -> Any:
    if not request.language:
        raise InvalidRequest("language: Azure's real-time recognition needs the language, e.g. en-US")
    if request.diarize:
        raise InvalidRequest("diarize: Azure's real-time recognition endpoint has no diarization")
    query = {"language": request.language, "format": "detailed", "profanity": profanity}
    if request.word_timestamps:
        query["wordLevelTimestamps"] = "true"
    if request.endpointing_ms is not None:
        if not 100 <= request.endpointing_ms <= 5000:
            raise InvalidRequest("endpointing_ms: Azure's segmentation silence timeout is 100 to 5000 ms")
        query["segmentationSilenceTimeoutMs"] = str(request.endpointing_ms)
    if request.model:
        query["cid"] = request.model
    return urls.realtime.with_query(query)


class _Stream:
    """One websocket recognition: the sender task and what it has sent."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, request_id: str, converter: hub_audio.StreamConverter
    ):
        self.ws = ws
        self.request_id = request_id
        self.converter = converter

    async def send_audio(self, chunks: AsyncIterator[bytes]) -> None:
        ws, rid = self.ws, self.request_id
        try:
            await ws.send_bytes(realtime.audio_message(rid, realtime.wav_header(), first=True))
            async for chunk in chunks:
                await self._send_pcm(self.converter.feed(chunk))
            await self._send_pcm(self.converter.flush())
            await ws.send_bytes(realtime.audio_message(rid, b""))  # end of audio
        except (ConnectionError, aiohttp.ClientError):
            # The service went away: the receiving side reads why (its close code).
            return

    async def _send_pcm(self, pcm: bytes) -> None:
        for at in range(0, len(pcm), STREAM_CHUNK_BYTES):
            await self.ws.send_bytes(
                realtime.audio_message(self.request_id, pcm[at : at + STREAM_CHUNK_BYTES])
            )


class AzureStreamTranscriber(AzureTranscriber):
    async def stream_transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: StreamTranscribeRequest,
        audio: AsyncIterator[bytes],
        *,
        timeout: float,
    ) -> AsyncIterator[StreamTranscribeEvent]:
        _, profanity = _options(request.provider_options)
        converter = hub_audio.StreamConverter(request.audio_format, PCM_16K)  # refuses what cannot stream
        url = _stream_url(wire.endpoints(options), request, profanity)
        connection_id = realtime.new_id()
        headers = wire.key_headers(secret, {"X-ConnectionId": connection_id})
        session = pools.aiohttp_session(wire.upstream(url))
        ws: aiohttp.ClientWebSocketResponse | None = None
        sender: asyncio.Task[None] | None = None
        receiving: asyncio.Task[aiohttp.WSMessage] | None = None
        try:
            ws = await _connect(session, url, headers, timeout)
            stream = _Stream(ws, realtime.new_id(), converter)
            await ws.send_str(
                realtime.text_message("speech.config", stream.request_id, realtime.speech_config())
            )
            if request.keywords:
                context = realtime.speech_context(request.keywords)
                await ws.send_str(realtime.text_message("speech.context", stream.request_id, context))
            sender = asyncio.ensure_future(stream.send_audio(audio))
            while True:
                if receiving is None:
                    receiving = asyncio.ensure_future(ws.receive())
                if not sender.done():
                    # While the client still sends audio, a quiet service is no timeout.
                    await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
                    if sender.done():
                        sender.result()  # the client's audio failed (or could not be converted)
                    if not receiving.done():
                        continue
                else:
                    done, _ = await asyncio.wait({receiving}, timeout=timeout)
                    if not done:
                        raise ProviderTimeout(
                            f"{url.host} sent nothing within {timeout:g} s after the audio ended"
                        )
                message = receiving.result()
                receiving = None
                if message.type is aiohttp.WSMsgType.TEXT:
                    headers_in, body = realtime.parse_text(message.data)
                    path = headers_in.get("path", "")
                    if path == "turn.end":
                        yield StreamTranscribeEnd(
                            duration=converter.input_seconds, request_id=stream.request_id
                        )
                        return
                    for event in _events(path, body, request):
                        yield event
                elif message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    raise realtime.close_error(ws.close_code, str(message.extra or ""))
                elif message.type is aiohttp.WSMsgType.ERROR:
                    raise ProviderUnavailable(f"the real-time connection to {url.host} failed")
        finally:
            for task in (receiving, sender):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if ws is not None and not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)


async def _connect(
    session: aiohttp.ClientSession, url: Any, headers: Mapping[str, str], timeout: float
) -> aiohttp.ClientWebSocketResponse:
    try:
        return await asyncio.wait_for(
            session.ws_connect(
                url,
                headers=headers,
                autoping=True,
                heartbeat=None,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0),
                max_msg_size=16 * 1024 * 1024,
            ),
            timeout,
        )
    except aiohttp.WSServerHandshakeError as exc:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        message = f"Azure Speech ({url.host}) refused the real-time connection: HTTP {exc.status}"
        raise error_from_http_status(exc.status, message, retry_after) from None
    except TimeoutError:
        raise wire.timeout_error(url) from None
    except aiohttp.ClientError as exc:
        raise wire.connection_error(url, exc) from None


def _events(path: str, body: Any, request: StreamTranscribeRequest) -> list[StreamTranscribeEvent]:
    if not isinstance(body, dict):
        return []
    if path == "speech.startDetected":
        return [SpeechStarted(at=realtime.seconds(body.get("Offset")))]
    if path == "speech.endDetected":
        return [UtteranceEnd(at=realtime.seconds(body.get("Offset")))]
    start = realtime.seconds(body.get("Offset"))
    length = realtime.seconds(body.get("Duration"))
    end = start + length if start is not None and length is not None else None
    if path == "speech.hypothesis":
        if not request.interim_results:
            return []
        return [TranscriptEvent(transcript=str(body.get("Text", "")), is_final=False, start=start, end=end)]
    if path == "speech.phrase":
        status = str(body.get("RecognitionStatus", ""))
        if status in realtime.SILENT_STATUSES:
            return []
        if status != "Success":
            raise realtime.status_error(
                status or "(no RecognitionStatus)", str(body.get("DisplayText") or "")
            )
        text, best = _best(body, request.punctuate)
        return [
            TranscriptEvent(
                transcript=text,
                is_final=True,
                words=_words(best) if request.word_timestamps else [],
                start=start,
                end=end,
                confidence=_confidence(best),
            )
        ]
    return []  # turn.start, and paths this caller does not use


CALLER = AzureStreamTranscriber()
