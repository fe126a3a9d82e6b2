"""Verify a Replicate token with GET /account: one authenticated call, nothing run or billed."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.replicate.api import ReplicateApi


class ReplicateVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        api = ReplicateApi(secret, options, timeout=timeout)
        try:
            account = await api.request("GET", f"{api.base_url}/account")
        except (AuthenticationFailed, PermissionDenied) as exc:
            if exc.provider_status not in (401, 403):
                raise  # 402 (billing) says nothing about the token itself
            return VerifyResult(
                valid=False, reason=f"provider rejected the key ({exc.provider_status}): {exc.message}"
            )
        detail = {name: str(account[name]) for name in ("username", "type") if account.get(name)}
        return VerifyResult(valid=True, reason="ok", detail=detail)


CALLER = ReplicateVerifier()
