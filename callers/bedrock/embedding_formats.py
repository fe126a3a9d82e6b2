"""The InvokeModel bodies of the embedding families Bedrock hosts; no network.

InvokeModel carries each model family's own JSON, so the family is chosen from the
model id (a plain id such as amazon.titan-embed-text-v2:0, or a cross-region
inference profile such as us.cohere.embed-v4:0):

- Amazon Titan Text Embeddings: one text per request, {"inputText", "dimensions",
  "normalize"} -> {"embedding", "inputTextTokenCount"}. Titan has no input types.
- Cohere Embed: up to 96 texts per request, {"texts", "input_type"} ->
  {"embeddings": [[...]] (or {"float": [[...]]} when embedding types are asked), "id"}.
  input_type is required by Cohere's v3 and v4 models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callers.base import InvalidRequest, ProviderUnavailable
from callers.types import EmbedInputType, EmbedRequest

COHERE_TEXTS_PER_REQUEST = 96

_COHERE_INPUT_TYPES: Mapping[EmbedInputType, str] = {
    EmbedInputType.QUERY: "search_query",
    EmbedInputType.DOCUMENT: "search_document",
}


@dataclass(frozen=True, slots=True)
class EmbeddingBatch:
    """One InvokeModel request: the JSON body, and which inputs it embeds."""

    body: bytes
    first_input: int
    count: int


def family(model: str) -> str:
    if "amazon.titan-embed" in model:
        return "titan"
    if "cohere.embed" in model:
        return "cohere"
    raise InvalidRequest(
        "embeddings on Bedrock are implemented for amazon.titan-embed-* and cohere.embed-* models, "
        f"not {model!r}"
    )


def batches(request: EmbedRequest) -> list[EmbeddingBatch]:
    if family(request.model) == "titan":
        return [_titan_batch(request, index) for index in range(len(request.inputs))]
    return [
        _cohere_batch(request, start) for start in range(0, len(request.inputs), COHERE_TEXTS_PER_REQUEST)
    ]


def _titan_batch(request: EmbedRequest, index: int) -> EmbeddingBatch:
    body: dict[str, Any] = {"inputText": request.inputs[index]}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    # provider_options (e.g. "normalize", "embeddingTypes") go into the body as given.
    body.update(request.provider_options)
    return EmbeddingBatch(json.dumps(body).encode(), index, 1)


def _cohere_batch(request: EmbedRequest, start: int) -> EmbeddingBatch:
    texts = request.inputs[start : start + COHERE_TEXTS_PER_REQUEST]
    body: dict[str, Any] = {"texts": texts}
    if request.input_type is not None:
        body["input_type"] = _COHERE_INPUT_TYPES[request.input_type]
    if request.dimensions is not None:
        if "embed-v4" not in request.model:
            raise InvalidRequest(f"{request.model} has a fixed number of dimensions")
        body["output_dimension"] = request.dimensions
    body.update(request.provider_options)  # e.g. "truncate", or input_type "classification"
    if "input_type" not in body:
        raise InvalidRequest("Cohere Embed needs an input type (query or document)")
    return EmbeddingBatch(json.dumps(body).encode(), start, len(texts))


def vectors(model: str, body: Mapping[str, Any], expected: int) -> list[list[float]]:
    """The vectors of one InvokeModel answer, checked to be one per input."""
    if family(model) == "titan":
        found: Any = [body.get("embedding")]
    else:
        found = body.get("embeddings")
        if isinstance(found, dict):  # embedding_types were requested: take the floats
            found = found.get("float")
    if not isinstance(found, list) or len(found) != expected or not all(isinstance(v, list) for v in found):
        raise ProviderUnavailable(f"{model} answered without the {expected} embedding(s) asked for")
    return [[float(x) for x in vector] for vector in found]


def input_tokens(body: Mapping[str, Any], headers: Mapping[str, str]) -> int:
    """Bedrock reports the count in a header for every model; Titan also in the body."""
    counted = headers.get("x-amzn-bedrock-input-token-count")
    if counted is not None and counted.isdigit():
        return int(counted)
    return int(body.get("inputTextTokenCount") or 0)
