"""The common embedding types to and from Mistral's embeddings JSON (POST /v1/embeddings).

Plain functions over dicts, like `convert` is for chat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callers.mistral.convert import usage
from callers.types import EmbedRequest, EmbedResponse

Json = dict[str, Any]


def embed_arguments(request: EmbedRequest) -> Json:
    """The SDK's arguments for POST /v1/embeddings (`inputs` goes on the wire as `input`).

    Mistral's embedding models are symmetric: they take no query/document input
    type, so `input_type` has nothing to map to and is not sent.
    """
    arguments: Json = {"model": request.model, "inputs": list(request.inputs)}
    if request.dimensions is not None:
        arguments["output_dimension"] = request.dimensions  # codestral-embed; mistral-embed is fixed
    arguments.update(request.provider_options)  # e.g. output_dtype
    return arguments


def embed_response(body: Mapping[str, Any], *, request_id: str | None) -> EmbedResponse:
    items = sorted(body.get("data") or [], key=lambda item: int(item.get("index") or 0))
    return EmbedResponse(
        vectors=[[float(x) for x in item.get("embedding") or []] for item in items],
        usage=usage(body.get("usage")),
        model=str(body.get("model") or ""),
        request_id=request_id or body.get("id"),
    )
