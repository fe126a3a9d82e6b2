"""Cartesia's callers (aiohttp HTTP + websockets) against the loopback fake that speaks
Cartesia's wire: /tts/bytes, /tts/websocket, /stt, /stt/websocket, /voices."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
import soundfile as sf  # type: ignore[import-untyped]

from callers import audio, pools, registry
from callers.base import (
    AuthenticationFailed,
    CallerError,
    Capability,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamSynthesizer,
    StreamTextSynthesizer,
    StreamTranscriber,
    Synthesizer,
    Transcriber,
    VoiceLister,
)
from callers.types import (
    FLUSH,
    AudioChunk,
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    StreamTranscribeEnd,
    StreamTranscribeRequest,
    SynthesizeRequest,
    TextInput,
    TranscribeRequest,
    TranscriptEvent,
    VoiceGender,
)
from tests.fakes.cartesia_server import SECONDS_PER_CHAR, FakeCartesia
from tests.fakes.secret_fields import PlainSecret
from tests.speech.conftest import Speech

pytestmark = pytest.mark.timeout(20)

C, E = AudioContainer, AudioEncoding
KEY = "sk_car_good"
GOOD = PlainSecret(api_key=KEY)
VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
TEXT = "Hello from the hub, this is a test."
PCM_16K = AudioFormat(E.PCM_S16LE, C.RAW, 16000)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def options(fake: FakeCartesia) -> dict[str, str]:
    return {"base_url": fake.base_url, "api_version": "2025-04-16"}


def tts() -> Synthesizer:
    caller = registry.capability("cartesia", Capability.TTS)
    assert isinstance(caller, Synthesizer)
    return caller


def stream_tts() -> StreamSynthesizer:
    caller = registry.capability("cartesia", Capability.STREAM_TTS)
    assert isinstance(caller, StreamSynthesizer)
    return caller


def input_tts() -> StreamTextSynthesizer:
    caller = registry.capability("cartesia", Capability.STREAM_TTS_INPUT)
    assert isinstance(caller, StreamTextSynthesizer)
    return caller


def stt() -> Transcriber:
    caller = registry.capability("cartesia", Capability.STT)
    assert isinstance(caller, Transcriber)
    return caller


def stream_stt() -> StreamTranscriber:
    caller = registry.capability("cartesia", Capability.STREAM_STT)
    assert isinstance(caller, StreamTranscriber)
    return caller


def voices() -> VoiceLister:
    caller = registry.capability("cartesia", Capability.VOICES)
    assert isinstance(caller, VoiceLister)
    return caller


def decoded(data: bytes, fmt: AudioFormat) -> tuple[int, float]:
    """(sample rate, seconds) of `data`, read by numpy (raw), soundfile or PyAV, not by the hub."""
    rate = fmt.sample_rate_hz
    assert rate is not None
    if fmt.container is C.RAW and fmt.encoding in (E.PCM_S16LE, E.MULAW, E.ALAW):
        width = 2 if fmt.encoding is E.PCM_S16LE else 1
        assert len(data) % width == 0
        return rate, len(data) / width / rate
    if fmt.container is C.WAV or fmt.encoding is E.FLAC:
        info = sf.info(io.BytesIO(data))
        return int(info.samplerate), float(info.duration)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = sum(frame.samples for frame in container.decode(stream))
        # Ogg/Opus always decodes at 48 kHz; its header keeps the input rate.
        return int(stream.codec_context.sample_rate), frames / stream.codec_context.sample_rate


# --- TTS -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "wire"),
    [
        (
            AudioFormat(E.PCM_S16LE, C.RAW, 8000),
            {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
        ),
        (PCM_16K, {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}),
        (
            AudioFormat(E.PCM_S16LE, C.RAW, 24000),
            {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.RAW, 48000),
            {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 48000},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.WAV, 16000),
            {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 16000},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.WAV, 48000),
            {"container": "wav", "encoding": "pcm_s16le", "sample_rate": 48000},
        ),
        (
            AudioFormat(E.MULAW, C.RAW, 8000),
            {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
        ),
        (AudioFormat(E.ALAW, C.WAV, 8000), {"container": "wav", "encoding": "pcm_alaw", "sample_rate": 8000}),
        (AudioFormat(E.MP3, C.MP3, 24000), {"container": "mp3", "sample_rate": 24000, "bit_rate": 128000}),
        (AudioFormat(E.MP3, C.RAW, 44100), {"container": "mp3", "sample_rate": 44100, "bit_rate": 128000}),
        # made by callers.audio from PCM that Cartesia writes
        (
            AudioFormat(E.OPUS, C.OGG, 48000),
            {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 48000},
        ),
        (
            AudioFormat(E.OPUS, C.OGG, 12000),
            {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        ),
        (
            AudioFormat(E.FLAC, C.RAW, 16000),
            {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.RAW, 32000),
            {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 44100},
        ),
        (
            AudioFormat(E.MP3, C.MP3, 32000),
            {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 44100},
        ),
    ],
)
async def test_synthesize_answers_exactly_the_asked_format(
    output: AudioFormat, wire: dict[str, object]
) -> None:
    async with FakeCartesia() as fake:
        request = SynthesizeRequest(text=TEXT, voice=VOICE, output_format=output, language="en-US")
        answer = await tts().synthesize(GOOD, options(fake), request, timeout=5)
    seen = fake.requests[-1]
    assert (seen.method, seen.path) == ("POST", "/tts/bytes")
    assert seen.headers["X-API-Key"] == KEY
    assert seen.headers["Cartesia-Version"] == "2025-04-16"
    assert seen.json == {
        "model_id": "sonic-2",
        "transcript": TEXT,
        "voice": {"mode": "id", "id": VOICE},
        "output_format": wire,
        "language": "en",
    }
    assert answer.audio_format == output
    assert answer.request_id
    assert answer.request_id.startswith("req-")
    rate, seconds = decoded(answer.audio, output)
    if output.encoding is not E.OPUS:
        assert rate == output.sample_rate_hz
    assert audio.probe(answer.audio, output).sample_rate_hz == output.sample_rate_hz
    assert seconds == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.08)
    if output.container is C.RAW and output.encoding is not E.FLAC and output.encoding is not E.MP3:
        assert not answer.audio.startswith(b"RIFF")


async def test_synthesis_options_and_refusals() -> None:
    fmt = AudioFormat(E.MP3, C.MP3, 24000)
    async with FakeCartesia() as fake:
        fast = SynthesizeRequest(
            TEXT, VOICE, fmt, model="sonic-3", speed=1.2, provider_options={"save": False}
        )
        await tts().synthesize(GOOD, options(fake), fast, timeout=5)
        sent = fake.requests[-1].json
        assert (sent["model_id"], sent["generation_config"], sent["save"]) == (
            "sonic-3",
            {"speed": 1.2},
            False,
        )
        assert "language" not in sent
        refusals: list[tuple[SynthesizeRequest, str]] = [
            (SynthesizeRequest("<speak>hi</speak>", VOICE, fmt, is_ssml=True), "SSML"),
            (SynthesizeRequest(TEXT, "", fmt), "voice"),
            (SynthesizeRequest(TEXT, VOICE, fmt, language="xx-XX"), "language: .*'xx-XX'"),
            (SynthesizeRequest(TEXT, VOICE, fmt, speed=1.3), "speed: .*sonic-3"),
            (SynthesizeRequest(TEXT, VOICE, fmt, model="sonic-3", speed=3.0), "speed: .*0.6 to 1.5"),
            (
                SynthesizeRequest(TEXT, VOICE, fmt, provider_options={"transcript": "x"}),
                "provider_options.transcript",
            ),
            (SynthesizeRequest(TEXT, VOICE, AudioFormat(E.OPUS, C.OGG, 44100)), "44100 Hz is not supported"),
            (SynthesizeRequest(TEXT, VOICE, AudioFormat(E.MULAW, C.RAW, 16000)), "16000 Hz is not supported"),
        ]
        before = len(fake.requests)
        for request, match in refusals:
            with pytest.raises(InvalidRequest, match=match):
                await tts().synthesize(GOOD, options(fake), request, timeout=5)
        assert len(fake.requests) == before  # refused before any call
        with pytest.raises(NotFound, match="Voice nope not found"):
            await tts().synthesize(GOOD, options(fake), SynthesizeRequest(TEXT, "nope", fmt), timeout=5)


async def collect(chunks: AsyncIterator[AudioChunk]) -> list[AudioChunk]:
    return [chunk async for chunk in chunks]


@pytest.mark.parametrize(
    ("output", "asked_rate"),
    [
        (PCM_16K, 16000),
        (AudioFormat(E.MULAW, C.RAW, 8000), 8000),
        (AudioFormat(E.PCM_S16LE, C.RAW, 32000), 44100),  # converted chunk by chunk
        (AudioFormat(E.MP3, C.MP3, 22050), 22050),
    ],
)
async def test_stream_synthesize_hands_on_chunks_as_they_come(output: AudioFormat, asked_rate: int) -> None:
    async with FakeCartesia() as fake:
        fake.chunk_bytes, fake.chunk_delay = 1024, 0.005
        request = SynthesizeRequest(TEXT, VOICE, output)
        chunks = await collect(stream_tts().stream_synthesize(GOOD, options(fake), request, timeout=5))
    assert fake.requests[-1].json["output_format"]["sample_rate"] == asked_rate
    assert len(chunks) > 3
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.request_id for c in chunks)
    rate, seconds = decoded(b"".join(c.audio for c in chunks), output)
    assert rate == output.sample_rate_hz
    assert seconds == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.08)


async def test_stream_synthesize_refuses_what_cannot_stream() -> None:
    async with FakeCartesia() as fake:
        for fmt, match in (
            (AudioFormat(E.OPUS, C.OGG, 48000), "cannot be streamed"),
            (AudioFormat(E.PCM_S16LE, C.WAV, 16000), "not a wav file"),
            (AudioFormat(E.MP3, C.MP3, 32000), "cannot be streamed"),
        ):
            with pytest.raises(InvalidRequest, match=match):
                await collect(
                    stream_tts().stream_synthesize(
                        GOOD, options(fake), SynthesizeRequest(TEXT, VOICE, fmt), timeout=5
                    )
                )
    assert not fake.requests


async def test_closing_a_synthesis_stream_drops_the_connection_at_once() -> None:
    async with FakeCartesia() as fake:
        fake.chunk_bytes, fake.chunk_delay = 512, 0.05
        request = SynthesizeRequest(TEXT * 5, VOICE, PCM_16K)
        stream = stream_tts().stream_synthesize(GOOD, options(fake), request, timeout=5)
        first = await anext(stream)
        assert first.audio
        closed = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        assert await fake.wait_for_close() - closed < 0.1


# --- TTS input streaming (websocket) -------------------------------------------------


async def test_stream_input_sends_fragments_flushes_and_ends() -> None:
    heard = asyncio.Event()

    async def fragments() -> AsyncIterator[TextInput]:
        yield "Hello there, "
        yield "my friend. "
        yield FLUSH
        await asyncio.wait_for(heard.wait(), 5)  # FLUSH made audio before the text went on
        yield "How are you today?"

    async with FakeCartesia() as fake:
        fake.chunk_bytes = 2048
        request = SynthesizeRequest("", VOICE, PCM_16K, language="en")
        chunks: list[AudioChunk] = []
        async for chunk in input_tts().stream_synthesize_input(
            GOOD, options(fake), request, fragments(), timeout=5
        ):
            chunks.append(chunk)
            heard.set()
    seen = fake.requests[-1]
    assert seen.path == "/tts/websocket"
    assert seen.headers["X-API-Key"] == KEY
    assert seen.headers["Cartesia-Version"] == "2025-04-16"
    assert "api_key" not in seen.query  # the key never goes into a URL
    sent = seen.messages
    assert [(m["transcript"], m["continue"], m.get("flush")) for m in sent] == [
        ("Hello there, ", True, None),
        ("my friend. ", True, None),
        ("", True, True),
        ("How are you today?", True, None),
        ("", False, None),
    ]
    assert len({m["context_id"] for m in sent}) == 1
    first = sent[0]
    assert first["model_id"] == "sonic-2"
    assert first["voice"] == {"mode": "id", "id": VOICE}
    assert first["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
    assert first["language"] == "en"
    assert fake.flushes == [1]
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    spoken = "Hello there, my friend. How are you today?"
    _, seconds = decoded(b"".join(c.audio for c in chunks), PCM_16K)
    assert seconds == pytest.approx(len(spoken) * SECONDS_PER_CHAR, abs=0.05)


@pytest.mark.parametrize(
    ("output", "wire_rate"),
    [(AudioFormat(E.MULAW, C.RAW, 8000), 8000), (AudioFormat(E.PCM_S16LE, C.RAW, 32000), 44100)],
)
async def test_stream_input_formats(output: AudioFormat, wire_rate: int) -> None:
    async def fragments() -> AsyncIterator[TextInput]:
        yield TEXT

    async with FakeCartesia() as fake:
        request = SynthesizeRequest("", VOICE, output)
        chunks = await collect(
            input_tts().stream_synthesize_input(GOOD, options(fake), request, fragments(), timeout=5)
        )
    assert fake.requests[-1].messages[0]["output_format"]["sample_rate"] == wire_rate
    rate, seconds = decoded(b"".join(c.audio for c in chunks), output)
    assert rate == output.sample_rate_hz
    assert seconds == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.05)
    assert chunks[-1].is_last


async def test_stream_input_refuses_files_and_reports_websocket_errors() -> None:
    async def fragments() -> AsyncIterator[TextInput]:
        yield TEXT

    async with FakeCartesia() as fake:
        with pytest.raises(InvalidRequest, match="cannot be streamed"):
            await collect(
                input_tts().stream_synthesize_input(
                    GOOD,
                    options(fake),
                    SynthesizeRequest("", VOICE, AudioFormat(E.MP3, C.MP3, 24000)),
                    fragments(),
                    timeout=5,
                )
            )
        assert not fake.requests
        with pytest.raises(NotFound, match="not found"):
            await collect(
                input_tts().stream_synthesize_input(
                    GOOD, options(fake), SynthesizeRequest("", "nope", PCM_16K), fragments(), timeout=5
                )
            )
        fake.ws_error = {"status_code": 429, "title": "Too many requests", "message": "concurrency limit"}
        with pytest.raises(RateLimited, match="concurrency limit"):
            await collect(
                input_tts().stream_synthesize_input(
                    GOOD, options(fake), SynthesizeRequest("", VOICE, PCM_16K), fragments(), timeout=5
                )
            )


async def test_closing_an_input_stream_closes_the_websocket_at_once() -> None:
    async def fragments() -> AsyncIterator[TextInput]:
        yield "The first sentence is spoken at once. "
        yield FLUSH
        await asyncio.sleep(3600)  # an LLM that stalls
        yield "never"

    async with FakeCartesia() as fake:
        stream = input_tts().stream_synthesize_input(
            GOOD, options(fake), SynthesizeRequest("", VOICE, PCM_16K), fragments(), timeout=5
        )
        consumer = asyncio.ensure_future(anext(stream))
        assert (await consumer).audio
        waiting = asyncio.ensure_future(collect(stream))
        await asyncio.sleep(0.05)
        waiting.cancel()
        closed = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await fake.wait_for_close() - closed < 0.1


async def test_a_failing_text_source_ends_the_stream_with_its_error() -> None:
    async def fragments() -> AsyncIterator[TextInput]:
        yield "Some text. "
        raise RuntimeError("the LLM went away")

    async with FakeCartesia() as fake:
        stream = input_tts().stream_synthesize_input(
            GOOD, options(fake), SynthesizeRequest("", VOICE, PCM_16K), fragments(), timeout=5
        )
        with pytest.raises(RuntimeError, match="the LLM went away"):
            await collect(stream)
        await fake.wait_for_close()


# --- STT (batch) -------------------------------------------------------------------


async def test_transcribe_a_wav_file_with_word_timings(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    async with FakeCartesia() as fake:
        request = TranscribeRequest(
            wav, AudioFormat(E.PCM_S16LE, C.WAV), language="en-US", word_timestamps=True
        )
        answer = await stt().transcribe(GOOD, options(fake), request, timeout=5)
    seen = fake.requests[-1]
    assert (seen.method, seen.path) == ("POST", "/stt")
    assert seen.headers["X-API-Key"] == KEY
    assert seen.form["file"] == [wav]
    assert seen.form["file.filename"] == ["audio.wav"]
    assert seen.form["model"] == ["ink-whisper"]
    assert seen.form["language"] == ["en"]
    assert seen.form["timestamp_granularities[]"] == ["word"]
    assert answer.transcript == "the quick brown fox jumps over the lazy dog"
    assert [w.text for w in answer.words][:3] == ["the", "quick", "brown"]
    starts = [w.start for w in answer.words]
    assert starts == sorted(starts)
    duration = audio.probe(wav, C.WAV).duration
    assert answer.duration == pytest.approx(duration, abs=0.01)
    assert answer.words[-1].end == pytest.approx(duration, abs=0.01)
    assert answer.language == "en"
    assert answer.request_id
    assert answer.request_id.startswith("req-")


@pytest.mark.parametrize(
    ("key", "fmt", "filename"),
    [
        ("raw_mulaw_8k", AudioFormat(E.MULAW, C.RAW, 8000), "audio.wav"),
        ("wav_alaw_8k", AudioFormat(E.ALAW, C.WAV), "audio.wav"),
        ("mp3_16k", AudioFormat(E.MP3, C.MP3), "audio.mp3"),
        ("flac_16k", AudioFormat(E.FLAC, C.RAW), "audio.flac"),
    ],
)
async def test_transcribe_other_inputs(speech: Speech, key: str, fmt: AudioFormat, filename: str) -> None:
    data = speech.file(key)
    async with FakeCartesia() as fake:
        answer = await stt().transcribe(GOOD, options(fake), TranscribeRequest(data, fmt), timeout=5)
    form = fake.requests[-1].form
    assert form["file.filename"] == [filename]
    assert "language" not in form
    assert "timestamp_granularities[]" not in form
    if filename == "audio.wav":
        info = sf.info(io.BytesIO(form["file"][0]))
        assert info.subtype == "PCM_16"
    else:
        assert form["file"] == [data]
    assert answer.duration == pytest.approx(audio.probe(data, fmt).duration, abs=0.06)
    assert answer.words == []


async def test_transcription_refusals(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    fmt = AudioFormat(E.PCM_S16LE, C.WAV)
    async with FakeCartesia() as fake:
        for request, match in (
            (TranscribeRequest(b"", fmt, audio_url="https://x.test/a.wav"), "audio_url"),
            (TranscribeRequest(wav, fmt, diarize=True), "diarize"),
            (TranscribeRequest(wav, fmt, keywords=["hub"]), "keywords"),
            (TranscribeRequest(wav, fmt, language="tlh"), "language: .*'tlh'"),
            (TranscribeRequest(wav, fmt, provider_options={"model": "x"}), "provider_options.model"),
        ):
            with pytest.raises(InvalidRequest, match=match):
                await stt().transcribe(GOOD, options(fake), request, timeout=5)
        assert not fake.requests
        with pytest.raises(InvalidRequest, match="could not be decoded"):
            await stt().transcribe(
                GOOD, options(fake), TranscribeRequest(b"RIFF" + b"\0" * 64, fmt), timeout=5
            )


# --- STT (websocket) ---------------------------------------------------------------


async def pieces(data: bytes, size: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]
        if pause:
            await asyncio.sleep(pause)


async def test_stream_interim_then_final_then_end(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with FakeCartesia() as fake:
        request = StreamTranscribeRequest(PCM_16K, language="en-US", endpointing_ms=400, word_timestamps=True)
        events = [
            e
            async for e in stream_stt().stream_transcribe(
                GOOD, options(fake), request, pieces(pcm, 3200), timeout=5
            )
        ]
    seen = fake.requests[-1]
    assert seen.path == "/stt/websocket"
    assert seen.headers["X-API-Key"] == KEY
    assert seen.headers["Cartesia-Version"] == "2025-04-16"
    assert {k: v[0] for k, v in seen.query.items()} == {
        "model": "ink-whisper",
        "encoding": "pcm_s16le",
        "sample_rate": "16000",
        "language": "en",
        "max_silence_duration_secs": "0.4",
    }
    audio_frames = [m for m in seen.messages if isinstance(m, int)]
    assert sum(audio_frames) == len(pcm)
    assert seen.messages[-2:] == ["finalize", "done"]
    transcripts = [e for e in events if isinstance(e, TranscriptEvent)]
    assert len(transcripts) >= 3
    assert all(not t.is_final for t in transcripts[:-1])
    assert transcripts[-1].is_final
    assert transcripts[-1].transcript == "the quick brown fox jumps over the lazy dog"
    assert transcripts[-1].words[0].text == "the"
    assert transcripts[-1].end == pytest.approx(len(pcm) / 32000, abs=0.01)
    end = events[-1]
    assert isinstance(end, StreamTranscribeEnd)
    assert sum(isinstance(e, StreamTranscribeEnd) for e in events) == 1
    assert end.duration == pytest.approx(len(pcm) / 32000, abs=0.001)
    assert end.request_id
    assert end.request_id.startswith("req-")


async def test_stream_phone_audio_goes_as_it_is_and_stereo_is_mixed(speech: Speech) -> None:
    mulaw = speech.file("raw_mulaw_8k")
    async with FakeCartesia() as fake:
        request = StreamTranscribeRequest(
            AudioFormat(E.MULAW, C.RAW, 8000), interim_results=False, keywords=["hub", "Cartesia Sonic"]
        )
        events = [
            e
            async for e in stream_stt().stream_transcribe(
                GOOD, options(fake), request, pieces(mulaw, 800), timeout=5
            )
        ]
        assert fake.requests[-1].query["encoding"] == ["pcm_mulaw"]
        assert fake.requests[-1].query["sample_rate"] == ["8000"]
        assert "language" not in fake.requests[-1].query
        assert fake.requests[-1].query["keyterm"] == ["hub", "Cartesia Sonic"]
        assert [type(e) for e in events] == [TranscriptEvent, StreamTranscribeEnd]  # no interim asked
        stereo = np.zeros((24000, 2), dtype="<i2").tobytes()  # 0.5 s at 48 kHz
        request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 48000, channels=2))
        events = [
            e
            async for e in stream_stt().stream_transcribe(
                GOOD, options(fake), request, pieces(stereo, 9600), timeout=5
            )
        ]
        assert fake.requests[-1].query["sample_rate"] == ["16000"]
        sent = sum(m for m in fake.requests[-1].messages if isinstance(m, int))
        assert sent == pytest.approx(16000, abs=64)  # 0.5 s of 16 kHz mono s16le
        end = events[-1]
        assert isinstance(end, StreamTranscribeEnd)
        assert end.duration == pytest.approx(0.5)
        with pytest.raises(InvalidRequest, match="raw samples"):
            await anext(
                stream_stt().stream_transcribe(
                    GOOD,
                    options(fake),
                    StreamTranscribeRequest(AudioFormat(E.OPUS, C.WEBM, 48000)),
                    pieces(b"x", 1),
                    timeout=5,
                )
            )
        with pytest.raises(InvalidRequest, match="diarize"):
            await anext(
                stream_stt().stream_transcribe(
                    GOOD,
                    options(fake),
                    StreamTranscribeRequest(PCM_16K, diarize=True),
                    pieces(b"x", 1),
                    timeout=5,
                )
            )


async def test_closing_a_live_transcription_closes_the_websocket_at_once(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield pcm[:3200]
            await asyncio.sleep(0.01)

    async with FakeCartesia() as fake:
        fake.interim_every_seconds = 0.2
        stream = stream_stt().stream_transcribe(
            GOOD, options(fake), StreamTranscribeRequest(PCM_16K), endless(), timeout=5
        )
        first = await anext(stream)
        assert isinstance(first, TranscriptEvent)
        assert not first.is_final
        consumer = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.02)
        consumer.cancel()
        closed = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await stream.aclose()  # type: ignore[attr-defined]
        assert await fake.wait_for_close() - closed < 0.1


async def test_a_silent_provider_after_the_audio_is_a_timeout(speech: Speech) -> None:
    async with FakeCartesia() as fake:
        fake.stall_after_done = True
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            async for _ in stream_stt().stream_transcribe(
                GOOD, options(fake), StreamTranscribeRequest(PCM_16K), pieces(b"\0" * 6400, 3200), timeout=0.3
            ):
                pass
        assert time.monotonic() - started < 2.0
        await fake.wait_for_close()


async def test_a_websocket_error_message_is_classified() -> None:
    async with FakeCartesia() as fake:
        fake.ws_error = {"status_code": 400, "title": "Invalid model", "message": "The model is not valid"}
        with pytest.raises(InvalidRequest, match="Invalid model: The model is not valid"):
            async for _ in stream_stt().stream_transcribe(
                GOOD, options(fake), StreamTranscribeRequest(PCM_16K), pieces(b"\0" * 6400, 3200), timeout=5
            ):
                pass


# --- voices and verify ---------------------------------------------------------------


async def test_voices_follow_the_cursor_pages_and_filter_by_language() -> None:
    many = tuple(
        {
            "id": f"voice-{i:03d}",
            "name": f"Voice {i}",
            "language": "en" if i % 3 else "de",
            "gender": "feminine",
        }
        for i in range(230)
    )
    async with FakeCartesia() as fake:
        every = await voices().list_voices(GOOD, options(fake), language=None, timeout=5)
        cursors = [r.query.get("starting_after", [None])[0] for r in fake.requests]
        assert len(every) == 5
        assert cursors == [None]
        neutral = next(v for v in every if v.name == "Commercial Lady")
        assert neutral.gender is None
        southern = next(v for v in every if v.name == "Southern Woman")
        assert southern.languages == ["en-US", "es-MX"]
        assert southern.gender is VoiceGender.FEMALE
        spanish = await voices().list_voices(GOOD, options(fake), language="es", timeout=5)
        assert [v.name for v in spanish] == ["Southern Woman"]
        french = await voices().list_voices(GOOD, options(fake), language="fr-FR", timeout=5)
        assert [(v.name, v.languages, v.gender) for v in french] == [
            ("Helpful French Lady", ["fr"], VoiceGender.FEMALE)
        ]
        fake.voices = list(many)
        fake.requests.clear()
        listed = await voices().list_voices(GOOD, options(fake), language="de", timeout=5)
    assert [r.query["limit"] for r in fake.requests] == [["100"]] * 3
    assert [r.query.get("starting_after", [None])[0] for r in fake.requests] == [
        None,
        "voice-099",
        "voice-199",
    ]
    assert len(listed) == len([v for v in many if v["language"] == "de"])


async def test_verify() -> None:
    async with FakeCartesia() as fake:
        result = await registry.verify("cartesia", GOOD, options(fake), timeout=5)
        assert result.valid
        assert fake.requests[-1].path == "/voices"
        assert fake.requests[-1].query["limit"] == ["1"]
        fake.echo_key = True
        bad_key = "sk_car_this_is_not_a_key_0123456789"
        refused = await registry.verify("cartesia", PlainSecret(api_key=bad_key), options(fake), timeout=5)
        assert not refused.valid
        assert "Invalid API key" in refused.reason
        assert bad_key not in refused.reason
        fake.force_status = 403
        denied = await registry.verify("cartesia", GOOD, options(fake), timeout=5)
        assert not denied.valid
        fake.force_status = 503
        with pytest.raises(ProviderUnavailable):
            await registry.verify("cartesia", GOOD, options(fake), timeout=5)


# --- errors everywhere ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, AuthenticationFailed),
        (403, PermissionDenied),
        (404, NotFound),
        (400, InvalidRequest),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
    ],
)
async def test_http_statuses_map_to_caller_errors(
    speech: Speech, status: int, kind: type[CallerError]
) -> None:
    wav = speech.file("wav_16k")

    async def text() -> AsyncIterator[TextInput]:
        yield TEXT

    async with FakeCartesia() as fake:
        fake.force_status, fake.retry_after = status, "7"
        opts = options(fake)
        request = SynthesizeRequest(TEXT, VOICE, PCM_16K)
        calls = [
            tts().synthesize(GOOD, opts, request, timeout=5),
            collect(stream_tts().stream_synthesize(GOOD, opts, request, timeout=5)),
            collect(
                input_tts().stream_synthesize_input(
                    GOOD, opts, SynthesizeRequest("", VOICE, PCM_16K), text(), timeout=5
                )
            ),
            stt().transcribe(GOOD, opts, TranscribeRequest(wav, AudioFormat(E.PCM_S16LE, C.WAV)), timeout=5),
            anext(
                stream_stt().stream_transcribe(
                    GOOD, opts, StreamTranscribeRequest(PCM_16K), pieces(b"\0" * 3200, 3200), timeout=5
                )
            ),
            voices().list_voices(GOOD, opts, language=None, timeout=5),
        ]
        for call in calls:
            with pytest.raises(kind) as caught:
                await call
            error = caught.value
            assert error.provider_status == status
            assert KEY not in str(error)
            if status in (429, 503):
                assert error.retry_after == pytest.approx(7.0)
    assert len(fake.requests) == len(calls)


async def test_a_rejected_key_never_appears_in_an_error(speech: Speech) -> None:
    bad_key = "sk_car_leaky_secret_value_42"
    secret = PlainSecret(api_key=bad_key)

    async def text() -> AsyncIterator[TextInput]:
        yield TEXT

    async with FakeCartesia() as fake:
        fake.echo_key = True
        opts = options(fake)
        calls = [
            tts().synthesize(secret, opts, SynthesizeRequest(TEXT, VOICE, PCM_16K), timeout=5),
            stt().transcribe(
                secret,
                opts,
                TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV)),
                timeout=5,
            ),
            collect(
                input_tts().stream_synthesize_input(
                    secret, opts, SynthesizeRequest("", VOICE, PCM_16K), text(), timeout=5
                )
            ),
        ]
        messages = []
        for call in calls:
            with pytest.raises(AuthenticationFailed) as caught:
                await call
            assert bad_key not in str(caught.value)
            assert bad_key not in repr(caught.value.args)
            messages.append(caught.value.message)
        # the provider's words are kept, the key it quoted is not
        assert (
            messages[:2]
            == ["Cartesia (401): Unauthorized: Invalid API key: [redacted] [invalid_api_key]"] * 2
        )
        assert messages[2] == "Cartesia (401): websocket handshake refused"
        assert fake.requests[0].headers["X-API-Key"] == bad_key


async def test_slow_or_absent_providers_are_timeouts_and_outages(speech: Speech) -> None:
    async def text() -> AsyncIterator[TextInput]:
        yield TEXT

    async with FakeCartesia() as fake:
        fake.delay = 1.0
        opts = options(fake)
        started = time.monotonic()
        for call in (
            tts().synthesize(GOOD, opts, SynthesizeRequest(TEXT, VOICE, PCM_16K), timeout=0.2),
            stt().transcribe(
                GOOD,
                opts,
                TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV)),
                timeout=0.2,
            ),
            voices().list_voices(GOOD, opts, language=None, timeout=0.2),
            collect(
                stream_tts().stream_synthesize(
                    GOOD, opts, SynthesizeRequest(TEXT, VOICE, PCM_16K), timeout=0.2
                )
            ),
            collect(
                input_tts().stream_synthesize_input(
                    GOOD, opts, SynthesizeRequest("", VOICE, PCM_16K), text(), timeout=0.2
                )
            ),
            anext(
                stream_stt().stream_transcribe(
                    GOOD, opts, StreamTranscribeRequest(PCM_16K), pieces(b"\0" * 3200, 3200), timeout=0.2
                )
            ),
        ):
            with pytest.raises(ProviderTimeout):
                await call
        assert time.monotonic() - started < 2.0
        port = fake.base_url
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        await tts().synthesize(GOOD, {"base_url": port}, SynthesizeRequest(TEXT, VOICE, PCM_16K), timeout=2)


def test_base64_chunk_data_is_checked() -> None:
    from callers.cartesia.synthesize import _audio_of

    assert _audio_of({"data": base64.b64encode(b"\1\2").decode()}) == b"\1\2"
    assert _audio_of({"data": ""}) == b""
    with pytest.raises(ProviderUnavailable):
        _audio_of({"data": "not base64!"})
