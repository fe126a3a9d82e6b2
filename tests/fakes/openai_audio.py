"""OpenAI's audio endpoints on the loopback FakeOpenAI: what the real service answers.

    audio = OpenAIAudio()
    fake = FakeOpenAI(valid_keys={"sk-good"}); audio.install(fake)
    async with fake: ...

- POST /v1/audio/transcriptions, multipart (file, model, language, prompt,
  response_format json|text|verbose_json, timestamp_granularities[]): the uploaded file
  is decoded (soundfile/PyAV, as OpenAI would) and a 400 answers a file that is not
  audio; the transcript is `audio.transcript`, its words spread over the real duration.
- POST /v1/audio/speech, JSON (model, input, voice, response_format, speed): real audio
  (a 440 Hz tone, 60 ms per input character) in mp3, opus (Ogg), flac, wav or pcm (24 kHz
  s16le), sent chunked in pieces of `chunk_bytes`, `chunk_delay` apart.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import numpy as np
import soundfile as sf  # type: ignore[import-untyped]
from aiohttp import web

from callers import audio as hub_audio
from callers.audio.pcm import Pcm
from callers.types import AudioContainer, AudioEncoding, AudioFormat
from tests.fakes.openai_server import FakeOpenAI, openai_error

RATE = 24_000
SECONDS_PER_CHAR = 0.06
_FORMATS = {
    "mp3": (AudioFormat(AudioEncoding.MP3, AudioContainer.MP3, RATE), "audio/mpeg"),
    "opus": (AudioFormat(AudioEncoding.OPUS, AudioContainer.OGG, RATE), "audio/ogg"),
    "flac": (AudioFormat(AudioEncoding.FLAC, AudioContainer.RAW, RATE), "audio/flac"),
    "wav": (AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.WAV, RATE), "audio/wav"),
    "pcm": (AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, RATE), "audio/pcm"),
}


def tone(seconds: float, rate: int = RATE) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    return Pcm(samples.tobytes(), rate)


@dataclass
class OpenAIAudio:
    transcript: str = "The quick brown fox jumps over the lazy dog."
    chunk_bytes: int = 4096
    chunk_delay: float = 0.0
    # What arrived: the multipart fields of each transcription (file as bytes).
    uploads: list[dict[str, Any]] = field(default_factory=list)
    speech_requests: list[dict[str, Any]] = field(default_factory=list)
    # Set once a speech client went away before the whole answer was written.
    speech_abandoned: asyncio.Event = field(default_factory=asyncio.Event)

    def install(self, fake: FakeOpenAI) -> None:
        fake.add_route("POST", "/v1/audio/transcriptions", self._transcribe)
        fake.add_route("POST", "/v1/audio/speech", self._speech)

    async def _transcribe(self, request: web.Request) -> web.StreamResponse:
        fields = _multipart(request.headers.get("Content-Type", ""), await request.read())
        self.uploads.append(fields)
        upload = fields.get("file")
        if not isinstance(upload, bytes) or "model" not in fields:
            return openai_error(400, "you must provide a file and a model", type_="invalid_request_error")
        try:
            duration = hub_audio.probe(upload, AudioContainer.WAV).duration
        except hub_audio.AudioError:
            try:
                duration = _any_duration(upload)
            except Exception:  # what OpenAI answers a file it cannot decode
                return openai_error(
                    400,
                    "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', "
                    "'mpga', 'oga', 'ogg', 'wav', 'webm']",
                    type_="invalid_request_error",
                )
        response_format = fields.get("response_format", "json")
        if response_format == "text":
            return web.Response(text=self.transcript + "\n", headers={"x-request-id": "req_stt"})
        answer: dict[str, Any] = {"text": self.transcript}
        if response_format == "verbose_json":
            answer.update(task="transcribe", language=fields.get("language") or "english", duration=duration)
            if "word" in fields.get("timestamp_granularities[]", []):
                words = self.transcript.split()
                step = duration / len(words)
                answer["words"] = [
                    {"word": w.strip(".,"), "start": round(i * step, 3), "end": round((i + 1) * step, 3)}
                    for i, w in enumerate(words)
                ]
        return web.json_response(answer, headers={"x-request-id": "req_stt"})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.speech_requests.append(body)
        text, voice = body.get("input"), body.get("voice")
        if not text or not voice or "model" not in body:
            return openai_error(400, "input, voice and model are required", type_="invalid_request_error")
        asked = body.get("response_format", "mp3")
        if asked not in _FORMATS:
            return openai_error(400, f"Invalid response_format {asked!r}", type_="invalid_request_error")
        target, content_type = _FORMATS[asked]
        data = hub_audio.encode(tone(len(text) * SECONDS_PER_CHAR / float(body.get("speed", 1.0))), target)
        response = web.StreamResponse(headers={"Content-Type": content_type, "x-request-id": "req_tts"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for start in range(0, len(data), self.chunk_bytes):
                await response.write(data[start : start + self.chunk_bytes])
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.speech_abandoned.set()
            raise
        return response


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """The form's fields (files as bytes; `name[]` fields as lists), parsed by the standard
    library's MIME parser: the body was already read by the fake's recording middleware."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        value: Any = payload if part.get_filename() else payload.decode()
        if name.endswith("[]"):
            fields.setdefault(name, []).append(value)
        else:
            fields[name] = value
    return fields


def _any_duration(data: bytes) -> float:
    with sf.SoundFile(io.BytesIO(data)) as f:
        return float(f.frames / f.samplerate)
