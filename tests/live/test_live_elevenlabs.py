"""ElevenLabs against the real api.elevenlabs.io.

Skipped unless ELEVENLABS_API_KEY is set; spends a few hundred characters of quota per
run. ELEVENLABS_LIVE_VOICE (default Rachel, a premade voice), ELEVENLABS_LIVE_MODEL
(default eleven_flash_v2_5, the cheapest) and ELEVENLABS_BASE_URL can be overridden.
The assertions are those of tests/speech/test_elevenlabs_wire.py, with tolerances for
real speech instead of the fake's tone.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest

from callers import audio, pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    NotFound,
    StreamSynthesizer,
    StreamTextSynthesizer,
    Synthesizer,
    Verifier,
    VoiceLister,
)
from callers.types import (
    FLUSH,
    AudioChunk,
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SynthesizeRequest,
    TextInput,
)
from tests.fakes.secret_fields import PlainSecret

KEY = os.environ.get("ELEVENLABS_API_KEY", "")
VOICE = os.environ.get("ELEVENLABS_LIVE_VOICE", "21m00Tcm4TlvDq8ikWAM")
MODEL = os.environ.get("ELEVENLABS_LIVE_MODEL", "eleven_flash_v2_5")
OPTIONS = {"base_url": os.environ.get("ELEVENLABS_BASE_URL", "https://api.elevenlabs.io")}
SECRET = PlainSecret(api_key=KEY)
C, E = AudioContainer, AudioEncoding
TEXT = "Hello from the hub."

pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not KEY, reason="ELEVENLABS_API_KEY is not set"),
]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def _caller(capability: Capability) -> object:
    return registry.capability("elevenlabs", capability)


async def test_live_verify() -> None:
    verifier = _caller(Capability.VERIFY)
    assert isinstance(verifier, Verifier)
    good = await verifier.verify(SECRET, OPTIONS, timeout=30)
    assert good.valid, good.reason
    bad = await verifier.verify(PlainSecret(api_key="sk_" + "0" * 48), OPTIONS, timeout=30)
    assert not bad.valid
    assert "0" * 48 not in bad.reason


async def test_live_voices() -> None:
    lister = _caller(Capability.VOICES)
    assert isinstance(lister, VoiceLister)
    every = await lister.list_voices(SECRET, OPTIONS, language=None, timeout=30)
    assert every
    assert all(v.id and v.name for v in every)
    english = await lister.list_voices(SECRET, OPTIONS, language="en", timeout=30)
    assert all(any(tag.lower().startswith("en") for tag in v.languages) for v in english)


@pytest.mark.parametrize(
    "asked",
    [
        AudioFormat(E.PCM_S16LE, C.WAV, 16000),
        AudioFormat(E.MULAW, C.RAW, 8000),
        AudioFormat(E.MP3, C.MP3, 44100),
        AudioFormat(E.OPUS, C.OGG, 48000),
    ],
)
async def test_live_synthesize(asked: AudioFormat) -> None:
    tts = _caller(Capability.TTS)
    assert isinstance(tts, Synthesizer)
    answer = await tts.synthesize(
        SECRET, OPTIONS, SynthesizeRequest(TEXT, VOICE, asked, model=MODEL, language="en-US"), timeout=60
    )
    info = audio.probe(answer.audio, asked)
    assert info.sample_rate_hz == asked.sample_rate_hz
    assert 0.5 < info.duration < 5
    assert answer.request_id


async def test_live_stream_synthesize() -> None:
    tts = _caller(Capability.STREAM_TTS)
    assert isinstance(tts, StreamSynthesizer)
    asked = AudioFormat(E.PCM_S16LE, C.RAW, 16000)
    request = SynthesizeRequest(TEXT + " This is a streamed test.", VOICE, asked, model=MODEL)
    chunks = [c async for c in tts.stream_synthesize(SECRET, OPTIONS, request, timeout=60)]
    assert chunks[-1].is_last
    assert len(chunks) > 1
    assert 1 < audio.raw_seconds(sum(len(c.audio) for c in chunks), asked) < 8


async def test_live_input_streaming_with_flush_and_cancel() -> None:
    tts = _caller(Capability.STREAM_TTS_INPUT)
    assert isinstance(tts, StreamTextSynthesizer)
    asked = AudioFormat(E.MULAW, C.RAW, 8000)
    request = SynthesizeRequest("", VOICE, asked, model=MODEL)

    async def llm() -> AsyncIterator[TextInput]:
        for piece in ("Hel", "lo from ", "the hub.", FLUSH, " This text ", "was stre", "amed."):
            yield piece
            await asyncio.sleep(0.05)

    chunks = [c async for c in tts.stream_synthesize_input(SECRET, OPTIONS, request, llm(), timeout=60)]
    assert chunks[-1].is_last
    assert not any(c.is_last for c in chunks[:-1])
    assert 1 < audio.raw_seconds(sum(len(c.audio) for c in chunks), asked) < 10

    async def endless() -> AsyncIterator[TextInput]:
        while True:
            yield "Some more words to say. "
            yield FLUSH
            await asyncio.sleep(0.5)

    stream = tts.stream_synthesize_input(SECRET, OPTIONS, request, endless(), timeout=60)
    assert (await anext(stream)).audio
    closed = time.monotonic()
    await cast("AsyncGenerator[AudioChunk, None]", stream).aclose()
    assert time.monotonic() - closed < 0.6  # the close frame goes out at once; the ack wait is bounded


async def test_live_errors() -> None:
    tts = _caller(Capability.TTS)
    assert isinstance(tts, Synthesizer)
    asked = AudioFormat(E.PCM_S16LE, C.RAW, 16000)
    wrong = "sk_" + "1" * 48
    with pytest.raises(AuthenticationFailed) as raised:
        await tts.synthesize(
            PlainSecret(api_key=wrong), OPTIONS, SynthesizeRequest(TEXT, VOICE, asked), timeout=30
        )
    assert wrong not in str(raised.value)
    with pytest.raises(NotFound):
        await tts.synthesize(
            SECRET, OPTIONS, SynthesizeRequest(TEXT, "NoSuchVoice000000000", asked), timeout=30
        )
