"""ElevenLabs (the real `elevenlabs` SDK for REST, aiohttp for the stream-input websocket)
against the loopback fake of tests/fakes/elevenlabs_server.py."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import numpy as np
import pytest
import soundfile as sf  # type: ignore[import-untyped]

from callers import audio, pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamSynthesizer,
    StreamTextSynthesizer,
    Synthesizer,
    Verifier,
    VoiceLister,
)
from callers.elevenlabs import SPEC
from callers.types import (
    FLUSH,
    AudioChunk,
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SynthesizeRequest,
    TextInput,
    VoiceGender,
)
from tests.fakes.elevenlabs_server import SECONDS_PER_CHAR, FakeElevenLabs
from tests.fakes.secret_fields import PlainSecret

pytestmark = pytest.mark.timeout(20)

KEY = "sk_test_elevenlabs_0123456789abcdef0123"
WRONG = "sk_wrong_elevenlabs_key_which_must_not_leak"
RESTRICTED = "sk_restricted_elevenlabs_key_0000000000"
SECRET = PlainSecret(api_key=KEY)
C, E = AudioContainer, AudioEncoding
RACHEL = "21m00Tcm4TlvDq8ikWAM"
TEXT = "Hello from the hub, this is a test."
PCM_16K = AudioFormat(E.PCM_S16LE, C.RAW, 16000)


@asynccontextmanager
async def fake_elevenlabs(**knobs: Any) -> AsyncIterator[FakeElevenLabs]:
    fake = FakeElevenLabs(valid_keys={KEY}, restricted_keys={RESTRICTED}, **knobs)
    async with fake:
        try:
            yield fake
        finally:
            await pools.close_all()


def options(fake: FakeElevenLabs) -> dict[str, str]:
    return {"base_url": fake.base_url}


def tts() -> Synthesizer:
    caller = registry.capability("elevenlabs", Capability.TTS)
    assert isinstance(caller, Synthesizer)
    return caller


def stream_tts() -> StreamSynthesizer:
    caller = registry.capability("elevenlabs", Capability.STREAM_TTS)
    assert isinstance(caller, StreamSynthesizer)
    return caller


def input_tts() -> StreamTextSynthesizer:
    caller = registry.capability("elevenlabs", Capability.STREAM_TTS_INPUT)
    assert isinstance(caller, StreamTextSynthesizer)
    return caller


def voices() -> VoiceLister:
    caller = registry.capability("elevenlabs", Capability.VOICES)
    assert isinstance(caller, VoiceLister)
    return caller


def verifier() -> Verifier:
    caller = registry.capability("elevenlabs", Capability.VERIFY)
    assert isinstance(caller, Verifier)
    return caller


def expected_seconds(text: str) -> float:
    return len(" ".join(text.split())) * SECONDS_PER_CHAR


def decoded_seconds(data: bytes, fmt: AudioFormat) -> float:
    """Decodes the bytes independently of callers.audio: soundfile for files, numpy for raw."""
    if fmt.container is C.RAW and fmt.encoding is not E.MP3 and fmt.encoding is not E.FLAC:
        width = 2 if fmt.encoding is E.PCM_S16LE else 1
        assert fmt.sample_rate_hz is not None
        return len(data) / width / fmt.sample_rate_hz
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == fmt.sample_rate_hz
    assert np.abs(samples).max() > 1000  # a tone, not silence
    return float(len(samples) / rate)


async def synthesize_once(
    streamed: bool, fake: FakeElevenLabs, request: SynthesizeRequest, *, timeout: float
) -> bytes:
    """One TTS call, unary or streamed; the audio."""
    if streamed:
        chunks = await collect(
            stream_tts().stream_synthesize(SECRET, options(fake), request, timeout=timeout)
        )
        return b"".join(c.audio for c in chunks)
    return (await tts().synthesize(SECRET, options(fake), request, timeout=timeout)).audio


async def aclose(stream: AsyncIterator[AudioChunk]) -> None:
    """What the hub does when its client goes away: close the caller's generator."""
    await cast("AsyncGenerator[AudioChunk, None]", stream).aclose()


async def collect(stream: AsyncIterator[AudioChunk], seconds: float = 10.0) -> list[AudioChunk]:
    async with asyncio.timeout(seconds):
        return [chunk async for chunk in stream]


def test_spec_lists_what_is_implemented() -> None:
    assert SPEC.capabilities == {
        Capability.TTS,
        Capability.STREAM_TTS,
        Capability.STREAM_TTS_INPUT,
        Capability.VOICES,
        Capability.VERIFY,
    }
    assert SPEC.sdk_modules == ("elevenlabs",)
    assert registry.sdk_installed("elevenlabs")


# --- TTS ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "native"),
    [
        (AudioFormat(E.PCM_S16LE, C.RAW, 8000), "pcm_8000"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 16000), "pcm_16000"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 24000), "pcm_24000"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 48000), "pcm_48000"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 8000), "wav_8000"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 16000), "wav_16000"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 24000), "wav_24000"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 48000), "wav_48000"),
        (AudioFormat(E.MULAW, C.RAW, 8000), "ulaw_8000"),
        (AudioFormat(E.MULAW, C.WAV, 8000), "ulaw_8000"),
        (AudioFormat(E.ALAW, C.RAW, 8000), "alaw_8000"),
        (AudioFormat(E.MP3, C.MP3, 44100), "mp3_44100_128"),
        (AudioFormat(E.MP3, C.MP3, 22050), "mp3_22050_32"),
        (AudioFormat(E.MP3, C.RAW, 24000), "mp3_24000_48"),
        (AudioFormat(E.MP3, C.MP3, 16000), "pcm_16000"),
        (AudioFormat(E.OPUS, C.OGG, 48000), "pcm_48000"),
        (AudioFormat(E.OPUS, C.OGG, 16000), "pcm_16000"),
        (AudioFormat(E.FLAC, C.RAW, 24000), "pcm_24000"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 16000, channels=2), "pcm_16000"),
    ],
)
async def test_synthesis_answers_exactly_the_asked_format(asked: AudioFormat, native: str) -> None:
    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=asked)
        answer = await tts().synthesize(SECRET, options(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert sent.method == "POST"
    assert sent.path == f"/v1/text-to-speech/{RACHEL}"
    assert sent.query["output_format"] == native
    assert sent.headers["xi-api-key"] == KEY
    assert sent.json()["text"] == TEXT
    assert sent.json()["model_id"] == "eleven_multilingual_v2"
    assert answer.audio_format == asked
    assert answer.request_id is not None
    assert answer.request_id.startswith("req_el_")
    info = audio.probe(answer.audio, asked)
    assert info.sample_rate_hz == asked.sample_rate_hz
    assert info.channels == asked.channels
    assert info.duration == pytest.approx(expected_seconds(TEXT), abs=0.08)
    assert answer.duration == pytest.approx(info.duration, abs=0.01)
    if asked.encoding is not E.OPUS:  # libsndfile reads Ogg/Opus at 48 kHz only
        assert decoded_seconds(answer.audio, asked) == pytest.approx(expected_seconds(TEXT), abs=0.08)


async def test_opus_output_is_a_real_ogg_opus_file() -> None:
    import av

    asked = AudioFormat(E.OPUS, C.OGG, 48000)
    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=asked)
        answer = await tts().synthesize(SECRET, options(fake), request, timeout=5)
    assert answer.audio[:4] == b"OggS"
    with av.open(io.BytesIO(answer.audio), mode="r") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        frames = sum(frame.samples for frame in container.decode(stream))
    assert frames / 48000 == pytest.approx(expected_seconds(TEXT), abs=0.08)


async def test_request_carries_model_language_speed_and_voice_settings() -> None:
    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(
            text="Bonjour tout le monde.",
            voice=RACHEL,
            output_format=PCM_16K,
            model="eleven_flash_v2_5",
            language="fr-FR",
            speed=1.1,
            provider_options={"stability": 0.4, "similarity_boost": 0.8, "seed": 42},
        )
        answer = await tts().synthesize(SECRET, options(fake), request, timeout=5)
        body = fake.requests[-1].json()
        assert body["model_id"] == "eleven_flash_v2_5"
        assert body["language_code"] == "fr"
        assert body["seed"] == 42
        assert body["voice_settings"] == {"speed": 1.1, "stability": 0.4, "similarity_boost": 0.8}
        assert audio.raw_seconds(len(answer.audio), PCM_16K) == pytest.approx(
            expected_seconds("Bonjour tout le monde.") / 1.1, abs=0.03
        )
        # eleven_multilingual_v2 takes no language_code: the model speaks the text's language.
        multilingual = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K, language="en-US")
        await tts().synthesize(SECRET, options(fake), multilingual, timeout=5)
        assert "language_code" not in fake.requests[-1].json()


@pytest.mark.parametrize(
    ("request_kwargs", "match"),
    [
        ({"is_ssml": True, "text": "<speak>hi</speak>"}, "ssml"),
        ({"provider_options": {"temperature": 1}}, "provider_options.temperature"),
        ({"voice": "../v1/user?"}, "voice"),
        ({"text": "   "}, "text"),
        ({"language": "not a tag", "model": "eleven_flash_v2_5"}, "language"),
    ],
)
async def test_refused_before_any_call(request_kwargs: dict[str, Any], match: str) -> None:
    fields: dict[str, Any] = {"text": TEXT, "voice": RACHEL, "output_format": PCM_16K, **request_kwargs}
    async with fake_elevenlabs() as fake:
        with pytest.raises(InvalidRequest, match=match):
            await tts().synthesize(SECRET, options(fake), SynthesizeRequest(**fields), timeout=2)
    assert fake.requests == []


# --- STREAM_TTS -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "native"),
    [
        (AudioFormat(E.PCM_S16LE, C.RAW, 16000), "pcm_16000"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 48000), "pcm_48000"),
        (AudioFormat(E.MULAW, C.RAW, 8000), "ulaw_8000"),
        (AudioFormat(E.ALAW, C.RAW, 8000), "alaw_8000"),
        (AudioFormat(E.MP3, C.MP3, 44100), "mp3_44100_128"),
    ],
)
async def test_streamed_synthesis_hands_on_each_piece(asked: AudioFormat, native: str) -> None:
    async with fake_elevenlabs(chunk_bytes=1024) as fake:
        request = SynthesizeRequest(text=TEXT * 2, voice=RACHEL, output_format=asked)
        chunks = await collect(stream_tts().stream_synthesize(SECRET, options(fake), request, timeout=5))
    sent = fake.requests[-1]
    assert sent.path == f"/v1/text-to-speech/{RACHEL}/stream"
    assert sent.query["output_format"] == native
    assert sent.headers["xi-api-key"] == KEY
    assert len(chunks) > 3
    assert chunks[-1].is_last
    assert not any(c.is_last for c in chunks[:-1])
    assert len({c.request_id for c in chunks}) == 1
    assert chunks[0].request_id is not None
    total = b"".join(c.audio for c in chunks)
    assert decoded_seconds(total, asked) == pytest.approx(expected_seconds(TEXT * 2), abs=0.08)


async def test_the_first_piece_arrives_before_the_provider_finished() -> None:
    async with fake_elevenlabs(chunk_bytes=2048, chunk_delay=0.02) as fake:
        request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K)
        started = time.monotonic()
        stream = stream_tts().stream_synthesize(SECRET, options(fake), request, timeout=5)
        first = await anext(stream)
        first_at = time.monotonic() - started
        rest = await collect(stream)
        total_at = time.monotonic() - started
    assert first.audio
    pieces = len(rest) + 1
    assert pieces > 10
    assert first_at < total_at / 3  # nothing waits for the whole utterance


@pytest.mark.parametrize(
    "asked",
    [
        AudioFormat(E.PCM_S16LE, C.WAV, 16000),
        AudioFormat(E.OPUS, C.OGG, 48000),
        AudioFormat(E.MP3, C.MP3, 16000),
        AudioFormat(E.MULAW, C.WAV, 8000),
        AudioFormat(E.PCM_S16LE, C.RAW, 16000, channels=2),
    ],
)
async def test_a_stream_refuses_what_it_cannot_carry_naming_it(asked: AudioFormat) -> None:
    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=asked)
        with pytest.raises(InvalidRequest, match="output_format"):
            await collect(stream_tts().stream_synthesize(SECRET, options(fake), request, timeout=2))
        with pytest.raises(InvalidRequest, match="output_format"):
            await collect(
                input_tts().stream_synthesize_input(SECRET, options(fake), request, _text([TEXT]), timeout=2)
            )
    assert fake.requests == []


async def test_closing_a_synthesis_stream_closes_the_connection_at_once() -> None:
    async with fake_elevenlabs(chunk_bytes=512, chunk_delay=0.02) as fake:
        request = SynthesizeRequest(text=TEXT * 5, voice=RACHEL, output_format=PCM_16K)
        stream = stream_tts().stream_synthesize(SECRET, options(fake), request, timeout=5)
        first = await anext(stream)
        assert first.audio
        closed = time.monotonic()
        await aclose(stream)
        gone = await fake.wait_for_close(fake.requests[-1].peer, timeout=2)
    assert gone - closed < 0.1


# --- errors (REST) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, "invalid_api_key", AuthenticationFailed),
        (401, "quota_exceeded", PermissionDenied),
        (401, "detected_unusual_activity", PermissionDenied),
        (402, "payment_required", PermissionDenied),
        (403, "forbidden", PermissionDenied),
        (404, "voice_not_found", NotFound),
        (400, "max_character_limit_exceeded", InvalidRequest),
        (422, "invalid_parameters", InvalidRequest),
        (429, "too_many_concurrent_requests", RateLimited),
        (429, "system_busy", RateLimited),
        (500, "internal_error", ProviderUnavailable),
        (503, "service_unavailable", ProviderUnavailable),
        (504, "gateway_timeout", ProviderTimeout),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_provider_errors_are_classified(
    status: int, code: str, error: type[Exception], streamed: bool
) -> None:
    async with fake_elevenlabs(
        force_status=status, force_code=code, force_message="what happened", retry_after="7"
    ) as fake:
        request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K)
        with pytest.raises(error) as raised:
            await synthesize_once(streamed, fake, request, timeout=5)
    assert len(fake.requests) == 1  # the SDK's own retries are off: the hub retries
    message = str(raised.value)
    assert "what happened" in message
    assert code in message
    assert raised.value.provider_status == status  # type: ignore[attr-defined]
    if status == 429:
        assert raised.value.retry_after == 7  # type: ignore[attr-defined]


async def test_a_redirect_is_not_followed() -> None:
    async with fake_elevenlabs(force_status=307) as fake:
        request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K)
        with pytest.raises(ProviderUnavailable, match="redirect"):
            await tts().synthesize(SECRET, options(fake), request, timeout=5)
    assert len(fake.requests) == 1


async def test_real_validation_answers_are_invalid_request() -> None:
    async with fake_elevenlabs() as fake:
        too_fast = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K, speed=2.0)
        with pytest.raises(InvalidRequest, match=r"voice_settings\.speed"):
            await tts().synthesize(SECRET, options(fake), too_fast, timeout=5)
        unknown_model = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K, model="eleven_nope")
        with pytest.raises(NotFound, match="eleven_nope"):
            await tts().synthesize(SECRET, options(fake), unknown_model, timeout=5)
        unknown_voice = SynthesizeRequest(text=TEXT, voice="NoSuchVoice000000000", output_format=PCM_16K)
        with pytest.raises(NotFound, match="NoSuchVoice000000000"):
            await tts().synthesize(SECRET, options(fake), unknown_voice, timeout=5)


async def test_a_rejected_key_never_appears_in_the_error() -> None:
    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K)
        with pytest.raises(AuthenticationFailed) as raised:
            await tts().synthesize(PlainSecret(api_key=WRONG), options(fake), request, timeout=5)
        assert fake.requests[-1].headers["xi-api-key"] == WRONG
        # Even a provider that echoes the key back does not get it into the message.
        fake.force_status, fake.force_code, fake.force_message = 400, "bad", f"your key {WRONG} is odd"
        with pytest.raises(InvalidRequest) as echoed:
            await tts().synthesize(PlainSecret(api_key=WRONG), options(fake), request, timeout=5)
    for error in (raised.value, echoed.value):
        assert WRONG not in str(error)
        assert WRONG not in repr(error.args)
    assert "[redacted]" in str(echoed.value)


async def test_a_provider_that_does_not_answer_is_a_timeout() -> None:
    async with fake_elevenlabs(delay=5) as fake:
        request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K)
        for call in ("tts", "stream"):  # unary, then streamed
            started = time.monotonic()
            with pytest.raises(ProviderTimeout):
                await synthesize_once(call == "stream", fake, request, timeout=0.3)
            assert time.monotonic() - started < 2


async def test_an_unreachable_provider_is_unavailable() -> None:
    request = SynthesizeRequest(text=TEXT, voice=RACHEL, output_format=PCM_16K)
    with pytest.raises(ProviderUnavailable, match="could not reach"):
        await tts().synthesize(SECRET, {"base_url": "http://127.0.0.1:9"}, request, timeout=2)
    await pools.close_all()


# --- STREAM_TTS_INPUT -----------------------------------------------------------------


async def _text(items: Sequence[TextInput], *, pause: float = 0.0) -> AsyncIterator[TextInput]:
    for item in items:
        if pause:
            await asyncio.sleep(pause)
        yield item


LLM_FRAGMENTS: list[TextInput] = ["Hel", "lo fr", "om the ", "hub.", FLUSH, " This is", " a te", "st."]


async def test_input_streaming_sends_whole_words_flushes_and_ends() -> None:
    async with fake_elevenlabs(chunk_bytes=2048) as fake:
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K, speed=0.9)
        chunks = await collect(
            input_tts().stream_synthesize_input(
                SECRET, options(fake), request, _text(LLM_FRAGMENTS), timeout=5
            )
        )
    session = fake.ws_sessions[-1]
    assert session.voice_id == RACHEL
    assert session.headers["xi-api-key"] == KEY
    assert session.query["model_id"] == "eleven_multilingual_v2"
    assert session.query["output_format"] == "pcm_16000"
    first, *rest = session.messages
    assert first == {"text": " ", "voice_settings": {"speed": 0.9}}
    assert all("xi-api-key" not in m for m in session.messages)  # the key is in the header only
    texts = [m["text"] for m in rest]
    # Words split across fragments are sent whole; every text ends with one space.
    assert texts == ["Hello ", "from the ", "hub. ", "This ", "is a ", "test. ", ""]
    assert [m.get("flush") for m in rest] == [None, None, True, None, None, True, None]
    assert rest[0]["try_trigger_generation"] is True
    assert session.generated == ["Hello from the hub.", "This is a test."]
    assert len(chunks) > 3
    assert chunks[-1].is_last
    assert chunks[-1].audio == b""
    assert not any(c.is_last for c in chunks[:-1])
    total = b"".join(c.audio for c in chunks)
    spoken = expected_seconds("Hello from the hub.") + expected_seconds("This is a test.")
    assert audio.raw_seconds(len(total), PCM_16K) == pytest.approx(spoken / 0.9, abs=0.03)


@pytest.mark.parametrize(
    ("asked", "native"),
    [
        (AudioFormat(E.MULAW, C.RAW, 8000), "ulaw_8000"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 24000), "pcm_24000"),
        (AudioFormat(E.MP3, C.MP3, 44100), "mp3_44100_128"),
    ],
)
async def test_input_streaming_answers_the_asked_format(asked: AudioFormat, native: str) -> None:
    async with fake_elevenlabs(chunk_bytes=1000) as fake:
        request = SynthesizeRequest(
            text="", voice=RACHEL, output_format=asked, model="eleven_flash_v2_5", language="en-US"
        )
        chunks = await collect(
            input_tts().stream_synthesize_input(SECRET, options(fake), request, _text([TEXT]), timeout=5)
        )
    session = fake.ws_sessions[-1]
    assert session.query == {"model_id": "eleven_flash_v2_5", "output_format": native, "language_code": "en"}
    assert chunks[-1].is_last
    total = b"".join(c.audio for c in chunks)
    assert decoded_seconds(total, asked) == pytest.approx(expected_seconds(TEXT), abs=0.08)


async def test_flush_yields_audio_while_the_text_is_still_open() -> None:
    release = asyncio.Event()

    async def llm() -> AsyncIterator[TextInput]:
        yield "Short sentence. "
        yield FLUSH
        await release.wait()  # the LLM is still thinking
        yield "And more."

    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K)
        stream = input_tts().stream_synthesize_input(SECRET, options(fake), request, llm(), timeout=5)
        async with asyncio.timeout(5):
            first = await anext(stream)  # before the text has ended
        assert first.audio
        assert not first.is_last
        session = fake.ws_sessions[-1]
        assert session.generated == ["Short sentence."]
        assert [m["text"] for m in session.messages] == [" ", "Short sentence. ", " "]
        release.set()
        rest = await collect(stream)
    assert rest[-1].is_last
    assert session.generated == ["Short sentence.", "And more."]


async def test_long_text_is_generated_by_the_schedule_without_flush() -> None:
    long_text = ("This sentence is long enough to pass the schedule. " * 6).split(" ")
    fragments: list[TextInput] = [w + " " for w in long_text if w]
    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(
            text="", voice=RACHEL, output_format=PCM_16K, provider_options={"chunk_length_schedule": [50]}
        )
        chunks = await collect(
            input_tts().stream_synthesize_input(SECRET, options(fake), request, _text(fragments), timeout=5)
        )
    session = fake.ws_sessions[-1]
    assert session.messages[0]["generation_config"] == {"chunk_length_schedule": [50]}
    assert len(session.generated) >= 4  # generated as the text came, not only at the end
    assert chunks[-1].is_last


async def test_closing_an_input_stream_closes_the_websocket_at_once() -> None:
    async def endless() -> AsyncIterator[TextInput]:
        while True:
            yield "More words to say. "
            yield FLUSH
            await asyncio.sleep(0.05)

    async with fake_elevenlabs(chunk_bytes=256, chunk_delay=0.01) as fake:
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K)
        stream = input_tts().stream_synthesize_input(SECRET, options(fake), request, endless(), timeout=5)
        async with asyncio.timeout(5):
            assert (await anext(stream)).audio
        session = fake.ws_sessions[-1]
        closed = time.monotonic()
        await aclose(stream)
        assert time.monotonic() - closed < 0.1
        gone = await fake.wait_for_ws_close(session, timeout=2)
    assert gone - closed < 0.1


async def test_cancelling_while_the_llm_is_silent_closes_the_websocket_at_once() -> None:
    async def stalled() -> AsyncIterator[TextInput]:
        yield "Thinking "
        await asyncio.Event().wait()
        yield "never"

    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K)

        async def consume() -> None:
            async for _ in input_tts().stream_synthesize_input(
                SECRET, options(fake), request, stalled(), timeout=5
            ):
                pass

        task = asyncio.create_task(consume())
        session = await fake.wait_for_ws_session()
        async with asyncio.timeout(5):
            while len(session.messages) < 2:
                await asyncio.sleep(0.01)
        closed = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gone = await fake.wait_for_ws_close(session, timeout=2)
    assert gone - closed < 0.1


@pytest.mark.parametrize(
    ("ws_error", "error"),
    [
        (
            {"message": "This request exceeds your quota.", "error": "quota_exceeded", "code": 1008},
            PermissionDenied,
        ),
        (
            {"message": "Unusual activity detected.", "error": "detected_unusual_activity", "code": 1008},
            PermissionDenied,
        ),
        (
            {
                "message": "Too many concurrent requests",
                "error": "too_many_concurrent_requests",
                "code": 1008,
            },
            RateLimited,
        ),
        ({"message": "Something odd happened", "error": "invalid_request", "code": 1008}, InvalidRequest),
        ({"message": "Internal server error", "error": "internal_error", "code": 1011}, ProviderUnavailable),
    ],
)
async def test_input_stream_errors_are_classified(ws_error: dict[str, Any], error: type[Exception]) -> None:
    async with fake_elevenlabs(ws_error=ws_error) as fake:
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K)
        with pytest.raises(error, match=ws_error["message"]):
            await collect(
                input_tts().stream_synthesize_input(SECRET, options(fake), request, _text([TEXT]), timeout=5)
            )
        session = fake.ws_sessions[-1]
        await fake.wait_for_ws_close(session, timeout=2)


async def test_input_stream_with_a_wrong_key_or_voice() -> None:
    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K)
        with pytest.raises(AuthenticationFailed) as raised:
            await collect(
                input_tts().stream_synthesize_input(
                    PlainSecret(api_key=WRONG), options(fake), request, _text([TEXT]), timeout=5
                )
            )
        assert WRONG not in str(raised.value)
        unknown = SynthesizeRequest(text="", voice="NoSuchVoice000000000", output_format=PCM_16K)
        with pytest.raises(NotFound, match="NoSuchVoice000000000"):
            await collect(
                input_tts().stream_synthesize_input(SECRET, options(fake), unknown, _text([TEXT]), timeout=5)
            )


@pytest.mark.parametrize(
    ("status", "error"), [(429, RateLimited), (503, ProviderUnavailable), (403, PermissionDenied)]
)
async def test_a_refused_websocket_handshake_is_classified(status: int, error: type[Exception]) -> None:
    async with fake_elevenlabs(ws_reject_status=status, retry_after="3") as fake:
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K)
        with pytest.raises(error) as raised:
            await collect(
                input_tts().stream_synthesize_input(SECRET, options(fake), request, _text([TEXT]), timeout=5)
            )
    assert raised.value.provider_status == status  # type: ignore[attr-defined]
    if status == 429:
        assert raised.value.retry_after == 3  # type: ignore[attr-defined]


async def test_elevenlabs_inactivity_timeout_is_a_timeout() -> None:
    async def stalled() -> AsyncIterator[TextInput]:
        yield "Waiting "
        await asyncio.Event().wait()
        yield "never"

    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(
            text="", voice=RACHEL, output_format=PCM_16K, provider_options={"inactivity_timeout": 0.3}
        )
        with pytest.raises(ProviderTimeout, match="input_timeout_exceeded"):
            await collect(
                input_tts().stream_synthesize_input(SECRET, options(fake), request, stalled(), timeout=5)
            )
    assert fake.ws_sessions[-1].query["inactivity_timeout"] == "0.3"


async def test_a_provider_that_owes_audio_and_sends_none_is_a_timeout() -> None:
    async with fake_elevenlabs(ws_silent=True) as fake:
        fake.ws_silent = True
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K)

        async def flushed_then_waiting() -> AsyncIterator[TextInput]:
            yield "Say this. "
            yield FLUSH
            await asyncio.Event().wait()
            yield "never"

        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="no audio"):
            await collect(
                input_tts().stream_synthesize_input(
                    SECRET, options(fake), request, flushed_then_waiting(), timeout=0.3
                )
            )
        assert time.monotonic() - started < 2
        await fake.wait_for_ws_close(fake.ws_sessions[-1], timeout=2)


async def test_an_error_of_the_text_source_is_raised_as_it_is_and_closes_the_websocket() -> None:
    class LLMFailed(Exception):
        pass

    async def failing() -> AsyncIterator[TextInput]:
        yield "Some words "
        raise LLMFailed("the model stopped")

    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(text="", voice=RACHEL, output_format=PCM_16K)
        with pytest.raises(LLMFailed):
            await collect(
                input_tts().stream_synthesize_input(SECRET, options(fake), request, failing(), timeout=5)
            )
        await fake.wait_for_ws_close(fake.ws_sessions[-1], timeout=2)


async def test_input_stream_options_are_checked() -> None:
    async with fake_elevenlabs() as fake:
        request = SynthesizeRequest(
            text="", voice=RACHEL, output_format=PCM_16K, provider_options={"chunk_length_schedule": "fast"}
        )
        with pytest.raises(InvalidRequest, match="chunk_length_schedule"):
            await collect(
                input_tts().stream_synthesize_input(SECRET, options(fake), request, _text([TEXT]), timeout=2)
            )
    assert fake.ws_sessions == []


# --- VOICES and VERIFY ----------------------------------------------------------------


async def test_voices_with_languages_genders_and_models() -> None:
    async with fake_elevenlabs() as fake:
        every = await voices().list_voices(SECRET, options(fake), language=None, timeout=5)
        english = await voices().list_voices(SECRET, options(fake), language="en", timeout=5)
        british = await voices().list_voices(SECRET, options(fake), language="en-GB", timeout=5)
        french = await voices().list_voices(SECRET, options(fake), language="fr", timeout=5)
        spanish = await voices().list_voices(SECRET, options(fake), language="es-ES", timeout=5)
    assert fake.requests[-1].path == "/v1/voices"
    assert fake.requests[-1].headers["xi-api-key"] == KEY
    assert [v.name for v in every] == ["Rachel", "George", "Matilda", "My clone"]
    rachel = every[0]
    assert rachel.id == RACHEL
    assert rachel.languages == ["en-US"]
    assert rachel.gender is VoiceGender.FEMALE
    assert rachel.models == ["eleven_multilingual_v2", "eleven_turbo_v2_5", "eleven_flash_v2_5"]
    assert every[1].gender is VoiceGender.MALE
    assert every[1].languages == ["en-GB", "fr-FR"]
    assert every[2].languages == ["es"]  # from the language label
    assert every[3].languages == []
    assert every[3].gender is None
    assert [v.name for v in english] == ["Rachel", "George"]
    assert [v.name for v in british] == ["George"]
    assert [v.name for v in french] == ["George"]
    assert spanish == []  # "es" does not say it is es-ES


async def test_voices_errors() -> None:
    async with fake_elevenlabs() as fake:
        with pytest.raises(AuthenticationFailed) as raised:
            await voices().list_voices(PlainSecret(api_key=WRONG), options(fake), language=None, timeout=5)
        assert WRONG not in str(raised.value)
        fake.force_status, fake.retry_after = 429, "2"
        with pytest.raises(RateLimited):
            await voices().list_voices(SECRET, options(fake), language=None, timeout=5)
        fake.force_status, fake.delay = None, 5
        with pytest.raises(ProviderTimeout):
            await voices().list_voices(SECRET, options(fake), language=None, timeout=0.3)


async def test_verify_a_good_key() -> None:
    async with fake_elevenlabs() as fake:
        result = await verifier().verify(SECRET, options(fake), timeout=5)
    assert fake.requests[-1].path == "/v1/user"
    assert fake.requests[-1].headers["xi-api-key"] == KEY
    assert result.valid
    assert result.detail == {"tier": "creator", "characters_left": "98800"}


async def test_verify_a_bad_key() -> None:
    async with fake_elevenlabs() as fake:
        result = await verifier().verify(PlainSecret(api_key=WRONG), options(fake), timeout=5)
    assert not result.valid
    assert "Invalid API key" in result.reason
    assert WRONG not in result.reason


async def test_verify_a_restricted_key_is_valid() -> None:
    async with fake_elevenlabs() as fake:
        result = await verifier().verify(PlainSecret(api_key=RESTRICTED), options(fake), timeout=5)
    assert result.valid
    assert "user_read" in result.reason


async def test_verify_an_exhausted_quota_is_not_valid() -> None:
    async with fake_elevenlabs(
        force_status=401, force_code="quota_exceeded", force_message="No quota left"
    ) as fake:
        result = await verifier().verify(SECRET, options(fake), timeout=5)
    assert not result.valid
    assert "No quota left" in result.reason


@pytest.mark.parametrize(("status", "error"), [(500, ProviderUnavailable), (429, RateLimited)])
async def test_verify_that_cannot_tell_raises(status: int, error: type[Exception]) -> None:
    async with fake_elevenlabs(force_status=status) as fake:
        with pytest.raises(error):
            await verifier().verify(SECRET, options(fake), timeout=5)
