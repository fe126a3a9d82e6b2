"""Voyage AI EMBED, RERANK and VERIFY over the pooled aiohttp session, against a local fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from callers import pools, registry
from callers.base import (
    AuthenticationFailed,
    CallerError,
    Capability,
    Embedder,
    InvalidRequest,
    NotFound,
    NotSupported,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    Reranker,
)
from callers.types import EmbedInputType, EmbedRequest, EmbedResponse, RerankRequest, Usage
from callers.voyageai import convert
from tests.fakes.secret_fields import PlainSecret
from tests.fakes.voyage_server import FakeVoyage

GOOD = "pa-good-0123456789"


@pytest.fixture(autouse=True)
async def close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def embedder() -> Embedder:
    caller = registry.capability("voyageai", Capability.EMBED)
    assert isinstance(caller, Embedder)
    return caller


def reranker() -> Reranker:
    caller = registry.capability("voyageai", Capability.RERANK)
    assert isinstance(caller, Reranker)
    return caller


async def embed(
    fake: FakeVoyage, request: EmbedRequest | None = None, *, timeout: float = 5
) -> EmbedResponse:
    request = request or EmbedRequest(model="voyage-3.5", inputs=["hello"])
    return await embedder().embed(
        PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=timeout
    )


async def test_embed_batch_with_dimensions_and_input_type() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        request = EmbedRequest(
            model="voyage-3.5",
            inputs=["the red fox", "jumps high", "over the lazy dog"],
            dimensions=256,
            input_type=EmbedInputType.DOCUMENT,
            provider_options={"truncation": False},
        )
        response = await embed(fake, request)
    assert [vector[0] for vector in response.vectors] == [
        pytest.approx(0.1),
        pytest.approx(0.2),
        pytest.approx(0.3),
    ]
    assert all(len(vector) == 256 for vector in response.vectors)
    assert response.usage == Usage(input_tokens=9, total_tokens=9)
    assert response.model == "voyage-3.5"
    assert response.request_id == fake.request_ids[0]
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/embeddings")
    assert sent.headers["Authorization"] == f"Bearer {GOOD}"
    assert sent.json == {
        "input": ["the red fox", "jumps high", "over the lazy dog"],
        "model": "voyage-3.5",
        "output_dtype": "float",
        "input_type": "document",
        "output_dimension": 256,
        "truncation": False,
    }


async def test_query_input_type() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        await embed(
            fake, EmbedRequest(model="voyage-3.5-lite", inputs=["q"], input_type=EmbedInputType.QUERY)
        )
    assert fake.requests[0].json["input_type"] == "query"


async def test_rerank_top_k_without_documents_back() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        request = RerankRequest(
            model="rerank-2.5",
            query="red fox",
            documents=["a blue whale", "the red fox", "a red car"],
            top_n=2,
        )
        response = await reranker().rerank(
            PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, request, timeout=5
        )
    assert [(r.index, r.score) for r in response.results] == [(1, 1.0), (2, 0.5)]
    assert response.usage == Usage(input_tokens=15, total_tokens=15)  # query x documents + documents
    assert response.request_id == fake.request_ids[0]
    assert fake.requests[0].path == "/v1/rerank"
    assert fake.requests[0].json == {
        "query": "red fox",
        "documents": ["a blue whale", "the red fox", "a red car"],
        "model": "rerank-2.5",
        "return_documents": False,
        "top_k": 2,
    }


def test_chat_is_not_offered() -> None:
    with pytest.raises(NotSupported, match="'voyageai' does not support capability 'chat'"):
        registry.capability("voyageai", Capability.CHAT)


def test_embeddings_in_another_encoding_are_refused() -> None:
    body = {"data": [{"index": 0, "embedding": "AAAA"}], "usage": {"total_tokens": 1}}
    with pytest.raises(ProviderUnavailable, match="not lists of numbers"):
        convert.embed_response(body, request_id=None)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, AuthenticationFailed),
        (403, PermissionDenied),
        (404, NotFound),
        (422, InvalidRequest),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
        (503, ProviderUnavailable),
        (504, ProviderTimeout),
    ],
)
async def test_status_classification_keeps_voyages_detail(status: int, kind: type[CallerError]) -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        fake.force_status, fake.force_detail = status, f"voyage says {status}"
        with pytest.raises(kind) as caught:
            await embed(fake)
    assert type(caught.value) is kind
    assert caught.value.message == f"voyage says {status}"
    assert caught.value.provider_status == status
    assert caught.value.__cause__ is None
    assert len(fake.requests) == 1


async def test_unsupported_model_is_invalid_request_with_voyages_words() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        with pytest.raises(InvalidRequest, match="Model voyage-0 is not supported"):
            await embed(fake, EmbedRequest(model="voyage-0", inputs=["x"]))


async def test_rate_limited_carries_retry_after() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        fake.force_status, fake.retry_after = 429, "12"
        fake.force_detail = "You have exceeded your rate limit (TPM). Please retry after a while."
        with pytest.raises(RateLimited) as caught:
            await embed(fake)
    assert caught.value.retry_after == 12.0
    assert caught.value.message.startswith("You have exceeded your rate limit")


async def test_wrong_key_is_authentication_failed() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        with pytest.raises(AuthenticationFailed, match=r"^Provided API key is invalid\.$") as caught:
            await embedder().embed(
                PlainSecret(api_key="pa-wrong"),
                {"base_url": fake.base_url},
                EmbedRequest(model="voyage-3.5", inputs=["x"]),
                timeout=5,
            )
    assert "pa-wrong" not in str(caught.value)


async def test_answer_cut_midway_is_provider_unavailable() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        fake.truncate_body = True
        with pytest.raises(
            ProviderUnavailable, match=r"connection to 127\.0\.0\.1 failed \(ClientPayloadError"
        ):
            await embed(fake)


async def test_connection_refused_is_provider_unavailable(refused_base_url: str) -> None:
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1") as caught:
        await embedder().embed(
            PlainSecret(api_key=GOOD),
            {"base_url": refused_base_url},
            EmbedRequest(model="voyage-3.5", inputs=["x"]),
            timeout=5,
        )
    assert caught.value.__cause__ is None


async def test_slow_provider_times_out_within_bound() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        fake.delay = 3.0
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match=r"did not answer within the timeout \(0\.3 s\)"):
            await embed(fake, timeout=0.3)
        assert time.monotonic() - started < 1.5


async def cancel_when_waiting(fake: FakeVoyage, call: Callable[[], Coroutine[Any, Any, object]]) -> float:
    """Start `call`, cancel it once the fake is handling its request; the cancel-to-hangup time."""
    task = asyncio.create_task(call())
    await asyncio.wait_for(fake.received.wait(), timeout=5)
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while fake.disconnected_at is None and loop.time() - cancelled_at < 2:
        await asyncio.sleep(0.005)
    assert fake.disconnected_at is not None, "the server never saw the client hang up"
    return fake.disconnected_at - cancelled_at


async def test_cancelled_embed_closes_the_connection_promptly() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        fake.delay = 10.0
        assert await cancel_when_waiting(fake, lambda: embed(fake, timeout=30)) < 0.1


async def test_verify_valid_key_with_a_one_word_embedding() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        result = await registry.verify(
            "voyageai", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid is True
    assert result.reason == "ok"
    assert result.detail == {"model": "voyage-3.5-lite", "tokens": "1"}
    assert fake.requests[0].json == {"input": ["ok"], "model": "voyage-3.5-lite"}


async def test_verify_rejected_key_is_an_answer() -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        options = {"base_url": fake.base_url}
        result = await registry.verify("voyageai", PlainSecret(api_key="pa-bad"), options, timeout=5)
        fake.force_status, fake.force_detail = 403, "Your organization is not allowed to use this API."
        forbidden = await registry.verify("voyageai", PlainSecret(api_key=GOOD), options, timeout=5)
    assert result.valid is False
    assert result.reason == "provider rejected the key (401): Provided API key is invalid."
    assert (
        forbidden.reason
        == "provider rejected the key (403): Your organization is not allowed to use this API."
    )


@pytest.mark.parametrize(("status", "kind"), [(429, RateLimited), (500, ProviderUnavailable)])
async def test_verify_that_cannot_tell_raises(status: int, kind: type[CallerError]) -> None:
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        fake.force_status = status
        with pytest.raises(kind):
            await registry.verify(
                "voyageai", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5
            )


async def test_hub_environment_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOYAGE_API_KEY", "pa-from-environment")
    async with FakeVoyage(valid_keys={GOOD}) as fake:
        await embed(fake)
    assert fake.requests[0].headers["Authorization"] == f"Bearer {GOOD}"


def test_no_sdk_is_needed() -> None:
    assert registry.spec("voyageai").sdk_modules == ()
    assert registry.sdk_installed("voyageai") is True
