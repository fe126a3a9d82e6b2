"""RERANK through Cohere's v2 rerank endpoint (POST /v2/rerank)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from callers.base import SecretFields
from callers.cohere.client import check_parameters, connect, host
from callers.cohere.errors import provider_errors
from callers.cohere.retrieval import rerank_body, rerank_response
from callers.types import RerankRequest, RerankResponse


class CohereReranker:
    async def rerank(
        self, secret: SecretFields, options: Mapping[str, str], request: RerankRequest, *, timeout: float
    ) -> RerankResponse:
        body = rerank_body(request)
        raw = connect(secret, options, timeout=timeout).with_raw_response
        check_parameters(raw.rerank, body)
        with provider_errors(host(options), timeout):
            async with asyncio.timeout(timeout):
                response = await raw.rerank(**body)
        return rerank_response(response.data.dict(), request_id=response.headers.get("x-request-id"))


CALLER = CohereReranker()
