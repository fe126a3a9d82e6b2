"""EMBED through Cohere's v2 embed endpoint (POST /v2/embed), float vectors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from callers.base import SecretFields
from callers.cohere.client import check_parameters, connect, host
from callers.cohere.errors import provider_errors
from callers.cohere.retrieval import embed_body, embed_response
from callers.types import EmbedRequest, EmbedResponse


class CohereEmbedder:
    async def embed(
        self, secret: SecretFields, options: Mapping[str, str], request: EmbedRequest, *, timeout: float
    ) -> EmbedResponse:
        body = embed_body(request)
        raw = connect(secret, options, timeout=timeout).with_raw_response
        check_parameters(raw.embed, body)
        with provider_errors(host(options), timeout):
            async with asyncio.timeout(timeout):
                response = await raw.embed(**body)
        return embed_response(
            response.data.dict(), model=request.model, request_id=response.headers.get("x-request-id")
        )


CALLER = CohereEmbedder()
