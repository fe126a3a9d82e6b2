"""VERIFY: GET {base}/v1/projects, the cheapest authenticated call (no audio, no cost).

A 401/403 is Deepgram's verdict on the key, so it is an answer (valid=False); anything
else that goes wrong means we could not tell, and is raised."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.deepgram import client, errors


class DeepgramVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        where = client.target(options)
        try:
            answer = await client.sdk(where).manage.v1.projects.list(
                request_options=client.request_options(secret, timeout)
            )
        except errors.SDK_ERRORS as exc:
            error = errors.from_sdk(exc, where.host)
            if isinstance(error, AuthenticationFailed | PermissionDenied) and error.provider_status in (
                401,
                403,
            ):
                return VerifyResult(valid=False, reason=error.message)
            raise error from None
        return VerifyResult(valid=True, reason="ok", detail={"projects": str(len(answer.projects or ()))})


CALLER = DeepgramVerifier()
