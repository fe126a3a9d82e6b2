"""STT of a whole recording: upload, create the transcript, poll it to its end (v2 REST).

Input formats: AssemblyAI transcodes files itself, so a file in a container (WAV, MP3,
FLAC, Ogg/Opus, WebM/Opus, MP4/AAC) is uploaded as it came; headerless samples (PCM s16le,
mu-law, A-law) are wrapped as 16-bit PCM WAV first, at their own rate and channels. With
`audio_url` (https) nothing is uploaded: AssemblyAI fetches the file.

Polling starts at 0.25 s and backs off to 2 s; the whole call (upload, create, every
poll) is bounded by `timeout`, after which ProviderTimeout names the transcript. A cancelled
call stops polling at once (the transcript is left to finish at AssemblyAI: deleting it is
only possible once it has completed, and would need a request after the cancel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from callers import audio
from callers.assemblyai import wire
from callers.audio.formats import is_sample_format
from callers.base import InvalidRequest, ProviderTimeout, ProviderUnavailable, SecretFields
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    TranscribeRequest,
    TranscribeResponse,
    Word,
)

# AssemblyAI's documented default routing: Universal-3 Pro for its languages, else Universal-2.
DEFAULT_SPEECH_MODELS = ("universal-3-pro", "universal-2")
POLL_FIRST = 0.25
POLL_FACTOR = 1.6
POLL_MAX = 2.0

# Back from AssemblyAI's codes to BCP-47, for the codes that carry a region.
_BCP47_OF = {"en_us": "en-US", "en_uk": "en-GB", "en_au": "en-AU", "de_ch": "de-CH"}
# Words of a failed transcript's error that mean AssemblyAI failed, not the audio.
_SERVER_SIDE = ("server error", "internal error", "try again", "temporarily")


def upload_body(request: TranscribeRequest) -> bytes:
    """What to upload: a file as it came, headerless samples as a PCM WAV."""
    fmt = request.audio_format
    if not request.audio:
        raise InvalidRequest("audio: empty (send the audio, or an audio_url)")
    if not is_sample_format(fmt):
        return request.audio
    wav = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.WAV, fmt.sample_rate_hz, fmt.channels)
    return audio.convert(request.audio, fmt, wav)


def speech_models(model: str | None) -> list[str]:
    """`model` may name one model or several in priority order ("universal-3-pro,universal-2")."""
    if model is None:
        return list(DEFAULT_SPEECH_MODELS)
    names = [name.strip() for name in model.split(",") if name.strip()]
    if not names:
        raise InvalidRequest("model: empty")
    return names


def transcript_body(request: TranscribeRequest) -> dict[str, Any]:
    """The POST /v2/transcript body without audio_url (known after the upload)."""
    body: dict[str, Any] = {
        "speech_models": speech_models(request.model),
        "punctuate": request.punctuate,
        "format_text": request.punctuate,
    }
    if request.language:
        body["language_code"] = wire.language_code(request.language)
    else:
        body["language_detection"] = True
    if request.diarize:
        body["speaker_labels"] = True
    if request.keywords:
        body["keyterms_prompt"] = list(request.keywords)
    for name, value in request.provider_options.items():
        if name in body or name == "audio_url":
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        body[name] = value
    return body


def parse_transcript(data: Mapping[str, Any]) -> TranscribeResponse:
    text = data.get("text")
    if not isinstance(text, str):
        raise ProviderUnavailable("AssemblyAI completed a transcript without text")
    words = [_word(w) for w in data.get("words") or () if isinstance(w, dict)]
    language = data.get("language_code")
    duration = data.get("audio_duration")
    confidence = data.get("confidence")
    rid = data.get("id")
    return TranscribeResponse(
        transcript=text.strip(),
        words=words,
        language=_BCP47_OF.get(language, language) if isinstance(language, str) else None,
        duration=float(duration) if isinstance(duration, int | float) else None,
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        request_id=rid if isinstance(rid, str) else None,
    )


def _word(w: Mapping[str, Any]) -> Word:
    confidence = w.get("confidence")
    speaker = w.get("speaker")
    return Word(
        text=str(w.get("text", "")),
        start=float(w.get("start") or 0) / 1000,
        end=float(w.get("end") or 0) / 1000,
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        speaker=str(speaker) if speaker is not None else None,
    )


def failed_transcript(transcript_id: str, message: str) -> InvalidRequest | ProviderUnavailable:
    """A transcript that ended in status "error": bad audio, unreachable URL, unsupported
    language for the model... are the request's; a server-side failure is AssemblyAI's."""
    text = f"AssemblyAI could not transcribe ({transcript_id}): {message}"
    if any(word in message.lower() for word in _SERVER_SIDE):
        return ProviderUnavailable(text)
    return InvalidRequest(text)


async def transcribe(
    secret: SecretFields, options: Mapping[str, str], request: TranscribeRequest, timeout: float
) -> TranscribeResponse:
    body = transcript_body(request)  # bad input is refused before the key is read
    if request.audio_url:
        if not request.audio_url.lower().startswith("https://"):
            raise InvalidRequest("audio_url: AssemblyAI fetches https URLs only")
        data = None
    else:
        data = upload_body(request)
    target = wire.endpoint(options)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def left() -> float:
        return deadline - loop.time()

    if data is None:
        body["audio_url"] = request.audio_url
    else:
        uploaded = await wire.request_json(target, "POST", "/v2/upload", secret, data=data, timeout=left())
        upload_url = uploaded.get("upload_url") if isinstance(uploaded, dict) else None
        if not isinstance(upload_url, str):
            raise ProviderUnavailable("AssemblyAI answered the upload without an upload_url")
        body["audio_url"] = upload_url
    state = await wire.request_json(target, "POST", "/v2/transcript", secret, json_body=body, timeout=left())
    transcript_id = state.get("id") if isinstance(state, dict) else None
    if not isinstance(transcript_id, str):
        raise ProviderUnavailable("AssemblyAI created a transcript without an id")
    delay = POLL_FIRST
    while True:
        status = state.get("status") if isinstance(state, dict) else None
        if status == "completed":
            return parse_transcript(state)
        if status == "error":
            raise failed_transcript(transcript_id, str(state.get("error") or "no reason given"))
        if status not in ("queued", "processing"):
            raise ProviderUnavailable(f"AssemblyAI reported transcript {transcript_id} as {status!r}")
        remaining = left()
        if remaining <= 0:
            raise ProviderTimeout(
                f"AssemblyAI had not finished transcript {transcript_id} within {timeout:.3g} s"
            )
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * POLL_FACTOR, POLL_MAX)
        if left() <= 0:
            raise ProviderTimeout(
                f"AssemblyAI had not finished transcript {transcript_id} within {timeout:.3g} s"
            )
        state = await wire.request_json(
            target, "GET", f"/v2/transcript/{transcript_id}", secret, timeout=left()
        )
