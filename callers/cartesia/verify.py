"""Verify a key with one cheap authenticated call: GET {base_url}/voices?limit=1.

401/403 mean the key is refused (valid=False, with Cartesia's reason); an outage,
throttling or a timeout is raised, since it says nothing about the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.cartesia import client


class CartesiaVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        target = client.url(options, "voices", {"limit": "1"})
        try:
            await client.request("GET", target, secret, options, timeout=timeout)
        except (AuthenticationFailed, PermissionDenied) as exc:
            return VerifyResult(valid=False, reason=exc.message)
        return VerifyResult(valid=True, reason="ok", detail={"api_version": client.version(options)})


CALLER = CartesiaVerifier()
