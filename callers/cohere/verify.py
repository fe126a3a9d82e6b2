"""VERIFY by listing the models the key may use (GET /v1/models): authenticated, no tokens.

Cohere also documents POST /v1/check-api-key, but the SDK (v5 and later) replaced
that method by one that raises; listing models is the cheapest call it still offers.
A 401/403 is Cohere's verdict on the key, so it is an answer (valid=False); anything
else that goes wrong means we could not tell, and is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.cohere.client import connect, host
from callers.cohere.errors import provider_errors

# Cohere's largest page: one request sees every model of an ordinary account.
_PAGE_SIZE = 1000


class CohereVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        client = connect(secret, options, timeout=timeout)
        try:
            with provider_errors(host(options), timeout):
                async with asyncio.timeout(timeout):
                    page = await client.models.list(page_size=_PAGE_SIZE)
        except (AuthenticationFailed, PermissionDenied) as rejected:
            return VerifyResult(
                valid=False,
                reason=f"provider rejected the key ({rejected.provider_status}): {rejected.message}",
            )
        return VerifyResult(valid=True, reason="ok", detail={"models": str(len(page.models))})


CALLER = CohereVerifier()
