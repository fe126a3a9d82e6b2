"""The common embed and rerank types to and from Cohere's v2 JSON (/v2/embed, /v2/rerank).

Plain functions over dicts in the wire's shape, like `convert` is for chat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callers.base import InvalidRequest, ProviderUnavailable
from callers.types import (
    EmbedInputType,
    EmbedRequest,
    EmbedResponse,
    RerankRequest,
    RerankResponse,
    RerankResult,
    Usage,
)

Json = dict[str, Any]

_INPUT_TYPES: Mapping[EmbedInputType, str] = {
    EmbedInputType.QUERY: "search_query",
    EmbedInputType.DOCUMENT: "search_document",
}


def embed_body(request: EmbedRequest) -> Json:
    """The JSON body of POST /v2/embed, asking for float vectors only.

    Cohere's other input types (classification, clustering, image) have no common
    equivalent; they come as provider_options["input_type"], which wins.
    """
    body: Json = {"model": request.model, "texts": list(request.inputs), "embedding_types": ["float"]}
    if request.input_type is not None:
        body["input_type"] = _INPUT_TYPES[request.input_type]
    if request.dimensions is not None:
        body["output_dimension"] = request.dimensions  # embed-v4 and later
    body.update(request.provider_options)
    if "input_type" not in body:
        # Required by v2 for every embed-v3+ model; no default would be honest.
        raise InvalidRequest(
            "Cohere embeddings need an input type: set input_type (query/document) "
            "or provider_options.input_type (search_query, search_document, classification, clustering)"
        )
    return body


def embed_response(body: Mapping[str, Any], *, model: str, request_id: str | None) -> EmbedResponse:
    vectors = (body.get("embeddings") or {}).get("float")
    if not isinstance(vectors, list):
        raise ProviderUnavailable("Cohere's embed answer has no float embeddings")
    return EmbedResponse(
        vectors=[[float(x) for x in vector] for vector in vectors],
        usage=meta_usage(body.get("meta")),
        model=model,  # the answer does not name it
        request_id=request_id or body.get("id"),
    )


def rerank_body(request: RerankRequest) -> Json:
    body: Json = {"model": request.model, "query": request.query, "documents": list(request.documents)}
    if request.top_n is not None:
        body["top_n"] = request.top_n
    body.update(request.provider_options)  # e.g. max_tokens_per_doc
    return body


def rerank_response(body: Mapping[str, Any], *, request_id: str | None) -> RerankResponse:
    results = [
        RerankResult(index=int(item["index"]), score=float(item["relevance_score"]))
        for item in body.get("results") or []
    ]
    # Cohere already sends them best first; sorting keeps that a guarantee.
    results.sort(key=lambda result: result.score, reverse=True)
    return RerankResponse(
        results=results, usage=meta_usage(body.get("meta")), request_id=request_id or body.get("id")
    )


def meta_usage(meta: Mapping[str, Any] | None) -> Usage:
    """Token usage from the answer's `meta`: the counted tokens, else the billed ones.

    Rerank is billed in search units, not tokens, so its usage is usually all zero.
    """
    meta = meta or {}
    counted = meta.get("tokens") or meta.get("billed_units") or {}
    input_tokens = int(counted.get("input_tokens") or 0)
    output_tokens = int(counted.get("output_tokens") or 0)
    return Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
    )
