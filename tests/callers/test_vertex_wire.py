"""Vertex AI callers: a real service-account key (made here), the real google-genai SDK and
google-auth, against a local fake of Vertex AI and of Google's OAuth token endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from callers import pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    ChatCaller,
    Embedder,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    StreamChatCaller,
)
from callers.types import (
    ChatEvent,
    ChatRequest,
    ChatStreamEnd,
    EmbedInputType,
    EmbedRequest,
    FinishReason,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolResultMessage,
    UserMessage,
)
from tests.fakes.gemini_server import (
    CLOUD_PLATFORM,
    FakeGoogle,
    embedding_values,
    function_call_part,
    generate_response,
    text_part,
)
from tests.fakes.secret_fields import PlainSecret

EMAIL = "integration-hub@fake-project.iam.gserviceaccount.com"
PROJECT, LOCATION = "fake-project", "us-central1"
MODEL = "gemini-2.5-flash"
PREFIX = f"/v1/projects/{PROJECT}/locations/{LOCATION}"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def key_file(private_key: rsa.RSAPrivateKey, token_uri: str, email: str = EMAIL) -> PlainSecret:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    document = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return PlainSecret(service_account_json=json.dumps(document))


def options(fake: FakeGoogle, project: str = PROJECT) -> dict[str, str]:
    return {"project": project, "location": LOCATION, "base_url": fake.url}


def fake_for(private_key: rsa.RSAPrivateKey) -> FakeGoogle:
    return FakeGoogle(service_accounts={EMAIL: private_key.public_key()}, project=PROJECT, location=LOCATION)


def chat() -> Any:
    caller = registry.capability("vertex_ai", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    assert isinstance(caller, StreamChatCaller)
    return caller


def ask(text: str = "Weather in Paris?", **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[UserMessage([TextPart(text)])], **kwargs)


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


async def test_chat_exchanges_a_signed_assertion_for_a_token(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        fake.replies.append(generate_response([text_part("Sunny.")], response_id="vx-1"))
        response = await chat().chat(key_file(private_key, fake.token_uri), options(fake), ask(), timeout=5)
        token_uri = fake.token_uri
    assert response.message.text == "Sunny."
    assert response.request_id == "vx-1"
    token_request, call = fake.requests
    assert (token_request.method, token_request.path) == ("POST", "/token")
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    # The fake checked the RS256 signature with the key's public half; these are its claims.
    [claims] = fake.assertions
    assert claims["header"] == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": "0123456789abcdef0123456789abcdef01234567",
    }
    assert (claims["iss"], claims["aud"], claims["scope"]) == (EMAIL, token_uri, CLOUD_PLATFORM)
    assert claims["exp"] - claims["iat"] == 3600
    assert (call.method, call.path) == ("POST", f"{PREFIX}/publishers/google/models/{MODEL}:generateContent")
    assert call.headers["Authorization"] == "Bearer ya29.fake-1"
    assert call.json["contents"] == [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]


async def test_tool_round_trip_and_stream(private_key: rsa.RSAPrivateKey) -> None:
    weather = Tool(
        name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}}
    )
    async with fake_for(private_key) as fake:
        secret = key_file(private_key, fake.token_uri)
        fake.replies.append(generate_response([function_call_part("get_weather", {"city": "Paris"})]))
        first = await chat().chat(secret, options(fake), ask(tools=[weather]), timeout=5)
        [call] = first.message.tool_calls
        history = [*ask().messages, first.message, ToolResultMessage(call.id, "18 C")]
        fake.replies.append(generate_response([text_part("It is 18 C in Paris.")], output_tokens=7))
        events = [
            e
            async for e in chat().stream_chat(
                secret, options(fake), ChatRequest(model=MODEL, messages=history), timeout=5
            )
        ]
    assert first.finish_reason == FinishReason.TOOL_CALLS
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It is 18 C in Paris."
    end = events[-1]
    assert isinstance(end, ChatStreamEnd)
    assert (end.finish_reason, end.usage.output_tokens) == (FinishReason.STOP, 7)
    stream_request = fake.requests[-1]
    assert stream_request.path == f"{PREFIX}/publishers/google/models/{MODEL}:streamGenerateContent"
    assert stream_request.query == {"alt": "sse"}
    assert stream_request.json["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "18 C"}}}],
        },
    ]


async def test_streamed_tool_call(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        fake.replies.append(generate_response([function_call_part("get_weather", {"city": "Rome"})]))
        events = [
            e
            async for e in chat().stream_chat(
                key_file(private_key, fake.token_uri), options(fake), ask(), timeout=5
            )
        ]
    [delta] = [e for e in events if isinstance(e, ToolCallDelta)]
    assert (delta.index, delta.name, json.loads(delta.arguments_fragment)) == (
        0,
        "get_weather",
        {"city": "Rome"},
    )
    assert isinstance(events[-1], ChatStreamEnd)
    assert events[-1].finish_reason == FinishReason.TOOL_CALLS


async def test_embeddings_predict_and_batch(private_key: rsa.RSAPrivateKey) -> None:
    embedder = registry.capability("vertex_ai", Capability.EMBED)
    assert isinstance(embedder, Embedder)
    async with fake_for(private_key) as fake:
        secret = key_file(private_key, fake.token_uri)
        texts = ["first text", "second one here"]
        legacy = await embedder.embed(
            secret,
            options(fake),
            EmbedRequest(
                model="text-embedding-005", inputs=texts, dimensions=12, input_type=EmbedInputType.QUERY
            ),
            timeout=5,
        )
        predict = fake.requests[-1]
        gemini = await embedder.embed(
            secret,
            options(fake),
            EmbedRequest(
                model="gemini-embedding-001", inputs=texts, dimensions=6, input_type=EmbedInputType.DOCUMENT
            ),
            timeout=5,
        )
        batch = fake.requests[-1]
    assert legacy.vectors == [embedding_values(t, 12) for t in texts]
    assert legacy.usage.input_tokens == 5  # the statistics' token counts, summed
    assert predict.path == f"{PREFIX}/publishers/google/models/text-embedding-005:predict"
    assert predict.json == {
        "instances": [{"content": t, "task_type": "RETRIEVAL_QUERY"} for t in texts],
        "parameters": {"outputDimensionality": 12},
    }
    assert gemini.vectors == [embedding_values(t, 6) for t in texts]
    assert batch.path == f"{PREFIX}/publishers/google/models/gemini-embedding-001:batchEmbedContents"
    assert batch.json["requests"][0]["embedContentConfig"] == {
        "taskType": "RETRIEVAL_DOCUMENT",
        "outputDimensionality": 6,
    }


async def test_verify_lists_the_projects_models(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        result = await registry.verify(
            "vertex_ai", key_file(private_key, fake.token_uri), options(fake), timeout=5
        )
    assert (result.valid, result.reason) == (True, "ok")
    assert result.detail == {"project": PROJECT, "location": LOCATION}
    listing = fake.requests[-1]
    assert (listing.method, listing.path) == ("GET", f"{PREFIX}/models")
    assert listing.headers["Authorization"].startswith("Bearer ya29.fake-")


async def test_verify_rejects_a_key_google_does_not_know(private_key: rsa.RSAPrivateKey) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with fake_for(private_key) as fake:
        # Signed by a key that is not (or no longer) the service account's: the signature fails.
        forged = await registry.verify(
            "vertex_ai", key_file(other_key, fake.token_uri), options(fake), timeout=5
        )
        fake.token_error = (400, "invalid_grant", "Invalid grant: account not found")
        deleted = await registry.verify(
            "vertex_ai", key_file(private_key, fake.token_uri), options(fake), timeout=5
        )
    assert forged.valid is False
    assert forged.reason == "provider rejected the key (400): invalid_grant: Invalid JWT Signature."
    assert (
        deleted.reason == "provider rejected the key (400): invalid_grant: Invalid grant: account not found"
    )
    assert all(r.path == "/token" for r in fake.requests)  # Vertex itself was never called


async def test_verify_rejects_a_project_the_account_may_not_use(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        result = await registry.verify(
            "vertex_ai",
            key_file(private_key, fake.token_uri),
            options(fake, project="someone-else"),
            timeout=5,
        )
    assert result.valid is False
    assert result.reason.startswith(
        "provider rejected the key (403): Permission 'aiplatform.endpoints.predict' denied"
    )


async def test_unusable_key_file_says_so_without_its_content() -> None:
    secret = PlainSecret(
        service_account_json=json.dumps({"type": "service_account", "private_key": "-----BEGIN x"})
    )
    with pytest.raises(AuthenticationFailed) as caught:
        await chat().chat(secret, {"project": PROJECT, "base_url": "http://127.0.0.1:9"}, ask(), timeout=5)
    assert caught.value.message.startswith("the service-account key file cannot be used")
    assert "BEGIN" not in caught.value.message


async def test_token_endpoint_failures_cannot_tell(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        secret = key_file(private_key, fake.token_uri)
        fake.token_error = (503, "temporarily_unavailable", "try again")
        with pytest.raises(ProviderUnavailable, match="temporarily_unavailable: try again"):
            await registry.verify("vertex_ai", secret, options(fake), timeout=5)
        fake.token_error = (429, "rate_limit_exceeded", "slow down")
        with pytest.raises(RateLimited):
            await chat().chat(secret, options(fake), ask(), timeout=5)


async def test_vertex_errors_are_classified(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        secret = key_file(private_key, fake.token_uri)
        fake.force_status, fake.retry_delay = 429, "3s"
        with pytest.raises(RateLimited) as limited:
            await chat().chat(secret, options(fake), ask(), timeout=5)
        fake.force_status = None
        with pytest.raises(PermissionDenied):
            await chat().chat(secret, options(fake, project="someone-else"), ask(), timeout=5)
        fake.force_status = 503
        with pytest.raises(ProviderUnavailable):
            await chat().chat(secret, options(fake), ask(), timeout=5)
    assert limited.value.retry_after == 3.0


@pytest.mark.parametrize("slow", ["token endpoint", "model call"])
async def test_timeout_covers_the_token_exchange_and_the_call(
    private_key: rsa.RSAPrivateKey, slow: str
) -> None:
    async with fake_for(private_key) as fake:
        if slow == "token endpoint":
            fake.token_delay = 5.0
        else:
            fake.delay = 5.0
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await chat().chat(key_file(private_key, fake.token_uri), options(fake), ask(), timeout=0.5)
        assert time.monotonic() - started < 1.5
        await until(lambda: fake.disconnects)  # the abandoned request's connection was closed


async def test_cancelling_a_stream_closes_the_connection_promptly(private_key: rsa.RSAPrivateKey) -> None:
    async with fake_for(private_key) as fake:
        fake.replies.append(generate_response([text_part("A long answer that stalls half way.")]))
        fake.hang_after = 2
        received: list[ChatEvent] = []

        async def consume() -> None:
            async for event in chat().stream_chat(
                key_file(private_key, fake.token_uri), options(fake), ask(), timeout=30
            ):
                received.append(event)

        task = asyncio.create_task(consume())
        await until(lambda: len(received) == 2)
        await asyncio.sleep(0.05)
        cancelled_at = asyncio.get_running_loop().time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: fake.disconnects)
    assert fake.disconnects[0] - cancelled_at < 0.1


async def test_hub_environment_never_reaches_the_request(
    private_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-from-environment")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "project-from-environment")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "false")
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/adc.json")
    async with fake_for(private_key) as fake:
        await chat().chat(key_file(private_key, fake.token_uri), options(fake), ask(), timeout=5)
    call = fake.requests[-1]
    assert call.path == f"{PREFIX}/publishers/google/models/{MODEL}:generateContent"
    assert "x-goog-api-key" not in call.headers
    assert call.headers["Authorization"] == "Bearer ya29.fake-1"
