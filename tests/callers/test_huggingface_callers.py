"""Hugging Face: chat (router and TGI), embeddings (feature-extraction and TEI), verify."""

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
    StreamChatCaller,
    Verifier,
)
from callers.huggingface import targets
from callers.types import (
    ChatRequest,
    ChatStreamEnd,
    EmbedRequest,
    SamplingParams,
    TextDelta,
    TextPart,
    UserMessage,
)
from tests.fakes.openai_server import FakeOpenAI, fake_vector
from tests.fakes.secret_fields import PlainSecret

TOKEN = "hf_goodtoken0123456789"
SECRET = PlainSecret(api_key=TOKEN)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
EMBEDDER = "BAAI/bge-small-en-v1.5"


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={TOKEN}) as server:
        yield server


@pytest.fixture
def router(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Options for "Hugging Face's router", with the router and the Hub moved to the fake."""
    monkeypatch.setattr(targets, "ROUTER", fake.url)
    monkeypatch.setattr(targets, "WHOAMI_URL", f"{fake.url}/api/whoami-v2")
    return {"base_url": f"{fake.url}/v1"}


def ask(**kwargs: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[UserMessage([TextPart("Hi")])], **kwargs)


def caller(cap: Capability) -> Any:
    implementation = registry.capability("huggingface", cap)
    protocol = {
        Capability.CHAT: ChatCaller,
        Capability.STREAM_CHAT: StreamChatCaller,
        Capability.EMBED: Embedder,
        Capability.VERIFY: Verifier,
    }[cap]
    assert isinstance(implementation, protocol)
    return implementation


def test_defaults_point_at_hugging_face() -> None:
    spec = registry.spec("huggingface")
    assert spec.with_defaults({})["base_url"] == "https://router.huggingface.co/v1"
    assert targets.ROUTER == "https://router.huggingface.co"
    assert targets.WHOAMI_URL == "https://huggingface.co/api/whoami-v2"
    assert targets.is_router(targets.server_root({}))
    assert targets.embed_endpoint({}, EMBEDDER).url.human_repr() == (
        "https://router.huggingface.co/hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/feature-extraction"
    )
    assert registry.sdk_installed("huggingface")  # nothing to install


# --- chat ----------------------------------------------------------------------------


async def test_chat_and_stream_through_the_router(fake: FakeOpenAI, router: dict[str, str]) -> None:
    request = ask(sampling=SamplingParams(max_output_tokens=16))
    response = await caller(Capability.CHAT).chat(SECRET, router, request, timeout=5)
    events = [e async for e in caller(Capability.STREAM_CHAT).stream_chat(SECRET, router, request, timeout=5)]
    assert response.message.text == "Hello from the fake."
    assert response.model == MODEL
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello from the fake."
    assert isinstance(events[-1], ChatStreamEnd)
    for sent in fake.requests:
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
        assert sent.json()["max_tokens"] == 16


async def test_chat_to_a_tgi_configured_by_its_root(fake: FakeOpenAI) -> None:
    # TGI and Inference Endpoints are configured by their root; their OpenAI API is /v1.
    options = {"base_url": fake.url}
    await caller(Capability.CHAT).chat(SECRET, options, ask(), timeout=5)
    assert fake.requests[0].path == "/v1/chat/completions"


async def test_chat_rejected_token(fake: FakeOpenAI, router: dict[str, str]) -> None:
    with pytest.raises(AuthenticationFailed, match=r"Invalid credentials|Incorrect API key"):
        await caller(Capability.CHAT).chat(PlainSecret(api_key="hf_wrong"), router, ask(), timeout=5)


# --- embeddings -------------------------------------------------------------------------


async def test_embeddings_through_the_feature_extraction_task(
    fake: FakeOpenAI, router: dict[str, str]
) -> None:
    request = EmbedRequest(
        model=EMBEDDER, inputs=["first text", "second"], provider_options={"normalize": True}
    )
    response = await caller(Capability.EMBED).embed(SECRET, router, request, timeout=5)
    dims = fake.embedding_dimensions
    assert response.vectors == [fake_vector("first text", dims), fake_vector("second", dims)]
    assert response.model == EMBEDDER
    assert response.request_id is not None
    [sent] = fake.requests
    assert sent.path == f"/hf-inference/models/{EMBEDDER}/pipeline/feature-extraction"
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.json() == {"inputs": ["first text", "second"], "normalize": True}


async def test_embeddings_from_a_tei_server(fake: FakeOpenAI) -> None:
    options = {"base_url": fake.url + "/v1"}
    response = await caller(Capability.EMBED).embed(
        SECRET, options, EmbedRequest(model="ignored-by-tei", inputs=["x"]), timeout=5
    )
    assert response.vectors == [fake_vector("x", fake.embedding_dimensions)]
    assert fake.requests[0].path == "/embed"
    assert fake.requests[0].json() == {"inputs": ["x"]}


async def test_embedding_errors(fake: FakeOpenAI, router: dict[str, str]) -> None:
    embed = caller(Capability.EMBED).embed
    with pytest.raises(InvalidRequest, match="does not take dimensions"):
        await embed(SECRET, router, EmbedRequest(model=EMBEDDER, inputs=["x"], dimensions=4), timeout=5)
    fake.token_level_features = True
    with pytest.raises(InvalidRequest, match="token-level features"):
        await embed(SECRET, router, EmbedRequest(model="bert-base-uncased", inputs=["x"]), timeout=5)
    with pytest.raises(AuthenticationFailed, match="Invalid credentials in Authorization header"):
        await embed(
            PlainSecret(api_key="hf_wrong"), router, EmbedRequest(model=EMBEDDER, inputs=["x"]), timeout=5
        )


# --- verify ---------------------------------------------------------------------------


async def test_verify_a_hub_token_with_whoami(fake: FakeOpenAI, router: dict[str, str]) -> None:
    result = await registry.verify("huggingface", SECRET, router, timeout=5)
    assert result.valid is True
    assert result.detail == {"account": "fake-user", "token_role": "read"}
    assert fake.requests[0].path == "/api/whoami-v2"
    assert fake.requests[0].method == "GET"
    rejected = await registry.verify("huggingface", PlainSecret(api_key="hf_wrong"), router, timeout=5)
    assert rejected.valid is False
    assert rejected.reason == "provider rejected the key (401): Invalid credentials in Authorization header"


async def test_verify_a_dedicated_server_with_info(fake: FakeOpenAI) -> None:
    options = {"base_url": fake.url}
    result = await registry.verify("huggingface", SECRET, options, timeout=5)
    assert result.valid is True
    assert result.detail == {"model_id": "meta-llama/Llama-3.1-8B-Instruct", "version": "3.3.4"}
    assert fake.requests[0].path == "/info"
    assert fake.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    rejected = await registry.verify("huggingface", PlainSecret(api_key="hf_wrong"), options, timeout=5)
    assert rejected.valid is False
