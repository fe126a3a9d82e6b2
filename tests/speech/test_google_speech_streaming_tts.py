"""Google's StreamingSynthesize (Chirp 3: HD voices) through the google_speech caller,
against the loopback fake speaking the real gRPC service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from callers import audio, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    InvalidRequest,
    StreamSynthesizer,
    StreamTextSynthesizer,
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
from tests.fakes.google_speech_server import SECONDS_PER_CHAR, FakeGoogleSpeech
from tests.speech.test_google_speech_wire import _close_pools, fake_for, key_file, options, private_key

__all__ = ["_close_pools", "private_key"]  # fixtures, shared with the wire tests

C, E = AudioContainer, AudioEncoding
VOICE = "en-GB-Chirp3-HD-Aoede"
TEXT = "Your table is booked for eight. We will text you a reminder."


def stream_tts() -> StreamSynthesizer:
    caller = registry.capability("google_speech", Capability.STREAM_TTS)
    assert isinstance(caller, StreamSynthesizer)
    return caller


def input_tts() -> StreamTextSynthesizer:
    caller = registry.capability("google_speech", Capability.STREAM_TTS_INPUT)
    assert isinstance(caller, StreamTextSynthesizer)
    return caller


async def collect(chunks: AsyncIterator[AudioChunk]) -> list[AudioChunk]:
    async with asyncio.timeout(10):
        return [chunk async for chunk in chunks]


@pytest.mark.parametrize(
    ("output", "bytes_per_second", "google_encoding"),
    [
        (AudioFormat(E.PCM_S16LE, C.RAW, 24000), 48000, "PCM"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 16000), 32000, "PCM"),
        (AudioFormat(E.MULAW, C.RAW, 8000), 8000, "MULAW"),
        (AudioFormat(E.ALAW, C.RAW, 8000), 8000, "ALAW"),
    ],
)
async def test_streamed_samples_arrive_in_pieces_at_the_asked_rate(
    private_key: rsa.RSAPrivateKey, output: AudioFormat, bytes_per_second: int, google_encoding: str
) -> None:
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = SynthesizeRequest(TEXT, VOICE, output, speed=1.0)
        chunks = await collect(stream_tts().stream_synthesize(secret, options(fake), request, timeout=5))
    config = fake.streaming_synthesize_requests[0].streaming_config
    assert config.voice.name == VOICE
    assert config.voice.language_code == "en-GB"
    assert config.streaming_audio_config.audio_encoding.name == google_encoding
    assert config.streaming_audio_config.sample_rate_hertz == output.sample_rate_hz
    assert [m.input.text for m in fake.streaming_synthesize_requests[1:]] == [TEXT]
    assert chunks[-1].is_last
    assert not chunks[-1].audio
    assert len(chunks) > 3, "Google's audio is handed on piece by piece"
    pcm = audio.decode(b"".join(c.audio for c in chunks), output)
    assert pcm.sample_rate_hz == output.sample_rate_hz
    assert len(b"".join(c.audio for c in chunks)) / bytes_per_second == pytest.approx(
        len(TEXT) * SECONDS_PER_CHAR, rel=0.02
    )


async def test_ogg_opus_streams_as_one_ogg_file(private_key: rsa.RSAPrivateKey) -> None:
    output = AudioFormat(E.OPUS, C.OGG, 48000)
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        chunks = await collect(
            stream_tts().stream_synthesize(
                secret, options(fake), SynthesizeRequest(TEXT, VOICE, output), timeout=5
            )
        )
    data = b"".join(c.audio for c in chunks)
    assert data.startswith(b"OggS")
    assert audio.probe(data, output).duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.1)


async def fragments(*items: TextInput, pause: float = 0.0) -> AsyncIterator[TextInput]:
    for item in items:
        yield item
        if pause:
            await asyncio.sleep(pause)


async def test_input_streaming_sends_whole_sentences_and_honours_flush(
    private_key: rsa.RSAPrivateKey,
) -> None:
    output = AudioFormat(E.PCM_S16LE, C.RAW, 24000)
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        text = fragments("Hello th", "ere. How are", " you? I am", " fine", FLUSH, " and", " you", pause=0.01)
        request = SynthesizeRequest("", VOICE, output)
        chunks = await collect(
            input_tts().stream_synthesize_input(secret, options(fake), request, text, timeout=5)
        )
    sent = [m.input.text for m in fake.streaming_synthesize_requests[1:]]
    assert sent == ["Hello there. ", "How are you? ", "I am fine", " and you"]
    assert chunks[-1].is_last
    total = sum(len(c.audio) for c in chunks)
    assert total / 48000 == pytest.approx(sum(max(0.2, len(s) * SECONDS_PER_CHAR) for s in sent), rel=0.02)


async def test_audio_comes_while_the_text_is_still_streaming(private_key: rsa.RSAPrivateKey) -> None:
    """The first sentence is spoken before the LLM has finished the second."""
    output = AudioFormat(E.PCM_S16LE, C.RAW, 24000)
    more_text = asyncio.Event()

    async def llm() -> AsyncIterator[TextInput]:
        yield "The first sentence is ready. "
        await more_text.wait()
        yield "The second comes later."

    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        stream = input_tts().stream_synthesize_input(
            secret, options(fake), SynthesizeRequest("", VOICE, output), llm(), timeout=5
        )
        async with asyncio.timeout(5):
            first = await stream.__anext__()
        assert first.audio
        assert not first.is_last
        more_text.set()
        rest = await collect(stream)
    assert rest[-1].is_last
    assert len(fake.streaming_synthesize_requests) == 3


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (SynthesizeRequest(TEXT, "en-US-Neural2-C", AudioFormat(E.PCM_S16LE, C.RAW, 24000)), "voice"),
        (SynthesizeRequest(TEXT, VOICE, AudioFormat(E.MP3, C.MP3, 24000)), "output_format"),
        (
            SynthesizeRequest(
                "<speak>Hi</speak>", VOICE, AudioFormat(E.PCM_S16LE, C.RAW, 24000), is_ssml=True
            ),
            "ssml",
        ),
    ],
)
async def test_what_google_cannot_stream_is_refused_before_any_call(
    private_key: rsa.RSAPrivateKey, request_: SynthesizeRequest, field: str
) -> None:
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        with pytest.raises(InvalidRequest) as refused:
            stream_tts().stream_synthesize(secret, options(fake), request_, timeout=5)
        with pytest.raises(InvalidRequest):
            input_tts().stream_synthesize_input(secret, options(fake), request_, fragments("Hi."), timeout=5)
    assert str(refused.value).startswith(field)
    assert not fake.streaming_synthesize_requests
    assert not fake.assertions, "no token was even asked for"


async def test_a_refused_key_is_an_authentication_error(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key, force=(grpc.StatusCode.UNAUTHENTICATED, "bad credentials")) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = SynthesizeRequest("", VOICE, AudioFormat(E.PCM_S16LE, C.RAW, 24000))
        with pytest.raises(AuthenticationFailed):
            await collect(
                input_tts().stream_synthesize_input(
                    secret, options(fake), request, fragments(*(["word "] * 50), pause=0.001), timeout=5
                )
            )


async def test_closing_the_stream_cancels_the_call_within_100_ms(private_key: rsa.RSAPrivateKey) -> None:
    fake: FakeGoogleSpeech
    async with fake_for(private_key, synthesis_chunk_delay=0.05) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = SynthesizeRequest(TEXT * 20, VOICE, AudioFormat(E.PCM_S16LE, C.RAW, 24000))
        stream = stream_tts().stream_synthesize(secret, options(fake), request, timeout=5)
        async with asyncio.timeout(5):
            await stream.__anext__()
        closed = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        async with asyncio.timeout(2):
            while not fake.cancelled_at:
                await asyncio.sleep(0.002)
    assert fake.cancelled_at[0] - closed < 0.1
