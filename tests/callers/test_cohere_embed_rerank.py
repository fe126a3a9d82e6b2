"""Cohere EMBED and RERANK through the real cohere SDK against a local fake of the v2 API."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import Capability, Embedder, InvalidRequest, MissingExtra, Reranker
from callers.types import EmbedInputType, EmbedRequest, RerankRequest, Usage
from tests.fakes.cohere_server import FakeCohere
from tests.fakes.secret_fields import PlainSecret

GOOD = "co-good-0123456789"


@pytest.fixture(autouse=True)
async def close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def embedder() -> Embedder:
    caller = registry.capability("cohere", Capability.EMBED)
    assert isinstance(caller, Embedder)
    return caller


def reranker() -> Reranker:
    caller = registry.capability("cohere", Capability.RERANK)
    assert isinstance(caller, Reranker)
    return caller


async def test_embed_a_batch_with_dimensions_and_input_type() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        request = EmbedRequest(
            model="embed-v4.0",
            inputs=["the red fox", "jumps", "over the lazy dog"],
            dimensions=8,
            input_type=EmbedInputType.DOCUMENT,
        )
        response = await embedder().embed(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
        )
    assert len(response.vectors) == 3
    assert all(len(vector) == 8 for vector in response.vectors)
    assert response.vectors[1][0] == pytest.approx(0.2)  # input order is kept
    assert response.usage == Usage(input_tokens=8, total_tokens=8)  # the fake counts words
    assert response.model == "embed-v4.0"
    assert response.request_id is not None
    assert response.request_id.startswith("embed-")
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v2/embed")
    assert sent.json == {
        "model": "embed-v4.0",
        "texts": ["the red fox", "jumps", "over the lazy dog"],
        "input_type": "search_document",
        "output_dimension": 8,
        "embedding_types": ["float"],
    }


async def test_embed_query_and_cohere_only_input_types() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        secret, options = PlainSecret(api_key=GOOD), {"base_url": fake.base_url}
        query = EmbedRequest(model="embed-v4.0", inputs=["q"], input_type=EmbedInputType.QUERY)
        await embedder().embed(secret, options, query, timeout=5)
        clustering = EmbedRequest(
            model="embed-v4.0", inputs=["c"], provider_options={"input_type": "clustering", "truncate": "END"}
        )
        await embedder().embed(secret, options, clustering, timeout=5)
    assert fake.requests[0].json["input_type"] == "search_query"
    assert (fake.requests[1].json["input_type"], fake.requests[1].json["truncate"]) == ("clustering", "END")


async def test_embed_without_input_type_is_refused_locally() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        with pytest.raises(InvalidRequest, match="need an input type"):
            await embedder().embed(
                PlainSecret(api_key=GOOD),
                {"base_url": fake.base_url},
                EmbedRequest(model="embed-v4.0", inputs=["x"]),
                timeout=5,
            )
    assert fake.requests == []


async def test_rerank_top_n_best_first() -> None:
    async with FakeCohere(valid_keys={GOOD}) as fake:
        request = RerankRequest(
            model="rerank-v3.5",
            query="red fox",
            documents=["a blue whale", "the red fox", "a red car", "fox news"],
            top_n=3,
        )
        response = await reranker().rerank(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
        )
    assert [result.index for result in response.results] == [1, 2, 3]
    assert response.results[0].score == pytest.approx(1.0)
    assert response.request_id is not None
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v2/rerank")
    assert sent.json == {
        "model": "rerank-v3.5",
        "query": "red fox",
        "documents": ["a blue whale", "the red fox", "a red car", "fox news"],
        "top_n": 3,
    }


@pytest.mark.parametrize(
    "capability", [Capability.CHAT, Capability.EMBED, Capability.RERANK, Capability.VERIFY]
)
def test_missing_sdk_is_missing_extra(monkeypatch: pytest.MonkeyPatch, capability: Capability) -> None:
    for name in [m for m in sys.modules if m.startswith("callers.cohere.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cohere", None)  # how Python marks a module unimportable
    with pytest.raises(MissingExtra, match=r"pip install 'integration-hub\[cohere\]'"):
        registry.capability("cohere", capability)
