"""The other OpenAI-wire vendors: the same wire, their own URL, auth and headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from callers import pools, registry
from callers.base import (
    AuthenticationFailed,
    Capability,
    ChatCaller,
    Embedder,
    InvalidRequest,
    NotFound,
    ProviderUnavailable,
    StreamChatCaller,
)
from callers.spec import InvalidCredentialField
from callers.types import (
    ChatEvent,
    ChatRequest,
    ChatStreamEnd,
    EmbedRequest,
    FinishReason,
    SamplingParams,
    TextDelta,
    TextPart,
    UserMessage,
)
from tests.fakes.openai_server import ChatReply, FakeOpenAI, fake_vector
from tests.fakes.secret_fields import PlainSecret

AZURE_KEY = "azure-key-1"


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def capability(provider: str, cap: Capability) -> Any:
    implementation = registry.capability(provider, cap)
    protocol = {
        Capability.CHAT: ChatCaller,
        Capability.STREAM_CHAT: StreamChatCaller,
        Capability.EMBED: Embedder,
    }
    assert isinstance(implementation, protocol[cap])
    return implementation


async def chat(provider: str, secret: PlainSecret, options: dict[str, str], request: ChatRequest) -> Any:
    return await capability(provider, Capability.CHAT).chat(secret, options, request, timeout=5)


async def stream(
    provider: str, secret: PlainSecret, options: dict[str, str], request: ChatRequest
) -> list[ChatEvent]:
    caller = capability(provider, Capability.STREAM_CHAT)
    return [event async for event in caller.stream_chat(secret, options, request, timeout=5)]


async def embed(provider: str, secret: PlainSecret, options: dict[str, str], request: EmbedRequest) -> Any:
    return await capability(provider, Capability.EMBED).embed(secret, options, request, timeout=5)


def ask(model: str = "gpt-4o-mini", **kwargs: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[UserMessage([TextPart("Hi")])], **kwargs)


def text_of(events: list[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# --- Azure OpenAI ------------------------------------------------------------------


async def test_azure_chat_stream_and_embeddings_use_deployment_urls() -> None:
    secret = PlainSecret(api_key=AZURE_KEY)
    async with FakeOpenAI(valid_keys={AZURE_KEY}) as fake:
        options = {"endpoint": fake.azure_endpoint + "/", "deployment": "prod-4o"}
        response = await chat(
            "azure_openai", secret, options, ask("gpt-4o", sampling=SamplingParams(max_output_tokens=9))
        )
        events = await stream("azure_openai", secret, options, ask("gpt-4o"))
        vectors = await embed(
            "azure_openai", secret, options, EmbedRequest(model="emb-small", inputs=["x"], dimensions=3)
        )
    assert response.message.text == "Hello from the fake."
    assert response.usage.total_tokens == 19
    # Azure opens its stream with an id-less chunk of prompt filter results.
    assert text_of(events) == "Hello from the fake."
    assert isinstance(events[-1], ChatStreamEnd)
    assert events[-1].finish_reason is FinishReason.STOP
    assert events[-1].usage.total_tokens == 19
    assert vectors.vectors == [fake_vector("x", 3)]
    chat_request, stream_request, embed_request = fake.requests
    # The `deployment` option names the chat deployment; embeddings have their own
    # option and otherwise take the request's model.
    assert chat_request.path == "/openai/deployments/prod-4o/chat/completions"
    assert stream_request.path == "/openai/deployments/prod-4o/chat/completions"
    assert embed_request.path == "/openai/deployments/emb-small/embeddings"
    for request in fake.requests:
        assert request.query == {"api-version": "2024-10-21"}
        assert request.headers["api-key"] == AZURE_KEY
        assert "Authorization" not in request.headers
    assert chat_request.json()["max_completion_tokens"] == 9


async def test_azure_deployment_from_the_model_and_explicit_api_version() -> None:
    secret = PlainSecret(api_key=AZURE_KEY)
    async with FakeOpenAI(valid_keys={AZURE_KEY}) as fake:
        options = {
            "endpoint": fake.azure_endpoint,
            "api_version": "2025-01-01-preview",
            "embedding_deployment": "emb-prod",
        }
        await chat("azure_openai", secret, options, ask("my-gpt4o-deployment"))
        await embed("azure_openai", secret, options, EmbedRequest(model="ignored", inputs=["x"]))
    assert fake.requests[0].path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert fake.requests[1].path == "/openai/deployments/emb-prod/embeddings"
    assert {r.query["api-version"] for r in fake.requests} == {"2025-01-01-preview"}


async def test_azure_api_versions_older_than_the_new_fields_get_the_old_forms() -> None:
    # Versions before 2024-09-01-preview reject max_completion_tokens and
    # stream_options ("Unrecognized request argument supplied").
    secret = PlainSecret(api_key=AZURE_KEY)
    request = ask("gpt-4o", sampling=SamplingParams(max_output_tokens=9))
    async with FakeOpenAI(valid_keys={AZURE_KEY}) as fake:
        legacy = {"endpoint": fake.azure_endpoint, "api_version": "2024-06-01"}
        preview = {"endpoint": fake.azure_endpoint, "api_version": "2024-09-01-preview"}
        await chat("azure_openai", secret, legacy, request)
        events = await stream("azure_openai", secret, legacy, request)
        await stream("azure_openai", secret, preview, request)
    legacy_chat, legacy_stream, preview_stream = (r.json() for r in fake.requests)
    assert legacy_chat["max_tokens"] == 9
    assert "max_completion_tokens" not in legacy_chat
    assert legacy_stream["max_tokens"] == 9
    assert "stream_options" not in legacy_stream
    assert text_of(events) == "Hello from the fake."
    assert isinstance(events[-1], ChatStreamEnd)
    assert events[-1].usage.total_tokens == 0  # such a stream carries no counts
    assert preview_stream["max_completion_tokens"] == 9
    assert preview_stream["stream_options"] == {"include_usage": True}


async def test_azure_errors() -> None:
    async with FakeOpenAI(valid_keys={AZURE_KEY}) as fake:
        options = {"endpoint": fake.azure_endpoint}
        with pytest.raises(AuthenticationFailed, match="Access denied due to invalid subscription key"):
            await chat("azure_openai", PlainSecret(api_key="wrong"), options, ask())
        with pytest.raises(AuthenticationFailed):
            await stream("azure_openai", PlainSecret(api_key="wrong"), options, ask())
    with pytest.raises(InvalidRequest, match="no Azure deployment"):
        await chat(
            "azure_openai", PlainSecret(api_key=AZURE_KEY), {"endpoint": "http://127.0.0.1:9"}, ask("")
        )
    with pytest.raises(InvalidCredentialField, match=r"^options\.endpoint: required$"):
        await chat("azure_openai", PlainSecret(api_key=AZURE_KEY), {}, ask())


async def test_azure_unknown_path_is_not_found() -> None:
    async with FakeOpenAI(valid_keys=None) as fake:
        # An endpoint pointing somewhere without Azure's routes: 404, classified.
        options = {"endpoint": fake.azure_endpoint + "/elsewhere"}
        with pytest.raises(NotFound, match="404: Not Found"):
            await chat("azure_openai", PlainSecret(api_key=AZURE_KEY), options, ask())


# --- OpenRouter --------------------------------------------------------------------


async def test_openrouter_sends_attribution_headers_on_every_call() -> None:
    secret = PlainSecret(api_key="sk-or-v1-good")
    async with FakeOpenAI(valid_keys={"sk-or-v1-good"}) as fake:
        options = {
            "base_url": fake.base_url,
            "http_referer": "https://app.example.com",
            "app_title": "Example",
        }
        request = ask(
            "anthropic/claude-3.5-sonnet",
            sampling=SamplingParams(max_output_tokens=30),
            provider_options={"provider": {"order": ["anthropic"]}, "transforms": ["middle-out"]},
        )
        await chat("openrouter", secret, options, request)
        await stream("openrouter", secret, options, request)
        await embed(
            "openrouter", secret, options, EmbedRequest(model="openai/text-embedding-3-small", inputs=["x"])
        )
    for sent in fake.requests:
        assert sent.headers["Authorization"] == "Bearer sk-or-v1-good"
        assert sent.headers["HTTP-Referer"] == "https://app.example.com"
        assert sent.headers["X-Title"] == "Example"
    body = fake.requests[0].json()
    assert body["max_tokens"] == 30  # OpenRouter documents max_tokens
    assert "max_completion_tokens" not in body
    assert body["provider"] == {"order": ["anthropic"]}
    assert body["transforms"] == ["middle-out"]
    assert [r.path for r in fake.requests] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
    ]


async def test_openrouter_keepalive_comments_and_mid_stream_error() -> None:
    secret = PlainSecret(api_key="sk-or-v1-good")
    async with FakeOpenAI(valid_keys={"sk-or-v1-good"}) as fake:
        options = {"base_url": fake.base_url}
        fake.script(
            ChatReply(text="fine answer", comments=True),
            ChatReply(
                text="a b c", comments=True, error_after=2, error={"code": 502, "message": "Upstream died"}
            ),
        )
        events = await stream("openrouter", secret, options, ask())
        assert text_of(events) == "fine answer"
        with pytest.raises(ProviderUnavailable, match="Upstream died") as caught:
            await stream("openrouter", secret, options, ask())
    assert caught.value.provider_status == 502


# --- OpenAI-compatible servers -------------------------------------------------------


async def test_openai_compatible_with_key() -> None:
    secret = PlainSecret(api_key="vllm-token")
    async with FakeOpenAI(valid_keys={"vllm-token"}) as fake:
        options = {"base_url": fake.base_url + "/"}  # a trailing slash is tolerated
        request = ask("meta-llama/Llama-3.1-8B-Instruct", sampling=SamplingParams(max_output_tokens=5))
        response = await chat("openai_compatible", secret, options, request)
        events = await stream("openai_compatible", secret, options, request)
        vectors = await embed(
            "openai_compatible", secret, options, EmbedRequest(model="bge", inputs=["a", "b"])
        )
        with pytest.raises(AuthenticationFailed):
            await chat("openai_compatible", PlainSecret(api_key="wrong"), options, request)
    assert response.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert text_of(events) == response.message.text
    assert len(vectors.vectors) == 2
    assert fake.requests[0].json()["max_tokens"] == 5
    for sent in fake.requests[:3]:
        assert sent.headers["Authorization"] == "Bearer vllm-token"
    assert [r.path for r in fake.requests[:3]] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
    ]


async def test_openai_compatible_without_key_sends_no_authorization() -> None:
    async with FakeOpenAI(valid_keys=None) as fake:
        options = {"base_url": fake.base_url}
        await chat("openai_compatible", PlainSecret(), options, ask("llama3.2"))
        await stream("openai_compatible", PlainSecret(), options, ask("llama3.2"))
        await embed(
            "openai_compatible", PlainSecret(), options, EmbedRequest(model="nomic-embed-text", inputs=["x"])
        )
    assert len(fake.requests) == 3
    for sent in fake.requests:
        assert "Authorization" not in sent.headers


async def test_openai_compatible_needs_a_base_url() -> None:
    with pytest.raises(InvalidCredentialField, match=r"^options\.base_url: required$"):
        await chat("openai_compatible", PlainSecret(), {}, ask())
