"""StreamTranscribe end to end: gRPC client -> hub -> a stored google_speech credential
-> Google's real StreamingRecognize protocol on a loopback fake, and back.

Covers what the caller tests cannot: the config-then-audio framing of the hub's own
API, results in order with endpointing, half-close flushing, cancel reaching the
provider, and an hour of audio streaming through in flat memory.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import duration_pb2

from callers import audio, pools
from callers.google_speech.errors import FirstStatus
from callers.types import AudioContainer
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import speech_pb2 as pb
from integration_hub.v1 import speech_pb2_grpc
from tests.fakes.google_speech_server import FakeGoogleSpeech
from tests.harness import HubUnderTest, running_hub, settings_for
from tests.speech.conftest import Speech

EMAIL = "hub-stream@fake-project.iam.gserviceaccount.com"
PCM_16K = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000)
BYTES_PER_SECOND = 32000  # linear16, 16 kHz, mono


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def google(private_key: rsa.RSAPrivateKey) -> AsyncIterator[FakeGoogleSpeech]:
    async with FakeGoogleSpeech(service_accounts={EMAIL: private_key.public_key()}) as fake:
        yield fake
    await pools.close_all()


def service_account(private_key: rsa.RSAPrivateKey, token_uri: str) -> str:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "00112233445566778899aabbccddeeff00112233",
            "private_key": pem,
            "client_email": EMAIL,
            "token_uri": token_uri,
        }
    )


async def store_credential(hut: HubUnderTest, fake: FakeGoogleSpeech, private_key: rsa.RSAPrivateKey) -> None:
    await hut.credentials_stub().CreateCredential(
        cpb.CreateCredentialRequest(
            provider="google_speech",
            name="ears",
            secret={"service_account_json": service_account(private_key, fake.token_uri)},
            options={"endpoint": fake.endpoint, "location": "global"},
        ),
        metadata=hut.auth(hut.tokens.admin),
    )


@pytest.fixture
async def hub(hut: HubUnderTest, google: FakeGoogleSpeech, private_key: rsa.RSAPrivateKey) -> HubUnderTest:
    await store_credential(hut, google, private_key)
    return hut


def config(**options: object) -> pb.StreamTranscribeRequest:
    return pb.StreamTranscribeRequest(
        config=pb.StreamTranscribeConfig(
            credential="ears",
            audio_format=PCM_16K,
            options=pb.TranscriptionOptions(language="en-US", word_timestamps=True),
            interim_results=True,
            **options,  # type: ignore[arg-type]
        )
    )


async def audio_requests(
    pcm: bytes, piece: int, pause: float = 0.0
) -> AsyncIterator[pb.StreamTranscribeRequest]:
    yield config()
    for at in range(0, len(pcm), piece):
        yield pb.StreamTranscribeRequest(audio=pcm[at : at + piece])
        if pause:
            await asyncio.sleep(pause)


def seconds(duration: duration_pb2.Duration) -> float:
    return duration.ToNanoseconds() / 1e9


async def test_results_arrive_in_order_and_half_close_flushes_the_last(
    hub: HubUnderTest, speech: Speech
) -> None:
    pcm = speech.file("raw_pcm_16k")
    stub = speech_pb2_grpc.SpeechServiceStub(hub.channel)
    async with asyncio.timeout(20):
        events = [
            event
            async for event in stub.StreamTranscribe(
                audio_requests(pcm, 6400), metadata=hub.auth(hub.tokens.invoke_only)
            )
        ]
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "speech_started"
    assert kinds[-2:] == ["utterance_end", "end"]
    results = [event.result for event in events if event.HasField("result")]
    assert [r.is_final for r in results] == [False] * (len(results) - 1) + [True]
    assert len(results) > 1, "the fake sends an interim result every second of audio"
    final = results[-1]
    assert final.transcript == "hello from the hub"
    assert [w.text for w in final.words] == ["hello", "from", "the", "hub"]
    assert seconds(final.end) == pytest.approx(len(pcm) / BYTES_PER_SECOND, abs=0.01)
    ends = [seconds(r.end) for r in results]
    assert ends == sorted(ends)
    end = events[-1].end
    assert end.provider == "google_speech"
    assert seconds(end.audio_duration) == pytest.approx(len(pcm) / BYTES_PER_SECOND, abs=0.01)
    assert seconds(end.timings.total) > 0


async def test_mulaw_from_a_phone_line_streams_through(
    hub: HubUnderTest, google: FakeGoogleSpeech, speech: Speech
) -> None:
    mulaw = speech.file("raw_mulaw_8k")

    async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield pb.StreamTranscribeRequest(
            config=pb.StreamTranscribeConfig(
                credential="ears",
                audio_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW, sample_rate_hz=8000),
                options=pb.TranscriptionOptions(language="en-US"),
            )
        )
        for at in range(0, len(mulaw), 160):  # 20 ms frames, as a phone media stream sends them
            yield pb.StreamTranscribeRequest(audio=mulaw[at : at + 160])

    stub = speech_pb2_grpc.SpeechServiceStub(hub.channel)
    async with asyncio.timeout(20):
        events = [
            e async for e in stub.StreamTranscribe(requests(), metadata=hub.auth(hub.tokens.invoke_only))
        ]
    finals = [e.result for e in events if e.HasField("result") and e.result.is_final]
    assert [f.transcript for f in finals] == ["hello from the hub"]
    assert seconds(events[-1].end.audio_duration) == pytest.approx(len(mulaw) / 8000, abs=0.02)
    assert google.stream_audio_bytes > 0


async def test_cancel_closes_the_providers_stream_within_100_ms(
    hub: HubUnderTest, google: FakeGoogleSpeech, speech: Speech
) -> None:
    google.stream_hang = True  # reads audio, never answers: only a cancel ends it
    pcm = speech.file("raw_pcm_16k")

    async def endless() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield config()
        while True:
            yield pb.StreamTranscribeRequest(audio=pcm[:3200])
            await asyncio.sleep(0.01)

    stub = speech_pb2_grpc.SpeechServiceStub(hub.channel)
    call = stub.StreamTranscribe(endless(), metadata=hub.auth(hub.tokens.invoke_only))
    async with asyncio.timeout(10):
        while google.stream_audio_bytes < 5 * 3200:
            await asyncio.sleep(0.005)
    cancelled = time.monotonic()
    call.cancel()
    async with asyncio.timeout(2):
        while not google.cancelled_at:
            await asyncio.sleep(0.002)
    assert google.cancelled_at[0] - cancelled < 0.1


async def test_a_stream_with_a_bad_credential_fails_with_the_providers_status(
    hub: HubUnderTest, google: FakeGoogleSpeech, speech: Speech
) -> None:
    google.force = (grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.")
    stub = speech_pb2_grpc.SpeechServiceStub(hub.channel)
    call = stub.StreamTranscribe(
        audio_requests(speech.file("raw_pcm_16k"), 3200), metadata=hub.auth(hub.tokens.invoke_only)
    )
    # grpc.aio's client can lose a status that lands while it writes (see FirstStatus):
    # the hub's own clients keep the first one the same way.
    status = FirstStatus()
    call.add_done_callback(status)
    with pytest.raises(grpc.aio.AioRpcError):
        await drain(call)
    assert status.code is grpc.StatusCode.UNAUTHENTICATED, (status.code, status.details)
    assert "PROVIDER_AUTH_FAILED" in str(status.trailing)


async def drain(call: AsyncIterator[object]) -> None:
    async with asyncio.timeout(20):
        async for _ in call:
            pass


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


async def test_an_hour_of_audio_streams_through_in_flat_memory(
    tmp_path: Path, google: FakeGoogleSpeech, private_key: rsa.RSAPrivateKey
) -> None:
    """3,600 s of 16 kHz linear16 (115 MB) through the hub as fast as it goes: the
    process's resident memory after the first five minutes stays within a few MB."""
    google.keep_audio = False
    google.interim_every = 1 << 40  # one final result at the end: the answer side stays small
    second = bytes(range(256)) * (BYTES_PER_SECOND // 256)  # one second of (noise) audio
    total_seconds = 3600
    samples: dict[int, int] = {}

    async def requests() -> AsyncIterator[pb.StreamTranscribeRequest]:
        yield config()
        for sent in range(total_seconds):
            if sent in (300, 1200, 2400, total_seconds - 1):
                samples[sent] = rss_bytes()
            yield pb.StreamTranscribeRequest(audio=second)

    async with running_hub(settings_for(tmp_path, database_url=None)) as hut:
        await store_credential(hut, google, private_key)
        stub = speech_pb2_grpc.SpeechServiceStub(hut.channel)
        async with asyncio.timeout(240):
            events = [
                e async for e in stub.StreamTranscribe(requests(), metadata=hut.auth(hut.tokens.invoke_only))
            ]
    assert google.stream_audio_bytes == total_seconds * BYTES_PER_SECOND
    assert seconds(events[-1].end.audio_duration) == pytest.approx(total_seconds, abs=0.01)
    growth = max(samples.values()) - samples[300]
    # Buffering the stream would hold ~100 MB by the end; chunk-by-chunk holds a few.
    assert growth < 16 * 1024 * 1024, {k: v // 1024 for k, v in samples.items()}


# --- StreamSynthesizeInput and StreamSynthesize, through the same credential -------------

CHIRP = "en-GB-Chirp3-HD-Aoede"
PCM_24K = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=24000)


async def text_requests(*fragments: str | None) -> AsyncIterator[pb.StreamSynthesizeInputRequest]:
    """A config, then `fragments` as an LLM would stream them (None: a flush)."""
    yield pb.StreamSynthesizeInputRequest(
        config=pb.StreamSynthesizeInputConfig(credential="ears", voice=CHIRP, output_format=PCM_24K)
    )
    for fragment in fragments:
        if fragment is None:
            yield pb.StreamSynthesizeInputRequest(flush=True)
        else:
            yield pb.StreamSynthesizeInputRequest(text=fragment)
        await asyncio.sleep(0.005)


async def test_input_streaming_through_the_hub(hub: HubUnderTest, google: FakeGoogleSpeech) -> None:
    stub = speech_pb2_grpc.SpeechServiceStub(hub.channel)
    async with asyncio.timeout(20):
        messages = [
            m
            async for m in stub.StreamSynthesizeInput(
                text_requests("Thanks for call", "ing. Your order", " ships today", None, " by noon"),
                metadata=hub.auth(hub.tokens.invoke_only),
            )
        ]
    sent = [r.input.text for r in google.streaming_synthesize_requests[1:]]
    assert sent == ["Thanks for calling. ", "Your order ships today", " by noon"]
    assert messages[-1].WhichOneof("event") == "end"
    audio_bytes = b"".join(m.audio for m in messages if m.WhichOneof("event") == "audio")
    assert len(audio_bytes) > 0
    assert len(audio_bytes) % 2 == 0, "whole 16-bit samples"
    end = messages[-1].end
    assert end.characters == len("Thanks for calling. Your order ships today by noon")
    assert seconds(end.audio_duration) == pytest.approx(len(audio_bytes) / 48000, abs=0.01)


async def test_stream_synthesize_through_the_hub(hub: HubUnderTest, google: FakeGoogleSpeech) -> None:
    stub = speech_pb2_grpc.SpeechServiceStub(hub.channel)
    request = pb.SynthesizeRequest(
        credential="ears",
        text="One moment please.",
        voice=CHIRP,
        output_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_MULAW, sample_rate_hz=8000),
    )
    async with asyncio.timeout(20):
        messages = [
            m async for m in stub.StreamSynthesize(request, metadata=hub.auth(hub.tokens.invoke_only))
        ]
    config = google.streaming_synthesize_requests[0].streaming_config
    assert config.streaming_audio_config.audio_encoding.name == "MULAW"
    audio_bytes = b"".join(m.audio for m in messages if m.WhichOneof("event") == "audio")
    assert len(audio_bytes) / 8000 == pytest.approx(seconds(messages[-1].end.audio_duration), abs=0.01)


async def test_a_voice_google_cannot_stream_is_refused_naming_it(
    hub: HubUnderTest, google: FakeGoogleSpeech
) -> None:
    stub = speech_pb2_grpc.SpeechServiceStub(hub.channel)
    request = pb.SynthesizeRequest(
        credential="ears", text="Hi.", voice="en-US-Neural2-C", output_format=PCM_24K
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await drain(stub.StreamSynthesize(request, metadata=hub.auth(hub.tokens.invoke_only)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("voice")
    assert not google.streaming_synthesize_requests


# --- the openai SDK's audio calls, answered by Google through the hub ----------------------


async def test_the_openai_sdk_transcribes_and_speaks_through_google(
    hub: HubUnderTest, google: FakeGoogleSpeech, speech: Speech
) -> None:
    async with openai.AsyncOpenAI(
        base_url=hub.http_base + "/openai/v1", api_key=hub.tokens.invoke_only, max_retries=0
    ) as client:
        text = await client.audio.transcriptions.create(
            model="ears/", file=("hello.wav", speech.file("wav_16k")), language="en"
        )
        assert text.text == google.transcript
        spoken = await client.audio.speech.create(
            model="ears/", input="See you soon.", voice="en-US-Neural2-C", response_format="wav"
        )
    wav = spoken.read()
    assert audio.probe(wav, AudioContainer.WAV).sample_rate_hz == 24000
    assert google.synthesize_requests[-1].voice.name == "en-US-Neural2-C"
