"""VERIFY: GET {base}/v1/user through the SDK (`user.get`): authenticated, free, and it
says the subscription tier and how many characters are left.

A 401 invalid_api_key is the provider's verdict (valid=False). A key that ElevenLabs
recognises but that may not read the user (a restricted key without `user_read`:
401 missing_permissions) is a valid key: it says so in the reason. An exhausted quota or
a flagged account (PermissionDenied) is valid=False with ElevenLabs's reason, since the
key cannot be used. Anything else (outage, throttling, timeout) is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, ProviderTimeout, SecretFields, VerifyResult
from callers.elevenlabs import client, errors


class ElevenLabsVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        where = client.host(options)
        key = client.key(secret)
        sdk = client.sdk(secret, options, timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                user = await sdk.user.get(request_options=client.request_options(timeout))
        except TimeoutError:
            raise ProviderTimeout(f"{where} did not answer within {timeout:g} s") from None
        except errors.sdk_errors() as exc:
            error = errors.from_sdk(exc, where, key=key)
            if isinstance(error, PermissionDenied) and "missing_permissions" in error.message:
                return VerifyResult(valid=True, reason=f"the key is valid but restricted: {error.message}")
            if isinstance(error, AuthenticationFailed | PermissionDenied):
                return VerifyResult(valid=False, reason=error.message)
            raise error from None
        detail: dict[str, str] = {}
        subscription = user.subscription
        if subscription is not None:
            if subscription.tier:
                detail["tier"] = str(subscription.tier)
            if subscription.character_limit is not None and subscription.character_count is not None:
                detail["characters_left"] = str(subscription.character_limit - subscription.character_count)
        return VerifyResult(valid=True, reason="ok", detail=detail)


CALLER = ElevenLabsVerifier()
