"""RERANK through Voyage's rerank endpoint (POST /v1/rerank)."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.types import RerankRequest, RerankResponse
from callers.voyageai.convert import rerank_body, rerank_response
from callers.voyageai.wire import post


class VoyageReranker:
    async def rerank(
        self, secret: SecretFields, options: Mapping[str, str], request: RerankRequest, *, timeout: float
    ) -> RerankResponse:
        answer = await post(secret, options, "rerank", rerank_body(request), timeout=timeout)
        return rerank_response(answer.body, request_id=answer.request_id)


CALLER = VoyageReranker()
