"""Live Azure AI Speech: skipped unless AZURE_SPEECH_KEY and AZURE_SPEECH_REGION are set.

Costs a few hundred synthesized characters and under a minute of recognized audio per run.
AZURE_SPEECH_ENDPOINT (a custom domain) is used instead of the regional hosts when set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from callers import audio, pools, registry
from callers.base import (
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
    SpeechStarted,
    StreamTranscribeEnd,
    StreamTranscribeRequest,
    SynthesizeRequest,
    TranscribeRequest,
    TranscriptEvent,
)
from tests.fakes.secret_fields import PlainSecret

KEY = os.environ.get("AZURE_SPEECH_KEY", "")
REGION = os.environ.get("AZURE_SPEECH_REGION", "")
OPTIONS = {"region": REGION, **({"endpoint": e} if (e := os.environ.get("AZURE_SPEECH_ENDPOINT")) else {})}
VOICE = os.environ.get("AZURE_SPEECH_LIVE_VOICE", "en-US-JennyNeural")
SECRET = PlainSecret(api_key=KEY)
C, E = AudioContainer, AudioEncoding
TEXT = "Hello from the hub. The quick brown fox jumps over the lazy dog."

pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not (KEY and REGION), reason="AZURE_SPEECH_KEY and AZURE_SPEECH_REGION are not set"),
]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def cap(capability: Capability) -> object:
    return registry.capability("azure_speech", capability)


async def test_live_verify_and_voices() -> None:
    good = await registry.verify("azure_speech", SECRET, OPTIONS, timeout=30)
    assert good.valid, good.reason
    assert int(good.detail["voices"]) > 0
    bad = await registry.verify("azure_speech", PlainSecret(api_key="0" * 32), OPTIONS, timeout=30)
    assert not bad.valid
    lister = cap(Capability.VOICES)
    assert isinstance(lister, VoiceLister)
    english = await lister.list_voices(SECRET, OPTIONS, language="en", timeout=30)
    assert any(v.id == VOICE for v in english)


@pytest.mark.parametrize(
    "asked",
    [
        AudioFormat(E.PCM_S16LE, C.WAV, 16000),
        AudioFormat(E.MULAW, C.RAW, 8000),
        AudioFormat(E.MP3, C.MP3, 24000),
        AudioFormat(E.OPUS, C.OGG, 48000),
    ],
)
async def test_live_synthesize(asked: AudioFormat) -> None:
    tts = cap(Capability.TTS)
    assert isinstance(tts, Synthesizer)
    answer = await tts.synthesize(
        SECRET, OPTIONS, SynthesizeRequest(TEXT, VOICE, asked, speed=1.0), timeout=30
    )
    info = audio.probe(answer.audio, asked)
    assert info.sample_rate_hz == asked.sample_rate_hz
    assert 1.5 < info.duration < 15


async def test_live_round_trip_unary_and_streamed() -> None:
    tts = cap(Capability.TTS)
    stream_tts = cap(Capability.STREAM_TTS)
    stt = cap(Capability.STT)
    stream_stt = cap(Capability.STREAM_STT)
    assert isinstance(tts, Synthesizer)
    assert isinstance(stream_tts, StreamSynthesizer)
    assert isinstance(stt, Transcriber)
    assert isinstance(stream_stt, StreamTranscriber)
    wav = AudioFormat(E.PCM_S16LE, C.WAV, 16000)
    spoken = await tts.synthesize(SECRET, OPTIONS, SynthesizeRequest(TEXT, VOICE, wav), timeout=30)
    heard = await stt.transcribe(
        SECRET,
        OPTIONS,
        TranscribeRequest(spoken.audio, wav, language="en-US", word_timestamps=True),
        timeout=30,
    )
    assert "quick brown fox" in heard.transcript.lower()
    assert heard.words
    assert heard.words[-1].end <= audio.probe(spoken.audio, wav).duration + 0.1

    pcm = AudioFormat(E.PCM_S16LE, C.RAW, 16000)
    chunks = [
        c
        async for c in stream_tts.stream_synthesize(
            SECRET, OPTIONS, SynthesizeRequest(TEXT, VOICE, pcm), timeout=30
        )
    ]
    assert chunks[-1].is_last
    samples = b"".join(c.audio for c in chunks) + b"\0" * 32000  # a second of silence ends the utterance

    async def pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(samples), 3200):
            yield samples[at : at + 3200]

    request = StreamTranscribeRequest(audio_format=pcm, language="en-US")
    events = [e async for e in stream_stt.stream_transcribe(SECRET, OPTIONS, request, pieces(), timeout=30)]
    assert any(isinstance(e, SpeechStarted) for e in events)
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.is_final]
    assert "quick brown fox" in " ".join(f.transcript for f in finals).lower()
    assert isinstance(events[-1], StreamTranscribeEnd)
