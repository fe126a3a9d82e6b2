"""HubClient against a real hub in-process on loopback: the fake OpenAI upstream for chat,
embeddings and speech, the fake Voyage for rerank, and the `local` provider (the real
all-MiniLM-L6-v2) for embeddings. The client holds an invoke-only token, as the
chatbot's would; credentials are stored with the admin token, as an operator would.
"""

from __future__ import annotations

import ast
import contextlib
import io
import math
import socket
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from callers import registry
from chatbot.hub_client import HubCallError, HubClient
from chatbot.hub_types import (
    FLUSH,
    AudioFormat,
    AudioPiece,
    ChatEnd,
    Flush,
    Message,
    ModelRef,
    SpeechEnd,
    SpeechStarted,
    TextDelta,
    TranscriptionEnd,
    TranscriptPiece,
    Usage,
)
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes import deepgram_server, elevenlabs_server
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_audio import SECONDS_PER_CHAR, OpenAIAudio
from tests.fakes.openai_server import ChatReply, FakeOpenAI, fake_vector
from tests.fakes.voyage_server import FakeVoyage
from tests.harness import HubUnderTest, running_hub, settings_for

OPENAI_KEY = "sk-test-HubClient0123456789abcdef"
VOYAGE_KEY = "pa-HubClient0123456789abcdefghijklmnop"
TIMEOUT = 60.0  # the first local embed loads the model
# One attempt per call (errors are what they are), and a route named "smart".
POLICY = """
[defaults]
max_attempts = 1

[tenants.acme.routes.smart]
targets = [{credential = "openai", model = "gpt-4o-mini"}]
"""
ROOT = Path(__file__).resolve().parents[2]
QUESTION = [Message("system", "You answer from the handbook."), Message("user", "When do we open?")]


@dataclass
class Env:
    hut: HubUnderTest
    openai: FakeOpenAI
    audio: OpenAIAudio
    voyage: FakeVoyage
    client: HubClient


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    audio = OpenAIAudio(chunk_bytes=2048)
    upstream = FakeOpenAI(valid_keys={OPENAI_KEY})
    audio.install(upstream)
    async with (
        upstream,
        FakeVoyage(valid_keys={VOYAGE_KEY}) as voyage,
        running_hub(settings_for(tmp_path, database_url=None, policy=POLICY)) as hut,
    ):
        for provider, name, secret, options in (
            ("openai", "openai", {"api_key": OPENAI_KEY}, {"base_url": upstream.base_url}),
            ("voyageai", "voyage", {"api_key": VOYAGE_KEY}, {"base_url": voyage.base_url}),
            ("local", "local", {}, {}),
        ):
            await hut.credentials_stub().CreateCredential(
                cpb.CreateCredentialRequest(provider=provider, name=name, secret=secret, options=options),
                metadata=hut.auth(hut.tokens.admin),
                timeout=TIMEOUT,
            )
        async with HubClient(hut.grpc_target, hut.tokens.invoke_only, timeout=TIMEOUT) as client:
            yield Env(hut, upstream, audio, voyage, client)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def wav_tone(seconds: float, rate: int = 16000) -> bytes:
    frames = bytearray()
    for i in range(int(seconds * rate)):
        frames += int(8000 * math.sin(2 * math.pi * 440 * i / rate)).to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(frames))
    return out.getvalue()


# --- model names ------------------------------------------------------------------------------


def test_model_refs_are_named_as_the_hub_names_them() -> None:
    assert ModelRef.parse("openai/gpt-4o-mini") == ModelRef("openai", "gpt-4o-mini")
    assert ModelRef.parse("router/anthropic/claude-sonnet-4.5") == ModelRef(
        "router", "anthropic/claude-sonnet-4.5"
    )
    assert ModelRef.parse("smart") == ModelRef("", "smart") == ModelRef.route("smart")
    assert ModelRef.parse("smart").is_route
    assert ModelRef.parse("voice/") == ModelRef("voice", "")  # speech: the provider's default model
    assert str(ModelRef("openai", "gpt-4o-mini")) == "openai/gpt-4o-mini"
    assert str(ModelRef.route("smart")) == "smart"
    for bad in ("", "/gpt-4o", "  "):
        with pytest.raises(ValueError, match=r"route name|credential/model"):
            ModelRef.parse(bad)


def test_the_client_imports_only_the_hubs_generated_stubs() -> None:
    for path in sorted((ROOT / "chatbot").glob("hub_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert (
                    name.split(".")[0] not in ("integration_hub", "callers") or name == "integration_hub.v1"
                ), (
                    path,
                    name,
                )


async def test_the_token_is_never_shown() -> None:
    async with HubClient("127.0.0.1:1", "ihub_secret-token-value") as client:
        assert "ihub_secret" not in repr(client)
    with pytest.raises(ValueError, match="a hub token is required"):
        HubClient("127.0.0.1:1", "")


# --- embeddings -------------------------------------------------------------------------------


async def test_embed_batches_a_large_list_and_keeps_its_order(env: Env) -> None:
    texts = [f"chunk number {i} of the handbook" for i in range(150)]
    answer = await env.client.embed(texts, "openai/text-embedding-3-small", batch_size=64, dimensions=16)
    sent = [r.json()["input"] for r in env.openai.requests if r.path.endswith("/embeddings")]
    assert sorted(len(batch) for batch in sent) == [22, 64, 64]
    assert sorted(text for batch in sent for text in batch) == sorted(texts)
    assert len(answer.vectors) == len(texts)
    for text, vector in zip(texts, answer.vectors, strict=True):
        assert vector == pytest.approx(fake_vector(text, 16), abs=1e-6)
    words = sum(len(text.split()) for text in texts)
    assert answer.usage == Usage(input_tokens=words, total_tokens=words)
    assert answer.model == "text-embedding-3-small"


async def test_embed_with_the_local_model(env: Env) -> None:
    if not registry.sdk_installed("local"):
        pytest.skip("the extra `local` is not installed")
    texts = ["The office opens at nine.", "We open at 9 in the morning.", "Penguins live in Antarctica."]
    answer = await env.client.embed(texts, ModelRef("local", "all-MiniLM-L6-v2"), batch_size=2)
    assert [len(vector) for vector in answer.vectors] == [384, 384, 384]
    assert cosine(answer.vectors[0], answer.vectors[1]) > cosine(answer.vectors[0], answer.vectors[2]) + 0.3
    [query] = (
        await env.client.embed(["When do you open?"], "local/all-MiniLM-L6-v2", input_type="query")
    ).vectors
    assert cosine(query, answer.vectors[0]) > cosine(query, answer.vectors[2])
    assert answer.usage.input_tokens > 0
    assert (await env.client.embed([], "local/all-MiniLM-L6-v2")).vectors == []


async def test_a_failed_batch_fails_the_embed(env: Env) -> None:
    with pytest.raises(HubCallError) as caught:
        await env.client.embed(["a", "b", "c"], "local/no-such-model", batch_size=1)
    assert (caught.value.reason, caught.value.code) == ("PROVIDER_NOT_FOUND", grpc.StatusCode.NOT_FOUND)
    assert "all-MiniLM-L6-v2" in caught.value.message
    with pytest.raises(ValueError, match="batch_size must be 1 to 2048"):
        await env.client.embed(["a"], "local/all-MiniLM-L6-v2", batch_size=0)


async def test_rerank(env: Env) -> None:
    documents = ["stock prices fell", "the weather in paris is sunny", "paris museums", "rain in oslo"]
    answer = await env.client.rerank("weather in paris", documents, "voyage/rerank-2.5", top_n=2)
    assert len(answer.hits) == 2
    assert answer.hits[0].index == 1
    assert answer.hits[0].score >= answer.hits[1].score
    assert env.voyage.requests[-1].json["top_k"] == 2


# --- chat -------------------------------------------------------------------------------------


async def test_chat(env: Env) -> None:
    env.openai.script(
        ChatReply(text="We open at nine.", prompt_tokens=30, completion_tokens=5, cached_tokens=10)
    )
    answer = await env.client.chat("openai/gpt-4o-mini", QUESTION, temperature=0.2, max_output_tokens=100)
    assert (answer.text, answer.finish_reason, answer.provider) == ("We open at nine.", "stop", "openai")
    assert answer.usage == Usage(input_tokens=30, output_tokens=5, cached_tokens=10, total_tokens=35)
    body = env.openai.requests[-1].json()
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["temperature"] == 0.2
    assert body["model"] == "gpt-4o-mini"


async def test_stream_chat_yields_deltas_then_the_end_with_usage(env: Env) -> None:
    env.openai.script(ChatReply(text="We open at nine tomorrow.", prompt_tokens=20, completion_tokens=6))
    items = [item async for item in env.client.stream_chat("openai/gpt-4o-mini", QUESTION)]
    *deltas, end = items
    assert all(isinstance(item, TextDelta) for item in deltas)
    assert len(deltas) > 1
    assert "".join(item.text for item in deltas if isinstance(item, TextDelta)) == "We open at nine tomorrow."
    assert isinstance(end, ChatEnd)
    assert (end.finish_reason, end.provider) == ("stop", "openai")
    assert end.usage == Usage(input_tokens=20, output_tokens=6, total_tokens=26)
    assert end.time_to_first_token is not None
    assert end.time_to_first_token > 0


async def test_leaving_a_stream_early_cancels_it_upstream(env: Env) -> None:
    env.openai.script(ChatReply(text="one two three four", hold_open=True))
    stream = env.client.stream_chat("openai/gpt-4o-mini", QUESTION)
    async with contextlib.aclosing(stream):
        first = await anext(stream)
        assert first == TextDelta("one ")
    await env.openai.wait_for_disconnect(timeout=5.0)
    assert env.openai.disconnects == 1


async def test_a_route_is_named_by_its_name(env: Env) -> None:
    env.openai.script(ChatReply(text="Routed."))
    answer = await env.client.chat("smart", QUESTION)
    assert answer.text == "Routed."
    assert env.openai.requests[-1].json()["model"] == "gpt-4o-mini"
    with pytest.raises(HubCallError) as caught:
        await env.client.chat("dumb", QUESTION)
    assert caught.value.reason == "UNKNOWN_ROUTE"
    assert caught.value.metadata["route"] == "dumb"
    assert not caught.value.retryable


# --- speech -----------------------------------------------------------------------------------


async def test_transcribe(env: Env) -> None:
    recording = wav_tone(1.5)
    answer = await env.client.transcribe(
        recording,
        "openai/whisper-1",
        audio_format=AudioFormat(container="wav"),
        language="en",
        word_timestamps=True,
    )
    assert answer.text == env.audio.transcript
    assert answer.provider == "openai"
    assert answer.audio_seconds == pytest.approx(1.5, abs=0.01)
    assert [word.text for word in answer.words] == [w.strip(".,") for w in env.audio.transcript.split()]
    assert env.audio.uploads[-1]["model"] == "whisper-1"


async def test_synthesize_and_stream_it(env: Env) -> None:
    text = "Your answer, read aloud."
    wav = AudioFormat(container="wav", encoding="linear16", sample_rate_hz=16000)
    speech = await env.client.synthesize(text, "openai/tts-1", voice="alloy", output_format=wav)
    assert speech.audio[:4] == b"RIFF"
    assert speech.audio_format == AudioFormat(
        container="wav", encoding="linear16", sample_rate_hz=16000, channels=1
    )
    assert speech.audio_seconds == pytest.approx(len(text) * SECONDS_PER_CHAR, abs=0.05)
    assert speech.characters == len(text)

    raw = AudioFormat(container="raw", encoding="linear16", sample_rate_hz=16000)
    items = [
        item
        async for item in env.client.stream_synthesize(text, "openai/tts-1", voice="alloy", output_format=raw)
    ]
    *pieces, end = items
    assert len(pieces) > 1
    assert all(isinstance(piece, AudioPiece) for piece in pieces)
    audio = b"".join(piece.data for piece in pieces if isinstance(piece, AudioPiece))
    assert len(audio) / 2 / 16000 == pytest.approx(len(text) * SECONDS_PER_CHAR, abs=0.05)
    assert isinstance(end, SpeechEnd)
    assert (end.characters, end.provider) == (len(text), "openai")


async def test_list_voices(env: Env) -> None:
    voices = await env.client.list_voices("openai", language="en")
    assert "alloy" in {voice.id for voice in voices}
    assert all(voice.id and voice.name for voice in voices)
    with pytest.raises(HubCallError) as caught:
        await env.client.list_voices("local")
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CAPABILITY_NOT_SUPPORTED",
    )


async def test_audio_format_names_are_checked() -> None:
    async with HubClient("127.0.0.1:1", "ihub_x") as client:
        with pytest.raises(ValueError, match="'wave' is not one of: raw, wav, ogg, webm, mp3, mp4, flac"):
            await client.transcribe(b"x", "voice/", audio_format=AudioFormat(container="wave"))


# --- errors -------------------------------------------------------------------------------------


async def test_provider_rate_limit_carries_the_reason_and_retry_delay(env: Env) -> None:
    env.openai.force_status, env.openai.retry_after = 429, "7"
    with pytest.raises(HubCallError) as caught:
        await env.client.chat("openai/gpt-4o-mini", QUESTION)
    error = caught.value
    assert (error.method, error.code, error.reason) == (
        "Chat",
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "PROVIDER_RATE_LIMITED",
    )
    assert error.retry_after == 7
    assert error.retryable
    assert str(error).startswith("hub Chat failed: PROVIDER_RATE_LIMITED: ")
    with pytest.raises(HubCallError) as streamed:
        async for _ in env.client.stream_chat("openai/gpt-4o-mini", QUESTION):
            pass
    assert (streamed.value.method, streamed.value.reason) == ("StreamChat", "PROVIDER_RATE_LIMITED")


async def test_unknown_credential_and_bad_field(env: Env) -> None:
    with pytest.raises(HubCallError) as caught:
        await env.client.chat("nobody/gpt-4o-mini", QUESTION)
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.NOT_FOUND, "CREDENTIAL_NOT_FOUND")
    with pytest.raises(HubCallError) as caught:
        await env.client.embed(["x"], "openai/text-embedding-3-small", dimensions=0)
    assert (caught.value.reason, caught.value.metadata.get("field")) == ("INVALID_FIELD", "dimensions")


async def test_a_wrong_token_is_unauthenticated_and_never_echoed(env: Env) -> None:
    token = "ihub_" + "W" * 43
    async with HubClient(env.hut.grpc_target, token) as stranger:
        with pytest.raises(HubCallError) as caught:
            await stranger.embed(["x"], "local/all-MiniLM-L6-v2")
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert token not in str(caught.value)
    assert not caught.value.retryable


async def test_an_unreachable_hub_is_a_retryable_error_without_reason() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with HubClient(f"127.0.0.1:{port}", "ihub_" + "x" * 43, timeout=3.0) as client:
        with pytest.raises(HubCallError) as caught:
            await client.chat("openai/gpt-4o-mini", QUESTION)
    assert caught.value.reason == ""
    assert caught.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert caught.value.retryable


# --- live speech: streaming transcription and input-streamed synthesis -----------------------------

DEEPGRAM_KEY = "dg-test-key-HubClient0123456789abcdef"
ELEVENLABS_KEY = "sk_test_elevenlabs_HubClient0123456789"
RACHEL = "21m00Tcm4TlvDq8ikWAM"  # one of the fake's voices
PCM_16K = AudioFormat(encoding="linear16", sample_rate_hz=16000)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[HubClient, FakeDeepgram, FakeElevenLabs]]:
    async with (
        FakeDeepgram(valid_keys={DEEPGRAM_KEY}) as deepgram,
        FakeElevenLabs(valid_keys={ELEVENLABS_KEY}) as elevenlabs,
        running_hub(settings_for(tmp_path, database_url=None)) as hut,
    ):
        for provider, name, key, base_url in (
            ("deepgram", "ears", DEEPGRAM_KEY, deepgram.base_url),
            ("elevenlabs", "mouth", ELEVENLABS_KEY, elevenlabs.base_url),
        ):
            await hut.credentials_stub().CreateCredential(
                cpb.CreateCredentialRequest(
                    provider=provider, name=name, secret={"api_key": key}, options={"base_url": base_url}
                ),
                metadata=hut.auth(hut.tokens.admin),
                timeout=TIMEOUT,
            )
        async with HubClient(hut.grpc_target, hut.tokens.invoke_only, timeout=TIMEOUT) as client:
            yield client, deepgram, elevenlabs


async def test_stream_transcribe(live: tuple[HubClient, FakeDeepgram, FakeElevenLabs]) -> None:
    client, _, _ = live
    pcm = bytes(2 * 16000 * 3)  # 3 s of linear16 at 16 kHz: the fake hears a word per 0.3 s

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(pcm), 3200):  # 100 ms, as a live source sends them
            yield pcm[at : at + 3200]

    items = [
        item
        async for item in client.stream_transcribe(
            chunks(), "ears/nova-3", audio_format=PCM_16K, language="en", timeout=TIMEOUT
        )
    ]
    *events, end = items
    assert isinstance(end, TranscriptionEnd)
    assert end.provider == "deepgram"
    assert end.audio_seconds == pytest.approx(3.0, abs=0.05)
    assert any(isinstance(item, SpeechStarted) for item in events)
    pieces = [item for item in events if isinstance(item, TranscriptPiece)]
    assert any(not piece.is_final for piece in pieces), "interim results were asked for"
    finals = " ".join(piece.text for piece in pieces if piece.is_final).lower().split()
    assert finals
    assert finals == [deepgram_server.WORDS[i % len(deepgram_server.WORDS)] for i in range(len(finals))]


async def test_stream_synthesize_input(live: tuple[HubClient, FakeDeepgram, FakeElevenLabs]) -> None:
    client, _, elevenlabs = live
    fragments: tuple[str | Flush, ...] = (
        "Thanks for call",
        "ing. Your order",
        " ships today",
        FLUSH,
        " by noon.",
    )
    spoken = "".join(f for f in fragments if isinstance(f, str))

    async def text() -> AsyncIterator[str | Flush]:
        for fragment in fragments:
            yield fragment

    items = [
        item
        async for item in client.stream_synthesize_input(
            text(), "mouth/eleven_multilingual_v2", voice=RACHEL, output_format=PCM_16K, timeout=TIMEOUT
        )
    ]
    *pieces, end = items
    assert pieces
    assert all(isinstance(piece, AudioPiece) for piece in pieces)
    pcm = b"".join(piece.data for piece in pieces if isinstance(piece, AudioPiece))
    assert len(pcm) / 32000 == pytest.approx(len(spoken) * elevenlabs_server.SECONDS_PER_CHAR, abs=0.25)
    assert isinstance(end, SpeechEnd)
    assert (end.characters, end.provider) == (len(spoken), "elevenlabs")
    sent = [m.get("text", "") for session in elevenlabs.ws_sessions for m in session.messages[1:]]
    assert " ".join("".join(sent).split()) == " ".join(spoken.split())
