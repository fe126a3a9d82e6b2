"""Sarvam AI speech (Saarika/Saaras STT, Bulbul TTS) over its real wire: aiohttp REST and
websockets against the loopback FakeSarvam, with real speech made by espeak-ng/sox."""

from __future__ import annotations

import asyncio
import base64
import io
import json
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
    Verifier,
    VoiceLister,
)
from callers.sarvam import transcribe as sarvam_transcribe
from callers.types import (
    FLUSH,
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SpeechStarted,
    StreamTranscribeEnd,
    StreamTranscribeRequest,
    SynthesizeRequest,
    TextInput,
    TranscribeRequest,
    TranscriptEvent,
    UtteranceEnd,
    VoiceGender,
)
from tests.fakes.sarvam_server import SECONDS_PER_CHAR, FakeSarvam
from tests.fakes.secret_fields import PlainSecret
from tests.speech.conftest import Speech

pytestmark = pytest.mark.timeout(20)

C, E = AudioContainer, AudioEncoding
KEY = "sk-sarvam-good"
SECRET = PlainSecret(api_key=KEY)
BAD_KEY = "sk-sarvam-revoked-0123456789"
TEXT = "Hello from the hub, this is a test."
NOWHERE = {"base_url": "http://127.0.0.1:9"}  # nothing listens: a call would fail loudly


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


@pytest.fixture(autouse=True)
def _short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake answers at once; the caller's default waits 1 s for a slower Sarvam.
    monkeypatch.setattr(sarvam_transcribe, "SETTLE_SECONDS", 0.3)


def cap(capability: Capability) -> object:
    return registry.capability("sarvam", capability)


def stt() -> Transcriber:
    caller = cap(Capability.STT)
    assert isinstance(caller, Transcriber)
    return caller


def stream_stt() -> StreamTranscriber:
    caller = cap(Capability.STREAM_STT)
    assert isinstance(caller, StreamTranscriber)
    return caller


def tts() -> Synthesizer:
    caller = cap(Capability.TTS)
    assert isinstance(caller, Synthesizer)
    return caller


def stream_tts() -> StreamSynthesizer:
    caller = cap(Capability.STREAM_TTS)
    assert isinstance(caller, StreamSynthesizer)
    return caller


def input_tts() -> StreamTextSynthesizer:
    caller = cap(Capability.STREAM_TTS_INPUT)
    assert isinstance(caller, StreamTextSynthesizer)
    return caller


def duration_of(data: bytes) -> tuple[float, int]:
    with av.open(io.BytesIO(data)) as container:
        samples, rate = 0, 0
        for frame in container.decode(container.streams.audio[0]):
            samples += frame.samples
            rate = frame.sample_rate
    return samples / rate, rate


# --- speech to text (REST) ------------------------------------------------------


async def test_transcribe_a_16k_wav_as_it_is_with_chunk_timings(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    async with FakeSarvam() as fake:
        request = TranscribeRequest(
            audio=wav, audio_format=AudioFormat(E.PCM_S16LE, C.WAV), language="en-IN", word_timestamps=True
        )
        answer = await stt().transcribe(SECRET, fake.options, request, timeout=5)
    sent = fake.stt_uploads[-1]
    assert fake.requests[-1]["path"] == "/speech-to-text"
    assert fake.requests[-1]["headers"]["api-subscription-key"] == KEY
    assert sent["file"] == wav
    assert (sent["filename"], sent["content_type"]) == ("audio.wav", "audio/wav")
    assert (sent["model"], sent["language_code"], sent["with_timestamps"]) == (
        "saarika:v2.5",
        "en-IN",
        "true",
    )
    assert answer.transcript == fake.transcript
    assert [w.text for w in answer.words] == [
        "The quick brown fox jumps over the lazy dog.",
        "Speech to text, one two three.",
    ]
    assert answer.words[0].start == 0.0
    assert answer.words[0].end == answer.words[1].start
    assert answer.words[-1].end == pytest.approx(audio.probe(wav, C.WAV).duration, abs=0.01)
    assert answer.duration == answer.words[-1].end
    assert answer.language == "en-IN"
    assert answer.request_id
    assert answer.request_id.startswith("20260101_")


@pytest.mark.parametrize(
    ("key", "declared"),
    [
        ("raw_mulaw_8k", AudioFormat(E.MULAW, C.RAW, 8000)),
        ("raw_pcm_16k", AudioFormat(E.PCM_S16LE, C.RAW, 16000)),
        ("wav_44k", AudioFormat(E.PCM_S16LE, C.WAV)),
        ("wav_alaw_8k", AudioFormat(E.ALAW, C.WAV)),
    ],
)
async def test_phone_audio_and_other_rates_go_as_16k_wav(
    speech: Speech, key: str, declared: AudioFormat
) -> None:
    data = speech.file(key)
    async with FakeSarvam() as fake:
        answer = await stt().transcribe(SECRET, fake.options, TranscribeRequest(data, declared), timeout=5)
    sent = fake.stt_uploads[-1]
    assert sent["filename"] == "audio.wav"
    assert sent["decoded_rate"] == 16000
    info = audio.probe(sent["file"], C.WAV)
    assert (info.sample_rate_hz, info.channels) == (16000, 1)
    assert info.duration == pytest.approx(audio.probe(data, declared).duration, abs=0.02)
    assert sent["language_code"] == "unknown"  # no language: Sarvam detects it
    assert sent["with_timestamps"] == "false"
    assert (answer.language, answer.confidence, answer.words) == ("en-IN", 0.91, [])


@pytest.mark.parametrize(
    ("key", "declared", "content_type"),
    [
        ("mp3_16k", AudioFormat(E.MP3, C.MP3), "audio/mpeg"),
        ("flac_16k", AudioFormat(E.FLAC, C.RAW), "audio/flac"),
    ],
)
async def test_compressed_files_go_as_they_are(
    speech: Speech, key: str, declared: AudioFormat, content_type: str
) -> None:
    data = speech.file(key)
    async with FakeSarvam() as fake:
        request = TranscribeRequest(data, declared, language="hi", model="saaras:v3")
        await stt().transcribe(SECRET, fake.options, request, timeout=5)
    sent = fake.stt_uploads[-1]
    assert (sent["file"], sent["content_type"]) == (data, content_type)
    assert (sent["model"], sent["language_code"]) == ("saaras:v3", "hi-IN")


async def test_keywords_are_keyterms_on_saaras_v4_only(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    async with FakeSarvam() as fake:
        request = TranscribeRequest(
            wav,
            AudioFormat(E.PCM_S16LE, C.WAV),
            model="saaras:v4",
            keywords=["Sarvam", "New Delhi"],
            provider_options={"mode": "codemix"},
        )
        await stt().transcribe(SECRET, fake.options, request, timeout=5)
        assert json.loads(fake.stt_uploads[-1]["keyterms"]) == ["Sarvam", "New Delhi"]
        assert fake.stt_uploads[-1]["mode"] == "codemix"
        with pytest.raises(InvalidRequest, match=r"keywords: .*saaras:v4.*not saarika:v2\.5"):
            await stt().transcribe(
                SECRET,
                fake.options,
                TranscribeRequest(wav, AudioFormat(E.PCM_S16LE, C.WAV), keywords=["x"]),
                timeout=5,
            )
    assert len(fake.stt_uploads) == 1


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (
            TranscribeRequest(b"x", AudioFormat(E.PCM_S16LE, C.WAV), language="fr-FR"),
            r"'fr-FR'.*hi-IN.*en-IN",
        ),
        (TranscribeRequest(b"x", AudioFormat(E.PCM_S16LE, C.WAV), language="en-US"), r"'en-US'.*supported: "),
        # Assamese is Saaras's, not Saarika v2.5's
        (TranscribeRequest(b"x", AudioFormat(E.PCM_S16LE, C.WAV), language="as-IN"), r"'as-IN'.*saarika"),
        (TranscribeRequest(b"x", AudioFormat(E.PCM_S16LE, C.WAV), diarize=True), "diarize"),
        (
            TranscribeRequest(b"", AudioFormat(E.PCM_S16LE, C.WAV), audio_url="https://x.test/a.wav"),
            "audio_url",
        ),
        (
            TranscribeRequest(b"x", AudioFormat(E.PCM_S16LE, C.WAV), provider_options={"model": "m"}),
            "provider_options.model",
        ),
    ],
)
async def test_what_sarvam_does_not_take_is_refused_before_any_call(
    request_: TranscribeRequest, match: str
) -> None:
    with pytest.raises(InvalidRequest, match=match):
        await stt().transcribe(SECRET, NOWHERE, request_, timeout=1)


async def test_assamese_is_taken_with_saaras(speech: Speech) -> None:
    async with FakeSarvam() as fake:
        request = TranscribeRequest(
            speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV), language="as-in", model="saaras:v3"
        )
        answer = await stt().transcribe(SECRET, fake.options, request, timeout=5)
    assert fake.stt_uploads[-1]["language_code"] == "as-IN"
    assert answer.language == "as-IN"


async def test_a_file_sarvam_cannot_decode_is_its_400() -> None:
    async with FakeSarvam() as fake:
        request = TranscribeRequest(b"\x00" * 400, AudioFormat(E.MP3, C.MP3))
        with pytest.raises(InvalidRequest, match="Unable to decode") as raised:
            await stt().transcribe(SECRET, fake.options, request, timeout=5)
    assert raised.value.provider_status == 400


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, "authentication_error", AuthenticationFailed),
        (403, "invalid_api_key_error", AuthenticationFailed),
        (403, "forbidden", PermissionDenied),
        (403, "insufficient_quota_error", PermissionDenied),
        (404, "not_found_error", NotFound),
        (400, "invalid_request_error", InvalidRequest),
        (422, "unprocessable_entity_error", InvalidRequest),
        (429, "rate_limit_exceeded_error", RateLimited),
        (500, "internal_server_error", ProviderUnavailable),
        (503, "service_unavailable", ProviderUnavailable),
        (504, "gateway_timeout_error", ProviderTimeout),
    ],
)
async def test_provider_errors_are_classified(status: int, code: str, error: type[CallerError]) -> None:
    async with FakeSarvam() as fake:
        fake.force_status, fake.force_code, fake.retry_after = status, code, "7"
        request = SynthesizeRequest(TEXT, "anushka", AudioFormat(E.PCM_S16LE, C.WAV, 16000), language="en-IN")
        with pytest.raises(error) as raised:
            await tts().synthesize(SECRET, fake.options, request, timeout=5)
    assert type(raised.value) is error
    assert raised.value.provider_status == status
    assert f"forced {status}" in raised.value.message
    if status == 429:
        assert raised.value.retry_after == 7.0


async def test_a_rejected_key_never_appears_in_an_error(speech: Speech) -> None:
    bad = PlainSecret(api_key=BAD_KEY)
    pcm = speech.file("raw_pcm_16k")
    async with FakeSarvam() as fake:
        raised: list[CallerError] = []
        with pytest.raises(AuthenticationFailed) as stt_error:
            await stt().transcribe(
                bad,
                fake.options,
                TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV)),
                timeout=5,
            )
        raised.append(stt_error.value)
        request = SynthesizeRequest(TEXT, "anushka", AudioFormat(E.MP3, C.MP3, 24000))
        with pytest.raises(AuthenticationFailed) as tts_error:
            await tts().synthesize(bad, fake.options, request, timeout=5)
        raised.append(tts_error.value)
        # A refused websocket upgrade: only the status is known there (403).
        stream = stream_stt().stream_transcribe(
            bad,
            fake.options,
            StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000)),
            chunks(pcm, 3200),
            timeout=5,
        )
        with pytest.raises(PermissionDenied) as ws_error:
            async for _ in stream:
                pass
        raised.append(ws_error.value)
        fake.force_status = 500
        with pytest.raises(ProviderUnavailable) as server_error:
            await tts().synthesize(bad, fake.options, request, timeout=5)
        raised.append(server_error.value)
    assert [r["headers"]["api-subscription-key"] for r in fake.requests] == [BAD_KEY] * 4
    for error in raised:
        for text in (str(error), repr(error), error.message, repr(error.__cause__), repr(error.__context__)):
            assert BAD_KEY not in text
        assert error.__cause__ is None
    assert "Invalid API key" in raised[0].message


async def test_a_provider_that_does_not_answer_is_a_timeout() -> None:
    async with FakeSarvam(delay=2.0) as fake:
        request = SynthesizeRequest(TEXT, "anushka", AudioFormat(E.PCM_S16LE, C.WAV, 16000))
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await tts().synthesize(SECRET, fake.options, request, timeout=0.3)
        raw = SynthesizeRequest(TEXT, "anushka", AudioFormat(E.PCM_S16LE, C.RAW, 16000))
        stream = stream_tts().stream_synthesize(SECRET, fake.options, raw, timeout=0.3)
        with pytest.raises(ProviderTimeout):
            await anext(aiter(stream))
    assert time.monotonic() - started < 1.5


async def test_an_unreachable_host_is_unavailable() -> None:
    request = SynthesizeRequest(TEXT, "anushka", AudioFormat(E.PCM_S16LE, C.WAV, 16000))
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1"):
        await tts().synthesize(SECRET, NOWHERE, request, timeout=2)


# --- text to speech (REST) --------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "model", "asked_rate"),
    [
        (AudioFormat(E.PCM_S16LE, C.WAV, 8000), None, 8000),
        (AudioFormat(E.PCM_S16LE, C.WAV, 16000), None, 16000),
        (AudioFormat(E.PCM_S16LE, C.WAV, 24000), None, 24000),
        (AudioFormat(E.PCM_S16LE, C.WAV, 48000), None, 24000),  # bulbul:v2 writes up to 24 kHz
        (AudioFormat(E.PCM_S16LE, C.WAV, 48000), "bulbul:v3", 48000),
        (AudioFormat(E.PCM_S16LE, C.RAW, 16000), None, 16000),
        (AudioFormat(E.PCM_S16LE, C.RAW, 44100), None, 24000),
        (AudioFormat(E.MULAW, C.RAW, 8000), None, 8000),
        (AudioFormat(E.MULAW, C.WAV, 8000), None, 8000),
        (AudioFormat(E.MP3, C.MP3, 24000), None, 24000),
        (AudioFormat(E.MP3, C.MP3, 16000), None, 16000),
        (AudioFormat(E.OPUS, C.OGG, 48000), None, 24000),
        (AudioFormat(E.FLAC, C.RAW, 16000), None, 16000),
    ],
)
async def test_synthesis_answers_exactly_the_asked_format(
    output: AudioFormat, model: str | None, asked_rate: int
) -> None:
    voice = "shubh" if model == "bulbul:v3" else "anushka"
    async with FakeSarvam() as fake:
        request = SynthesizeRequest(TEXT, voice, output, language="en-IN", model=model, speed=1.25)
        answer = await tts().synthesize(SECRET, fake.options, request, timeout=5)
    body = fake.tts_bodies[-1]
    assert body == {
        "text": TEXT,
        "model": model or "bulbul:v2",
        "speech_sample_rate": asked_rate,
        "language_code": "en-IN",
        "speaker": voice,
        "pace": 1.25,
    }
    assert fake.requests[-1]["headers"]["api-subscription-key"] == KEY
    expected = len(TEXT) * SECONDS_PER_CHAR / 1.25
    info = audio.probe(answer.audio, output)
    assert info.sample_rate_hz == output.sample_rate_hz
    assert info.duration == pytest.approx(expected, abs=0.08)
    assert answer.duration == pytest.approx(expected, abs=0.01)
    assert answer.audio_format == output
    assert answer.request_id
    if output.container is C.RAW and output.encoding in (E.PCM_S16LE, E.MULAW):
        assert not answer.audio.startswith(b"RIFF")
    elif output.container is not C.RAW or output.encoding is E.FLAC:
        seconds, rate = duration_of(answer.audio)  # decodes with PyAV, not the package
        assert rate == output.sample_rate_hz
        assert seconds == pytest.approx(expected, abs=0.1)


async def test_the_language_follows_the_script_or_the_request() -> None:
    wav = AudioFormat(E.PCM_S16LE, C.WAV, 16000)
    async with FakeSarvam() as fake:
        await tts().synthesize(SECRET, fake.options, SynthesizeRequest("नमस्ते, आप कैसे हैं?", "", wav), timeout=5)
        await tts().synthesize(SECRET, fake.options, SynthesizeRequest("வணக்கம்", "vidya", wav), timeout=5)
        await tts().synthesize(SECRET, fake.options, SynthesizeRequest(TEXT, "karun", wav), timeout=5)
        await tts().synthesize(
            SECRET, fake.options, SynthesizeRequest(TEXT, "arya", wav, language="or"), timeout=5
        )
    assert [b["language_code"] for b in fake.tts_bodies] == ["hi-IN", "ta-IN", "en-IN", "od-IN"]
    assert "speaker" not in fake.tts_bodies[0]  # no voice: the model's default speaker


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (
            SynthesizeRequest(TEXT, "anushka", AudioFormat(E.MP3, C.MP3, 24000), language="fr-FR"),
            r"'fr-FR'.*hi-IN",
        ),
        (
            SynthesizeRequest(TEXT, "anushka", AudioFormat(E.MP3, C.MP3, 24000), language="as-IN"),
            r"'as-IN'.*te-IN",
        ),
        (
            SynthesizeRequest(TEXT, "shubh", AudioFormat(E.MP3, C.MP3, 24000)),
            r"'shubh' is not a bulbul:v2 speaker",
        ),
        (
            SynthesizeRequest("<speak>hi</speak>", "anushka", AudioFormat(E.MP3, C.MP3, 24000), is_ssml=True),
            "ssml",
        ),
        (SynthesizeRequest(TEXT, "anushka", AudioFormat(E.MP3, C.MP3, 96000)), "sample_rate_hz"),
        (SynthesizeRequest(TEXT, "anushka", AudioFormat(E.OPUS, C.WEBM, 48000)), "container"),
        (
            SynthesizeRequest(
                TEXT, "anushka", AudioFormat(E.MP3, C.MP3, 24000), provider_options={"speaker": "x"}
            ),
            "provider_options.speaker",
        ),
    ],
)
async def test_what_bulbul_does_not_take_is_refused_before_any_call(
    request_: SynthesizeRequest, match: str
) -> None:
    with pytest.raises(InvalidRequest, match=match):
        await tts().synthesize(SECRET, NOWHERE, request_, timeout=1)


async def test_provider_options_reach_the_body() -> None:
    async with FakeSarvam() as fake:
        request = SynthesizeRequest(
            TEXT,
            "hitesh",
            AudioFormat(E.PCM_S16LE, C.WAV, 22050),
            provider_options={"pitch": 0.2, "loudness": 1.5, "enable_preprocessing": True},
        )
        await tts().synthesize(SECRET, fake.options, request, timeout=5)
    body = fake.tts_bodies[-1]
    assert (body["pitch"], body["loudness"], body["enable_preprocessing"]) == (0.2, 1.5, True)
    assert body["speech_sample_rate"] == 22050


# --- verify and voices -----------------------------------------------------------


async def test_verify_lists_the_pronunciation_dictionaries() -> None:
    verifier = cap(Capability.VERIFY)
    assert isinstance(verifier, Verifier)
    async with FakeSarvam() as fake:
        good = await verifier.verify(SECRET, fake.options, timeout=5)
        bad = await verifier.verify(PlainSecret(api_key=BAD_KEY), fake.options, timeout=5)
        fake.force_status = 503
        with pytest.raises(ProviderUnavailable):
            await verifier.verify(SECRET, fake.options, timeout=5)
    assert (good.valid, good.detail) == (True, {"pronunciation_dictionaries": "1"})
    assert not bad.valid
    assert "Invalid API key" in bad.reason
    assert BAD_KEY not in bad.reason
    assert [(r["method"], r["path"]) for r in fake.requests] == [
        ("GET", "/text-to-speech/pronunciation-dictionary")
    ] * 3
    assert fake.requests[0]["headers"]["api-subscription-key"] == KEY


async def test_voices_are_the_documented_static_lists() -> None:
    lister = cap(Capability.VOICES)
    assert isinstance(lister, VoiceLister)
    every = await lister.list_voices(SECRET, NOWHERE, language=None, timeout=1)  # no call is made
    by_id = {v.id: v for v in every}
    assert len(every) == 7 + 37
    assert (by_id["anushka"].gender, by_id["anushka"].models) == (VoiceGender.FEMALE, ["bulbul:v2"])
    assert (by_id["abhilash"].gender, by_id["abhilash"].models) == (VoiceGender.MALE, ["bulbul:v2"])
    assert (by_id["shubh"].gender, by_id["shubh"].models) == (None, ["bulbul:v3"])
    assert "hi-IN" in by_id["shubh"].languages
    assert len(await lister.list_voices(SECRET, NOWHERE, language="hi", timeout=1)) == len(every)
    assert len(await lister.list_voices(SECRET, NOWHERE, language="ta-IN", timeout=1)) == len(every)
    assert await lister.list_voices(SECRET, NOWHERE, language="fr", timeout=1) == []


# --- streaming speech to text ------------------------------------------------------


async def chunks(data: bytes, piece: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for at in range(0, len(data), piece):
        yield data[at : at + piece]
        if pause:
            await asyncio.sleep(pause)


def sent_audio(fake: FakeSarvam) -> bytes:
    return b"".join(base64.b64decode(m["audio"]["data"]) for m in fake.ws_messages if "audio" in m)


async def test_stream_two_utterances_with_speech_events_in_order(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    talk = pcm + b"\x00\x00" * 16000 + pcm  # speech, 1 s of silence, speech
    async with FakeSarvam() as fake:
        request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000), language="en-IN")
        events = [
            e
            async for e in stream_stt().stream_transcribe(
                SECRET, fake.options, request, chunks(talk, 6400), timeout=5
            )
        ]
        await asyncio.wait_for(fake.ws_closed.wait(), 2)
    assert fake.ws_queries[-1] == {
        "language-code": "en-IN",
        "model": "saarika:v2.5",
        "sample_rate": "16000",
        "input_audio_codec": "pcm_s16le",
        "vad_signals": "true",
        "flush_signal": "true",
    }
    assert fake.requests[-1]["headers"]["api-subscription-key"] == KEY
    audio_messages = [m for m in fake.ws_messages if "audio" in m]
    assert {(m["audio"]["sample_rate"], m["audio"]["encoding"]) for m in audio_messages} == {
        (16000, "audio/wav")
    }
    assert sent_audio(fake) == talk
    assert fake.ws_messages[-1] == {"type": "flush"}
    kinds = [type(e) for e in events]
    assert kinds == [
        SpeechStarted,
        UtteranceEnd,
        TranscriptEvent,
        SpeechStarted,
        TranscriptEvent,
        StreamTranscribeEnd,
    ]
    finals = [e for e in events if isinstance(e, TranscriptEvent)]
    assert [f.transcript for f in finals] == ["the quick brown fox", "one two three"]
    assert all(f.is_final for f in finals)
    end = events[-1]
    assert isinstance(end, StreamTranscribeEnd)
    assert end.duration == pytest.approx(len(talk) / 32000)
    assert end.request_id
    assert end.request_id.startswith("20260101_")


async def test_stream_phone_audio_goes_at_8k_and_endpointing_sets_vad_sensitivity(speech: Speech) -> None:
    mulaw = speech.file("raw_mulaw_8k")
    async with FakeSarvam() as fake:
        request = StreamTranscribeRequest(AudioFormat(E.MULAW, C.RAW, 8000), endpointing_ms=300)
        events = [
            e
            async for e in stream_stt().stream_transcribe(
                SECRET, fake.options, request, chunks(mulaw, 160), timeout=5
            )
        ]
    query = fake.ws_queries[-1]
    assert (query["sample_rate"], query["high_vad_sensitivity"], query["language-code"]) == (
        "8000",
        "true",
        "unknown",
    )
    assert {m["audio"]["sample_rate"] for m in fake.ws_messages if "audio" in m} == {8000}
    assert len(sent_audio(fake)) == 2 * len(mulaw)  # mu-law bytes to 16-bit samples, same rate
    assert any(isinstance(e, TranscriptEvent) for e in events)
    assert isinstance(events[-1], StreamTranscribeEnd)
    assert sum(isinstance(e, StreamTranscribeEnd) for e in events) == 1


async def test_stream_44k_stereo_is_converted_to_16k_mono(speech: Speech) -> None:
    stereo, rate = sf.read(io.BytesIO(speech.file("wav_48k_stereo")), dtype="int16")
    raw = np.ascontiguousarray(stereo).tobytes()
    async with FakeSarvam() as fake:
        request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, rate, 2))
        events = [
            e
            async for e in stream_stt().stream_transcribe(
                SECRET, fake.options, request, chunks(raw, 9601), timeout=5
            )
        ]
    assert fake.ws_queries[-1]["sample_rate"] == "16000"
    seconds = len(raw) / (4 * rate)
    assert len(sent_audio(fake)) / 32000 == pytest.approx(seconds, abs=0.01)
    assert isinstance(events[-1], StreamTranscribeEnd)


async def test_a_flush_of_silence_ends_after_the_settle_time() -> None:
    async with FakeSarvam() as fake:
        request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000))
        started = time.monotonic()
        events = [
            e
            async for e in stream_stt().stream_transcribe(
                SECRET, fake.options, request, chunks(b"\x00\x00" * 8000, 3200), timeout=5
            )
        ]
    assert time.monotonic() - started < 1.5
    assert len(events) == 1
    assert isinstance(events[0], StreamTranscribeEnd)
    assert events[0].duration == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (
            StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000), language="de-DE"),
            r"'de-DE'.*hi-IN",
        ),
        (StreamTranscribeRequest(AudioFormat(E.OPUS, C.WEBM)), "cannot be converted as a stream"),
        (StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000), diarize=True), "diarize"),
        (
            StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000), word_timestamps=True),
            "word_timestamps",
        ),
        (StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000), keywords=["x"]), "keywords"),
    ],
)
async def test_stream_refuses_before_connecting(request_: StreamTranscribeRequest, match: str) -> None:
    stream = stream_stt().stream_transcribe(SECRET, NOWHERE, request_, chunks(b"\x00" * 320, 320), timeout=1)
    with pytest.raises(InvalidRequest, match=match):
        await anext(aiter(stream))


async def test_a_stream_error_message_is_classified(speech: Speech) -> None:
    async with FakeSarvam() as fake:
        request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000), model="saarika:v9")
        stream = stream_stt().stream_transcribe(
            SECRET, fake.options, request, chunks(speech.file("raw_pcm_16k"), 3200, pause=0.01), timeout=5
        )
        with pytest.raises(InvalidRequest, match=r"Invalid model: saarika:v9 \(invalid_request_error\)"):
            async for _ in stream:
                pass


async def test_a_silent_provider_after_the_audio_is_a_timeout(speech: Speech) -> None:
    async with FakeSarvam() as fake:
        request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000))

        async def talk_then_end() -> AsyncIterator[bytes]:
            async for chunk in chunks(speech.file("raw_pcm_16k"), 3200):
                yield chunk
            while not any(isinstance(m, dict) for m in fake.ws_messages):
                await asyncio.sleep(0.01)
            fake.stream_hang = True  # the fake saw speech start, and now answers nothing

        stream = stream_stt().stream_transcribe(SECRET, fake.options, request, talk_then_end(), timeout=0.5)
        with pytest.raises(ProviderTimeout, match="no transcript"):
            async for _ in stream:
                pass


async def test_sarvam_closing_mid_stream_is_unavailable(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with FakeSarvam(close_after=3) as fake:
        request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000))
        stream = stream_stt().stream_transcribe(
            SECRET, fake.options, request, chunks(pcm, 3200, 0.01), timeout=5
        )
        with pytest.raises(ProviderUnavailable, match=r"before the audio ended|broke while audio was sent"):
            async for _ in stream:
                pass
        synthesis = SynthesizeRequest(TEXT, "anushka", AudioFormat(E.PCM_S16LE, C.RAW, 16000))
        fake.ws_messages.clear()
        fake.close_after = 2  # config, text: closed before the flush
        with pytest.raises(ProviderUnavailable, match="before the audio was complete"):
            async for _ in stream_tts().stream_synthesize(SECRET, fake.options, synthesis, timeout=5):
                pass


async def test_cancelling_a_stream_closes_the_websocket_at_once(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with FakeSarvam(stream_hang=True) as fake:
        request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000))

        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield pcm[:3200]
                await asyncio.sleep(0.01)

        stream = stream_stt().stream_transcribe(SECRET, fake.options, request, endless(), timeout=5)
        consumer = asyncio.ensure_future(anext(aiter(stream)))
        for _ in range(300):
            if len(fake.ws_messages) > 3:
                break
            await asyncio.sleep(0.01)
        assert len(fake.ws_messages) > 3
        consumer.cancel()
        cancelled = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(fake.ws_closed.wait(), 1)
    assert fake.ws_closed_at is not None
    assert fake.ws_closed_at - cancelled < 0.1


# --- streaming text to speech --------------------------------------------------------


def config_of(fake: FakeSarvam) -> dict[str, object]:
    first = fake.ws_messages[0]
    assert first["type"] == "config"
    data: dict[str, object] = first["data"]
    return data


@pytest.mark.parametrize(
    ("output", "sarvam_rate"),
    [
        (AudioFormat(E.PCM_S16LE, C.RAW, 16000), 16000),
        (AudioFormat(E.PCM_S16LE, C.RAW, 24000), 24000),
        (AudioFormat(E.PCM_S16LE, C.RAW, 48000), 24000),
        (AudioFormat(E.MULAW, C.RAW, 8000), 8000),
        (AudioFormat(E.ALAW, C.RAW, 8000), 8000),
    ],
)
async def test_stream_synthesis_converts_chunk_by_chunk(output: AudioFormat, sarvam_rate: int) -> None:
    async with FakeSarvam(chunk_bytes=2048) as fake:
        request = SynthesizeRequest(TEXT, "manisha", output, language="en-IN", speed=1.0)
        got = [c async for c in stream_tts().stream_synthesize(SECRET, fake.options, request, timeout=5)]
        await asyncio.wait_for(fake.ws_closed.wait(), 2)
    assert fake.ws_queries[-1] == {"model": "bulbul:v2", "send_completion_event": "true"}
    assert fake.requests[-1]["headers"]["api-subscription-key"] == KEY
    assert config_of(fake) == {
        "language_code": "en-IN",
        "speaker": "manisha",
        "pace": 1.0,
        "speech_sample_rate": sarvam_rate,
        "output_audio_codec": "linear16",
    }
    assert [m["type"] for m in fake.ws_messages] == ["config", "text", "flush"]
    assert fake.ws_messages[1]["data"] == {"text": TEXT}
    assert len(got) > 3
    assert got[-1].is_last
    assert not any(c.is_last for c in got[:-1])
    assert all(c.request_id and c.request_id.startswith("20260101_") for c in got)
    total = b"".join(c.audio for c in got)
    assert audio.raw_seconds(len(total), output) == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.02)


async def test_stream_synthesis_in_mp3_is_sarvams_own() -> None:
    output = AudioFormat(E.MP3, C.MP3, 24000)
    async with FakeSarvam(chunk_bytes=1024) as fake:
        request = SynthesizeRequest(TEXT, "anushka", output, language="hi-IN")
        got = [c async for c in stream_tts().stream_synthesize(SECRET, fake.options, request, timeout=5)]
    assert (config_of(fake)["output_audio_codec"], config_of(fake)["speech_sample_rate"]) == ("mp3", 24000)
    seconds, rate = duration_of(b"".join(c.audio for c in got))
    assert rate == 24000
    assert seconds == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.1)


@pytest.mark.parametrize(
    ("output", "match"),
    [
        (AudioFormat(E.OPUS, C.OGG, 48000), "output_format: Sarvam streams opus"),
        (AudioFormat(E.PCM_S16LE, C.WAV, 16000), "output_format"),
        (AudioFormat(E.MP3, C.MP3, 48000), "mp3 at 8000, 16000, 22050, 24000"),
    ],
)
async def test_stream_formats_sarvam_cannot_stream_are_refused(output: AudioFormat, match: str) -> None:
    request = SynthesizeRequest(TEXT, "anushka", output)
    with pytest.raises(InvalidRequest, match=match):
        await anext(aiter(stream_tts().stream_synthesize(SECRET, NOWHERE, request, timeout=1)))


async def test_input_streaming_sends_fragments_and_flushes() -> None:
    output = AudioFormat(E.PCM_S16LE, C.RAW, 16000)
    parts = ["Hello from ", "the hub. ", "", "Second part,", " short."]

    async def text() -> AsyncIterator[TextInput]:
        yield parts[0]
        yield parts[1]
        yield FLUSH
        yield FLUSH  # nothing buffered: no second flush goes out
        for part in parts[2:]:
            yield part
            await asyncio.sleep(0.01)

    async with FakeSarvam() as fake:
        request = SynthesizeRequest("", "vidya", output, language="en-IN")
        got = [
            c
            async for c in input_tts().stream_synthesize_input(
                SECRET, fake.options, request, text(), timeout=5
            )
        ]
    assert [m["type"] for m in fake.ws_messages] == [
        "config",
        "text",
        "text",
        "flush",
        "text",
        "text",
        "flush",
    ]
    assert [m["data"]["text"] for m in fake.ws_messages if m["type"] == "text"] == [p for p in parts if p]
    assert got[-1].is_last
    total = b"".join(c.audio for c in got)
    chars = sum(len(p) for p in parts)
    assert audio.raw_seconds(len(total), output) == pytest.approx(chars * SECONDS_PER_CHAR, abs=0.02)


async def test_a_stream_synthesis_error_is_classified() -> None:
    async with FakeSarvam() as fake:
        # rupali is a bulbul:v3 speaker Sarvam documents; this fake's account does not have her
        request = SynthesizeRequest(TEXT, "rupali", AudioFormat(E.PCM_S16LE, C.RAW, 16000), model="bulbul:v3")
        with pytest.raises(InvalidRequest, match="not compatible with model bulbul:v3"):
            async for _ in stream_tts().stream_synthesize(SECRET, fake.options, request, timeout=5):
                pass


async def test_closing_a_synthesis_stream_closes_the_websocket_at_once() -> None:
    async with FakeSarvam(chunk_bytes=512, tts_chunk_delay=0.02) as fake:
        request = SynthesizeRequest(TEXT * 4, "anushka", AudioFormat(E.PCM_S16LE, C.RAW, 16000))
        stream = stream_tts().stream_synthesize(SECRET, fake.options, request, timeout=5)
        first = await anext(aiter(stream))
        assert first.audio
        closed = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(fake.ws_closed.wait(), 1)
    assert fake.ws_closed_at is not None
    assert fake.ws_closed_at - closed < 0.1
