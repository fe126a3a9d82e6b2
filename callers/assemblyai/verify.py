"""VERIFY: GET {base_url}/v2/transcript?limit=1, one cheap authenticated call (lists at
most one of the account's transcripts; nothing is transcribed or billed)."""

from __future__ import annotations

from collections.abc import Mapping

from callers.assemblyai import wire
from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult


class AssemblyAIVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        target = wire.endpoint(options)
        try:
            await wire.request_json(
                target, "GET", "/v2/transcript", secret, params={"limit": "1"}, timeout=timeout
            )
        except (AuthenticationFailed, PermissionDenied) as exc:
            return VerifyResult(valid=False, reason=exc.message)
        return VerifyResult(valid=True, reason="listed transcripts")


CALLER = AssemblyAIVerifier()
