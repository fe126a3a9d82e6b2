"""OpenAI's audio endpoints under /openai/v1, served by any speech provider of the hub:
POST audio/transcriptions (multipart) and POST audio/speech (JSON in, audio out).

As for chat, the key is a hub token (scope invoke) and the model is
"<credential name>/<model>" (or "<credential name>/" for the provider's default
model), so the openai SDK's `client.audio.transcriptions.create` and
`client.audio.speech.create` work against every provider here.

What is mapped: transcriptions take file, model, language, response_format (json,
text, verbose_json) and timestamp_granularities[] (word); `prompt` is not passed on
(it is an OpenAI-only hint that other providers have no field for); srt and vtt are
refused. Speech takes model, input, voice, speed and response_format (mp3, opus,
flac, wav, pcm: OpenAI's formats, all at 24 kHz; aac is refused: the hub cannot write
it); pcm, mp3 and opus are streamed as the provider produces them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from callers import errors as caller_errors
from callers import types as t
from callers.types import AudioContainer as C
from callers.types import AudioEncoding as E
from integration_hub.dispatch import new_request_id
from integration_hub.http import openai_wire as wire
from integration_hub.http.app import ClientGone, close_stream, finish, prepare, send
from integration_hub.provider_calls import DEFAULT_TIMEOUT, Timing

if TYPE_CHECKING:
    from integration_hub.http.openai_adapter import OpenAIAdapter
    from integration_hub.speech import SpeechService

RATE = 24_000
# response_format -> (the output format, content type, streamed as produced)
SPEECH_FORMATS: dict[str, tuple[t.AudioFormat, str, bool]] = {
    "mp3": (t.AudioFormat(E.MP3, C.MP3, RATE), "audio/mpeg", True),
    "opus": (t.AudioFormat(E.OPUS, C.OGG, RATE), "audio/ogg", True),
    "flac": (t.AudioFormat(E.FLAC, C.RAW, RATE), "audio/flac", False),
    "wav": (t.AudioFormat(E.PCM_S16LE, C.WAV, RATE), "audio/wav", False),
    "pcm": (t.AudioFormat(E.PCM_S16LE, C.RAW, RATE), "audio/pcm", True),
}
# An uploaded file's name says its container, as OpenAI reads it.
_CONTAINERS_BY_SUFFIX = {
    "wav": C.WAV,
    "mp3": C.MP3,
    "mpeg": C.MP3,
    "mpga": C.MP3,
    "ogg": C.OGG,
    "oga": C.OGG,
    "opus": C.OGG,
    "webm": C.WEBM,
    "mp4": C.MP4,
    "m4a": C.MP4,
}
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")


def _split(model: Any) -> tuple[str, str]:
    """ "<credential>/<model>"; "<credential>/" or a bare credential name: the default model."""
    if isinstance(model, str) and model and "/" not in model:
        return model, ""
    if isinstance(model, str) and model.endswith("/") and model.count("/") == 1:
        return model[:-1], ""
    return wire.split_model(model)


def _declared(filename: str) -> t.AudioFormat | C:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix == "flac":
        return t.AudioFormat(E.FLAC, C.RAW)
    if suffix not in _CONTAINERS_BY_SUFFIX:
        raise wire.bad_request(
            "file",
            f"unsupported file type {suffix or '(none)'!r}; "
            f"use one of: flac, {', '.join(_CONTAINERS_BY_SUFFIX)}",
        )
    return _CONTAINERS_BY_SUFFIX[suffix]


class OpenAIAudio:
    def __init__(self, adapter: OpenAIAdapter, speech: SpeechService) -> None:
        self._adapter = adapter
        self._speech = speech

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/openai/v1/audio/transcriptions", self.transcriptions),
            web.post("/openai/v1/audio/speech", self.speech),
        ]

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        rid = new_request_id(request.headers.get("x-request-id"))
        try:
            call = await self._adapter._begin(request, "audio/transcriptions", rid)
            form = await _form(request)
            upload = form.get("file")
            if not isinstance(upload, web.FileField):
                raise wire.bad_request("file", "required: the audio file (multipart)")
            data = upload.file.read()
            if not data:
                raise wire.bad_request("file", "is empty")
            credential, model = _split(form.get("model"))
            response_format = str(form.get("response_format") or "json")
            if response_format not in TRANSCRIPTION_FORMATS:
                raise wire.bad_request(
                    "response_format",
                    f"{response_format!r} is not supported; use one of {TRANSCRIPTION_FORMATS}",
                )
            granularities = [str(g) for g in form.getall("timestamp_granularities[]", [])]
            declared = _declared(upload.filename or "")
            neutral = t.TranscribeRequest(
                audio=data,
                audio_format=t.AudioFormat(E.MP3, C.MP3),  # replaced by what probing finds
                model=model or None,
                language=str(form["language"]) if form.get("language") else None,
                word_timestamps="word" in granularities,
            )
            response, _, _, seconds = await self._speech.transcribe(
                call, credential, neutral, declared, call.time_left(DEFAULT_TIMEOUT)
            )
            if response_format == "text":
                return web.Response(text=response.transcript + "\n", headers={"x-request-id": rid})
            body: dict[str, Any] = {"text": response.transcript}
            if response_format == "verbose_json":
                body.update(
                    task="transcribe",
                    language=response.language or "",
                    duration=seconds or 0.0,
                    words=[{"word": w.text, "start": w.start, "end": w.end} for w in response.words],
                    segments=[],
                )
            return web.json_response(body, headers={"x-request-id": rid})
        except Exception as exc:
            return self._adapter._error(exc, "audio/transcriptions", rid)

    async def speech(self, request: web.Request) -> web.StreamResponse:
        rid = new_request_id(request.headers.get("x-request-id"))
        try:
            call = await self._adapter._begin(request, "audio/speech", rid)
            body = await self._adapter._body(request)
            if not isinstance(body, dict):
                raise wire.bad_request("body", "must be a JSON object")
            neutral, content_type, streamed = _speech_request(body)
            timeout = call.time_left(DEFAULT_TIMEOUT)
            credential = _split(body.get("model"))[0]
            if not streamed:
                response, _, _, _ = await self._speech.synthesize(call, credential, neutral, timeout)
                return web.Response(
                    body=response.audio, content_type=content_type, headers={"x-request-id": rid}
                )
            try:
                _, chunks = await self._speech.stream_synthesize(
                    call, credential, neutral, timeout, Timing(started=call.started)
                )
            except caller_errors.InvalidRequest as exc:
                if not exc.message.startswith("output_format:"):
                    raise
                # The provider cannot stream this format (Google streams no mp3, Deepgram mp3
                # only at 22.05 kHz): the whole answer, converted, as OpenAI would send it.
                response, _, _, _ = await self._speech.synthesize(
                    call, credential, neutral, call.time_left(timeout)
                )
                return web.Response(
                    body=response.audio, content_type=content_type, headers={"x-request-id": rid}
                )
            return await _stream_audio(request, chunks, content_type, rid)
        except Exception as exc:
            return self._adapter._error(exc, "audio/speech", rid)


async def _form(request: web.Request) -> Any:
    if not request.content_type.startswith("multipart/"):
        raise wire.bad_request("body", "must be multipart/form-data (file, model, ...)")
    try:
        return await request.post()
    except ValueError as exc:
        raise wire.bad_request("body", f"malformed multipart body ({exc})") from None


def _speech_request(body: dict[str, Any]) -> tuple[t.SynthesizeRequest, str, bool]:
    _, model = _split(body.get("model"))
    text, voice = body.get("input"), body.get("voice")
    if not isinstance(text, str) or not text.strip():
        raise wire.bad_request("input", "required: the text to speak")
    if not isinstance(voice, str) or not voice.strip():
        raise wire.bad_request("voice", "required: a voice id")
    asked = body.get("response_format", "mp3")
    if asked not in SPEECH_FORMATS:
        raise wire.bad_request(
            "response_format", f"{asked!r} is not supported; use one of {tuple(SPEECH_FORMATS)}"
        )
    output, content_type, streamed = SPEECH_FORMATS[asked]
    speed = body.get("speed")
    if speed is not None and (not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0):
        raise wire.bad_request("speed", "must be a number from 0.25 to 4.0")
    options: dict[str, Any] = {}
    if isinstance(body.get("instructions"), str):
        options["instructions"] = body["instructions"]
    request = t.SynthesizeRequest(
        text=text,
        voice=voice,
        output_format=output,
        model=model or None,
        speed=float(speed) if speed is not None else None,
        provider_options=options,
    )
    return request, content_type, streamed


async def _stream_audio(request: web.Request, chunks: Any, content_type: str, rid: str) -> web.StreamResponse:
    stream = web.StreamResponse(headers={"Content-Type": content_type, "x-request-id": rid})
    stream.enable_chunked_encoding()
    try:
        await prepare(stream, request)
        async for chunk in chunks:
            if chunk.audio:
                await send(stream, chunk.audio)
        await finish(stream)
    except ClientGone:
        pass
    finally:
        await close_stream(chunks)
    return stream
