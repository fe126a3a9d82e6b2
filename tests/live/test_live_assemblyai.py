"""Live AssemblyAI: skipped unless ASSEMBLYAI_API_KEY is set. Transcribes a few seconds of
espeak-ng speech once as a file and once streamed at real-time pace (a few cents)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import AuthenticationFailed, Capability, StreamTranscriber, Transcriber
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    StreamTranscribeEnd,
    StreamTranscribeRequest,
    TranscribeRequest,
    TranscriptEvent,
)
from tests.audio.conftest import Speech, speech  # noqa: F401  (the fixture)
from tests.fakes.secret_fields import PlainSecret

KEY = os.environ.get("ASSEMBLYAI_API_KEY", "")
OPTIONS: dict[str, str] = {}
pytestmark = [pytest.mark.live, pytest.mark.skipif(not KEY, reason="ASSEMBLYAI_API_KEY is not set")]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


async def test_live_verify() -> None:
    result = await registry.verify("assemblyai", PlainSecret(api_key=KEY), OPTIONS, timeout=30)
    assert result.valid, result.reason
    rejected = await registry.verify("assemblyai", PlainSecret(api_key="not-a-real-key"), OPTIONS, timeout=30)
    assert not rejected.valid


async def test_live_transcribe_a_file(speech: Speech) -> None:  # noqa: F811
    stt = registry.capability("assemblyai", Capability.STT)
    assert isinstance(stt, Transcriber)
    wav = speech.file("wav_16k")
    request = TranscribeRequest(
        wav, AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.WAV), language="en-US"
    )
    answer = await stt.transcribe(PlainSecret(api_key=KEY), OPTIONS, request, timeout=120)
    assert "fox" in answer.transcript.lower()
    assert answer.words
    assert answer.words[-1].end <= (answer.duration or 10) + 1
    assert answer.request_id


async def test_live_stream_at_real_time_pace(speech: Speech) -> None:  # noqa: F811
    stream_stt = registry.capability("assemblyai", Capability.STREAM_STT)
    assert isinstance(stream_stt, StreamTranscriber)
    pcm = speech.file("raw_pcm_16k") + b"\0" * 32000  # a second of silence ends the turn

    async def real_time() -> AsyncIterator[bytes]:
        for at in range(0, len(pcm), 3200):
            yield pcm[at : at + 3200]
            await asyncio.sleep(0.1)

    request = StreamTranscribeRequest(AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 16000))
    async with asyncio.timeout(60):
        events = [
            e
            async for e in stream_stt.stream_transcribe(
                PlainSecret(api_key=KEY), OPTIONS, request, real_time(), timeout=30
            )
        ]
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.is_final]
    assert "fox" in " ".join(f.transcript for f in finals).lower()
    assert isinstance(events[-1], StreamTranscribeEnd)
    assert events[-1].request_id
    with pytest.raises(AuthenticationFailed):
        async for _ in stream_stt.stream_transcribe(
            PlainSecret(api_key="not-a-real-key"), OPTIONS, request, real_time(), timeout=30
        ):
            pass
