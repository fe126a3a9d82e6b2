"""Azure AI Speech (REST and the real-time websocket) against the loopback fake, over the
caller's real aiohttp HTTP and websocket clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import orjson
import pytest

from callers import audio, pools, registry
from callers.azure_speech import wire
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
    StreamTranscriber,
    Synthesizer,
    Transcriber,
    Verifier,
    VoiceLister,
)
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SpeechStarted,
    StreamTranscribeEnd,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    SynthesizeRequest,
    TranscribeRequest,
    TranscriptEvent,
    UtteranceEnd,
    VoiceGender,
)
from tests.fakes.azure_speech_server import SECONDS_PER_CHAR, WORDS, FakeAzureSpeech
from tests.fakes.secret_fields import PlainSecret
from tests.speech.conftest import Speech

pytestmark = pytest.mark.timeout(30)

KEY = "azure-speech-test-key-0123456789abcdef"
SECRET = PlainSecret(api_key=KEY)
C, E = AudioContainer, AudioEncoding
TEXT = "Hello from the hub, this is a test."
PCM_16K = AudioFormat(E.PCM_S16LE, C.RAW, 16000)


@asynccontextmanager
async def fake_azure(**knobs: object) -> AsyncIterator[FakeAzureSpeech]:
    fake = FakeAzureSpeech(valid_keys={KEY}, **knobs)  # type: ignore[arg-type]
    async with fake:
        try:
            yield fake
        finally:
            await pools.close_all()


def opts(fake: FakeAzureSpeech) -> dict[str, str]:
    return {"region": "eastus", "endpoint": fake.endpoint}


def stt() -> Transcriber:
    caller = registry.capability("azure_speech", Capability.STT)
    assert isinstance(caller, Transcriber)
    return caller


def stream_stt() -> StreamTranscriber:
    caller = registry.capability("azure_speech", Capability.STREAM_STT)
    assert isinstance(caller, StreamTranscriber)
    return caller


def tts() -> Synthesizer:
    caller = registry.capability("azure_speech", Capability.TTS)
    assert isinstance(caller, Synthesizer)
    return caller


def stream_tts() -> StreamSynthesizer:
    caller = registry.capability("azure_speech", Capability.STREAM_TTS)
    assert isinstance(caller, StreamSynthesizer)
    return caller


def voices() -> VoiceLister:
    caller = registry.capability("azure_speech", Capability.VOICES)
    assert isinstance(caller, VoiceLister)
    return caller


async def chunks_of(data: bytes, piece: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for at in range(0, len(data), piece):
        yield data[at : at + piece]
        if pause:
            await asyncio.sleep(pause)


def test_spec_lists_what_is_implemented() -> None:
    spec = registry.spec("azure_speech")
    assert spec.capabilities == {
        Capability.VERIFY,
        Capability.STT,
        Capability.STREAM_STT,
        Capability.TTS,
        Capability.STREAM_TTS,
        Capability.VOICES,
    }
    assert spec.sdk_modules == ()
    assert isinstance(registry.capability("azure_speech", Capability.VERIFY), Verifier)
    spec.validate({"api_key": KEY}, {"region": "eastus", "endpoint": "https://x.cognitiveservices.azure.com"})


def test_hosts_from_region_or_custom_endpoint() -> None:
    regional = wire.endpoints({"region": "westeurope"})
    assert str(regional.short_audio) == (
        "https://westeurope.stt.speech.microsoft.com/speech/recognition/conversation/cognitiveservices/v1"
    )
    assert str(regional.realtime).startswith("wss://westeurope.stt.speech.microsoft.com/speech/recognition/")
    assert str(regional.fast_transcription) == (
        "https://westeurope.api.cognitive.microsoft.com/speechtotext/transcriptions:transcribe"
    )
    assert str(regional.tts) == "https://westeurope.tts.speech.microsoft.com/cognitiveservices/v1"
    assert str(regional.voices) == "https://westeurope.tts.speech.microsoft.com/cognitiveservices/voices/list"
    assert str(wire.endpoints({"region": "chinanorth2"}).tts).startswith(
        "https://chinanorth2.tts.speech.azure.cn/"
    )
    custom = wire.endpoints(
        {"region": "eastus", "endpoint": "https://my-speech.cognitiveservices.azure.com/"}
    )
    assert str(custom.realtime) == (
        "wss://my-speech.cognitiveservices.azure.com/stt/speech/recognition/conversation/cognitiveservices/v1"
    )
    assert str(custom.tts) == "https://my-speech.cognitiveservices.azure.com/tts/cognitiveservices/v1"
    assert str(custom.fast_transcription).endswith(".azure.com/speechtotext/transcriptions:transcribe")
    for bad in ("", "east us", "evil.com/x", "EastUS"):
        with pytest.raises(InvalidRequest, match=r"options\.region"):
            wire.endpoints({"region": bad})


# --- STT ---------------------------------------------------------------------------


async def test_short_audio_wav_with_word_timings(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    duration = audio.probe(wav, C.WAV).duration
    async with fake_azure() as fake:
        request = TranscribeRequest(
            audio=wav, audio_format=AudioFormat(E.PCM_S16LE, C.WAV), language="en-US", word_timestamps=True
        )
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/stt/speech/recognition/conversation/cognitiveservices/v1")
    assert sent.query == {
        "language": "en-US",
        "format": "detailed",
        "profanity": "raw",
        "wordLevelTimestamps": "true",
    }
    assert sent.headers["Content-Type"] == "audio/wav; codecs=audio/pcm; samplerate=16000"
    assert sent.headers["Ocp-Apim-Subscription-Key"] == KEY
    info = audio.probe(sent.body, C.WAV)
    assert (info.sample_rate_hz, info.channels) == (16000, 1)
    assert answer.transcript == "Hello from the hub."
    assert [w.text for w in answer.words] == WORDS[:4]
    assert answer.words[0].start == 0.0
    assert answer.words[-1].end == pytest.approx(duration, abs=0.01)
    assert answer.confidence == pytest.approx(0.93)
    assert answer.duration == pytest.approx(duration, abs=0.01)
    assert (answer.language, answer.request_id) == ("en-US", "stt-req-1")


async def test_short_audio_converts_phone_audio_and_honours_punctuate(speech: Speech) -> None:
    mulaw = speech.file("raw_mulaw_8k")
    async with fake_azure() as fake:
        request = TranscribeRequest(
            audio=mulaw,
            audio_format=AudioFormat(E.MULAW, C.RAW, 8000),
            language="en-GB",
            punctuate=False,
            model="0123-custom-endpoint-id",
        )
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert sent.query["cid"] == "0123-custom-endpoint-id"
    assert "wordLevelTimestamps" not in sent.query
    info = audio.probe(sent.body, C.WAV)
    assert (info.sample_rate_hz, info.channels) == (16000, 1)
    assert info.duration == pytest.approx(len(mulaw) / 8000, abs=0.01)
    assert answer.transcript == "hello from the hub"  # the ITN form, without punctuation
    assert answer.words == []


async def test_short_audio_silence_is_an_empty_transcript() -> None:
    async with fake_azure() as fake:
        request = TranscribeRequest(audio=b"\0\0" * 16000, audio_format=PCM_16K, language="en-US")
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    assert answer.transcript == ""
    assert answer.duration == pytest.approx(1.0)


async def test_diarization_uses_fast_transcription(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    async with fake_azure() as fake:
        request = TranscribeRequest(
            audio=wav,
            audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
            language="en-US",
            diarize=True,
            provider_options={"max_speakers": 3},
        )
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert sent.path == "/speechtotext/transcriptions:transcribe"
    assert sent.query == {"api-version": "2024-11-15"}
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    upload = fake.uploads[-1]
    assert upload["audio"] == (wav, "audio.wav")  # a file Azure reads goes as it came
    assert orjson.loads(upload["definition"]) == {
        "profanityFilterMode": "None",
        "locales": ["en-US"],
        "diarization": {"enabled": True, "maxSpeakers": 3},
    }
    assert answer.transcript == "Hello from the hub. This is a test."
    assert [w.speaker for w in answer.words] == ["1"] * 4 + ["2"] * 4
    starts = [w.start for w in answer.words]
    assert starts == sorted(starts)
    assert answer.duration == pytest.approx(audio.probe(wav, C.WAV).duration, abs=0.01)
    assert answer.confidence == pytest.approx(0.85)
    assert (answer.language, answer.request_id) == ("en-US", "fast-req-1")


async def test_no_language_uses_fast_transcription_language_identification(speech: Speech) -> None:
    mp3 = speech.file("mp3_16k")
    async with fake_azure() as fake:
        request = TranscribeRequest(audio=mp3, audio_format=AudioFormat(E.MP3, C.MP3))
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    upload = fake.uploads[-1]
    assert upload["audio"] == (mp3, "audio.mp3")
    assert "locales" not in upload["definition"]
    assert answer.words == []  # not asked for
    assert answer.language == "en-US"  # what Azure identified
    assert answer.transcript


async def test_audio_over_60_seconds_uses_fast_transcription() -> None:
    t = np.arange(61 * 16000) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes()
    async with fake_azure() as fake:
        request = TranscribeRequest(audio=pcm, audio_format=PCM_16K, language="en-US", word_timestamps=True)
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=10)
        assert fake.requests[-1].path == "/speechtotext/transcriptions:transcribe"
        data, filename = fake.uploads[-1]["audio"]
        assert filename == "audio.wav"
        assert audio.probe(data, C.WAV).duration == pytest.approx(61.0)
        assert answer.duration == pytest.approx(61.0)
        assert len(answer.words) == 8
        request.model = "custom-endpoint"
        with pytest.raises(InvalidRequest, match="model"):
            await stt().transcribe(SECRET, opts(fake), request, timeout=10)


async def test_requests_azure_cannot_take_are_refused_naming_the_field() -> None:
    fmt = AudioFormat(E.MP3, C.MP3)
    with pytest.raises(InvalidRequest, match="audio_url"):
        await stt().transcribe(
            SECRET,
            {"region": "eastus"},
            TranscribeRequest(b"", fmt, audio_url="https://x.test/a.mp3"),
            timeout=1,
        )
    with pytest.raises(InvalidRequest, match=r"provider_options\.beam"):
        await stt().transcribe(
            SECRET,
            {"region": "eastus"},
            TranscribeRequest(b"x", fmt, provider_options={"beam": 5}),
            timeout=1,
        )


# --- STREAM_STT --------------------------------------------------------------------


async def collect(
    fake: FakeAzureSpeech,
    request: StreamTranscribeRequest,
    data: bytes,
    piece: int = 3200,
    timeout: float = 5,
) -> list[StreamTranscribeEvent]:
    stream = stream_stt().stream_transcribe(
        SECRET, opts(fake), request, chunks_of(data, piece), timeout=timeout
    )
    return [e async for e in stream]


async def test_stream_interim_then_final_with_endpointing_events(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_azure() as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K, language="en-US", word_timestamps=True)
        events = await collect(fake, request, pcm)
    handshake = fake.requests[-1]
    assert handshake.headers["Ocp-Apim-Subscription-Key"] == KEY
    assert len(handshake.headers["X-ConnectionId"]) == 32
    session = fake.ws_sessions[-1]
    assert session.query == {
        "language": "en-US",
        "format": "detailed",
        "profanity": "raw",
        "wordLevelTimestamps": "true",
    }
    config = session.messages[0]
    assert config.kind == "text"
    assert config.headers["Path"] == "speech.config"
    assert config.headers["Content-Type"] == "application/json"
    assert config.headers["X-Timestamp"].endswith("Z")
    assert config.body["context"]["audio"]["source"]["samplerate"] == 16000
    audio_messages = [m for m in session.messages if m.kind == "audio"]
    assert audio_messages[0].headers["Content-Type"] == "audio/x-wav"
    assert audio_messages[0].payload[:4] == b"RIFF"
    assert {m.headers["X-RequestId"] for m in session.messages} == {config.headers["X-RequestId"]}
    assert audio_messages[-1].payload == b""  # the end of the audio
    assert sum(len(m.payload) for m in audio_messages[1:]) == len(pcm)
    assert max(len(m.payload) for m in audio_messages) <= 6400

    assert isinstance(events[0], SpeechStarted)
    assert isinstance(events[-1], StreamTranscribeEnd)
    assert sum(isinstance(e, StreamTranscribeEnd) for e in events) == 1
    assert events[-1].duration == pytest.approx(len(pcm) / 32000, abs=0.01)
    assert events[-1].request_id == config.headers["X-RequestId"]
    assert isinstance(events[-2], UtteranceEnd)
    assert events[-2].at == pytest.approx(len(pcm) / 32000, abs=0.03)
    transcripts = [e for e in events if isinstance(e, TranscriptEvent)]
    finals = [t for t in transcripts if t.is_final]
    assert finals
    assert not transcripts[0].is_final
    assert transcripts[-1].is_final
    # every final is preceded by its interims, which grow word by word
    run: list[TranscriptEvent] = []
    for t in transcripts:
        if t.is_final:
            assert run
            assert run[-1].transcript == " ".join(w.text for w in t.words)
            assert t.transcript == run[-1].transcript.capitalize() + "."
            run = []
        else:
            assert not run or t.transcript.startswith(run[-1].transcript)
            run.append(t)
    spoken = " ".join(" ".join(w.text for w in f.words) for f in finals).split()
    assert spoken == [WORDS[i % len(WORDS)] for i in range(len(spoken))]
    ends = [f.end for f in finals]
    assert all(e is not None for e in ends)
    assert ends == sorted(ends)  # type: ignore[type-var]
    assert all(f.confidence == pytest.approx(0.91) for f in finals)


async def test_stream_endpointing_ms_is_the_segmentation_silence(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_azure() as fake:
        short = await collect(
            fake, StreamTranscribeRequest(PCM_16K, language="en-US", endpointing_ms=100), pcm
        )
        long = await collect(
            fake, StreamTranscribeRequest(PCM_16K, language="en-US", endpointing_ms=3000), pcm
        )
    assert fake.ws_sessions[0].query["segmentationSilenceTimeoutMs"] == "100"
    assert fake.ws_sessions[1].query["segmentationSilenceTimeoutMs"] == "3000"
    finals_short = [e for e in short if isinstance(e, TranscriptEvent) and e.is_final]
    finals_long = [e for e in long if isinstance(e, TranscriptEvent) and e.is_final]
    assert len(finals_long) == 1
    assert len(finals_short) > 1


async def test_stream_phone_audio_is_converted_and_keywords_are_the_phrase_list(speech: Speech) -> None:
    mulaw = speech.file("raw_mulaw_8k")
    async with fake_azure() as fake:
        request = StreamTranscribeRequest(
            audio_format=AudioFormat(E.MULAW, C.RAW, 8000),
            language="en-US",
            keywords=["Contoso", "hub"],
            interim_results=False,
            model="custom-endpoint-id",
        )
        events = await collect(fake, request, mulaw, piece=160)
    session = fake.ws_sessions[-1]
    assert session.query["cid"] == "custom-endpoint-id"
    context = session.messages[1]
    assert context.headers["Path"] == "speech.context"
    assert context.body == {
        "dgi": {"Groups": [{"Type": "Generic", "Items": [{"Text": "Contoso"}, {"Text": "hub"}]}]}
    }
    sent_pcm = sum(len(m.payload) for m in session.messages if m.kind == "audio") - 44
    assert sent_pcm / 32000 == pytest.approx(len(mulaw) / 8000, abs=0.02)
    transcripts = [e for e in events if isinstance(e, TranscriptEvent)]
    assert transcripts
    assert all(t.is_final for t in transcripts)  # interim results were not asked for
    assert isinstance(events[-1], StreamTranscribeEnd)


async def test_stream_refuses_what_the_realtime_endpoint_cannot_do_before_connecting() -> None:
    async with fake_azure() as fake:
        cases = [
            (StreamTranscribeRequest(PCM_16K), "language"),
            (StreamTranscribeRequest(PCM_16K, language="en-US", diarize=True), "diarize"),
            (StreamTranscribeRequest(PCM_16K, language="en-US", endpointing_ms=20), "endpointing_ms"),
            (StreamTranscribeRequest(AudioFormat(E.OPUS, C.WEBM), language="en-US"), "encoding"),
        ]
        for request, field in cases:
            with pytest.raises(InvalidRequest, match=field):
                async for _ in stream_stt().stream_transcribe(
                    SECRET, opts(fake), request, chunks_of(b"\0" * 640, 320), timeout=5
                ):
                    pass
        assert fake.requests == []


async def test_closing_the_stream_closes_the_websocket_at_once(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_azure() as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K, language="en-US")

        async def endless() -> AsyncIterator[bytes]:
            while True:
                for at in range(0, len(pcm), 3200):
                    yield pcm[at : at + 3200]
                    await asyncio.sleep(0.005)

        stream = stream_stt().stream_transcribe(SECRET, opts(fake), request, endless(), timeout=5)
        first = await anext(stream)
        assert isinstance(first, SpeechStarted)
        closed = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(200):
            if fake.ws_sessions[-1].closed_at is not None:
                break
            await asyncio.sleep(0.002)
    gone = fake.ws_sessions[-1].closed_at
    assert gone is not None
    assert gone - closed < 0.1


async def test_cancelling_a_stream_consumer_closes_the_websocket(speech: Speech) -> None:
    async with fake_azure(stream_hang=True) as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K, language="en-US")

        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield b"\0" * 3200
                await asyncio.sleep(0.01)

        stream = stream_stt().stream_transcribe(SECRET, opts(fake), request, endless(), timeout=5)
        consumer = asyncio.ensure_future(anext(stream))
        for _ in range(200):
            if fake.ws_sessions and len(fake.ws_sessions[-1].messages) > 3:
                break
            await asyncio.sleep(0.01)
        consumer.cancel()
        closed = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(200):
            if fake.ws_sessions[-1].closed_at is not None:
                break
            await asyncio.sleep(0.002)
    gone = fake.ws_sessions[-1].closed_at
    assert gone is not None
    assert gone - closed < 0.1


@pytest.mark.parametrize(
    ("close_with", "kind"),
    [
        ((1007, "Invalid audio format"), InvalidRequest),
        ((1008, "Authentication failed"), AuthenticationFailed),
        ((1008, "Quota exceeded"), RateLimited),
        ((1008, "Policy violation"), PermissionDenied),
        ((1011, "Internal server error"), ProviderUnavailable),
    ],
)
async def test_websocket_close_codes_are_classified(
    close_with: tuple[int, str], kind: type[CallerError]
) -> None:
    async with fake_azure(close_with=close_with) as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K, language="en-US")
        with pytest.raises(kind) as raised:
            await collect(fake, request, b"\0" * 32000)
    assert str(close_with[0]) in str(raised.value)
    assert close_with[1] in str(raised.value)
    assert KEY not in str(raised.value)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, AuthenticationFailed), (403, PermissionDenied), (429, RateLimited), (503, ProviderUnavailable)],
)
async def test_websocket_handshake_refusals_are_classified(status: int, kind: type[CallerError]) -> None:
    async with fake_azure(force_status=status, retry_after="7") as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K, language="en-US")
        with pytest.raises(kind) as raised:
            await collect(fake, request, b"\0" * 3200)
    assert raised.value.provider_status == status
    assert raised.value.retry_after == 7
    assert KEY not in str(raised.value)


async def test_stream_bad_key_and_silent_service() -> None:
    wrong = "wrong-azure-key-which-must-never-leak-0000"
    async with fake_azure() as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K, language="en-US")
        with pytest.raises(AuthenticationFailed) as raised:
            async for _ in stream_stt().stream_transcribe(
                PlainSecret(api_key=wrong), opts(fake), request, chunks_of(b"\0" * 3200, 3200), timeout=5
            ):
                pass
    assert wrong not in str(raised.value)
    async with fake_azure(stream_hang=True) as fake:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await collect(fake, request, b"\0" * 6400, timeout=0.5)
    assert time.monotonic() - started < 2


# --- TTS ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "output_format"),
    [
        (AudioFormat(E.PCM_S16LE, C.WAV, 8000), "riff-8khz-16bit-mono-pcm"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 16000), "riff-16khz-16bit-mono-pcm"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 24000), "riff-24khz-16bit-mono-pcm"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 48000), "riff-48khz-16bit-mono-pcm"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 16000), "raw-16khz-16bit-mono-pcm"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 44100), "raw-44100hz-16bit-mono-pcm"),
        (AudioFormat(E.MULAW, C.RAW, 8000), "raw-8khz-8bit-mono-mulaw"),
        (AudioFormat(E.MULAW, C.WAV, 8000), "riff-8khz-8bit-mono-mulaw"),
        (AudioFormat(E.ALAW, C.RAW, 8000), "raw-8khz-8bit-mono-alaw"),
        (AudioFormat(E.MP3, C.MP3, 24000), "audio-24khz-48kbitrate-mono-mp3"),
        (AudioFormat(E.MP3, C.RAW, 16000), "audio-16khz-128kbitrate-mono-mp3"),
        (AudioFormat(E.OPUS, C.OGG, 48000), "ogg-48khz-16bit-mono-opus"),
        (AudioFormat(E.OPUS, C.OGG, 24000), "ogg-24khz-16bit-mono-opus"),
        # not written by Azure: made from raw PCM 24 / 48 kHz
        (AudioFormat(E.PCM_S16LE, C.RAW, 32000), "raw-48khz-16bit-mono-pcm"),
        (AudioFormat(E.FLAC, C.RAW, 16000), "raw-24khz-16bit-mono-pcm"),
        (AudioFormat(E.MP3, C.MP3, 44100), "raw-48khz-16bit-mono-pcm"),
        (AudioFormat(E.OPUS, C.OGG, 12000), "raw-24khz-16bit-mono-pcm"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 24000, channels=2), "raw-24khz-16bit-mono-pcm"),
    ],
)
async def test_synthesis_answers_exactly_the_asked_format(asked: AudioFormat, output_format: str) -> None:
    async with fake_azure() as fake:
        request = SynthesizeRequest(text=TEXT, voice="en-US-JennyNeural", output_format=asked, speed=1.0)
        answer = await tts().synthesize(SECRET, opts(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/tts/cognitiveservices/v1")
    assert sent.headers["X-Microsoft-OutputFormat"] == output_format
    assert sent.headers["Content-Type"] == "application/ssml+xml"
    assert sent.headers["User-Agent"]
    assert answer.audio_format == asked
    info = audio.probe(answer.audio, asked)
    assert info.sample_rate_hz == asked.sample_rate_hz
    assert info.channels == asked.channels
    assert info.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.08)
    assert answer.request_id == "tts-req-1"
    if asked.container is C.WAV or (asked.container is C.RAW and asked.encoding in (E.PCM_S16LE, E.MULAW)):
        assert answer.duration == pytest.approx(info.duration, abs=0.01)


async def test_ssml_is_built_escaped_with_voice_language_and_rate() -> None:
    mp3 = AudioFormat(E.MP3, C.MP3, 24000)
    async with fake_azure() as fake:
        text = "Tom & Jerry <say> 'hi'"
        request = SynthesizeRequest(text=text, voice="en-GB-RyanNeural", output_format=mp3, speed=1.5)
        fast = await tts().synthesize(SECRET, opts(fake), request, timeout=5)
        root = fake.ssml[-1]
        ns = "{http://www.w3.org/2001/10/synthesis}"
        assert root.tag == f"{ns}speak"
        assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-GB"
        voice = root.find(f"{ns}voice")
        assert voice is not None
        assert voice.get("name") == "en-GB-RyanNeural"
        prosody = voice.find(f"{ns}prosody")
        assert prosody is not None
        assert prosody.get("rate") == "+50.00%"
        assert prosody.text == text
        assert audio.probe(fast.audio, mp3).duration == pytest.approx(
            len(text) * SECONDS_PER_CHAR / 1.5, abs=0.08
        )

        ssml = (
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='de-DE'>"
            "<voice name='de-DE-SeraphinaMultilingualNeural'>Hallo</voice></speak>"
        )
        await tts().synthesize(
            SECRET, opts(fake), SynthesizeRequest(ssml, "", mp3, is_ssml=True, language="de-DE"), timeout=5
        )
        assert fake.requests[-1].body == ssml.encode()  # SSML goes as it came

        with pytest.raises(InvalidRequest, match="HTTP 400"):
            await tts().synthesize(
                SECRET, opts(fake), SynthesizeRequest("hi", "xx-XX-NopeNeural", mp3), timeout=5
            )
        count = len(fake.requests)
        for bad, field in (
            (SynthesizeRequest("hi", "en-US-JennyNeural", mp3, speed=3.0), "speed"),
            (SynthesizeRequest("hi", "", mp3), "voice"),
            (
                SynthesizeRequest("hi", "en-US-JennyNeural", mp3, provider_options={"style": "x"}),
                "provider_options",
            ),
            (SynthesizeRequest("hi", "en-US-JennyNeural", AudioFormat(E.AAC, C.MP4, 24000)), "container"),
        ):
            with pytest.raises(InvalidRequest, match=field):
                await tts().synthesize(SECRET, opts(fake), bad, timeout=5)
        assert len(fake.requests) == count  # refused before any call


@pytest.mark.parametrize(
    ("asked", "output_format"),
    [
        (AudioFormat(E.MULAW, C.RAW, 8000), "raw-8khz-8bit-mono-mulaw"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 32000), "raw-48khz-16bit-mono-pcm"),
        (AudioFormat(E.MP3, C.MP3, 48000), "audio-48khz-96kbitrate-mono-mp3"),
        (AudioFormat(E.OPUS, C.OGG, 16000), "ogg-16khz-16bit-mono-opus"),
    ],
)
async def test_streamed_synthesis_chunk_by_chunk(asked: AudioFormat, output_format: str) -> None:
    async with fake_azure(chunk_bytes=1024, chunk_delay=0.002) as fake:
        request = SynthesizeRequest(text=TEXT, voice="en-US-JennyNeural", output_format=asked)
        chunks = [c async for c in stream_tts().stream_synthesize(SECRET, opts(fake), request, timeout=5)]
    assert fake.requests[-1].headers["X-Microsoft-OutputFormat"] == output_format
    assert len(chunks) > 2
    assert chunks[-1].is_last
    assert not any(c.is_last for c in chunks[:-1])
    assert all(c.request_id == "tts-req-1" for c in chunks)
    total = b"".join(c.audio for c in chunks)
    info = audio.probe(total, asked)
    assert info.sample_rate_hz == asked.sample_rate_hz
    assert info.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.08)


async def test_streams_refuse_formats_azure_does_not_stream() -> None:
    for asked in (AudioFormat(E.PCM_S16LE, C.WAV, 24000), AudioFormat(E.FLAC, C.RAW, 16000)):
        request = SynthesizeRequest(text=TEXT, voice="en-US-JennyNeural", output_format=asked)
        with pytest.raises(InvalidRequest, match="output_format"):
            async for _ in stream_tts().stream_synthesize(SECRET, {"region": "eastus"}, request, timeout=1):
                pass


async def test_closing_a_synthesis_stream_closes_the_connection_at_once() -> None:
    async with fake_azure(chunk_bytes=512, chunk_delay=0.02) as fake:
        request = SynthesizeRequest(
            text=TEXT * 5, voice="en-US-JennyNeural", output_format=AudioFormat(E.PCM_S16LE, C.RAW, 24000)
        )
        stream = stream_tts().stream_synthesize(SECRET, opts(fake), request, timeout=5)
        first = await anext(stream)
        assert first.audio
        closed = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        gone = await fake.wait_for_close(fake.requests[-1].peer, timeout=2)
    assert gone - closed < 0.1


# --- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, AuthenticationFailed),
        (403, PermissionDenied),
        (404, NotFound),
        (415, InvalidRequest),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
        (503, ProviderUnavailable),
        (504, ProviderTimeout),
    ],
)
async def test_http_statuses_are_classified(status: int, kind: type[CallerError], speech: Speech) -> None:
    async with fake_azure(force_status=status, retry_after="7") as fake:
        synth = SynthesizeRequest(TEXT, "en-US-JennyNeural", AudioFormat(E.MP3, C.MP3, 24000))
        short = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV), language="en-US")
        fast = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        errors: list[CallerError] = []
        for call in (
            tts().synthesize(SECRET, opts(fake), synth, timeout=5),
            stt().transcribe(SECRET, opts(fake), short, timeout=5),
            stt().transcribe(SECRET, opts(fake), fast, timeout=5),
            voices().list_voices(SECRET, opts(fake), language=None, timeout=5),
        ):
            with pytest.raises(kind) as raised:
                await call
            errors.append(raised.value)
        with pytest.raises(kind):
            async for _ in stream_tts().stream_synthesize(SECRET, opts(fake), synth, timeout=5):
                pass
    for error in errors:
        assert error.provider_status == status
        assert f"forced {status}" in str(error)
        assert KEY not in str(error)
        assert error.retry_after == 7


async def test_a_rejected_key_never_appears_in_the_error(speech: Speech) -> None:
    wrong = "wrong-azure-key-which-must-never-leak-0000"
    async with fake_azure() as fake:
        request = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV), language="en-US")
        with pytest.raises(AuthenticationFailed) as raised:
            await stt().transcribe(PlainSecret(api_key=wrong), opts(fake), request, timeout=5)
    assert "Access denied due to invalid subscription key" in str(raised.value)
    assert wrong not in str(raised.value)
    assert wrong[6:20] not in str(raised.value)


async def test_slow_and_unreachable_providers() -> None:
    async with fake_azure(delay=5) as fake:
        request = SynthesizeRequest(TEXT, "en-US-JennyNeural", AudioFormat(E.MP3, C.MP3, 24000))
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await tts().synthesize(SECRET, opts(fake), request, timeout=0.3)
        with pytest.raises(ProviderTimeout):
            await voices().list_voices(SECRET, opts(fake), language=None, timeout=0.3)
        assert time.monotonic() - started < 2
    dead = {"region": "eastus", "endpoint": "http://127.0.0.1:9"}
    with pytest.raises(ProviderUnavailable):
        await voices().list_voices(SECRET, dead, language=None, timeout=2)
    with pytest.raises(ProviderUnavailable):
        async for _ in stream_stt().stream_transcribe(
            SECRET,
            dead,
            StreamTranscribeRequest(PCM_16K, language="en-US"),
            chunks_of(b"\0" * 640, 640),
            timeout=2,
        ):
            pass
    await pools.close_all()


# --- voices and verify -------------------------------------------------------------


async def test_voices_by_language() -> None:
    async with fake_azure() as fake:
        every = await voices().list_voices(SECRET, opts(fake), language=None, timeout=5)
        english = await voices().list_voices(SECRET, opts(fake), language="en", timeout=5)
        british = await voices().list_voices(SECRET, opts(fake), language="en-gb", timeout=5)
    assert fake.requests[-1].path == "/tts/cognitiveservices/voices/list"
    assert len(every) == 4
    assert {v.id for v in english} == {
        "en-US-JennyNeural",
        "en-GB-RyanNeural",
        "de-DE-SeraphinaMultilingualNeural",
    }
    assert [v.id for v in british] == ["en-GB-RyanNeural"]
    jenny = next(v for v in every if v.id == "en-US-JennyNeural")
    assert (jenny.name, jenny.languages, jenny.gender, jenny.models) == (
        "Jenny",
        ["en-US"],
        VoiceGender.FEMALE,
        ["Neural"],
    )
    seraphina = next(v for v in every if v.id.startswith("de-DE"))
    assert seraphina.languages == ["de-DE", "en-US", "fr-FR"]


async def test_verify() -> None:
    async with fake_azure() as fake:
        good = await registry.verify("azure_speech", SECRET, opts(fake), timeout=5)
        assert good.valid
        assert good.detail == {"voices": "4"}
        assert fake.requests[-1].path == "/tts/cognitiveservices/voices/list"
        wrong = "wrong-azure-key-which-must-never-leak-0000"
        bad = await registry.verify("azure_speech", PlainSecret(api_key=wrong), opts(fake), timeout=5)
        assert not bad.valid
        assert "invalid subscription key" in bad.reason
        assert wrong not in bad.reason
        fake.force_status = 403
        assert not (await registry.verify("azure_speech", SECRET, opts(fake), timeout=5)).valid
        fake.force_status = 503
        with pytest.raises(ProviderUnavailable):
            await registry.verify("azure_speech", SECRET, opts(fake), timeout=5)
