"""VERIFY: the voices list of the resource's region, a real authenticated GET that costs
nothing (no characters or audio are billed). 401/403 is Azure's verdict on the key (or
on the key in that region / endpoint): valid=False; anything else that goes wrong means
we could not tell, and is raised."""

from __future__ import annotations

from collections.abc import Mapping

from callers.azure_speech.voices import fetch_voices
from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult


class AzureVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        try:
            voices = await fetch_voices(secret, options, timeout)
        except (AuthenticationFailed, PermissionDenied) as exc:
            return VerifyResult(valid=False, reason=exc.message)
        return VerifyResult(valid=True, reason="ok", detail={"voices": str(len(voices))})


CALLER = AzureVerifier()
