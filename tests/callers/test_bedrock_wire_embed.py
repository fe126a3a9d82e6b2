"""Bedrock embeddings (InvokeModel: Titan and Cohere bodies) through the real botocore client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callers import registry
from callers.base import Capability, Embedder, InvalidRequest, ProviderTimeout, RateLimited
from callers.types import EmbedInputType, EmbedRequest
from tests.fakes.bedrock_server import AwsError, FakeBedrock
from tests.fakes.secret_fields import PlainSecret

KEY_ID = "AKIAFAKEKEY000000001"
SECRET_KEY = "fakeSecretKey/0123456789abcdefghijklmnop"
SECRET = PlainSecret(access_key_id=KEY_ID, secret_access_key=SECRET_KEY)
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock({KEY_ID: SECRET_KEY}) as server:
        yield server


def embedder() -> Embedder:
    caller = registry.capability("bedrock", Capability.EMBED)
    assert isinstance(caller, Embedder)
    return caller


async def test_titan_batch_is_one_request_per_input_in_order(fake: FakeBedrock) -> None:
    inputs = ["the quick brown fox", "jumps", "over the lazy dog"]
    result = await embedder().embed(
        SECRET, fake.options(), EmbedRequest(TITAN, inputs, dimensions=256), timeout=5
    )
    assert [len(v) for v in result.vectors] == [256, 256, 256]
    by_text = {r.json()["inputText"]: r for r in fake.requests}
    assert set(by_text) == set(inputs)
    for text, vector in zip(inputs, result.vectors, strict=True):
        sent = by_text[text]
        assert sent.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
        assert sent.json() == {"inputText": text, "dimensions": 256}
        assert sent.headers["Content-Type"] == "application/json"
        # The same text gets the same vector: the answers were matched to their inputs.
        again = await embedder().embed(SECRET, fake.options(), EmbedRequest(TITAN, [text], 256), timeout=5)
        assert again.vectors == [vector]
    assert result.usage.input_tokens == 9  # the x-amzn-bedrock-input-token-count headers, summed
    assert result.usage.total_tokens == 9
    assert result.model == TITAN
    assert result.request_id is not None


async def test_titan_provider_options_and_provider_validation(fake: FakeBedrock) -> None:
    request = EmbedRequest(TITAN, ["x"], provider_options={"normalize": False})
    result = await embedder().embed(SECRET, fake.options(), request, timeout=5)
    assert len(result.vectors[0]) == 1024  # Titan v2's default
    assert fake.requests[0].json() == {"inputText": "x", "normalize": False}
    with pytest.raises(InvalidRequest, match="300 is not a valid enum value"):
        await embedder().embed(SECRET, fake.options(), EmbedRequest(TITAN, ["x"], dimensions=300), timeout=5)


@pytest.mark.parametrize(
    ("input_type", "wire"),
    [(EmbedInputType.QUERY, "search_query"), (EmbedInputType.DOCUMENT, "search_document")],
)
async def test_cohere_batches_of_96_with_input_type(
    fake: FakeBedrock, input_type: EmbedInputType, wire: str
) -> None:
    inputs = [f"text number {i}" for i in range(100)]
    result = await embedder().embed(
        SECRET, fake.options(), EmbedRequest(COHERE, inputs, input_type=input_type), timeout=5
    )
    assert len(result.vectors) == 100
    assert {len(v) for v in result.vectors} == {1024}
    bodies = sorted((r.json() for r in fake.requests), key=lambda b: -len(b["texts"]))
    assert [len(b["texts"]) for b in bodies] == [96, 4]
    assert {b["input_type"] for b in bodies} == {wire}
    assert bodies[0]["texts"] + bodies[1]["texts"] == inputs
    single = await embedder().embed(
        SECRET, fake.options(), EmbedRequest(COHERE, [inputs[97]], input_type=input_type), timeout=5
    )
    assert result.vectors[97] == single.vectors[0]  # order kept across the two requests
    assert result.usage.input_tokens == 300


async def test_cohere_v4_dimensions_and_requests_refused_before_sending(fake: FakeBedrock) -> None:
    v4 = EmbedRequest("us.cohere.embed-v4:0", ["a"], dimensions=512, input_type=EmbedInputType.QUERY)
    result = await embedder().embed(SECRET, fake.options(), v4, timeout=5)
    assert len(result.vectors[0]) == 512
    assert fake.requests[0].json()["output_dimension"] == 512
    refused = [
        EmbedRequest(COHERE, ["a"]),  # Cohere needs an input type
        EmbedRequest(COHERE, ["a"], dimensions=256, input_type=EmbedInputType.QUERY),
        EmbedRequest("meta.llama3-8b-instruct-v1:0", ["a"]),
        EmbedRequest(TITAN, []),
    ]
    for request in refused:
        with pytest.raises(InvalidRequest):
            await embedder().embed(SECRET, fake.options(), request, timeout=5)
    assert len(fake.requests) == 1


async def test_a_failure_fails_the_whole_batch(fake: FakeBedrock) -> None:
    fake.force_error = AwsError(429, "ThrottlingException", "Too many requests.")
    with pytest.raises(RateLimited):
        await embedder().embed(SECRET, fake.options(), EmbedRequest(TITAN, ["a", "b", "c"]), timeout=5)


async def test_timeout_and_cancel(fake: FakeBedrock) -> None:
    fake.hang = True
    with pytest.raises(ProviderTimeout):
        await embedder().embed(SECRET, fake.options(), EmbedRequest(TITAN, ["a", "b"]), timeout=0.3)
    await fake.wait_for_disconnect(timeout=1)

    fake.disconnected_at.clear()
    task = asyncio.create_task(
        embedder().embed(SECRET, fake.options(), EmbedRequest(TITAN, ["a"]), timeout=30)
    )
    await asyncio.sleep(0.2)
    cancelled_at = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):
        if fake.disconnected_at:
            break
        await asyncio.sleep(0.01)
    assert fake.disconnected_at[-1] - cancelled_at < 0.1
