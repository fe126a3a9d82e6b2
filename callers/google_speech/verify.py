"""VERIFY: a token from the service account, then ListVoices (cheap and authenticated)."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.google_speech.voices import list_google_voices


class GoogleSpeechVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        try:
            voices = await list_google_voices(secret, options, None, timeout)
        except (AuthenticationFailed, PermissionDenied) as exc:
            return VerifyResult(valid=False, reason=exc.message)
        return VerifyResult(
            valid=True, reason="listed Text-to-Speech voices", detail={"voices": str(len(voices))}
        )


CALLER = GoogleSpeechVerifier()
