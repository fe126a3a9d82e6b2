"""Embeddings through InvokeModel: Titan (one text per request) and Cohere (96 per request).

A batch's requests run concurrently, at most CONCURRENT_REQUESTS at a time, over one
client and one transport; the first failure abandons the others (their connections
are shut down) and is what the call raises.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from callers.base import InvalidRequest, ProviderUnavailable, SecretFields
from callers.bedrock import embedding_formats as formats
from callers.bedrock.responses import request_id
from callers.bedrock.runner import BlockingCall
from callers.bedrock.session import RUNTIME_SERVICE, AwsKeys, region_of
from callers.types import EmbedRequest, EmbedResponse, Usage

CONCURRENT_REQUESTS = 8


def _invoke(client: Any, model: str, batch: formats.EmbeddingBatch) -> tuple[dict[str, Any], dict[str, Any]]:
    """One InvokeModel, its body read in the same worker thread; returns (response, body)."""
    response = client.invoke_model(
        modelId=model, body=batch.body, contentType="application/json", accept="application/json"
    )
    raw = response["body"].read()
    try:
        body = json.loads(raw)
    except ValueError:
        raise ProviderUnavailable(f"{model} answered with a body that is not JSON") from None
    return response, body


class BedrockEmbedder:
    async def embed(
        self, secret: SecretFields, options: Mapping[str, str], request: EmbedRequest, *, timeout: float
    ) -> EmbedResponse:
        if not request.inputs:
            raise InvalidRequest("nothing to embed: inputs is empty")
        batches = formats.batches(request)  # an unsupported model fails before any I/O
        call = BlockingCall(
            RUNTIME_SERVICE,
            AwsKeys.from_secret(secret),
            region=region_of(options),
            endpoint_url=options.get("endpoint_url") or None,
            timeout=timeout,
            max_connections=CONCURRENT_REQUESTS,
        )
        limit = asyncio.Semaphore(CONCURRENT_REQUESTS)

        async def run(batch: formats.EmbeddingBatch) -> tuple[dict[str, Any], dict[str, Any]]:
            async with limit:
                return await call.run(lambda client: _invoke(client, request.model, batch))

        tasks = [asyncio.ensure_future(run(batch)) for batch in batches]
        try:
            answers = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()  # no-op for finished ones; abandons the rest after a failure
            await asyncio.wait(tasks)
            call.close()
        return _response(request, batches, answers)


def _response(
    request: EmbedRequest,
    batches: list[formats.EmbeddingBatch],
    answers: list[tuple[dict[str, Any], dict[str, Any]]],
) -> EmbedResponse:
    vectors: list[list[float]] = []
    tokens = 0
    for batch, (response, body) in zip(batches, answers, strict=True):
        vectors.extend(formats.vectors(request.model, body, batch.count))
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        tokens += formats.input_tokens(body, headers)
    return EmbedResponse(
        vectors=vectors,
        usage=Usage(input_tokens=tokens, total_tokens=tokens),
        model=request.model,
        # One call may take many requests; the first one's id identifies the call.
        request_id=request_id(answers[0][0]),
    )


CALLER = BedrockEmbedder()
