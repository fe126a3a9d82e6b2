"""Deepgram (Nova prerecorded and live STT, Aura TTS, models, projects) against the
loopback fake: deepgram-sdk for REST and aiohttp for the live websocket, on the wire."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
    StreamTranscriber,
    Synthesizer,
    Transcriber,
    VoiceLister,
)
from callers.deepgram import transcribe as deepgram_transcribe
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
from tests.fakes.deepgram_server import PUNCTUATED, SECONDS_PER_CHAR, SPEECH_AT, WORDS, FakeDeepgram
from tests.fakes.secret_fields import PlainSecret
from tests.speech.conftest import Speech

pytestmark = pytest.mark.timeout(30)

KEY = "dg-test-key-0123456789abcdef0123456789"
SECRET = PlainSecret(api_key=KEY)
C, E = AudioContainer, AudioEncoding
TEXT = "Hello from the hub, this is a test."
PCM_16K = AudioFormat(E.PCM_S16LE, C.RAW, 16000)


@asynccontextmanager
async def fake_deepgram(**knobs: object) -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram(valid_keys={KEY}, **knobs) as fake:  # type: ignore[arg-type]
        try:
            yield fake
        finally:
            await pools.close_all()


def opts(fake: FakeDeepgram) -> dict[str, str]:
    return {"base_url": fake.base_url}


def stt() -> Transcriber:
    caller = registry.capability("deepgram", Capability.STT)
    assert isinstance(caller, Transcriber)
    return caller


def stream_stt() -> StreamTranscriber:
    caller = registry.capability("deepgram", Capability.STREAM_STT)
    assert isinstance(caller, StreamTranscriber)
    return caller


def tts() -> Synthesizer:
    caller = registry.capability("deepgram", Capability.TTS)
    assert isinstance(caller, Synthesizer)
    return caller


def stream_tts() -> StreamSynthesizer:
    caller = registry.capability("deepgram", Capability.STREAM_TTS)
    assert isinstance(caller, StreamSynthesizer)
    return caller


def voices() -> VoiceLister:
    caller = registry.capability("deepgram", Capability.VOICES)
    assert isinstance(caller, VoiceLister)
    return caller


async def chunks(data: bytes, piece: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for at in range(0, len(data), piece):
        yield data[at : at + piece]
        if pause:
            await asyncio.sleep(pause)


async def collect(stream: AsyncIterator[StreamTranscribeEvent]) -> list[StreamTranscribeEvent]:
    return [event async for event in stream]


# --- prerecorded ----------------------------------------------------------------------


async def test_transcribe_a_wav_file_with_word_timings_speakers_and_keyterms(speech: Speech) -> None:
    wav = speech.file("wav_16k")
    async with fake_deepgram() as fake:
        request = TranscribeRequest(
            audio=wav,
            audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
            language="en-US",
            diarize=True,
            word_timestamps=True,
            keywords=["hub", "integration hub"],
        )
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/listen")
    assert sent.headers["Authorization"] == f"Token {KEY}"
    assert sent.headers["Content-Type"] == "audio/wav"
    assert sent.body == wav
    assert sent.query["model"] == "nova-3"
    assert (sent.query["punctuate"], sent.query["diarize"], sent.query["language"]) == (
        "true",
        "true",
        "en-US",
    )
    assert sent.query.getall("keyterm") == ["hub", "integration hub"]
    assert "keywords" not in sent.query
    assert "detect_language" not in sent.query
    assert answer.transcript == " ".join(PUNCTUATED)
    assert [w.text for w in answer.words] == list(PUNCTUATED)
    assert [w.speaker for w in answer.words] == ["0", "1", "0", "1"]
    starts = [w.start for w in answer.words]
    assert starts == sorted(starts)
    assert all(w.end > w.start for w in answer.words)
    duration = audio.probe(wav, C.WAV).duration
    assert answer.words[-1].end == pytest.approx(duration, abs=0.01)
    assert answer.duration == pytest.approx(duration, abs=0.01)
    assert answer.confidence == pytest.approx(0.9931)
    assert answer.language == "en-US"
    assert answer.request_id
    assert answer.request_id.startswith("f1e2d3c4-")


async def test_raw_phone_audio_goes_as_mulaw_wav_and_the_language_is_detected(speech: Speech) -> None:
    raw = speech.file("raw_mulaw_8k")
    asked = AudioFormat(E.MULAW, C.RAW, 8000)
    async with fake_deepgram() as fake:
        request = TranscribeRequest(
            audio=raw, audio_format=asked, model="nova-2", keywords=["hub"], punctuate=False
        )
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert sent.headers["Content-Type"] == "audio/wav"
    info = sf.info(io.BytesIO(sent.body))
    assert (info.format, info.subtype, info.samplerate) == ("WAV", "ULAW", 8000)
    assert sent.query["model"] == "nova-2"
    assert sent.query.getall("keywords") == ["hub"]
    assert sent.query["detect_language"] == "true"
    assert sent.query["punctuate"] == "false"
    assert "language" not in sent.query
    assert answer.language == "en"
    assert answer.transcript == " ".join(WORDS)
    assert [w.text for w in answer.words] == list(WORDS)
    assert answer.duration == pytest.approx(audio.raw_seconds(len(raw), asked), abs=0.01)


@pytest.mark.parametrize(
    ("name", "fmt", "content_type"),
    [
        ("mp3_16k.mp3", AudioFormat(E.MP3, C.MP3), "audio/mpeg"),
        ("flac_16k.flac", AudioFormat(E.FLAC, C.RAW), "audio/flac"),
        ("ogg_opus_16k.opus", AudioFormat(E.OPUS, C.OGG), "audio/ogg"),
        ("webm_opus.webm", AudioFormat(E.OPUS, C.WEBM), "audio/webm"),
        ("mp4_aac.mp4", AudioFormat(E.AAC, C.MP4), "audio/mp4"),
        ("raw_pcm_16k.raw", PCM_16K, "audio/wav"),
    ],
)
async def test_every_input_container_is_sent_with_its_type(
    speech: Speech, name: str, fmt: AudioFormat, content_type: str
) -> None:
    data = speech.data(name)
    async with fake_deepgram() as fake:
        answer = await stt().transcribe(SECRET, opts(fake), TranscribeRequest(data, fmt), timeout=5)
    sent = fake.requests[-1]
    assert sent.headers["Content-Type"] == content_type
    if content_type != "audio/wav":
        assert sent.body == data
    assert answer.duration
    assert answer.duration == pytest.approx(audio.probe(speech.file("wav_16k"), C.WAV).duration, abs=0.15)


async def test_an_audio_url_is_fetched_by_deepgram() -> None:
    async with fake_deepgram() as fake:
        fmt = AudioFormat(E.MP3, C.MP3)
        with pytest.raises(InvalidRequest, match="audio_url"):
            await stt().transcribe(
                SECRET, opts(fake), TranscribeRequest(b"", fmt, audio_url="gs://bucket/a.mp3"), timeout=5
            )
        assert not fake.requests
        request = TranscribeRequest(
            b"", fmt, audio_url="https://example.test/a.mp3", provider_options={"smart_format": True}
        )
        answer = await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert sent.headers["Content-Type"].startswith("application/json")
    assert json.loads(sent.body) == {"url": "https://example.test/a.mp3"}
    assert sent.query["smart_format"] == "true"
    assert answer.duration == 2.5


async def test_provider_options_the_hub_sets_are_refused_naming_them(speech: Speech) -> None:
    async with fake_deepgram() as fake:
        request = TranscribeRequest(
            speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV), provider_options={"model": "x"}
        )
        with pytest.raises(InvalidRequest, match=r"provider_options\.model"):
            await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    assert not fake.requests


async def test_audio_deepgram_cannot_decode_is_an_invalid_request() -> None:
    async with fake_deepgram() as fake:
        request = TranscribeRequest(b"not audio at all" * 100, AudioFormat(E.MP3, C.MP3))
        with pytest.raises(InvalidRequest, match="failed to process audio") as raised:
            await stt().transcribe(SECRET, opts(fake), request, timeout=5)
    assert raised.value.provider_status == 400
    assert "(request f1e2d3c4-" in str(raised.value)


# --- live -----------------------------------------------------------------------------


async def test_stream_gives_interim_then_final_results_with_endpointing(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    ended_at: list[float] = []

    async def audio_in() -> AsyncIterator[bytes]:
        async for piece in chunks(pcm, 3200, pause=0.002):
            yield piece
        ended_at.append(time.monotonic())

    async with fake_deepgram() as fake:
        request = StreamTranscribeRequest(
            audio_format=PCM_16K, language="en-US", endpointing_ms=300, keywords=["hub"]
        )
        events: list[tuple[float, StreamTranscribeEvent]] = []
        async for event in stream_stt().stream_transcribe(SECRET, opts(fake), request, audio_in(), timeout=5):
            events.append((time.monotonic(), event))
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("GET", "/v1/listen")
    assert sent.headers["Authorization"] == f"Token {KEY}"
    query = dict(sent.query)
    assert query == {
        "model": "nova-3",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "punctuate": "true",
        "diarize": "false",
        "vad_events": "true",
        "utterance_end_ms": "1000",
        "endpointing": "300",
        "language": "en-US",
        "keyterm": "hub",
    }
    session = fake.live[-1]
    assert sum(session.frames) == len(pcm)
    assert session.texts == ['{"type":"CloseStream"}']
    kinds = [e for _, e in events]
    assert isinstance(kinds[0], SpeechStarted)
    assert kinds[0].at == SPEECH_AT
    transcripts = [e for e in kinds if isinstance(e, TranscriptEvent)]
    assert any(not t.is_final for t in transcripts)
    assert transcripts[-1].is_final
    # the first interim result came while the client was still sending audio
    first_interim = next(at for at, e in events if isinstance(e, TranscriptEvent) and not e.is_final)
    assert first_interim < ended_at[0]
    # finals, in order, carry every word once, each with its timing
    finals = [t for t in transcripts if t.is_final]
    words = [w for t in finals for w in t.words]
    assert [w.text for w in words] == [PUNCTUATED[i % 4] for i in range(len(words))]
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(f.start is not None and f.end is not None and f.end > f.start for f in finals)
    # an interim result is replaced by the final of its segment: interim words are a prefix
    for index, event in enumerate(kinds):
        if isinstance(event, TranscriptEvent) and not event.is_final:
            final = next(e for e in kinds[index:] if isinstance(e, TranscriptEvent) and e.is_final)
            assert final.transcript.startswith(event.transcript)
    # each final ends an utterance (speech_final) once: no repeat for the UtteranceEnd
    for index, event in enumerate(kinds):
        if isinstance(event, TranscriptEvent) and event.is_final and event.words:
            assert isinstance(kinds[index + 1], UtteranceEnd)
            assert kinds[index + 1].at == event.words[-1].end  # type: ignore[union-attr]
    ends = [e for e in kinds if isinstance(e, UtteranceEnd)]
    assert len(ends) == len([f for f in finals if f.words])
    assert isinstance(kinds[-1], StreamTranscribeEnd)
    assert sum(isinstance(e, StreamTranscribeEnd) for e in kinds) == 1
    assert kinds[-1].duration == pytest.approx(len(pcm) / 32000, abs=0.001)
    assert kinds[-1].request_id
    assert kinds[-1].request_id.startswith("f1e2d3c4-")


async def test_utterance_end_messages_end_utterances_without_speech_final(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_deepgram(speech_final=False) as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K, punctuate=False)
        events = await collect(
            stream_stt().stream_transcribe(SECRET, opts(fake), request, chunks(pcm, 6400), timeout=5)
        )
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.is_final and e.words]
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert [w.text for w in finals[0].words] == [WORDS[i % 4] for i in range(len(finals[0].words))]
    assert len(ends) == len(finals)
    assert [u.at for u in ends] == [f.words[-1].end for f in finals]
    assert isinstance(events[-1], StreamTranscribeEnd)


async def test_phone_audio_and_container_streams(speech: Speech) -> None:
    mulaw = speech.file("raw_mulaw_8k")
    ogg = speech.data("ogg_opus_16k.opus")
    async with fake_deepgram() as fake:
        phone = StreamTranscribeRequest(
            audio_format=AudioFormat(E.MULAW, C.RAW, 8000), interim_results=False, model="nova-2-phonecall"
        )
        events = await collect(
            stream_stt().stream_transcribe(SECRET, opts(fake), phone, chunks(mulaw, 160), timeout=5)
        )
        query = fake.requests[-1].query
        assert (query["encoding"], query["sample_rate"], query["model"]) == (
            "mulaw",
            "8000",
            "nova-2-phonecall",
        )
        assert query["interim_results"] == "false"
        assert "utterance_end_ms" not in query
        assert all(e.is_final for e in events if isinstance(e, TranscriptEvent))
        assert events[-1] == StreamTranscribeEnd(
            duration=pytest.approx(len(mulaw) / 8000, abs=0.001),  # type: ignore[arg-type]
            request_id=events[-1].request_id,  # type: ignore[union-attr]
        )
        container = StreamTranscribeRequest(audio_format=AudioFormat(E.OPUS, C.OGG))
        await collect(
            stream_stt().stream_transcribe(SECRET, opts(fake), container, chunks(ogg, 1000), timeout=5)
        )
        assert not {"encoding", "sample_rate", "channels"} & set(fake.requests[-1].query)
        assert sum(fake.live[-1].frames) == len(ogg)
        mp4 = StreamTranscribeRequest(audio_format=AudioFormat(E.AAC, C.MP4))
        count = len(fake.requests)
        with pytest.raises(InvalidRequest, match="aac in a mp4 container"):
            await collect(stream_stt().stream_transcribe(SECRET, opts(fake), mp4, chunks(b"x", 1), timeout=5))
        assert len(fake.requests) == count


async def test_large_chunks_go_in_frames_deepgram_takes(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_deepgram() as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K)
        await collect(
            stream_stt().stream_transcribe(SECRET, opts(fake), request, chunks(pcm, len(pcm)), timeout=5)
        )
    frames = fake.live[-1].frames
    assert sum(frames) == len(pcm)
    assert max(frames) <= deepgram_transcribe.MAX_FRAME_BYTES
    assert 0 not in frames


async def test_keepalive_goes_up_while_the_client_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deepgram_transcribe, "KEEPALIVE_SECONDS", 0.05)

    async def paused() -> AsyncIterator[bytes]:
        yield b"\0" * 3200
        await asyncio.sleep(0.3)
        yield b"\0" * 3200

    async with fake_deepgram() as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K)
        events = await collect(
            stream_stt().stream_transcribe(SECRET, opts(fake), request, paused(), timeout=5)
        )
    texts = fake.live[-1].texts
    assert texts.count('{"type":"KeepAlive"}') >= 3
    assert texts[-1] == '{"type":"CloseStream"}'
    assert isinstance(events[-1], StreamTranscribeEnd)


async def test_cancelling_a_stream_closes_the_websocket_at_once(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield pcm[:3200]
            await asyncio.sleep(0.01)

    async with fake_deepgram(hang=True) as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K)
        stream = stream_stt().stream_transcribe(SECRET, opts(fake), request, endless(), timeout=5)
        consumer = asyncio.ensure_future(anext(stream))
        for _ in range(200):
            if fake.live and len(fake.live[-1].frames) > 3:
                break
            await asyncio.sleep(0.01)
        consumer.cancel()
        cancelled = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await stream.aclose()  # type: ignore[attr-defined]
        closed = await fake.wait_for_live_close()
    assert closed - cancelled < 0.1


async def test_closing_a_stream_between_events_closes_the_websocket_at_once(speech: Speech) -> None:
    pcm = speech.file("raw_pcm_16k")
    async with fake_deepgram() as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K)
        stream = stream_stt().stream_transcribe(
            SECRET, opts(fake), request, chunks(pcm, 3200, 0.01), timeout=5
        )
        first = await anext(stream)
        assert isinstance(first, SpeechStarted)
        closing = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        closed = await fake.wait_for_live_close()
    assert closed - closing < 0.1
    assert sum(fake.live[-1].frames) < len(pcm)


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (1008, "DATA-0000: The payload cannot be decoded as audio.", InvalidRequest),
        (
            1011,
            "NET-0001: Deepgram did not receive audio data or a text message within the timeout.",
            ProviderTimeout,
        ),
        (1011, "NET-0000: The service has not transmitted a Text frame.", ProviderUnavailable),
    ],
)
async def test_deepgram_closing_a_stream_with_an_error_is_classified(
    code: int, reason: str, kind: type[CallerError]
) -> None:
    async with fake_deepgram(close_with=(code, reason)) as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K)
        with pytest.raises(kind) as raised:
            await collect(
                stream_stt().stream_transcribe(
                    SECRET, opts(fake), request, chunks(b"\0" * 32000, 3200), timeout=5
                )
            )
    assert reason in str(raised.value)
    assert str(code) in str(raised.value)


@pytest.mark.parametrize("knob", ["hang", "ignore_close_stream"])
async def test_a_stream_that_goes_quiet_after_the_audio_is_a_timeout(knob: str) -> None:
    async with fake_deepgram(**{knob: True}) as fake:
        request = StreamTranscribeRequest(audio_format=PCM_16K)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="end of the audio"):
            await collect(
                stream_stt().stream_transcribe(
                    SECRET, opts(fake), request, chunks(b"\0" * 9600, 3200), timeout=0.3
                )
            )
        await fake.wait_for_live_close()
    assert time.monotonic() - started < 2


# --- speech -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "query"),
    [
        (
            AudioFormat(E.PCM_S16LE, C.WAV, 8000),
            {"encoding": "linear16", "container": "wav", "sample_rate": "8000"},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.WAV, 16000),
            {"encoding": "linear16", "container": "wav", "sample_rate": "16000"},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.RAW, 24000),
            {"encoding": "linear16", "container": "none", "sample_rate": "24000"},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.RAW, 48000),
            {"encoding": "linear16", "container": "none", "sample_rate": "48000"},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.WAV, 22050),
            {"encoding": "linear16", "container": "none", "sample_rate": "24000"},
        ),
        (
            AudioFormat(E.PCM_S16LE, C.RAW, 44100),
            {"encoding": "linear16", "container": "none", "sample_rate": "48000"},
        ),
        (
            AudioFormat(E.MULAW, C.RAW, 8000),
            {"encoding": "mulaw", "container": "none", "sample_rate": "8000"},
        ),
        (AudioFormat(E.ALAW, C.WAV, 8000), {"encoding": "alaw", "container": "wav", "sample_rate": "8000"}),
        (AudioFormat(E.MP3, C.MP3, 22050), {"encoding": "mp3"}),
        (
            AudioFormat(E.MP3, C.MP3, 24000),
            {"encoding": "linear16", "container": "none", "sample_rate": "24000"},
        ),
        (AudioFormat(E.OPUS, C.OGG, 48000), {"encoding": "opus", "container": "ogg"}),
        (
            AudioFormat(E.OPUS, C.OGG, 16000),
            {"encoding": "linear16", "container": "none", "sample_rate": "16000"},
        ),
        (AudioFormat(E.FLAC, C.RAW, 16000), {"encoding": "flac", "sample_rate": "16000"}),
        (
            AudioFormat(E.FLAC, C.RAW, 24000),
            {"encoding": "linear16", "container": "none", "sample_rate": "24000"},
        ),
    ],
)
async def test_synthesis_answers_exactly_the_asked_format(asked: AudioFormat, query: dict[str, str]) -> None:
    async with fake_deepgram() as fake:
        request = SynthesizeRequest(text=TEXT, voice="aura-2-thalia-en", output_format=asked)
        answer = await tts().synthesize(SECRET, opts(fake), request, timeout=5)
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/speak")
    assert sent.headers["Authorization"] == f"Token {KEY}"
    assert json.loads(sent.body) == {"text": TEXT}
    assert {k: v for k, v in sent.query.items() if k != "model"} == query
    assert sent.query["model"] == "aura-2-thalia-en"
    assert answer.audio_format == asked
    assert answer.request_id
    assert answer.request_id.startswith("f1e2d3c4-")
    info = audio.probe(answer.audio, asked)
    assert info.sample_rate_hz == asked.sample_rate_hz
    assert info.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.1)
    if asked.container is C.RAW and asked.encoding is not E.FLAC and asked.encoding is not E.MP3:
        assert not answer.audio.startswith(b"RIFF")
        assert answer.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.01)
    else:
        decoded = sf.info(io.BytesIO(answer.audio))
        assert decoded.samplerate == asked.sample_rate_hz
        assert decoded.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.1)


async def test_a_bare_voice_name_speed_and_provider_options() -> None:
    async with fake_deepgram() as fake:
        fmt = AudioFormat(E.MP3, C.MP3, 22050)
        request = SynthesizeRequest(TEXT, "celeste", fmt, language="es-CO", speed=1.25)
        await tts().synthesize(SECRET, opts(fake), request, timeout=5)
        assert fake.requests[-1].query["model"] == "aura-2-celeste-es"
        assert fake.requests[-1].query["speed"] == "1.25"
        request = SynthesizeRequest(
            TEXT, "zeus", fmt, provider_options={"bit_rate": 32000, "mip_opt_out": True}
        )
        await tts().synthesize(SECRET, opts(fake), request, timeout=5)
        assert fake.requests[-1].query["model"] == "aura-2-zeus-en"
        assert (fake.requests[-1].query["bit_rate"], fake.requests[-1].query["mip_opt_out"]) == (
            "32000",
            "true",
        )
        with pytest.raises(InvalidRequest, match="No such model: aura-2-nobody-en"):
            await tts().synthesize(SECRET, opts(fake), SynthesizeRequest(TEXT, "nobody", fmt), timeout=5)
        count = len(fake.requests)
        with pytest.raises(InvalidRequest, match="ssml"):
            await tts().synthesize(
                SECRET,
                opts(fake),
                SynthesizeRequest("<speak>hi</speak>", "zeus", fmt, is_ssml=True),
                timeout=5,
            )
        with pytest.raises(InvalidRequest, match=r"provider_options\.encoding"):
            await tts().synthesize(
                SECRET,
                opts(fake),
                SynthesizeRequest(TEXT, "zeus", fmt, provider_options={"encoding": "aac"}),
                timeout=5,
            )
        assert len(fake.requests) == count


@pytest.mark.parametrize(
    ("asked", "encoding"),
    [
        (AudioFormat(E.MULAW, C.RAW, 8000), "mulaw"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 22050), "linear16"),
        (AudioFormat(E.PCM_S16LE, C.RAW, 16000), "linear16"),
    ],
)
async def test_streamed_synthesis_hands_on_pieces_as_they_arrive(asked: AudioFormat, encoding: str) -> None:
    async with fake_deepgram(chunk_bytes=1024) as fake:
        request = SynthesizeRequest(text=TEXT, voice="aura-2-thalia-en", output_format=asked)
        pieces = [c async for c in stream_tts().stream_synthesize(SECRET, opts(fake), request, timeout=5)]
    assert fake.requests[-1].query["encoding"] == encoding
    assert fake.requests[-1].query["container"] == "none"
    assert len(pieces) > 5
    assert pieces[-1].is_last
    assert not any(c.is_last for c in pieces[:-1])
    assert all(c.request_id and c.request_id.startswith("f1e2d3c4-") for c in pieces)
    total = b"".join(c.audio for c in pieces)
    assert audio.raw_seconds(len(total), asked) == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.02)


async def test_streamed_mp3_and_opus_are_deepgrams_own_and_files_are_refused() -> None:
    async with fake_deepgram(chunk_bytes=512) as fake:
        for asked in (AudioFormat(E.MP3, C.MP3, 22050), AudioFormat(E.OPUS, C.OGG, 48000)):
            request = SynthesizeRequest(text=TEXT, voice="aura-2-thalia-en", output_format=asked)
            pieces = [c async for c in stream_tts().stream_synthesize(SECRET, opts(fake), request, timeout=5)]
            assert len(pieces) > 2
            whole = b"".join(c.audio for c in pieces)
            assert sf.info(io.BytesIO(whole)).samplerate == asked.sample_rate_hz
        count = len(fake.requests)
        for refused in (AudioFormat(E.PCM_S16LE, C.WAV, 16000), AudioFormat(E.MP3, C.MP3, 24000)):
            request = SynthesizeRequest(text=TEXT, voice="aura-2-thalia-en", output_format=refused)
            with pytest.raises(InvalidRequest, match="output_format"):
                [c async for c in stream_tts().stream_synthesize(SECRET, opts(fake), request, timeout=5)]
        assert len(fake.requests) == count


async def test_closing_a_synthesis_stream_closes_the_connection_at_once() -> None:
    async with fake_deepgram(chunk_bytes=512, chunk_delay=0.01) as fake:
        request = SynthesizeRequest(
            text=TEXT * 5, voice="aura-2-thalia-en", output_format=AudioFormat(E.PCM_S16LE, C.RAW, 24000)
        )
        stream = stream_tts().stream_synthesize(SECRET, opts(fake), request, timeout=5)
        first = await anext(stream)
        assert first.audio
        closing = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(100):
            if fake.speak_closed_at is not None:
                break
            await asyncio.sleep(0.005)
    assert fake.speak_closed_at is not None
    assert fake.speak_closed_at - closing < 0.1


# --- voices and verify ------------------------------------------------------------------


async def test_voices_are_the_tts_models_with_gender_from_tags() -> None:
    async with fake_deepgram() as fake:
        every = await voices().list_voices(SECRET, opts(fake), language=None, timeout=5)
        english = await voices().list_voices(SECRET, opts(fake), language="en", timeout=5)
        spanish = await voices().list_voices(SECRET, opts(fake), language="es-co", timeout=5)
    assert fake.requests[-1].path == "/v1/models"
    assert fake.requests[-1].headers["Authorization"] == f"Token {KEY}"
    assert [v.id for v in every] == [
        "aura-2-thalia-en",
        "aura-2-zeus-en",
        "aura-2-celeste-es",
        "aura-asteria-en",
    ]
    assert {v.id for v in english} == {"aura-2-thalia-en", "aura-2-zeus-en", "aura-asteria-en"}
    assert [v.id for v in spanish] == ["aura-2-celeste-es"]
    thalia = every[0]
    assert (thalia.name, thalia.languages, thalia.gender, thalia.models) == (
        "Thalia",
        ["en", "en-US"],
        VoiceGender.FEMALE,
        ["aura-2"],
    )
    assert every[1].gender is VoiceGender.MALE
    assert every[3].gender is None
    assert every[3].models == ["aura"]


async def test_verify_lists_the_projects_of_the_key() -> None:
    wrong = "dg-wrong-key-which-must-never-leak-0123"
    async with fake_deepgram() as fake:
        good = await registry.verify("deepgram", SECRET, opts(fake), timeout=5)
        assert fake.requests[-1].path == "/v1/projects"
        assert (good.valid, good.detail) == (True, {"projects": "1"})
        bad = await registry.verify("deepgram", PlainSecret(api_key=wrong), opts(fake), timeout=5)
        assert not bad.valid
        assert "Invalid credentials" in bad.reason
        assert wrong not in bad.reason
        fake.force_status = 403
        denied = await registry.verify("deepgram", SECRET, opts(fake), timeout=5)
        assert not denied.valid
        fake.force_status = 503
        with pytest.raises(ProviderUnavailable):
            await registry.verify("deepgram", SECRET, opts(fake), timeout=5)


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, AuthenticationFailed),
        (402, PermissionDenied),
        (403, PermissionDenied),
        (404, NotFound),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
        (503, ProviderUnavailable),
    ],
)
async def test_every_status_is_classified_on_every_call(
    speech: Speech, status: int, kind: type[CallerError]
) -> None:
    async with fake_deepgram(force_status=status, retry_after="7") as fake:
        wav = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        speak = SynthesizeRequest(TEXT, "aura-2-thalia-en", AudioFormat(E.MP3, C.MP3, 22050))
        live = StreamTranscribeRequest(audio_format=PCM_16K)
        raised: list[CallerError] = []
        with pytest.raises(kind) as one:
            await stt().transcribe(SECRET, opts(fake), wav, timeout=5)
        raised.append(one.value)
        with pytest.raises(kind) as one:
            await tts().synthesize(SECRET, opts(fake), speak, timeout=5)
        raised.append(one.value)
        with pytest.raises(kind) as one:
            [c async for c in stream_tts().stream_synthesize(SECRET, opts(fake), speak, timeout=5)]
        raised.append(one.value)
        with pytest.raises(kind) as one:
            await collect(
                stream_stt().stream_transcribe(
                    SECRET, opts(fake), live, chunks(b"\0" * 6400, 3200), timeout=5
                )
            )
        raised.append(one.value)
        with pytest.raises(kind) as one:
            await voices().list_voices(SECRET, opts(fake), language=None, timeout=5)
        raised.append(one.value)
    for error in raised:
        assert error.provider_status == status
        assert "Deepgram: " in error.message
        assert "(request f1e2d3c4-" in error.message
        assert KEY not in str(error)
        assert KEY[8:] not in repr(error.args)
        if status == 429:
            assert error.retry_after == 7


async def test_a_rejected_key_never_appears_in_any_error(speech: Speech) -> None:
    wrong = PlainSecret(api_key="dg-wrong-secret-which-must-not-leak")
    async with fake_deepgram() as fake:
        wav = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        with pytest.raises(AuthenticationFailed) as rest:
            await stt().transcribe(wrong, opts(fake), wav, timeout=5)
        live = StreamTranscribeRequest(audio_format=PCM_16K)
        with pytest.raises(AuthenticationFailed) as ws:
            await collect(
                stream_stt().stream_transcribe(wrong, opts(fake), live, chunks(b"\0" * 3200, 3200), timeout=5)
            )
    for error in (rest.value, ws.value):
        assert "Invalid credentials" in str(error)
        assert "dg-wrong-secret" not in str(error)
        assert "must-not-leak" not in repr(error.__dict__)
        assert error.__cause__ is None
        assert error.__suppress_context__


async def test_a_deepgram_that_does_not_answer_is_a_timeout(speech: Speech) -> None:
    async with fake_deepgram(delay=3) as fake:
        started = time.monotonic()
        wav = TranscribeRequest(speech.file("wav_16k"), AudioFormat(E.PCM_S16LE, C.WAV))
        with pytest.raises(ProviderTimeout):
            await stt().transcribe(SECRET, opts(fake), wav, timeout=0.3)
        speak = SynthesizeRequest(TEXT, "aura-2-thalia-en", AudioFormat(E.MP3, C.MP3, 22050))
        with pytest.raises(ProviderTimeout):
            await tts().synthesize(SECRET, opts(fake), speak, timeout=0.3)
        with pytest.raises(ProviderTimeout, match="did not accept the stream"):
            await collect(
                stream_stt().stream_transcribe(
                    SECRET,
                    opts(fake),
                    StreamTranscribeRequest(audio_format=PCM_16K),
                    chunks(b"\0" * 320, 320),
                    timeout=0.3,
                )
            )
        with pytest.raises(ProviderTimeout):
            await registry.verify("deepgram", SECRET, opts(fake), timeout=0.3)
    assert time.monotonic() - started < 2.5


async def test_an_unreachable_base_url_is_unavailable() -> None:
    dead = {"base_url": "http://127.0.0.1:9"}
    with pytest.raises(ProviderUnavailable):
        await voices().list_voices(SECRET, dead, language=None, timeout=2)
    with pytest.raises(ProviderUnavailable):
        await collect(
            stream_stt().stream_transcribe(
                SECRET,
                dead,
                StreamTranscribeRequest(audio_format=PCM_16K),
                chunks(b"\0" * 320, 320),
                timeout=2,
            )
        )
    await pools.close_all()
