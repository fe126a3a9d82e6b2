"""AssemblyAI (v2 transcript REST, Universal Streaming v3 websocket) against the loopback fake,
through the real aiohttp client the callers use."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

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
    Transcriber,
    Verifier,
)
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    SpeechStarted,
    StreamTranscribeEnd,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    TranscribeRequest,
    TranscriptEvent,
    UtteranceEnd,
)
from tests.fakes.assemblyai_server import SCRIPT, UPLOAD_PREFIX, FakeAssemblyAI
from tests.fakes.secret_fields import PlainSecret
from tests.speech.conftest import Speech

pytestmark = pytest.mark.timeout(30)

KEY = "aai-test-key-0123456789abcdef"
SECRET = PlainSecret(api_key=KEY)
C, E = AudioContainer, AudioEncoding
PCM_16K = AudioFormat(E.PCM_S16LE, C.RAW, 16000)


@asynccontextmanager
async def fake_assemblyai(**knobs: object) -> AsyncIterator[FakeAssemblyAI]:
    knobs.setdefault("polls_until_done", 0)
    async with FakeAssemblyAI(valid_keys={KEY}, **knobs) as fake:  # type: ignore[arg-type]
        try:
            yield fake
        finally:
            await pools.close_all()


def stt() -> Transcriber:
    caller = registry.capability("assemblyai", Capability.STT)
    assert isinstance(caller, Transcriber)
    return caller


def stream_stt() -> StreamTranscriber:
    caller = registry.capability("assemblyai", Capability.STREAM_STT)
    assert isinstance(caller, StreamTranscriber)
    return caller


def verifier() -> Verifier:
    caller = registry.capability("assemblyai", Capability.VERIFY)
    assert isinstance(caller, Verifier)
    return caller


def test_spec_lists_what_is_implemented() -> None:
    spec = registry.spec("assemblyai")
    assert spec.capabilities == {Capability.STT, Capability.STREAM_STT, Capability.VERIFY}
    assert spec.sdk_modules == ()
    options = spec.with_defaults({})
    assert options == {
        "base_url": "https://api.assemblyai.com",
        "streaming_url": "https://streaming.assemblyai.com",
    }
    spec.validate({"api_key": KEY}, {"streaming_url": "https://streaming.eu.assemblyai.com"})


# --- transcription (v2 REST) ------------------------------------------------------


async def test_transcribe_a_wav_file_with_word_timings(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    async with fake_assemblyai(polls_until_done=2) as fake:
        request = TranscribeRequest(
            wav, AudioFormat(E.PCM_S16LE, C.WAV), language="en-US", word_timestamps=True
        )
        answer = await stt().transcribe(SECRET, fake.options(), request, timeout=10)
    upload, create, *polls = fake.requests
    assert (upload.method, upload.path, upload.body) == ("POST", "/v2/upload", wav)  # a file goes as it came
    assert upload.headers["Content-Type"] == "application/octet-stream"
    assert (create.method, create.path) == ("POST", "/v2/transcript")
    body = create.json()
    assert body["audio_url"].startswith(UPLOAD_PREFIX)
    assert body["speech_models"] == ["universal-3-pro", "universal-2"]
    assert body["language_code"] == "en_us"
    assert "language_detection" not in body
    assert body["punctuate"] is True
    assert body["format_text"] is True
    assert [(p.method, p.path) for p in polls] == [("GET", f"/v2/transcript/{answer.request_id}")] * 3
    assert all(r.headers["Authorization"] == KEY for r in fake.requests)  # the bare key, no "Bearer"
    duration = audio.probe(wav, C.WAV).duration
    assert answer.transcript == " ".join(["The", *SCRIPT[1:]]) + "."
    assert [w.text for w in answer.words][:3] == ["The", "quick", "brown"]
    assert answer.words[0].start == 0
    assert answer.words[-1].end == pytest.approx(duration, abs=0.01)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(answer.words, answer.words[1:], strict=False))
    assert answer.words[0].confidence == pytest.approx(0.9)
    assert answer.duration == round(duration)
    assert answer.language == "en-US"
    assert answer.confidence == pytest.approx(0.9)
    assert answer.request_id in fake.transcripts


async def test_polling_backs_off_from_a_quarter_second(speech: Speech) -> None:
    async with fake_assemblyai(polls_until_done=3) as fake:
        request = TranscribeRequest(speech.file("flac_16k"), AudioFormat(E.FLAC, C.RAW))
        await stt().transcribe(SECRET, fake.options(), request, timeout=10)
    times = [r.at for r in fake.requests if r.method == "GET"]
    create = next(r.at for r in fake.requests if r.path == "/v2/transcript")
    gaps = np.diff([create, *times])
    assert len(gaps) == 4
    assert gaps[0] == pytest.approx(0.25, abs=0.1)
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))
    assert max(gaps) < 2.1


async def test_raw_phone_audio_is_uploaded_as_wav(speech: Speech) -> None:
    mulaw = speech.file("raw_mulaw_8k")
    async with fake_assemblyai() as fake:
        request = TranscribeRequest(
            mulaw, AudioFormat(E.MULAW, C.RAW, 8000), diarize=True, keywords=["Acme", "hub"]
        )
        answer = await stt().transcribe(SECRET, fake.options(), request, timeout=10)
    uploaded = fake.requests[0].body
    assert uploaded[:4] == b"RIFF"
    info = audio.probe(uploaded, C.WAV)
    assert (info.sample_rate_hz, info.channels) == (8000, 1)
    assert info.duration == pytest.approx(len(mulaw) / 8000, abs=0.01)
    body = fake.requests[1].json()
    assert body["language_detection"] is True
    assert "language_code" not in body
    assert body["speaker_labels"] is True
    assert body["keyterms_prompt"] == ["Acme", "hub"]
    assert {w.speaker for w in answer.words} == {"A", "B"}
    assert answer.words[-1].end == pytest.approx(len(mulaw) / 8000, abs=0.02)
    assert answer.language == "en"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("mp3_16k.mp3", AudioFormat(E.MP3, C.MP3)),
        ("flac_16k.flac", AudioFormat(E.FLAC, C.RAW)),
        ("ogg_opus_16k.opus", AudioFormat(E.OPUS, C.OGG)),
        ("webm_opus.webm", AudioFormat(E.OPUS, C.WEBM)),
        ("mp4_aac.mp4", AudioFormat(E.AAC, C.MP4)),
        ("wav_mulaw_8k.wav", AudioFormat(E.MULAW, C.WAV)),
    ],
)
async def test_files_are_uploaded_as_they_came(speech: Speech, name: str, fmt: AudioFormat) -> None:
    data = speech.data(name)
    async with fake_assemblyai() as fake:
        answer = await stt().transcribe(SECRET, fake.options(), TranscribeRequest(data, fmt), timeout=10)
    assert fake.requests[0].body == data
    assert answer.transcript.startswith("The quick brown fox")
    assert answer.words[-1].end == pytest.approx(audio.probe(data, fmt).duration, abs=0.1)


async def test_an_audio_url_is_fetched_by_assemblyai(speech: Speech) -> None:
    url = "https://files.example.com/call.mp3"
    async with fake_assemblyai() as fake:
        fake.remote_files[url] = speech.file("mp3_16k")
        request = TranscribeRequest(b"", AudioFormat(E.MP3, C.MP3), audio_url=url)
        answer = await stt().transcribe(SECRET, fake.options(), request, timeout=10)
        missing = TranscribeRequest(
            b"", AudioFormat(E.MP3, C.MP3), audio_url="https://files.example.com/x.mp3"
        )
        with pytest.raises(InvalidRequest, match="Download error"):
            await stt().transcribe(SECRET, fake.options(), missing, timeout=10)
        sent = len(fake.requests)
        plain = TranscribeRequest(b"", AudioFormat(E.MP3, C.MP3), audio_url="http://files.example.com/a.mp3")
        with pytest.raises(InvalidRequest, match="audio_url"):
            await stt().transcribe(SECRET, fake.options(), plain, timeout=10)
        assert len(fake.requests) == sent  # refused before any call
    assert not any(r.path == "/v2/upload" for r in fake.requests)
    assert fake.requests[0].json()["audio_url"] == url
    assert answer.transcript


async def test_models_and_provider_options_reach_the_body(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    fmt = AudioFormat(E.PCM_S16LE, C.WAV)
    async with fake_assemblyai() as fake:
        options = fake.options()
        await stt().transcribe(SECRET, options, TranscribeRequest(wav, fmt, model="slam-1"), timeout=10)
        assert fake.requests[-2].json()["speech_models"] == ["slam-1"]
        request = TranscribeRequest(
            wav,
            fmt,
            model="universal-3-pro, universal-2",
            punctuate=False,
            provider_options={"disfluencies": True},
        )
        answer = await stt().transcribe(SECRET, options, request, timeout=10)
        body = next(r.json() for r in reversed(fake.requests) if r.path == "/v2/transcript")
        assert body["speech_models"] == ["universal-3-pro", "universal-2"]
        assert body["disfluencies"] is True
        assert body["punctuate"] is False
        assert body["format_text"] is False
        assert not answer.transcript.endswith(".")
        with pytest.raises(InvalidRequest, match="speech model"):
            await stt().transcribe(
                SECRET, options, TranscribeRequest(wav, fmt, model="whisper-9"), timeout=10
            )
        hijack = TranscribeRequest(wav, fmt, provider_options={"audio_url": "https://x.example/a.wav"})
        with pytest.raises(InvalidRequest, match=r"provider_options\.audio_url"):
            await stt().transcribe(SECRET, options, hijack, timeout=10)


async def test_unsupported_languages_are_refused_naming_them(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    fmt = AudioFormat(E.PCM_S16LE, C.WAV)
    async with fake_assemblyai() as fake:
        with pytest.raises(InvalidRequest, match="xx"):
            await stt().transcribe(
                SECRET, fake.options(), TranscribeRequest(wav, fmt, language="xx-YY"), timeout=10
            )
        assert fake.requests[-1].json()["language_code"] == "xx"
        sent = len(fake.requests)
        with pytest.raises(InvalidRequest, match="language"):
            await stt().transcribe(
                SECRET, fake.options(), TranscribeRequest(wav, fmt, language="en US!"), timeout=10
            )
        assert len(fake.requests) == sent
        answer = await stt().transcribe(
            SECRET, fake.options(), TranscribeRequest(wav, fmt, language="en-GB"), timeout=10
        )
    assert fake.requests[-2].json()["language_code"] == "en_uk"
    assert answer.language == "en-GB"


async def test_failed_transcripts_are_classified(speech: Speech) -> None:
    async with fake_assemblyai() as fake:
        garbage = TranscribeRequest(b"\x00\x01not audio at all" * 50, AudioFormat(E.MP3, C.MP3))
        with pytest.raises(InvalidRequest, match="Transcoding failed") as bad_audio:
            await stt().transcribe(SECRET, fake.options(), garbage, timeout=10)
        fake.fail_with = "Internal server error, please try again"
        request = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        with pytest.raises(ProviderUnavailable, match="Internal server error"):
            await stt().transcribe(SECRET, fake.options(), request, timeout=10)
    transcript_id = next(iter(fake.transcripts))
    assert transcript_id in str(bad_audio.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequest),
        (403, PermissionDenied),
        (404, NotFound),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (504, ProviderTimeout),
    ],
)
async def test_http_errors_are_classified(speech: Speech, status: int, error: type[CallerError]) -> None:
    async with fake_assemblyai() as fake:
        fake.force_status, fake.retry_after, fake.error_text = status, "7", f"the fake says {status}"
        request = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        with pytest.raises(error) as raised:
            await stt().transcribe(SECRET, fake.options(), request, timeout=10)
    assert f"the fake says {status}" in raised.value.message
    assert raised.value.provider_status == status
    assert raised.value.retry_after == 7


async def test_a_rejected_key_never_appears_in_the_error(speech: Speech) -> None:
    wrong = "aai-wrong-secret-key-which-must-not-leak"
    async with fake_assemblyai() as fake:
        request = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        with pytest.raises(AuthenticationFailed) as raised:
            await stt().transcribe(PlainSecret(api_key=wrong), fake.options(), request, timeout=10)
        stream_request = StreamTranscribeRequest(PCM_16K)
        with pytest.raises(AuthenticationFailed) as streamed:
            await collect(
                stream_stt().stream_transcribe(
                    PlainSecret(api_key=wrong),
                    fake.options(),
                    stream_request,
                    pieces(b"\0" * 3200, 3200),
                    timeout=5,
                )
            )
    for error in (raised.value, streamed.value):
        assert wrong not in str(error)
        assert wrong[8:] not in str(error)
        assert error.provider_status == 401
    assert "Authentication error" in raised.value.message


async def test_a_provider_that_does_not_answer_is_a_timeout(speech: Speech) -> None:
    async with fake_assemblyai() as fake:
        fake.delay = 5
        request = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await stt().transcribe(SECRET, fake.options(), request, timeout=0.3)
        assert time.monotonic() - started < 2


async def test_polling_is_bounded_by_the_timeout(speech: Speech) -> None:
    async with fake_assemblyai() as fake:
        fake.never_complete = True
        request = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        started = time.monotonic()
        with pytest.raises(ProviderTimeout) as raised:
            await stt().transcribe(SECRET, fake.options(), request, timeout=1.2)
    elapsed = time.monotonic() - started
    assert 1.1 < elapsed < 2
    assert next(iter(fake.transcripts)) in raised.value.message


async def test_cancelling_a_transcription_stops_polling(speech: Speech) -> None:
    async with fake_assemblyai() as fake:
        fake.never_complete = True
        request = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        task = asyncio.ensure_future(stt().transcribe(SECRET, fake.options(), request, timeout=20))
        while sum(fake.polls.values()) < 2:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        polls = sum(fake.polls.values())
        await asyncio.sleep(1.0)
        assert sum(fake.polls.values()) == polls


# --- verify -----------------------------------------------------------------------


async def test_verify_lists_one_transcript() -> None:
    async with fake_assemblyai() as fake:
        good = await verifier().verify(SECRET, fake.options(), timeout=5)
        bad = await verifier().verify(PlainSecret(api_key="aai-nope"), fake.options(), timeout=5)
        fake.force_status = 503
        with pytest.raises(ProviderUnavailable):
            await verifier().verify(SECRET, fake.options(), timeout=5)
    assert good.valid
    assert good.reason
    assert not bad.valid
    assert "Authentication error" in bad.reason
    first = fake.requests[0]
    assert (first.method, first.path, first.query) == ("GET", "/v2/transcript", {"limit": "1"})
    assert first.headers["Authorization"] == KEY


async def test_verify_through_the_registry() -> None:
    async with fake_assemblyai() as fake:
        result = await registry.verify("assemblyai", SECRET, fake.options(), timeout=5)
    assert result.valid


# --- streaming (v3 websocket) -----------------------------------------------------


async def pieces(data: bytes, size: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]
        if pause:
            await asyncio.sleep(pause)


async def collect(stream: AsyncIterator[StreamTranscribeEvent]) -> list[StreamTranscribeEvent]:
    async with asyncio.timeout(20):
        return [event async for event in stream]


def transcripts(events: list[StreamTranscribeEvent]) -> list[TranscriptEvent]:
    return [e for e in events if isinstance(e, TranscriptEvent)]


async def test_stream_interim_then_final_turns_with_endpointing(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    seconds = len(pcm) / 32000
    async with fake_assemblyai() as fake:
        request = StreamTranscribeRequest(
            PCM_16K, language="en-US", endpointing_ms=300, keywords=["Acme", "hub"], word_timestamps=True
        )
        events = await collect(
            stream_stt().stream_transcribe(SECRET, fake.options(), request, pieces(pcm, 333), timeout=5)
        )
    session = fake.sessions[-1]
    query = session.query
    assert query["sample_rate"] == "16000"
    assert query["encoding"] == "pcm_s16le"
    assert query["format_turns"] == "true"
    assert query["min_turn_silence"] == "300"
    assert json.loads(query["keyterms_prompt"]) == ["Acme", "hub"]
    assert query["speech_model"] == "universal-streaming-english"
    assert session.headers["Authorization"] == KEY
    assert session.headers["AssemblyAI-Version"] == "2025-05-12"
    assert session.client_messages == [{"type": "Terminate"}]
    assert all(50 <= ms <= 250 for ms in session.chunk_ms)
    # Every sample arrived, in order, cut on frames; only the last message is padded.
    assert bytes(session.audio[: len(pcm) - len(pcm) % 2]) == pcm[: len(pcm) - len(pcm) % 2]
    assert not any(session.audio[len(pcm) :])

    assert isinstance(events[0], SpeechStarted)
    assert events[0].at == 0
    assert isinstance(events[-1], StreamTranscribeEnd)
    assert events[-1].duration == round(seconds)
    assert events[-1].request_id == session.id
    said = transcripts(events)
    finals = [t for t in said if t.is_final]
    heard = min(len(SCRIPT), int(seconds / fake.word_seconds))
    assert len(finals) == -(-heard // fake.words_per_turn)
    assert finals[0].transcript == "The quick brown fox."
    assert [w.text for w in finals[0].words] == ["The", "quick", "brown", "fox"]
    assert finals[0].start == 0
    assert finals[0].end == pytest.approx(3 * 0.3 + 0.24)
    assert finals[0].confidence == pytest.approx(0.88)
    # interims of a turn come before its final, and each final is followed by UtteranceEnd
    first_final = events.index(finals[0])
    interims = [e for e in events[:first_final] if isinstance(e, TranscriptEvent)]
    assert [t.transcript for t in interims] == [
        "the",
        "the quick",
        "the quick brown",
        "the quick brown fox",
        "the quick brown fox",
    ]
    assert not any(t.is_final for t in interims)
    for final in finals:
        after = events[events.index(final) + 1]
        assert isinstance(after, UtteranceEnd)
        assert after.at == final.end
    # a new turn starts with SpeechStarted at its first word
    second_start = events[events.index(finals[0]) + 2]
    assert isinstance(second_start, SpeechStarted)
    assert second_start.at == pytest.approx(4 * 0.3)


async def test_stream_phone_audio_goes_as_mulaw(speech: Speech) -> None:
    mulaw = speech.file("raw_mulaw_8k")
    async with fake_assemblyai() as fake:
        request = StreamTranscribeRequest(AudioFormat(E.MULAW, C.RAW, 8000), interim_results=False)
        events = await collect(
            stream_stt().stream_transcribe(SECRET, fake.options(), request, pieces(mulaw, 160), timeout=5)
        )
    session = fake.sessions[-1]
    assert (session.query["encoding"], session.query["sample_rate"]) == ("pcm_mulaw", "8000")
    assert "speech_model" not in session.query  # no language: AssemblyAI's default model
    assert bytes(session.audio[: len(mulaw)]) == mulaw  # 20 ms telephony frames regrouped, not converted
    assert set(session.audio[len(mulaw) :]) <= {0xFF}  # mu-law silence pads the last message
    assert all(50 <= ms <= 250 for ms in session.chunk_ms)
    assert all(t.is_final for t in transcripts(events))
    assert transcripts(events)
    assert isinstance(events[-1], StreamTranscribeEnd)


async def test_stream_alaw_and_stereo_are_converted_to_mono_pcm(speech: Speech) -> None:
    alaw = speech.file("raw_alaw_8k")
    pcm = speech.file("raw_pcm_16k")
    mono = np.frombuffer(pcm, dtype="<i2")
    stereo = np.repeat(mono, 2).astype("<i2").tobytes()
    async with fake_assemblyai() as fake:
        options = fake.options()
        alaw_request = StreamTranscribeRequest(AudioFormat(E.ALAW, C.RAW, 8000))
        await collect(
            stream_stt().stream_transcribe(SECRET, options, alaw_request, pieces(alaw, 800), timeout=5)
        )
        stereo_request = StreamTranscribeRequest(AudioFormat(E.PCM_S16LE, C.RAW, 16000, channels=2))
        await collect(
            stream_stt().stream_transcribe(SECRET, options, stereo_request, pieces(stereo, 4000), timeout=5)
        )
    from_alaw, from_stereo = fake.sessions[-2], fake.sessions[-1]
    assert (from_alaw.query["encoding"], from_alaw.query["sample_rate"]) == ("pcm_s16le", "8000")
    assert len(from_alaw.audio) == pytest.approx(2 * len(alaw), abs=800)
    assert (from_stereo.query["encoding"], from_stereo.query["sample_rate"]) == ("pcm_s16le", "16000")
    assert bytes(from_stereo.audio[: len(pcm)]) == pcm  # identical channels mix back to the original


async def test_stream_options_models_and_languages(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")[: 32000 * 2]
    async with fake_assemblyai() as fake:
        fake.speech_started = True
        options = fake.options()
        plain = StreamTranscribeRequest(PCM_16K, punctuate=False, diarize=True, language="es-MX")
        events = await collect(
            stream_stt().stream_transcribe(SECRET, options, plain, pieces(pcm, 3200), timeout=5)
        )
        query = fake.sessions[-1].query
        assert "format_turns" not in query
        assert query["speaker_labels"] == "true"
        assert query["speech_model"] == "universal-streaming-multilingual"
        # without formatting, the unformatted end of turn is the final
        finals = [t.transcript for t in transcripts(events) if t.is_final]
        assert finals == ["the quick brown fox", "jumps over"]
        # AssemblyAI's own SpeechStarted (Universal-3 Pro sends them) is passed on, once per turn
        started = [e for e in events if isinstance(e, SpeechStarted)]
        assert [s.at for s in started] == [0.0, 1.2]

        u3 = StreamTranscribeRequest(
            PCM_16K,
            model="u3-rt-pro",
            language="ja",
            provider_options={"max_turn_silence": 900, "vad_threshold": 0.5},
        )
        await collect(stream_stt().stream_transcribe(SECRET, options, u3, pieces(pcm, 3200), timeout=5))
        query = fake.sessions[-1].query
        assert (query["speech_model"], json.loads(query["language_codes"])) == ("u3-rt-pro", ["ja"])
        assert (query["max_turn_silence"], query["vad_threshold"]) == ("900", "0.5")

        sessions = len(fake.sessions)
        for refused, naming in (
            (StreamTranscribeRequest(PCM_16K, language="ja-JP"), "language"),
            (
                StreamTranscribeRequest(PCM_16K, model="universal-streaming-english", language="fr"),
                "language",
            ),
            (StreamTranscribeRequest(AudioFormat(E.OPUS, C.WEBM)), "audio_format"),
            (StreamTranscribeRequest(AudioFormat(E.MP3, C.MP3, 16000)), "audio_format"),
            (
                StreamTranscribeRequest(PCM_16K, provider_options={"sample_rate": 8000}),
                "provider_options.sample_rate",
            ),
        ):
            with pytest.raises(InvalidRequest, match=naming):
                await collect(
                    stream_stt().stream_transcribe(SECRET, options, refused, pieces(pcm, 3200), timeout=5)
                )
        assert len(fake.sessions) == sessions  # refused before connecting


@pytest.mark.parametrize(
    ("code", "reason", "error"),
    [
        (4001, "Not Authorized", AuthenticationFailed),
        (1008, "Unauthorized connection: Invalid API key", AuthenticationFailed),
        (4002, "Insufficient Funds", PermissionDenied),
        (4003, "", PermissionDenied),
        (3009, "Too many concurrent sessions", RateLimited),
        (4029, "Client sent audio too fast", RateLimited),
        (3005, "Server error", ProviderUnavailable),
        (1011, "", ProviderUnavailable),
        (3006, "Invalid message", InvalidRequest),
        (4000, "", InvalidRequest),
        (4031, "Session idle for too long", ProviderTimeout),
    ],
)
async def test_stream_close_codes_are_classified(
    speech: Speech, code: int, reason: str, error: type[CallerError]
) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_assemblyai() as fake:
        fake.stream_close_code, fake.stream_close_reason = code, reason
        fake.stream_close_after = None if code in (4001, 1008) else 3
        with pytest.raises(error) as raised:
            await collect(
                stream_stt().stream_transcribe(
                    SECRET, fake.options(), StreamTranscribeRequest(PCM_16K), pieces(pcm, 3200), timeout=5
                )
            )
    assert f"code {code}" in raised.value.message
    if reason:
        assert reason in raised.value.message


async def test_stream_error_message_and_chunk_violations(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_assemblyai() as fake:
        fake.stream_error = (3006, "Invalid value for sample_rate")
        with pytest.raises(InvalidRequest, match="Invalid value for sample_rate"):
            await collect(
                stream_stt().stream_transcribe(
                    SECRET, fake.options(), StreamTranscribeRequest(PCM_16K), pieces(pcm, 3200), timeout=5
                )
            )
        fake.stream_error = None
        # the fake enforces AssemblyAI's 50-1000 ms rule: a stream cut in 10 ms pieces still passes
        events = await collect(
            stream_stt().stream_transcribe(
                SECRET, fake.options(), StreamTranscribeRequest(PCM_16K), pieces(pcm, 320), timeout=5
            )
        )
    assert isinstance(events[-1], StreamTranscribeEnd)
    assert all(50 <= ms <= 250 for ms in fake.sessions[-1].chunk_ms)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequest),
        (403, PermissionDenied),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
    ],
)
async def test_stream_handshake_refusals_are_classified(status: int, error: type[CallerError]) -> None:
    async with fake_assemblyai() as fake:
        fake.stream_reject_status, fake.retry_after = status, "3"
        with pytest.raises(error) as raised:
            await collect(
                stream_stt().stream_transcribe(
                    SECRET,
                    fake.options(),
                    StreamTranscribeRequest(PCM_16K),
                    pieces(b"\0" * 3200, 3200),
                    timeout=5,
                )
            )
    assert raised.value.provider_status == status
    assert raised.value.retry_after == 3


async def test_stream_timeouts(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")[:32000]
    async with fake_assemblyai() as fake:
        fake.stream_hang = True  # never begins
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="did not open"):
            await collect(
                stream_stt().stream_transcribe(
                    SECRET, fake.options(), StreamTranscribeRequest(PCM_16K), pieces(pcm, 3200), timeout=0.3
                )
            )
        assert time.monotonic() - started < 1.5
        fake.stream_hang, fake.stream_stall = False, True  # never answers Terminate
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="sent nothing"):
            await collect(
                stream_stt().stream_transcribe(
                    SECRET, fake.options(), StreamTranscribeRequest(PCM_16K), pieces(pcm, 3200), timeout=0.3
                )
            )
        assert time.monotonic() - started < 1.5
        await asyncio.wait_for(fake.sessions[-1].closed.wait(), 2)


async def test_slow_audio_from_the_client_is_not_a_timeout(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")[: 32000 * 2]
    async with fake_assemblyai(word_seconds=10) as fake:  # the fake says nothing while audio flows
        request = StreamTranscribeRequest(PCM_16K)
        events = await collect(
            stream_stt().stream_transcribe(
                SECRET, fake.options(), request, pieces(pcm, 3200, pause=0.03), timeout=0.2
            )
        )
    assert isinstance(events[-1], StreamTranscribeEnd)


async def test_closing_the_stream_closes_the_websocket_at_once(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")

    async def endless() -> AsyncIterator[bytes]:
        while True:
            for at in range(0, len(pcm) - 3200, 3200):
                yield pcm[at : at + 3200]
                await asyncio.sleep(0.01)

    async with fake_assemblyai() as fake:
        # cancelled while waiting for the provider's next message
        fake.word_seconds = 1000  # the fake stays silent
        stream = stream_stt().stream_transcribe(
            SECRET, fake.options(), StreamTranscribeRequest(PCM_16K), endless(), timeout=5
        )
        consumer = asyncio.ensure_future(anext(stream))
        while not fake.sessions or len(fake.sessions[-1].audio) < 32000:
            await asyncio.sleep(0.01)
        session = fake.sessions[-1]
        closed = time.monotonic()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(session.closed.wait(), 1)
        assert session.closed_at is not None
        assert session.closed_at - closed < 0.1
        # closed by the consumer after an event
        fake.word_seconds = 0.3
        stream = stream_stt().stream_transcribe(
            SECRET, fake.options(), StreamTranscribeRequest(PCM_16K), endless(), timeout=5
        )
        first = await anext(stream)
        assert isinstance(first, SpeechStarted)
        session = fake.sessions[-1]
        closed = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        await asyncio.wait_for(session.closed.wait(), 1)
        assert session.closed_at is not None
        assert session.closed_at - closed < 0.1
    assert all({"type": "Terminate"} not in s.client_messages for s in fake.sessions)


async def test_a_failing_audio_source_ends_the_stream_with_its_error(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")

    async def broken() -> AsyncIterator[bytes]:
        yield pcm[:16000]
        await asyncio.sleep(0.05)
        raise RuntimeError("the client's audio broke")

    async with fake_assemblyai() as fake:
        with pytest.raises(RuntimeError, match="audio broke"):
            await collect(
                stream_stt().stream_transcribe(
                    SECRET, fake.options(), StreamTranscribeRequest(PCM_16K), broken(), timeout=5
                )
            )
        await asyncio.wait_for(fake.sessions[-1].closed.wait(), 1)
