"""VERIFY by listing the models the key may use (GET /v1/models): authenticated, no tokens.

A 401/403 is Mistral's verdict on the key, so it is an answer (valid=False); anything
else that goes wrong means we could not tell, and is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.mistral.client import connect, host
from callers.mistral.errors import provider_errors


class MistralVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        sdk, _ = connect(secret, options, timeout=timeout)
        try:
            with provider_errors(host(options), timeout):
                async with asyncio.timeout(timeout):
                    models = await sdk.models.list_async()
        except (AuthenticationFailed, PermissionDenied) as rejected:
            reason = f"provider rejected the key ({rejected.provider_status}): {rejected.message}"
            return VerifyResult(valid=False, reason=reason)
        return VerifyResult(valid=True, reason="ok", detail={"models": str(len(models.data or []))})


CALLER = MistralVerifier()
