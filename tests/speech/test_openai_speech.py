"""OpenAI's audio API (openai and openai_compatible credentials) against the loopback fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from callers import audio, pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    InvalidRequest,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamSynthesizer,
    Synthesizer,
    Transcriber,
    VoiceLister,
)
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SynthesizeRequest,
    TranscribeRequest,
)
from tests.fakes.openai_audio import SECONDS_PER_CHAR, OpenAIAudio
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.secret_fields import PlainSecret
from tests.speech.conftest import Speech

KEY = "sk-test-speech-0123456789abcdef"
SECRET = PlainSecret(api_key=KEY)
C, E = AudioContainer, AudioEncoding
TEXT = "Hello from the hub, this is a test."


@asynccontextmanager
async def fake_openai(**knobs: object) -> AsyncIterator[tuple[FakeOpenAI, OpenAIAudio]]:
    sound = OpenAIAudio(**knobs)  # type: ignore[arg-type]
    fake = FakeOpenAI(valid_keys={KEY})
    sound.install(fake)
    async with fake:
        try:
            yield fake, sound
        finally:
            await pools.close_all()


def stt(provider: str = "openai") -> Transcriber:
    caller = registry.capability(provider, Capability.STT)
    assert isinstance(caller, Transcriber)
    return caller


def tts(provider: str = "openai") -> Synthesizer:
    caller = registry.capability(provider, Capability.TTS)
    assert isinstance(caller, Synthesizer)
    return caller


def stream_tts() -> StreamSynthesizer:
    caller = registry.capability("openai", Capability.STREAM_TTS)
    assert isinstance(caller, StreamSynthesizer)
    return caller


async def test_transcribe_a_wav_file_with_word_timings(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    async with fake_openai() as (fake, sound):
        request = TranscribeRequest(
            audio=wav, audio_format=AudioFormat(E.PCM_S16LE, C.WAV), language="en-US", word_timestamps=True
        )
        answer = await stt().transcribe(SECRET, {"base_url": fake.base_url}, request, timeout=5)
    upload = sound.uploads[-1]
    assert upload["file"] == wav  # a file OpenAI reads goes as it came
    assert upload["model"] == "whisper-1"
    assert upload["response_format"] == "verbose_json"
    assert upload["language"] == "en"
    assert upload["timestamp_granularities[]"] == ["word", "segment"]
    assert answer.transcript == sound.transcript
    assert [w.text for w in answer.words][:3] == ["The", "quick", "brown"]
    assert answer.words[-1].end == pytest.approx(audio.probe(wav, C.WAV).duration, abs=0.01)
    assert answer.duration == pytest.approx(audio.probe(wav, C.WAV).duration, abs=0.01)
    assert answer.request_id == "req_stt"
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


async def test_raw_phone_audio_is_sent_as_wav(speech: Speech) -> None:
    mulaw = speech.file("raw_mulaw_8k")
    async with fake_openai() as (fake, sound):
        request = TranscribeRequest(
            audio=mulaw,
            audio_format=AudioFormat(E.MULAW, C.RAW, 8000),
            model="gpt-4o-transcribe",
            keywords=["Acme", "hub"],
        )
        answer = await stt().transcribe(SECRET, {"base_url": fake.base_url}, request, timeout=5)
    upload = sound.uploads[-1]
    assert upload["file"][:4] == b"RIFF"
    info = audio.probe(upload["file"], C.WAV)
    assert info.sample_rate_hz == 8000
    assert info.duration == pytest.approx(len(mulaw) / 8000, abs=0.01)
    assert upload["response_format"] == "json"  # the gpt-4o models have no verbose_json
    assert upload["prompt"] == "Acme, hub"
    assert answer.transcript == sound.transcript
    assert answer.words == []


async def test_an_audio_url_is_refused_naming_it() -> None:
    request = TranscribeRequest(
        audio=b"", audio_format=AudioFormat(E.MP3, C.MP3), audio_url="https://example.com/a.mp3"
    )
    with pytest.raises(InvalidRequest, match="audio_url"):
        await stt().transcribe(SECRET, {"base_url": "http://127.0.0.1:9/v1"}, request, timeout=1)


@pytest.mark.parametrize(
    ("asked", "response_format"),
    [
        (AudioFormat(E.MP3, C.MP3, 24000), "mp3"),
        (AudioFormat(E.OPUS, C.OGG, 24000), "opus"),
        (AudioFormat(E.FLAC, C.RAW, 24000), "flac"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 24000), "wav"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 24000), "pcm"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 16000), "pcm"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 48000), "pcm"),
        (AudioFormat(E.MULAW, C.RAW, 8000), "pcm"),
        (AudioFormat(E.MULAW, C.WAV, 8000), "pcm"),
        (AudioFormat(E.MP3, C.MP3, 16000), "pcm"),
    ],
)
async def test_synthesis_answers_exactly_the_asked_format(asked: AudioFormat, response_format: str) -> None:
    async with fake_openai() as (fake, sound):
        request = SynthesizeRequest(text=TEXT, voice="alloy", output_format=asked, speed=1.0)
        answer = await tts().synthesize(SECRET, {"base_url": fake.base_url}, request, timeout=5)
    assert sound.speech_requests[-1]["response_format"] == response_format
    assert sound.speech_requests[-1]["voice"] == "alloy"
    assert answer.audio_format == asked
    info = audio.probe(answer.audio, asked)
    assert info.sample_rate_hz == asked.sample_rate_hz
    assert info.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.08)
    assert answer.request_id == "req_tts"


async def test_ssml_is_refused_before_any_call() -> None:
    request = SynthesizeRequest(
        text="<speak>hi</speak>", voice="alloy", is_ssml=True, output_format=AudioFormat(E.MP3, C.MP3, 24000)
    )
    with pytest.raises(InvalidRequest, match="ssml"):
        await tts().synthesize(SECRET, {"base_url": "http://127.0.0.1:9/v1"}, request, timeout=1)


async def test_streamed_synthesis_converts_chunk_by_chunk_for_a_phone_line() -> None:
    asked = AudioFormat(E.MULAW, C.RAW, 8000)
    async with fake_openai(chunk_bytes=2048) as (fake, _):
        request = SynthesizeRequest(text=TEXT, voice="nova", output_format=asked)
        chunks = [
            c
            async for c in stream_tts().stream_synthesize(
                SECRET, {"base_url": fake.base_url}, request, timeout=5
            )
        ]
    assert len(chunks) > 5
    assert chunks[-1].is_last
    assert not any(c.is_last for c in chunks[:-1])
    assert all(c.request_id == "req_tts" for c in chunks)
    total = b"".join(c.audio for c in chunks)
    assert audio.raw_seconds(len(total), asked) == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.02)


async def test_closing_a_synthesis_stream_closes_the_connection_at_once() -> None:
    async with fake_openai(chunk_bytes=512, chunk_delay=0.02) as (fake, _):
        request = SynthesizeRequest(
            text=TEXT * 5, voice="nova", output_format=AudioFormat(E.PCM_S16LE, C.RAW, 24000)
        )
        stream = stream_tts().stream_synthesize(SECRET, {"base_url": fake.base_url}, request, timeout=5)
        first = await anext(stream)
        assert first.audio
        closed = time.monotonic()
        await stream.aclose()
        gone = await fake.wait_for_close(fake.requests[-1].peer, timeout=2)
    assert gone - closed < 0.1


@pytest.mark.parametrize(
    ("status", "error"), [(429, RateLimited), (500, ProviderUnavailable), (503, ProviderUnavailable)]
)
async def test_provider_errors_are_classified(status: int, error: type[Exception]) -> None:
    async with fake_openai() as (fake, _):
        fake.force_status, fake.retry_after = status, "7"
        request = SynthesizeRequest(text=TEXT, voice="alloy", output_format=AudioFormat(E.MP3, C.MP3, 24000))
        with pytest.raises(error) as raised:
            await tts().synthesize(SECRET, {"base_url": fake.base_url}, request, timeout=5)
    if status == 429:
        assert raised.value.retry_after == 7  # type: ignore[attr-defined]


async def test_a_rejected_key_never_appears_in_the_error(speech: Speech) -> None:
    wrong = "sk-wrong-secret-key-which-must-not-leak"
    async with fake_openai() as (fake, _):
        request = TranscribeRequest(
            audio=speech.file("wav_16k"), audio_format=AudioFormat(E.PCM_S16LE, C.WAV)
        )
        with pytest.raises(AuthenticationFailed) as raised:
            await stt().transcribe(
                PlainSecret(api_key=wrong), {"base_url": fake.base_url}, request, timeout=5
            )
    assert wrong not in str(raised.value)
    assert wrong[8:] not in str(raised.value)


async def test_a_provider_that_does_not_answer_is_a_timeout() -> None:
    async with fake_openai() as (fake, _):
        fake.delay = 5
        request = SynthesizeRequest(text=TEXT, voice="alloy", output_format=AudioFormat(E.MP3, C.MP3, 24000))
        started = asyncio.get_running_loop().time()
        with pytest.raises(ProviderTimeout):
            await tts().synthesize(SECRET, {"base_url": fake.base_url}, request, timeout=0.3)
    assert asyncio.get_running_loop().time() - started < 2


async def test_openai_compatible_servers_get_the_same_calls(speech: Speech) -> None:
    async with fake_openai() as (fake, sound):
        options = {"base_url": fake.base_url}
        request = TranscribeRequest(audio=speech.file("flac_16k"), audio_format=AudioFormat(E.FLAC, C.RAW))
        answer = await stt("openai_compatible").transcribe(SECRET, options, request, timeout=5)
        speech_request = SynthesizeRequest(
            text=TEXT, voice="af_heart", model="kokoro", output_format=AudioFormat(E.PCM_S16LE, C.WAV, 24000)
        )
        spoken = await tts("openai_compatible").synthesize(SECRET, options, speech_request, timeout=5)
    assert answer.transcript == sound.transcript
    assert sound.uploads[-1]["file"][:4] == b"fLaC"
    assert sound.speech_requests[-1]["model"] == "kokoro"
    assert audio.probe(spoken.audio, C.WAV).sample_rate_hz == 24000


async def test_voices_are_the_documented_list() -> None:
    lister = registry.capability("openai", Capability.VOICES)
    assert isinstance(lister, VoiceLister)
    voices = await lister.list_voices(SECRET, {}, language=None, timeout=1)
    ids = [v.id for v in voices]
    assert {"alloy", "nova", "shimmer", "verse"} <= set(ids)
    assert next(v for v in voices if v.id == "verse").models == ["gpt-4o-mini-tts"]
