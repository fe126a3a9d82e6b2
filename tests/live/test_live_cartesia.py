"""The Cartesia callers against the real api.cartesia.ai.

Skipped unless CARTESIA_API_KEY is set; costs a few seconds of synthesis and
transcription. CARTESIA_LIVE_VOICE picks the voice (else the first English voice
listed), CARTESIA_LIVE_TTS_MODEL the TTS model (default: the caller's).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from callers import audio, pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    StreamSynthesizer,
    StreamTextSynthesizer,
    StreamTranscriber,
    Synthesizer,
    Transcriber,
    VoiceLister,
)
from callers.types import (
    FLUSH,
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    StreamTranscribeEnd,
    StreamTranscribeRequest,
    SynthesizeRequest,
    TextInput,
    TranscribeRequest,
    TranscriptEvent,
)
from tests.fakes.secret_fields import PlainSecret

KEY = os.environ.get("CARTESIA_API_KEY", "")
MODEL = os.environ.get("CARTESIA_LIVE_TTS_MODEL") or None
OPTIONS: dict[str, str] = {"base_url": os.environ.get("CARTESIA_BASE_URL", "https://api.cartesia.ai")}
C, E = AudioContainer, AudioEncoding
PCM_16K = AudioFormat(E.PCM_S16LE, C.RAW, 16000)
TEXT = "Hello from the hub. One two three."

pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not KEY, reason="CARTESIA_API_KEY is not set"),
]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def secret() -> PlainSecret:
    return PlainSecret(api_key=KEY)


async def voice() -> str:
    chosen = os.environ.get("CARTESIA_LIVE_VOICE")
    if chosen:
        return chosen
    lister = registry.capability("cartesia", Capability.VOICES)
    assert isinstance(lister, VoiceLister)
    english = await lister.list_voices(secret(), OPTIONS, language="en", timeout=30)
    assert english
    return english[0].id


async def test_live_verify() -> None:
    result = await registry.verify("cartesia", secret(), OPTIONS, timeout=30)
    assert result.valid, result.reason
    refused = await registry.verify("cartesia", PlainSecret(api_key="sk_car_not_a_key"), OPTIONS, timeout=30)
    assert not refused.valid
    assert "sk_car_not_a_key" not in refused.reason


async def test_live_voices() -> None:
    lister = registry.capability("cartesia", Capability.VOICES)
    assert isinstance(lister, VoiceLister)
    every = await lister.list_voices(secret(), OPTIONS, language=None, timeout=60)
    assert len(every) > 10
    assert all(v.id and v.name for v in every)


@pytest.mark.parametrize(
    "output",
    [
        AudioFormat(E.PCM_S16LE, C.WAV, 24000),
        AudioFormat(E.MULAW, C.RAW, 8000),
        AudioFormat(E.MP3, C.MP3, 44100),
        AudioFormat(E.OPUS, C.OGG, 48000),
    ],
)
async def test_live_synthesize(output: AudioFormat) -> None:
    tts = registry.capability("cartesia", Capability.TTS)
    assert isinstance(tts, Synthesizer)
    request = SynthesizeRequest(TEXT, await voice(), output, language="en", model=MODEL)
    answer = await tts.synthesize(secret(), OPTIONS, request, timeout=60)
    info = audio.probe(answer.audio, output)
    assert info.sample_rate_hz == output.sample_rate_hz
    assert 1.0 < info.duration < 8.0


async def test_live_stream_synthesize_and_transcribe_it_back() -> None:
    tts = registry.capability("cartesia", Capability.STREAM_TTS)
    assert isinstance(tts, StreamSynthesizer)
    request = SynthesizeRequest(TEXT, await voice(), PCM_16K, language="en", model=MODEL)
    chunks = [c async for c in tts.stream_synthesize(secret(), OPTIONS, request, timeout=60)]
    assert chunks[-1].is_last
    pcm = b"".join(c.audio for c in chunks)
    assert 1.0 < audio.raw_seconds(len(pcm), PCM_16K) < 8.0

    stt = registry.capability("cartesia", Capability.STT)
    assert isinstance(stt, Transcriber)
    heard = await stt.transcribe(
        secret(), OPTIONS, TranscribeRequest(pcm, PCM_16K, language="en", word_timestamps=True), timeout=60
    )
    assert "hello" in heard.transcript.lower()
    assert heard.words
    assert heard.words[0].start <= heard.words[-1].end

    async def pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(pcm), 3200):
            yield pcm[at : at + 3200]

    live = registry.capability("cartesia", Capability.STREAM_STT)
    assert isinstance(live, StreamTranscriber)
    events = [
        e
        async for e in live.stream_transcribe(
            secret(), OPTIONS, StreamTranscribeRequest(PCM_16K, language="en"), pieces(), timeout=30
        )
    ]
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.is_final]
    assert "hello" in "".join(f.transcript for f in finals).lower()
    assert isinstance(events[-1], StreamTranscribeEnd)


async def test_live_input_streaming() -> None:
    tts = registry.capability("cartesia", Capability.STREAM_TTS_INPUT)
    assert isinstance(tts, StreamTextSynthesizer)

    async def fragments() -> AsyncIterator[TextInput]:
        yield "Hello from the hub. "
        yield FLUSH
        yield "One two three."

    mulaw = AudioFormat(E.MULAW, C.RAW, 8000)
    request = SynthesizeRequest("", await voice(), mulaw, language="en", model=MODEL)
    stream = tts.stream_synthesize_input(secret(), OPTIONS, request, fragments(), timeout=60)
    chunks = [c async for c in stream]
    assert chunks[-1].is_last
    seconds = audio.raw_seconds(sum(len(c.audio) for c in chunks), request.output_format)
    assert 1.0 < seconds < 8.0


async def test_live_bad_key_is_authentication_failed() -> None:
    tts = registry.capability("cartesia", Capability.TTS)
    assert isinstance(tts, Synthesizer)
    request = SynthesizeRequest(TEXT, "a0e99841-438c-4a64-b679-ae501e7d6091", PCM_16K)
    with pytest.raises(AuthenticationFailed) as caught:
        await tts.synthesize(PlainSecret(api_key="sk_car_not_a_key"), OPTIONS, request, timeout=30)
    assert "sk_car_not_a_key" not in str(caught.value)
