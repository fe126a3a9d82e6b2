"""EMBED for Hugging Face: the feature-extraction task (router) or TEI's /embed.

Both take {"inputs": [...], "normalize"?, "truncate"?, "prompt_name"?} and answer
with one vector per input (a JSON array of arrays of floats), no usage counts.
Reference: https://huggingface.co/docs/inference-providers/tasks/feature-extraction
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from callers.base import InvalidRequest, ProviderUnavailable, SecretFields
from callers.huggingface import WIRE, targets
from callers.openai import transport as http
from callers.types import EmbedRequest, EmbedResponse


def feature_extraction_body(request: EmbedRequest) -> bytes:
    if request.dimensions is not None:
        # Not a parameter of the task; TEI builds that support Matryoshka truncation
        # take provider_options={"dimensions": n}.
        raise InvalidRequest("huggingface feature-extraction does not take dimensions")
    # input_type is not sent: the nearest field (prompt_name) names a prompt in each
    # model's own configuration, and is left to provider_options.
    body: dict[str, Any] = {"inputs": request.inputs}
    if request.provider_options:
        body.update(request.provider_options)
    return orjson.dumps(body)


def parse_feature_extraction(data: Any, expected: int) -> list[list[float]]:
    if isinstance(data, list) and data and isinstance(data[0], int | float):
        data = [data]  # a single input answered with a bare vector
    if not isinstance(data, list) or len(data) != expected:
        raise ProviderUnavailable(f"expected {expected} embedding(s) from feature-extraction")
    for vector in data:
        if not isinstance(vector, list) or (vector and not isinstance(vector[0], int | float)):
            # Token-level features (one vector per token): the model is not a
            # sentence-embedding model, or its pipeline does no pooling.
            raise InvalidRequest("the model returned token-level features, not one embedding per input")
    return data


class HuggingFaceEmbedder:
    async def embed(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: EmbedRequest,
        *,
        timeout: float,
    ) -> EmbedResponse:
        target = targets.embed_endpoint(options, request.model)
        body = feature_extraction_body(request)
        headers = http.with_key(target, secret, WIRE.key_field, required=True)
        data, request_id = await http.send(target, headers, body, timeout)
        return EmbedResponse(
            vectors=parse_feature_extraction(data, len(request.inputs)),
            model=request.model,
            request_id=request_id,
        )


CALLER = HuggingFaceEmbedder()
