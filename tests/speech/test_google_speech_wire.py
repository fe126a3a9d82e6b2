"""Google Cloud Speech (STT v2, TTS v1) over real gRPC against the loopback fake, with the
service-account token exchange going to the fake's token endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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
    UtteranceEnd,
    VoiceGender,
)
from tests.fakes.google_speech_server import SECONDS_PER_CHAR, FakeGoogleSpeech
from tests.fakes.secret_fields import PlainSecret
from tests.speech.conftest import Speech

C, E = AudioContainer, AudioEncoding
EMAIL = "speech-caller@fake-project.iam.gserviceaccount.com"
PROJECT = "fake-project"
TEXT = "Hello from the hub, this is a test."


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def key_file(private_key: rsa.RSAPrivateKey, token_uri: str) -> tuple[PlainSecret, str]:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    document = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": EMAIL,
        "token_uri": token_uri,
    }
    return PlainSecret(service_account_json=json.dumps(document)), pem


def fake_for(private_key: rsa.RSAPrivateKey, **knobs: object) -> FakeGoogleSpeech:
    return FakeGoogleSpeech(service_accounts={EMAIL: private_key.public_key()}, **knobs)  # type: ignore[arg-type]


def options(fake: FakeGoogleSpeech, **extra: str) -> dict[str, str]:
    return {"endpoint": fake.endpoint, "location": "global", **extra}


def stt() -> Transcriber:
    caller = registry.capability("google_speech", Capability.STT)
    assert isinstance(caller, Transcriber)
    return caller


def stream_stt() -> StreamTranscriber:
    caller = registry.capability("google_speech", Capability.STREAM_STT)
    assert isinstance(caller, StreamTranscriber)
    return caller


def tts() -> Synthesizer:
    caller = registry.capability("google_speech", Capability.TTS)
    assert isinstance(caller, Synthesizer)
    return caller


def voices() -> VoiceLister:
    caller = registry.capability("google_speech", Capability.VOICES)
    assert isinstance(caller, VoiceLister)
    return caller


async def test_transcribe_wav_with_word_timings_keywords_and_token(
    private_key: rsa.RSAPrivateKey, speech: Speech
) -> None:
    wav = speech.file("wav_16k")
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = TranscribeRequest(
            audio=wav,
            audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
            language="en-US",
            word_timestamps=True,
            diarize=True,
            keywords=["hub"],
        )
        answer = await stt().transcribe(secret, options(fake), request, timeout=5)
    sent = fake.recognize_requests[-1]
    assert sent.recognizer == f"projects/{PROJECT}/locations/global/recognizers/_"
    assert sent.content == wav
    assert "auto_decoding_config" in sent.config
    assert (sent.config.model, list(sent.config.language_codes)) == ("long", ["en-US"])
    features = sent.config.features
    assert features.enable_word_time_offsets
    assert features.enable_automatic_punctuation
    assert features.diarization_config.max_speaker_count >= 1
    assert sent.config.adaptation.phrase_sets[0].inline_phrase_set.phrases[0].value == "hub"
    assert fake.metadata[-1]["authorization"].startswith("Bearer ya29.fake-")
    assert fake.assertions[-1]["iss"] == EMAIL
    assert fake.assertions[-1]["aud"] == fake.token_uri
    assert answer.transcript == "hello from the hub"
    assert answer.request_id == "req-fake-1"
    assert [w.text for w in answer.words] == ["hello", "from", "the", "hub"]
    starts = [w.start for w in answer.words]
    assert starts == sorted(starts)
    assert answer.words[-1].end == pytest.approx(audio.probe(wav, C.WAV).duration, 0.01)
    assert answer.language == "en-us"
    assert answer.confidence == pytest.approx(0.93)


async def test_transcribe_raw_mulaw_uses_explicit_decoding(
    private_key: rsa.RSAPrivateKey, speech: Speech
) -> None:
    raw = speech.file("raw_mulaw_8k")
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = TranscribeRequest(
            audio=raw, audio_format=AudioFormat(E.MULAW, C.RAW, 8000), model="telephony"
        )
        answer = await stt().transcribe(secret, options(fake), request, timeout=5)
    explicit = fake.recognize_requests[-1].config.explicit_decoding_config
    assert (explicit.encoding.name, explicit.sample_rate_hertz, explicit.audio_channel_count) == (
        "MULAW",
        8000,
        1,
    )
    assert fake.recognize_requests[-1].config.model == "telephony"
    assert list(fake.recognize_requests[-1].config.language_codes) == ["auto"]
    assert answer.duration
    assert answer.duration > 1.0


async def test_audio_urls_gs_only(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        fmt = AudioFormat(E.PCM_S16LE, C.WAV)
        with pytest.raises(InvalidRequest, match="audio_url"):
            await stt().transcribe(
                secret,
                options(fake),
                TranscribeRequest(b"", fmt, audio_url="https://x.test/a.wav"),
                timeout=5,
            )
        answer = await stt().transcribe(
            secret, options(fake), TranscribeRequest(b"", fmt, audio_url="gs://bucket/a.wav"), timeout=5
        )
    assert fake.recognize_requests[-1].uri == "gs://bucket/a.wav"
    assert answer.transcript


async def audio_stream(data: bytes, piece: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for at in range(0, len(data), piece):
        yield data[at : at + piece]
        if pause:
            await asyncio.sleep(pause)


async def test_stream_interim_then_final_then_utterance_end(
    private_key: rsa.RSAPrivateKey, speech: Speech
) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = StreamTranscribeRequest(
            audio_format=AudioFormat(E.PCM_S16LE, C.RAW, 16000), language="en-US", word_timestamps=True
        )
        events = [
            e
            async for e in stream_stt().stream_transcribe(
                secret, options(fake), request, audio_stream(pcm, 40000), timeout=5
            )
        ]
    first = fake.stream_requests[0]
    assert first.recognizer.endswith("/recognizers/_")
    assert not first.audio
    features = first.streaming_config.streaming_features
    assert features.interim_results
    assert features.enable_voice_activity_events
    chunks = [len(r.audio) for r in fake.stream_requests[1:]]
    assert max(chunks) <= 15 * 1024
    assert sum(chunks) == len(pcm)
    assert isinstance(events[0], SpeechStarted)
    transcripts = [e for e in events if isinstance(e, TranscriptEvent)]
    assert transcripts
    assert not transcripts[0].is_final
    assert transcripts[-1].is_final
    assert all(not t.is_final for t in transcripts[:-1])
    assert transcripts[-1].transcript == "hello from the hub"
    assert len(transcripts[-1].words) == 4
    assert isinstance(events[-2], UtteranceEnd)
    assert isinstance(events[-1], StreamTranscribeEnd)
    assert events[-1].duration == pytest.approx(len(pcm) / 32000, 0.01)


async def test_closing_the_stream_cancels_the_call(private_key: rsa.RSAPrivateKey, speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_for(private_key, stream_hang=True, interim_every=1 << 30) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = StreamTranscribeRequest(audio_format=AudioFormat(E.PCM_S16LE, C.RAW, 16000))

        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield pcm[:3200]
                await asyncio.sleep(0.01)

        stream = stream_stt().stream_transcribe(secret, options(fake), request, endless(), timeout=5)
        consumer = asyncio.ensure_future(stream.__anext__())
        for _ in range(200):
            if len(fake.stream_requests) > 3:
                break
            await asyncio.sleep(0.01)
        consumer.cancel()
        closed = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(50):
            if fake.cancelled_at:
                break
            await asyncio.sleep(0.005)
    assert fake.cancelled_at
    assert fake.cancelled_at[0] - closed < 0.1


@pytest.mark.parametrize(
    ("output", "asked"),
    [
        (AudioFormat(E.PCM_S16LE, C.WAV, 24000), "LINEAR16"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 16000), "LINEAR16"),
        (AudioFormat(E.MP3, C.MP3, 24000), "MP3"),
        (AudioFormat(E.OPUS, C.OGG, 48000), "OGG_OPUS"),
        (AudioFormat(E.MULAW, C.RAW, 8000), "LINEAR16"),
        (AudioFormat(E.ALAW, C.WAV, 8000), "LINEAR16"),
        (AudioFormat(E.FLAC, C.RAW, 16000), "LINEAR16"),
    ],
)
async def test_synthesize_each_format(
    private_key: rsa.RSAPrivateKey, output: AudioFormat, asked: str
) -> None:
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = SynthesizeRequest(text=TEXT, voice="en-US-Neural2-C", output_format=output, speed=1.0)
        answer = await tts().synthesize(secret, options(fake), request, timeout=5)
    sent = fake.synthesize_requests[-1]
    assert (sent.input.text, sent.voice.name, sent.voice.language_code) == (TEXT, "en-US-Neural2-C", "en-US")
    assert sent.audio_config.audio_encoding.name == asked
    assert sent.audio_config.sample_rate_hertz == output.sample_rate_hz
    info = audio.probe(answer.audio, output)
    assert info.sample_rate_hz == output.sample_rate_hz
    assert info.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.1)
    if output.container is C.RAW and output.encoding is not E.FLAC:
        assert not answer.audio.startswith(b"RIFF")  # the WAV header of LINEAR16 is gone


async def test_ssml_and_unknown_voice(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        fmt = AudioFormat(E.MP3, C.MP3, 24000)
        ssml = "<speak>Hello <break time='200ms'/> there</speak>"
        await tts().synthesize(
            secret,
            options(fake),
            SynthesizeRequest(ssml, "en-GB-Chirp3-HD-Aoede", fmt, is_ssml=True),
            timeout=5,
        )
        assert fake.synthesize_requests[-1].input.ssml == ssml
        with pytest.raises(InvalidRequest, match="does not exist"):
            await tts().synthesize(
                secret, options(fake), SynthesizeRequest("hi", "xx-XX-Nope-A", fmt), timeout=5
            )


async def test_list_voices_by_language(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        every = await voices().list_voices(secret, options(fake), language=None, timeout=5)
        english = await voices().list_voices(secret, options(fake), language="en", timeout=5)
    assert len(every) == 4
    assert {v.id for v in english} == {
        "en-US-Neural2-C",
        "en-US-Wavenet-D",
        "en-GB-Chirp3-HD-Aoede",
    }
    neural = next(v for v in every if v.id == "en-US-Neural2-C")
    assert (neural.languages, neural.gender, neural.models) == (["en-US"], VoiceGender.FEMALE, ["Neural2"])
    assert next(v for v in every if v.id == "en-US-Wavenet-D").models == ["WaveNet"]


async def test_verify(private_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with fake_for(private_key) as fake:
        good, _ = key_file(private_key, fake.token_uri)
        result = await registry.verify("google_speech", good, options(fake), timeout=5)
        assert result.valid
        assert result.detail == {"voices": "4"}
        bad, pem = key_file(other, fake.token_uri)  # a key Google does not know
        refused = await registry.verify("google_speech", bad, options(fake), timeout=5)
        assert not refused.valid
        assert pem not in refused.reason
        fake.force = (grpc.StatusCode.PERMISSION_DENIED, "Cloud Text-to-Speech API has not been used")
        denied = await registry.verify("google_speech", good, options(fake), timeout=5)
        assert not denied.valid
        assert "PERMISSION_DENIED" in denied.reason
        fake.force = (grpc.StatusCode.UNAVAILABLE, "try later")
        with pytest.raises(ProviderUnavailable):
            await registry.verify("google_speech", good, options(fake), timeout=5)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, AuthenticationFailed),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimited),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequest),
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.UNAVAILABLE, ProviderUnavailable),
        (grpc.StatusCode.INTERNAL, ProviderUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ProviderTimeout),
    ],
)
async def test_status_codes_map_to_caller_errors(
    private_key: rsa.RSAPrivateKey, speech: Speech, code: grpc.StatusCode, kind: type[CallerError]
) -> None:
    async with fake_for(private_key, force=(code, f"forced {code.name}"), retry_delay=7.0) as fake:
        secret, pem = key_file(private_key, fake.token_uri)
        fmt = AudioFormat(E.PCM_S16LE, C.WAV)
        with pytest.raises(kind) as stt_error:
            await stt().transcribe(
                secret, options(fake), TranscribeRequest(speech.file("wav_16k"), fmt), timeout=5
            )
        request = SynthesizeRequest(TEXT, "en-US-Neural2-C", AudioFormat(E.MP3, C.MP3, 24000))
        with pytest.raises(kind) as tts_error:
            await tts().synthesize(secret, options(fake), request, timeout=5)
        stream_request = StreamTranscribeRequest(audio_format=AudioFormat(E.PCM_S16LE, C.RAW, 16000))
        with pytest.raises(kind) as stream_error:
            async for _ in stream_stt().stream_transcribe(
                secret, options(fake), stream_request, audio_stream(b"\0" * 6400, 3200), timeout=5
            ):
                pass
    for error in (stt_error.value, tts_error.value, stream_error.value):
        assert code.name in str(error)
        assert pem not in str(error)
        assert "PRIVATE KEY" not in str(error)
        if kind is RateLimited:
            assert error.retry_after == pytest.approx(7.0)


async def test_timeouts(private_key: rsa.RSAPrivateKey, speech: Speech) -> None:
    async with fake_for(private_key, delay=2.0) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        fmt = AudioFormat(E.PCM_S16LE, C.WAV)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await stt().transcribe(
                secret, options(fake), TranscribeRequest(speech.file("wav_16k"), fmt), timeout=0.5
            )
        with pytest.raises(ProviderTimeout):
            await voices().list_voices(secret, options(fake), language=None, timeout=0.5)
    assert time.monotonic() - started < 3.0
    async with fake_for(private_key, stream_hang=True) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        request = StreamTranscribeRequest(audio_format=AudioFormat(E.PCM_S16LE, C.RAW, 16000))
        with pytest.raises(ProviderTimeout):
            async for _ in stream_stt().stream_transcribe(
                secret, options(fake), request, audio_stream(b"\0" * 6400, 3200), timeout=0.5
            ):
                pass


async def test_unreachable_endpoint_is_unavailable(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        secret, _ = key_file(private_key, fake.token_uri)
        dead = {"endpoint": "http://127.0.0.1:9", "location": "global"}
        with pytest.raises((ProviderUnavailable, ProviderTimeout)):
            await voices().list_voices(secret, dead, language=None, timeout=2)
