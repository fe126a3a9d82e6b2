"""OpenAI's audio API on the wire: POST {base_url}/audio/transcriptions (multipart) and
POST {base_url}/audio/speech (JSON in, audio bytes out), over the pooled aiohttp session.

Shared by every vendor row whose servers expose these paths (openai, and the
OpenAI-compatible engines that serve Whisper or TTS models: vLLM, LocalAI, Speaches).

Formats: OpenAI reads flac, mp3, mp4/m4a, ogg, wav and webm files, so a file in one of
those containers goes as it came; raw samples (PCM, G.711) are wrapped as WAV first.
For speech, OpenAI writes mp3, opus (in Ogg), aac, flac, wav (24 kHz, 16-bit) and pcm
(headerless 24 kHz s16le): an asked format OpenAI writes itself is asked for as it is,
and any other (mu-law 8 kHz for a phone line, PCM at 8/16/48 kHz) is made from pcm
24 kHz with callers.audio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import orjson

from callers import audio, pools
from callers.base import InvalidRequest, ProviderUnavailable, SecretFields
from callers.openai import transport as http
from callers.openai.vendor import OpenAIWireVendor
from callers.types import AudioContainer, AudioEncoding, AudioFormat, TranscribeResponse, Word
from callers.types.speech import SynthesizeRequest, TranscribeRequest

C, E = AudioContainer, AudioEncoding
DEFAULT_TRANSCRIPTION_MODEL = "whisper-1"
DEFAULT_SPEECH_MODEL = "gpt-4o-mini-tts"
# OpenAI's pcm and wav outputs are 24 kHz mono s16le.
OPENAI_PCM_RATE = 24_000
PCM_24K = AudioFormat(E.PCM_S16LE, C.RAW, OPENAI_PCM_RATE, 1)

# Files OpenAI reads as they are: (container, encoding) -> (file name, content type).
_UPLOAD_AS_IS: dict[tuple[AudioContainer, AudioEncoding], tuple[str, str]] = {
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


@dataclass(frozen=True, slots=True)
class SpeechOutput:
    """How an asked output format is obtained from OpenAI: its response_format, and
    whether the answer still needs converting to the asked format."""

    response_format: str
    convert: bool


def speech_output(asked: AudioFormat) -> SpeechOutput:
    """OpenAI's response_format for `asked`; pcm (24 kHz) plus a conversion otherwise."""
    native = {
        (C.MP3, E.MP3): "mp3",
        (C.RAW, E.MP3): "mp3",
        (C.RAW, E.FLAC): "flac",
        (C.OGG, E.OPUS): "opus",
    }.get((asked.container, asked.encoding))
    mono = asked.channels == 1
    if native is not None and mono and asked.sample_rate_hz in (None, OPENAI_PCM_RATE):
        return SpeechOutput(native, convert=False)
    if asked.encoding is E.PCM_S16LE and mono and asked.sample_rate_hz == OPENAI_PCM_RATE:
        return SpeechOutput("wav" if asked.container is C.WAV else "pcm", convert=False)
    return SpeechOutput("pcm", convert=True)


class SpeechEndpoints:
    """The two audio endpoints of a vendor's base URL, resolved once per options."""

    __slots__ = ("_cache", "vendor")

    def __init__(self, vendor: OpenAIWireVendor) -> None:
        self.vendor = vendor
        self._cache: dict[tuple[object, ...], http.Endpoint] = {}

    def endpoint(self, options: Mapping[str, str], path: str, *, json: bool) -> http.Endpoint:
        key = (path, json, *options.items())
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= 1024:
                self._cache.clear()
            headers = self.vendor.headers(options)
            if json:
                headers["Content-Type"] = "application/json"
            found = self._cache[key] = http.endpoint(f"{self.vendor.base_url(options)}/{path}", headers)
        return found

    def headers(self, target: http.Endpoint, secret: SecretFields) -> dict[str, str]:
        vendor = self.vendor
        return http.with_key(
            target,
            secret,
            vendor.key_field,
            required=vendor.key_required,
            header=vendor.auth_header,
            prefix=vendor.auth_prefix,
        )


# --- transcription ----------------------------------------------------------------


def upload(request: TranscribeRequest) -> tuple[bytes, str, str]:
    """The file to send: (bytes, file name, content type)."""
    if request.audio_url:
        raise InvalidRequest("audio_url: OpenAI's transcription API takes the audio itself, not a URL")
    fmt = request.audio_format
    as_is = _UPLOAD_AS_IS.get((fmt.container, fmt.encoding))
    if as_is is not None:
        return request.audio, *as_is
    wav = AudioFormat(E.PCM_S16LE, C.WAV, fmt.sample_rate_hz or 16_000, fmt.channels)
    return audio.convert(request.audio, fmt, wav), "audio.wav", "audio/wav"


def transcription_form(request: TranscribeRequest) -> aiohttp.FormData:
    data, filename, content_type = upload(request)
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    model = request.model or DEFAULT_TRANSCRIPTION_MODEL
    form.add_field("model", model)
    # Only whisper-1 answers verbose_json (words, language, duration); the gpt-4o
    # transcription models answer json with the text alone.
    form.add_field("response_format", "verbose_json" if model == "whisper-1" else "json")
    if model == "whisper-1" and request.word_timestamps:
        form.add_field("timestamp_granularities[]", "word")
        form.add_field("timestamp_granularities[]", "segment")
    if request.language:
        form.add_field("language", request.language.split("-")[0].lower())  # ISO-639-1
    if request.keywords:
        # OpenAI has no keyword boosting; a prompt naming the words is its documented nudge.
        form.add_field("prompt", ", ".join(request.keywords))
    for name, value in request.provider_options.items():
        if name in ("file", "model"):
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        form.add_field(name, value if isinstance(value, str) else orjson.dumps(value).decode())
    return form


def parse_transcription(data: object, request_id: str | None) -> TranscribeResponse:
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise ProviderUnavailable("unexpected transcription answer: no text")
    words = [
        Word(text=str(w.get("word", "")), start=float(w.get("start", 0.0)), end=float(w.get("end", 0.0)))
        for w in data.get("words") or ()
        if isinstance(w, dict)
    ]
    duration = data.get("duration")
    language = data.get("language")
    return TranscribeResponse(
        transcript=data["text"].strip(),
        words=words,
        language=language if isinstance(language, str) else None,
        duration=float(duration) if isinstance(duration, int | float) else None,
        request_id=request_id,
    )


# --- speech -----------------------------------------------------------------------


def speech_body(request: SynthesizeRequest, response_format: str) -> bytes:
    if request.is_ssml:
        raise InvalidRequest("ssml: OpenAI's speech API takes plain text only")
    body: dict[str, object] = {
        "model": request.model or DEFAULT_SPEECH_MODEL,
        "input": request.text,
        "voice": request.voice,
        "response_format": response_format,
    }
    if request.speed is not None:
        body["speed"] = request.speed
    for name, value in request.provider_options.items():
        if name in body:
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        body[name] = value  # e.g. "instructions" for gpt-4o-mini-tts
    return orjson.dumps(body)


async def post_form(
    endpoint: http.Endpoint, headers: Mapping[str, str], form: aiohttp.FormData, timeout: float
) -> tuple[object, str | None]:
    session = pools.aiohttp_session(endpoint.upstream)
    try:
        async with session.post(
            endpoint.url,
            data=form,
            headers=headers,
            timeout=http.client_timeout(timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            if not 200 <= response.status < 300:
                raise http.http_error(response.status, payload, response.headers)
            rid = http.request_id(response.headers)
    except TimeoutError:
        raise http.timeout_error(endpoint) from None
    except aiohttp.ClientError as exc:
        raise http.connection_error(endpoint, exc) from None
    try:
        return orjson.loads(payload), rid
    except orjson.JSONDecodeError:
        raise http.not_json(endpoint) from None
