"""EMBED through Voyage's embeddings endpoint (POST /v1/embeddings)."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.types import EmbedRequest, EmbedResponse
from callers.voyageai.convert import embed_body, embed_response
from callers.voyageai.wire import post


class VoyageEmbedder:
    async def embed(
        self, secret: SecretFields, options: Mapping[str, str], request: EmbedRequest, *, timeout: float
    ) -> EmbedResponse:
        answer = await post(secret, options, "embeddings", embed_body(request), timeout=timeout)
        return embed_response(answer.body, request_id=answer.request_id)


CALLER = VoyageEmbedder()
