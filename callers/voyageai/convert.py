"""The common embed and rerank types to and from Voyage's JSON (/v1/embeddings, /v1/rerank).

Plain functions over dicts in the wire's shape, as the API reference documents it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callers.base import ProviderUnavailable
from callers.types import EmbedRequest, EmbedResponse, RerankRequest, RerankResponse, RerankResult, Usage

Json = dict[str, Any]


def embed_body(request: EmbedRequest) -> Json:
    """POST /v1/embeddings: float vectors; Voyage's input types are the common ones."""
    body: Json = {"input": list(request.inputs), "model": request.model, "output_dtype": "float"}
    if request.input_type is not None:
        body["input_type"] = request.input_type.value  # "query" / "document"
    if request.dimensions is not None:
        body["output_dimension"] = request.dimensions
    body.update(request.provider_options)  # e.g. truncation
    return body


def embed_response(body: Mapping[str, Any], *, request_id: str | None) -> EmbedResponse:
    items = sorted(body.get("data") or [], key=lambda item: int(item.get("index") or 0))
    vectors = [item.get("embedding") for item in items]
    if not all(isinstance(vector, list) for vector in vectors):
        raise ProviderUnavailable("Voyage's embeddings are not lists of numbers (was encoding_format set?)")
    return EmbedResponse(
        vectors=[[float(x) for x in vector] for vector in vectors if isinstance(vector, list)],
        usage=usage(body.get("usage")),
        model=str(body.get("model") or ""),
        request_id=request_id,
    )


def rerank_body(request: RerankRequest) -> Json:
    """POST /v1/rerank: indices and scores only, the documents are the caller's already."""
    body: Json = {
        "query": request.query,
        "documents": list(request.documents),
        "model": request.model,
        "return_documents": False,
    }
    if request.top_n is not None:
        body["top_k"] = request.top_n
    body.update(request.provider_options)  # e.g. truncation
    return body


def rerank_response(body: Mapping[str, Any], *, request_id: str | None) -> RerankResponse:
    results = [
        RerankResult(index=int(item["index"]), score=float(item["relevance_score"]))
        for item in body.get("data") or []
    ]
    results.sort(key=lambda result: result.score, reverse=True)  # Voyage sends them so; keep it a promise
    return RerankResponse(results=results, usage=usage(body.get("usage")), request_id=request_id)


def usage(wire: Mapping[str, Any] | None) -> Usage:
    """Voyage counts only total tokens, all of them input."""
    total = int((wire or {}).get("total_tokens") or 0)
    return Usage(input_tokens=total, total_tokens=total)
