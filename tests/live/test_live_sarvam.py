"""Live Sarvam AI: skipped unless SARVAM_API_KEY holds a key. Same assertions as the fake tests,
on the real service: verify, REST synthesis and transcription back, both streams."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from callers import audio, pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    InvalidRequest,
    PermissionDenied,
    StreamSynthesizer,
    StreamTranscriber,
    Synthesizer,
    Transcriber,
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

KEY = os.environ.get("SARVAM_API_KEY", "")
pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not KEY, reason="SARVAM_API_KEY is not set"),
]
C, E = AudioContainer, AudioEncoding
TEXT = "Hello from the hub. This is a test of Sarvam speech."


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


async def test_live_verify_synthesize_and_transcribe() -> None:
    secret = PlainSecret(api_key=KEY)
    result = await registry.verify("sarvam", secret, {}, timeout=30)
    assert result.valid, result.reason
    bad = await registry.verify("sarvam", PlainSecret(api_key="sk_invalid_0000"), {}, timeout=30)
    assert not bad.valid
    tts = registry.capability("sarvam", Capability.TTS)
    assert isinstance(tts, Synthesizer)
    wav = AudioFormat(E.PCM_S16LE, C.WAV, 16000)
    spoken = await tts.synthesize(
        secret, {}, SynthesizeRequest(TEXT, "anushka", wav, language="en-IN"), timeout=30
    )
    info = audio.probe(spoken.audio, wav)
    assert info.sample_rate_hz == 16000
    assert info.duration > 1.0
    mulaw = AudioFormat(E.MULAW, C.RAW, 8000)
    phone = await tts.synthesize(
        secret, {}, SynthesizeRequest(TEXT, "karun", mulaw, language="en-IN"), timeout=30
    )
    assert audio.probe(phone.audio, mulaw).duration > 1.0
    stt = registry.capability("sarvam", Capability.STT)
    assert isinstance(stt, Transcriber)
    heard = await stt.transcribe(
        secret, {}, TranscribeRequest(spoken.audio, wav, language="en-IN", word_timestamps=True), timeout=30
    )
    assert "hello" in heard.transcript.lower()
    assert heard.words
    assert heard.words[-1].end <= info.duration + 0.5
    with pytest.raises((AuthenticationFailed, PermissionDenied)) as refused:
        await tts.synthesize(
            PlainSecret(api_key="sk_invalid_0000"), {}, SynthesizeRequest(TEXT, "anushka", wav), timeout=30
        )
    assert "sk_invalid_0000" not in str(refused.value)
    with pytest.raises(InvalidRequest, match="fr-FR"):
        await stt.transcribe(secret, {}, TranscribeRequest(spoken.audio, wav, language="fr-FR"), timeout=30)


async def test_live_streams() -> None:
    secret = PlainSecret(api_key=KEY)
    stream_tts = registry.capability("sarvam", Capability.STREAM_TTS)
    assert isinstance(stream_tts, StreamSynthesizer)
    pcm = AudioFormat(E.PCM_S16LE, C.RAW, 16000)
    chunks = [
        c
        async for c in stream_tts.stream_synthesize(
            secret, {}, SynthesizeRequest(TEXT, "anushka", pcm, language="en-IN"), timeout=30
        )
    ]
    assert chunks[-1].is_last
    speech = b"".join(c.audio for c in chunks)
    assert audio.raw_seconds(len(speech), pcm) > 1.0

    async def paced() -> AsyncIterator[bytes]:
        data = speech + b"\x00\x00" * 16000  # a second of silence closes the utterance
        for at in range(0, len(data), 3200):
            yield data[at : at + 3200]
            await asyncio.sleep(0.05)

    stream_stt = registry.capability("sarvam", Capability.STREAM_STT)
    assert isinstance(stream_stt, StreamTranscriber)
    events = [
        e
        async for e in stream_stt.stream_transcribe(
            secret, {}, StreamTranscribeRequest(pcm, language="en-IN"), paced(), timeout=30
        )
    ]
    finals = [e for e in events if isinstance(e, TranscriptEvent)]
    assert finals
    assert "hello" in " ".join(f.transcript for f in finals).lower()
    assert isinstance(events[-1], StreamTranscribeEnd)
