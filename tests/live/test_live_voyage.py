"""The Voyage AI callers against the real api.voyageai.com.

Skipped unless VOYAGE_API_KEY is set; costs a few dozen tokens per run. Models can
be overridden with VOYAGE_LIVE_EMBED_MODEL and VOYAGE_LIVE_RERANK_MODEL.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import Capability, Embedder, InvalidRequest, Reranker
from callers.types import EmbedInputType, EmbedRequest, RerankRequest
from tests.fakes.secret_fields import PlainSecret

KEY = os.environ.get("VOYAGE_API_KEY", "")
EMBED_MODEL = os.environ.get("VOYAGE_LIVE_EMBED_MODEL", "voyage-3.5-lite")
RERANK_MODEL = os.environ.get("VOYAGE_LIVE_RERANK_MODEL", "rerank-2.5-lite")
OPTIONS = {"base_url": os.environ.get("VOYAGE_BASE_URL", "https://api.voyageai.com/v1")}

pytestmark = [pytest.mark.live, pytest.mark.skipif(not KEY, reason="VOYAGE_API_KEY is not set")]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


async def test_live_embed_batch_dimensions_and_input_type() -> None:
    embedder = registry.capability("voyageai", Capability.EMBED)
    assert isinstance(embedder, Embedder)
    request = EmbedRequest(
        EMBED_MODEL, ["hello", "world", "again"], dimensions=256, input_type=EmbedInputType.QUERY
    )
    response = await embedder.embed(PlainSecret(api_key=KEY), OPTIONS, request, timeout=30)
    assert [len(v) for v in response.vectors] == [256, 256, 256]
    assert response.usage.total_tokens > 0


async def test_live_rerank() -> None:
    reranker = registry.capability("voyageai", Capability.RERANK)
    assert isinstance(reranker, Reranker)
    request = RerankRequest(
        RERANK_MODEL, "capital of France", ["Berlin is in Germany", "Paris is France's capital"], 1
    )
    response = await reranker.rerank(PlainSecret(api_key=KEY), OPTIONS, request, timeout=30)
    assert [r.index for r in response.results] == [1]


async def test_live_unknown_model_is_invalid_request() -> None:
    embedder = registry.capability("voyageai", Capability.EMBED)
    assert isinstance(embedder, Embedder)
    with pytest.raises(InvalidRequest):
        await embedder.embed(
            PlainSecret(api_key=KEY), OPTIONS, EmbedRequest("no-such-model", ["x"]), timeout=30
        )


async def test_live_verify() -> None:
    valid = await registry.verify("voyageai", PlainSecret(api_key=KEY), OPTIONS, timeout=30)
    assert valid.valid is True
    rejected = await registry.verify(
        "voyageai", PlainSecret(api_key="pa-not-a-real-key"), OPTIONS, timeout=30
    )
    assert rejected.valid is False
    assert rejected.reason.startswith("provider rejected the key (401): ")
