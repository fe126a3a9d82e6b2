"""Live Deepgram: skipped unless DEEPGRAM_API_KEY is set. Costs a few cents per run.

The same assertions as the fake tests, against api.deepgram.com (or DEEPGRAM_BASE_URL):
verify, voices, Aura synthesis (unary and streamed), then that speech transcribed by
Nova-3 prerecorded and live.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from callers import audio, pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    StreamSynthesizer,
    StreamTranscriber,
    Synthesizer,
    Transcriber,
    VoiceLister,
)
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    StreamTranscribeEnd,
    StreamTranscribeRequest,
    SynthesizeRequest,
    TranscribeRequest,
    TranscriptEvent,
)
from tests.fakes.secret_fields import PlainSecret

KEY = os.environ.get("DEEPGRAM_API_KEY", "")
OPTIONS = {"base_url": os.environ.get("DEEPGRAM_BASE_URL", "https://api.deepgram.com")}
SECRET = PlainSecret(api_key=KEY)
VOICE = "aura-2-thalia-en"
TEXT = "Hello from the integration hub. This is a test of speech."
C, E = AudioContainer, AudioEncoding

pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not KEY, reason="DEEPGRAM_API_KEY is not set"),
]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def cap(kind: Capability) -> object:
    return registry.capability("deepgram", kind)


async def test_live_verify() -> None:
    good = await registry.verify("deepgram", SECRET, OPTIONS, timeout=30)
    assert good.valid, good.reason
    bad = await registry.verify("deepgram", PlainSecret(api_key="0" * 40), OPTIONS, timeout=30)
    assert not bad.valid
    assert "0" * 40 not in bad.reason


async def test_live_voices() -> None:
    lister = cap(Capability.VOICES)
    assert isinstance(lister, VoiceLister)
    english = await lister.list_voices(SECRET, OPTIONS, language="en", timeout=30)
    assert any(v.id == VOICE for v in english)
    assert all(any(lang.lower().startswith("en") for lang in v.languages) for v in english)


async def test_live_synthesize_then_transcribe_prerecorded_and_live() -> None:
    tts = cap(Capability.TTS)
    stt = cap(Capability.STT)
    live = cap(Capability.STREAM_STT)
    assert isinstance(tts, Synthesizer)
    assert isinstance(stt, Transcriber)
    assert isinstance(live, StreamTranscriber)
    wav = AudioFormat(E.PCM_S16LE, C.WAV, 16000)
    spoken = await tts.synthesize(SECRET, OPTIONS, SynthesizeRequest(TEXT, VOICE, wav), timeout=30)
    info = audio.probe(spoken.audio, wav)
    assert info.sample_rate_hz == 16000
    assert 1.5 < info.duration < 10
    heard = await stt.transcribe(
        SECRET, OPTIONS, TranscribeRequest(spoken.audio, wav, language="en", word_timestamps=True), timeout=60
    )
    assert "hello" in heard.transcript.lower()
    assert heard.words
    assert heard.words[-1].end <= info.duration + 0.5
    assert heard.request_id

    pcm = audio.convert(spoken.audio, wav, AudioFormat(E.PCM_S16LE, C.RAW, 16000))

    async def paced() -> AsyncIterator[bytes]:
        for at in range(0, len(pcm), 3200):  # 100 ms at a time, about real time
            yield pcm[at : at + 3200]
            await asyncio.sleep(0.05)

    request = StreamTranscribeRequest(audio_format=AudioFormat(E.PCM_S16LE, C.RAW, 16000), language="en")
    events = [e async for e in live.stream_transcribe(SECRET, OPTIONS, request, paced(), timeout=30)]
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.is_final]
    assert "hello" in " ".join(f.transcript for f in finals).lower()
    assert isinstance(events[-1], StreamTranscribeEnd)
    assert events[-1].request_id


async def test_live_stream_synthesis_for_a_phone_line() -> None:
    streamer = cap(Capability.STREAM_TTS)
    assert isinstance(streamer, StreamSynthesizer)
    phone = AudioFormat(E.MULAW, C.RAW, 8000)
    pieces = [
        c
        async for c in streamer.stream_synthesize(
            SECRET, OPTIONS, SynthesizeRequest(TEXT, VOICE, phone), timeout=30
        )
    ]
    assert pieces[-1].is_last
    seconds = audio.raw_seconds(len(b"".join(c.audio for c in pieces)), phone)
    assert 1.5 < seconds < 10


async def test_live_a_wrong_key_is_refused_without_leaking() -> None:
    stt = cap(Capability.STT)
    assert isinstance(stt, Transcriber)
    wrong = "f" * 40
    with pytest.raises(AuthenticationFailed) as raised:
        await stt.transcribe(
            PlainSecret(api_key=wrong),
            OPTIONS,
            TranscribeRequest(b"", AudioFormat(E.MP3, C.MP3), audio_url="https://dpgr.am/spacewalk.wav"),
            timeout=30,
        )
    assert wrong not in str(raised.value)
