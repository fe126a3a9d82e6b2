"""EMBED with a local sentence-transformers model, on the hub's CPU.

- Vectors are normalized (unit length): cosine similarity is their dot product.
  all-MiniLM-L6-v2 gives 384 dimensions and cannot shorten them; `dimensions` may be
  unset or 384.
- An input longer than the model reads (all-MiniLM-L6-v2: 256 word pieces, about 190
  English words) is truncated to its first max_seq_length tokens, as
  sentence-transformers does: the vector then stands for that beginning only, and the
  usage counts the tokens read. provider_options {"truncate": false} refuses such an
  input instead (INVALID_ARGUMENT naming it). Chunk documents below that size.
- input_type (query/document) is accepted and ignored: the model is symmetric, it has
  no query or passage prompt.
- Large requests are split into batches that queue on the one encoding thread (see
  runtime.py); the inputs are sorted by length first so that each batch pads little,
  and the vectors are put back in input order. The timeout is checked between
  batches: a batch already running finishes, the rest are not started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial

from callers.base import InvalidRequest, ProviderTimeout, SecretFields
from callers.local import models
from callers.local.runtime import ENCODE_BATCH, RUNTIME, InputTooLong, LoadedModel
from callers.types import EmbedRequest, EmbedResponse, JsonValue, Usage

# Inputs per request, as OpenAI's embeddings endpoint allows; the chatbot batches below it.
MAX_INPUTS = 2048
OPTIONS = ("truncate",)


class LocalEmbedder:
    async def embed(
        self, secret: SecretFields, options: Mapping[str, str], request: EmbedRequest, *, timeout: float
    ) -> EmbedResponse:
        model = models.find(request.model)
        truncate = _truncate_option(request.provider_options)
        _check_request(model, request)
        try:
            async with asyncio.timeout(timeout):
                loaded = await RUNTIME.model(model)
                vectors, tokens = await _encode_all(loaded, request.inputs, truncate=truncate)
        except TimeoutError:
            raise ProviderTimeout(
                f"the local model {model.name} did not embed {len(request.inputs)} inputs within {timeout:g}s"
            ) from None
        return EmbedResponse(
            vectors=vectors, usage=Usage(input_tokens=tokens, total_tokens=tokens), model=model.name
        )


def _check_request(model: models.LocalModel, request: EmbedRequest) -> None:
    if not request.inputs:
        raise InvalidRequest("at least one input is required")
    if len(request.inputs) > MAX_INPUTS:
        raise InvalidRequest(
            f"{len(request.inputs)} inputs: the local provider takes at most {MAX_INPUTS} per request"
        )
    if request.dimensions is not None and request.dimensions != model.dimensions:
        raise InvalidRequest(
            f"{model.name} gives {model.dimensions} dimensions and cannot shorten them "
            f"(asked: {request.dimensions})"
        )


def _truncate_option(provider_options: Mapping[str, JsonValue]) -> bool:
    unknown = sorted(set(provider_options) - set(OPTIONS))
    if unknown:
        raise InvalidRequest(
            f"unknown provider option(s) {', '.join(unknown)}; the local provider takes: {', '.join(OPTIONS)}"
        )
    value = provider_options.get("truncate", True)
    if not isinstance(value, bool):
        raise InvalidRequest("provider option truncate must be true or false")
    return value


async def _encode_all(
    loaded: LoadedModel, inputs: list[str], *, truncate: bool
) -> tuple[list[list[float]], int]:
    """Every input's vector in input order, and the tokens read; batch by batch, shortest first."""
    order = sorted(range(len(inputs)), key=lambda index: len(inputs[index]))
    vectors: list[list[float]] = [[] for _ in inputs]
    tokens = 0
    for start in range(0, len(order), ENCODE_BATCH):
        batch = order[start : start + ENCODE_BATCH]
        try:
            encoded = await RUNTIME.run(partial(loaded.encode, truncate=truncate), [inputs[i] for i in batch])
        except InputTooLong as long:
            raise InvalidRequest(
                f"input {batch[long.position]} is {long.tokens} tokens long; {loaded.model.name} reads at "
                f"most {long.limit} (leave provider option truncate on to cut it, or shorten it)"
            ) from None
        for index, vector in zip(batch, encoded.vectors, strict=True):
            vectors[index] = vector
        tokens += sum(encoded.tokens)
    return vectors, tokens


CALLER = LocalEmbedder()
