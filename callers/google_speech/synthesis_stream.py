"""STREAM_TTS and STREAM_TTS_INPUT: Text-to-Speech v1 StreamingSynthesize (bidirectional gRPC).

Google streams synthesis for Chirp 3: HD voices only, as raw PCM, mu-law, A-law or
Ogg/Opus at the asked rate: exactly the stream formats the hub offers except mp3,
so nothing is converted. Plain text only (no SSML). Text fragments are sent a
sentence at a time (or at a FLUSH, or at the end): Google synthesizes each input
message as it comes, and a sentence cut mid-way would be spoken with two melodies.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from google.cloud.texttospeech_v1.types import cloud_tts as tts

from callers.base import InvalidRequest, ProviderTimeout, SecretFields
from callers.google_speech.client import auth_metadata, tts_client, tts_target
from callers.google_speech.convert import language_of_voice
from callers.google_speech.errors import FirstStatus, call_errors, from_grpc
from callers.google_speech.streams import next_until_quiet, open_stream
from callers.types import AudioChunk, AudioContainer, AudioEncoding, Flush, SynthesizeRequest, TextInput

SERVICE = "Text-to-Speech"
STREAMING_VOICES = "Chirp3-HD"
_STREAM_ENCODINGS = {
    (AudioContainer.RAW, AudioEncoding.PCM_S16LE): tts.AudioEncoding.PCM,
    (AudioContainer.RAW, AudioEncoding.MULAW): tts.AudioEncoding.MULAW,
    (AudioContainer.RAW, AudioEncoding.ALAW): tts.AudioEncoding.ALAW,
    (AudioContainer.OGG, AudioEncoding.OPUS): tts.AudioEncoding.OGG_OPUS,
}
_DEFAULT_RATE = {
    tts.AudioEncoding.MULAW: 8000,
    tts.AudioEncoding.ALAW: 8000,
    tts.AudioEncoding.OGG_OPUS: 48000,
}
# The end of a sentence: ., !, ? or ; (also CJK full stops) followed by white space.
_SENTENCE_END = re.compile(r"[.!?;\u3002\uff01\uff1f][\"')\]]*\s")


def streaming_config(request: SynthesizeRequest) -> tts.StreamingSynthesizeConfig:
    """The first message of a stream; bad input is refused here, before any call."""
    if request.is_ssml:
        raise InvalidRequest("ssml: Google's streaming synthesis takes plain text; use Synthesize for SSML")
    if STREAMING_VOICES not in request.voice:
        raise InvalidRequest(
            f"voice: Google streams synthesis only with Chirp 3: HD voices (such as en-US-{STREAMING_VOICES}-"
            f"Charon), not {request.voice!r}; use Synthesize for other voices"
        )
    output = request.output_format
    encoding = _STREAM_ENCODINGS.get((output.container, output.encoding))
    if encoding is None or output.channels != 1:
        raise InvalidRequest(
            "output_format: Google streams mono raw linear16, mulaw, alaw or ogg/opus, "
            f"not {output.container}/{output.encoding} with {output.channels} channel(s)"
        )
    rate = output.sample_rate_hz or _DEFAULT_RATE.get(encoding, 24000)
    audio_config = tts.StreamingAudioConfig(audio_encoding=encoding, sample_rate_hertz=rate)
    if request.speed is not None:
        audio_config.speaking_rate = request.speed
    voice = tts.VoiceSelectionParams(
        language_code=request.language or language_of_voice(request.voice), name=request.voice
    )
    return tts.StreamingSynthesizeConfig(voice=voice, streaming_audio_config=audio_config)


def _text_message(text: str) -> tts.StreamingSynthesizeRequest:
    return tts.StreamingSynthesizeRequest(input=tts.StreamingSynthesisInput(text=text))


async def sentences(text: AsyncIterator[TextInput]) -> AsyncIterator[str]:
    """Fragments joined into whole sentences; a FLUSH or the end sends what is held."""
    held = ""
    async for item in text:
        if isinstance(item, Flush):
            if held.strip():
                yield held
            held = ""
            continue
        held += item
        cut = 0
        for match in _SENTENCE_END.finditer(held):
            cut = match.end()
        if cut:
            yield held[:cut]
            held = held[cut:]
    if held.strip():
        yield held


async def single(text: str) -> AsyncIterator[str]:
    yield text


async def synthesis_stream(
    secret: SecretFields,
    options: Mapping[str, str],
    request: SynthesizeRequest,
    texts: AsyncIterator[str],
    *,
    timeout: float,
) -> AsyncIterator[AudioChunk]:
    """Audio chunks as Google produces them for `texts`; the last has is_last=True."""
    config = streaming_config(request)
    metadata = await auth_metadata(secret, timeout=timeout)
    client = tts_client(tts_target(options))
    sent = asyncio.Event()  # set when the text has ended (the client's half-close)

    async def requests() -> AsyncIterator[tts.StreamingSynthesizeRequest]:
        yield tts.StreamingSynthesizeRequest(streaming_config=config)
        async for sentence in texts:
            yield _text_message(sentence)
        sent.set()

    call: Any = None
    first_status = FirstStatus()
    try:
        try:
            call = await asyncio.wait_for(
                open_stream(client.streaming_synthesize, requests(), metadata), timeout=timeout
            )
            call.add_done_callback(first_status)
            responses = call.__aiter__()
            while True:
                try:
                    if sent.is_set():
                        response = await asyncio.wait_for(responses.__anext__(), timeout=timeout)
                    else:
                        response = await next_until_quiet(responses, sent, timeout)
                except StopAsyncIteration:
                    break
                if response.audio_content:
                    yield AudioChunk(audio=bytes(response.audio_content))
        except TimeoutError:
            raise ProviderTimeout(f"{SERVICE} sent nothing within {timeout:g} s") from None
        except call_errors() as exc:
            raise from_grpc(first_status.real_error(exc), SERVICE) from None
        yield AudioChunk(audio=b"", is_last=True)
    finally:
        if call is not None:
            call.cancel()
