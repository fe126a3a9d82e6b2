"""SpeechService end to end: gRPC and REST through a stored credential to the fake
OpenAI audio endpoints on loopback; bad audio refused before any provider call."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import grpc
import openai
import pytest

from callers import audio
from callers.types import AudioContainer
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import speech_pb2 as pb
from integration_hub.v1 import speech_pb2_grpc, usage_pb2_grpc
from integration_hub.v1 import usage_pb2 as upb
from tests.fakes.openai_audio import SECONDS_PER_CHAR, OpenAIAudio
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import HubUnderTest, eventually
from tests.speech.conftest import Speech

KEY = "sk-test-SpeechPath0123456789ab"
TEXT = "Your appointment is confirmed for Tuesday."


@pytest.fixture
async def sound() -> AsyncIterator[tuple[FakeOpenAI, OpenAIAudio]]:
    tracks = OpenAIAudio(chunk_bytes=2048)
    fake = FakeOpenAI(valid_keys={KEY})
    tracks.install(fake)
    async with fake:
        yield fake, tracks


@pytest.fixture
async def hub(hut: HubUnderTest, sound: tuple[FakeOpenAI, OpenAIAudio]) -> HubUnderTest:
    fake, _ = sound
    await hut.credentials_stub().CreateCredential(
        cpb.CreateCredentialRequest(
            provider="openai", name="voice", secret={"api_key": KEY}, options={"base_url": fake.base_url}
        ),
        metadata=hut.auth(hut.tokens.admin),
    )
    return hut


def stub(hut: HubUnderTest) -> speech_pb2_grpc.SpeechServiceStub:
    return speech_pb2_grpc.SpeechServiceStub(hut.channel)


async def test_transcribe_over_grpc(
    hub: HubUnderTest, sound: tuple[FakeOpenAI, OpenAIAudio], speech: Speech
) -> None:
    _, tracks = sound
    wav = speech.file("wav_16k")
    response = await stub(hub).Transcribe(
        pb.TranscribeRequest(
            credential="voice",
            audio=wav,
            audio_format=pb.AudioFormat(container=pb.AUDIO_CONTAINER_WAV),
            options=pb.TranscriptionOptions(language="en-US", word_timestamps=True),
        ),
        metadata=hub.auth(hub.tokens.invoke_only),
    )
    assert response.transcript == tracks.transcript
    assert response.provider == "openai"
    assert response.provider_request_id == "req_stt"
    assert len(response.words) == len(tracks.transcript.split())
    duration = audio.probe(wav, AudioContainer.WAV).duration
    assert response.audio_duration.ToNanoseconds() / 1e9 == pytest.approx(duration, abs=0.01)
    assert response.timings.total.ToNanoseconds() >= response.timings.upstream.ToNanoseconds() > 0
    assert tracks.uploads[-1]["model"] == "whisper-1"  # no model: the provider's default


@pytest.mark.parametrize(
    ("audio_bytes", "audio_format", "field"),
    [
        (b"RIFF\x00\x00garbage-not-a-wav", pb.AudioFormat(container=pb.AUDIO_CONTAINER_WAV), "audio"),
        (
            b"\x00\x01" * 100,
            pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16),
            "audio_format.sample_rate_hz",
        ),
        (
            b"\x00\x01" * 100,
            pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=7000),
            "audio_format.sample_rate_hz",
        ),
        (b"abc", pb.AudioFormat(), "audio_format"),
        (b"", pb.AudioFormat(container=pb.AUDIO_CONTAINER_WAV), "audio"),
    ],
)
async def test_bad_audio_is_refused_naming_the_field_before_any_provider_call(
    hub: HubUnderTest,
    sound: tuple[FakeOpenAI, OpenAIAudio],
    audio_bytes: bytes,
    audio_format: pb.AudioFormat,
    field: str,
) -> None:
    fake, _ = sound
    before = len(fake.requests)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub(hub).Transcribe(
            pb.TranscribeRequest(credential="voice", audio=audio_bytes, audio_format=audio_format),
            metadata=hub.auth(hub.tokens.invoke_only),
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field)
    assert len(fake.requests) == before


async def test_synthesize_for_a_phone_line(hub: HubUnderTest) -> None:
    response = await stub(hub).Synthesize(
        pb.SynthesizeRequest(
            credential="voice",
            model="tts-1",
            text=TEXT,
            voice="alloy",
            output_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW),
        ),
        metadata=hub.auth(hub.tokens.invoke_only),
    )
    assert response.audio_format.sample_rate_hz == 8000  # mu-law's default rate
    assert response.audio_format.container == pb.AUDIO_CONTAINER_RAW
    assert len(response.audio) / 8000 == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.02)
    assert response.audio_duration.ToNanoseconds() / 1e9 == pytest.approx(
        len(response.audio) / 8000, abs=0.001
    )
    assert response.characters == len(TEXT)
    assert response.provider == "openai"


async def test_stream_synthesize_over_grpc(hub: HubUnderTest) -> None:
    chunks, end = [], None
    async for message in stub(hub).StreamSynthesize(
        pb.SynthesizeRequest(
            credential="voice",
            text=TEXT,
            voice="nova",
            output_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000),
        ),
        metadata=hub.auth(hub.tokens.invoke_only),
    ):
        if message.WhichOneof("event") == "audio":
            chunks.append(message.audio)
        else:
            end = message.end
    assert len(chunks) > 3
    assert end is not None
    pcm = b"".join(chunks)
    assert len(pcm) / 32000 == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.02)
    assert end.audio_duration.ToNanoseconds() / 1e9 == pytest.approx(len(pcm) / 32000, abs=0.001)
    assert end.characters == len(TEXT)
    assert end.provider_request_id == "req_tts"
    assert end.timings.time_to_first_token.ToNanoseconds() > 0


async def test_a_wav_file_cannot_be_streamed(
    hub: HubUnderTest, sound: tuple[FakeOpenAI, OpenAIAudio]
) -> None:
    fake, _ = sound
    before = len(fake.requests)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub(hub).StreamSynthesize(
            pb.SynthesizeRequest(
                credential="voice",
                text=TEXT,
                voice="nova",
                output_format=pb.AudioFormat(container=pb.AUDIO_CONTAINER_WAV),
            ),
            metadata=hub.auth(hub.tokens.invoke_only),
        ):
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("output_format")
    assert len(fake.requests) == before


async def test_synthesize_over_rest(hub: HubUnderTest) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{hub.http_base}/v1/speech:synthesize",
            json={
                "credential": "voice",
                "text": TEXT,
                "voice": "alloy",
                "outputFormat": {"container": "AUDIO_CONTAINER_MP3"},
            },
            headers=hub.headers(hub.tokens.invoke_only),
        ) as response,
    ):
        assert response.status == 200, await response.text()
        body = await response.json()
    mp3 = base64.b64decode(body["audio"])
    info = audio.probe(mp3, AudioContainer.MP3)
    assert info.sample_rate_hz == 24000
    assert info.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.1)


async def test_list_voices(hub: HubUnderTest) -> None:
    response = await stub(hub).ListVoices(
        pb.ListVoicesRequest(credential="voice", language="en"), metadata=hub.auth(hub.tokens.invoke_only)
    )
    assert "alloy" in [v.id for v in response.voices]


async def test_live_transcription_is_refused_for_a_provider_without_it(hub: HubUnderTest) -> None:
    async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield pb.StreamTranscribeRequest(
            config=pb.StreamTranscribeConfig(
                credential="voice",
                audio_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000),
            )
        )
        yield pb.StreamTranscribeRequest(audio=b"\x00\x00" * 1600)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub(hub).StreamTranscribe(requests(), metadata=hub.auth(hub.tokens.invoke_only)):
            pass
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stream_stt" in raised.value.details()


async def test_a_live_stream_must_start_with_its_config(hub: HubUnderTest) -> None:
    async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield pb.StreamTranscribeRequest(audio=b"\x00\x00" * 160)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub(hub).StreamTranscribe(requests(), metadata=hub.auth(hub.tokens.invoke_only)):
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("config")


async def test_speech_needs_a_token(hub: HubUnderTest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub(hub).ListVoices(pb.ListVoicesRequest(credential="voice"))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
async def client(hub: HubUnderTest) -> AsyncIterator[openai.AsyncOpenAI]:
    # Closed here: an SDK client left to the garbage collector closes its pool after the
    # test's loop is gone, and logs that failure into whichever test runs then.
    async with sdk(hub) as sdk_client:
        yield sdk_client


def sdk(hut: HubUnderTest) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=hut.http_base + "/openai/v1", api_key=hut.tokens.invoke_only, max_retries=0
    )


async def test_openai_sdk_transcription_through_the_hub(
    client: openai.AsyncOpenAI, hub: HubUnderTest, sound: tuple[FakeOpenAI, OpenAIAudio], speech: Speech
) -> None:
    _, tracks = sound
    wav = speech.file("wav_16k")
    plain = await client.audio.transcriptions.create(model="voice/whisper-1", file=("hello.wav", wav))
    assert plain.text == tracks.transcript
    verbose = await client.audio.transcriptions.create(
        model="voice/whisper-1",
        file=("hello.wav", wav),
        response_format="verbose_json",
        timestamp_granularities=["word"],
        language="en",
    )
    assert verbose.words is not None
    assert [w.word for w in verbose.words][:2] == ["The", "quick"]
    assert verbose.duration == pytest.approx(audio.probe(wav, AudioContainer.WAV).duration, abs=0.01)
    text = await client.audio.transcriptions.create(
        model="voice/", file=("hello.flac", speech.file("flac_16k")), response_format="text"
    )
    assert text.strip() == tracks.transcript
    assert tracks.uploads[-1]["model"] == "whisper-1"  # "voice/": the provider's default model


async def test_openai_sdk_refusals_name_the_parameter(
    client: openai.AsyncOpenAI, hub: HubUnderTest, sound: tuple[FakeOpenAI, OpenAIAudio]
) -> None:
    fake, _ = sound
    before = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as raised:
        await client.audio.transcriptions.create(
            model="voice/whisper-1", file=("x.wav", b"RIFFnot-a-wave-file")
        )
    assert raised.value.body["param"] == "audio"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as raised:
        await client.audio.speech.create(
            model="voice/tts-1", input="hi", voice="alloy", response_format="aac"
        )
    assert raised.value.body["param"] == "response_format"  # type: ignore[index]
    assert len(fake.requests) == before


@pytest.mark.parametrize(("response_format", "container"), [("mp3", "mp3"), ("wav", "wav"), ("opus", "ogg")])
async def test_openai_sdk_speech_through_the_hub(
    client: openai.AsyncOpenAI, hub: HubUnderTest, response_format: str, container: str
) -> None:
    answer = await client.audio.speech.create(
        model="voice/tts-1",
        input=TEXT,
        voice="alloy",
        response_format=response_format,  # type: ignore[arg-type]
    )
    data = answer.content
    info = audio.probe(data, AudioContainer(container))
    assert info.sample_rate_hz == 24000
    assert info.duration == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.1)


async def test_openai_sdk_streamed_pcm_speech(client: openai.AsyncOpenAI, hub: HubUnderTest) -> None:
    pieces = []
    async with client.audio.speech.with_streaming_response.create(
        model="voice/tts-1", input=TEXT, voice="alloy", response_format="pcm"
    ) as response:
        async for piece in response.iter_bytes():
            pieces.append(piece)
    pcm = b"".join(pieces)
    assert len(pcm) / 48000 == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.02)


async def test_speech_usage_is_counted_in_seconds_and_characters(hub: HubUnderTest, speech: Speech) -> None:
    wav = speech.file("wav_16k")
    invoke = hub.auth(hub.tokens.invoke_only)
    await stub(hub).Transcribe(
        pb.TranscribeRequest(
            credential="voice", audio=wav, audio_format=pb.AudioFormat(container=pb.AUDIO_CONTAINER_WAV)
        ),
        metadata=invoke,
    )
    spoken = await stub(hub).Synthesize(
        pb.SynthesizeRequest(
            credential="voice",
            text=TEXT,
            voice="alloy",
            output_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW),
        ),
        metadata=invoke,
    )
    usage = usage_pb2_grpc.UsageServiceStub(hub.channel)

    async def by_operation() -> dict[str, upb.UsageGroup] | None:
        answer = await usage.GetUsage(
            upb.GetUsageRequest(group_by=[upb.USAGE_GROUP_BY_OPERATION]), metadata=hub.auth(hub.tokens.admin)
        )
        groups = {g.operation: g for g in answer.groups}
        return groups if {"transcribe", "synthesize"} <= set(groups) else None

    groups = await eventually(by_operation, timeout=10)
    assert groups["transcribe"].audio_seconds == pytest.approx(
        audio.probe(wav, AudioContainer.WAV).duration, abs=0.01
    )
    assert groups["transcribe"].characters == 0
    assert groups["synthesize"].characters == len(TEXT)
    assert groups["synthesize"].audio_seconds == pytest.approx(len(spoken.audio) / 8000, abs=0.001)
    async with aiohttp.ClientSession() as session, session.get(f"{hub.http_base}/metrics") as response:
        exposition = await response.text()
    assert 'hub_characters_total{operation="synthesize",provider="openai"}' in exposition
    assert 'hub_audio_seconds_total{operation="transcribe",provider="openai"}' in exposition


async def test_rest_voices_and_streamed_synthesis(hub: HubUnderTest) -> None:
    headers = hub.headers(hub.tokens.invoke_only)
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{hub.http_base}/v1/voices?credential=voice&language=en", headers=headers
        ) as r:
            assert r.status == 200, await r.text()
            assert "nova" in [v["id"] for v in (await r.json())["voices"]]
        async with session.post(
            f"{hub.http_base}/v1/speech:synthesizeStream",
            json={
                "credential": "voice",
                "text": TEXT,
                "voice": "nova",
                "outputFormat": {"encoding": "AUDIO_ENCODING_MULAW"},
            },
            headers=headers,
        ) as r:
            assert r.status == 200, await r.text()
            # One {"result": message} per line, as grpc-gateway streams.
            lines = [json.loads(line)["result"] for line in (await r.text()).splitlines() if line.strip()]
    audio_bytes = b"".join(base64.b64decode(line["audio"]) for line in lines if "audio" in line)
    assert lines[-1]["end"]["characters"] == str(len(TEXT))
    assert len(audio_bytes) / 8000 == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.02)
