"""VERIFY: GET {base_url}/text-to-speech/pronunciation-dictionary, with the key.

The cheapest authenticated call Sarvam's API has (sarvamai 0.1.39,
pronunciation_dictionary.list): it lists the account's pronunciation dictionaries,
costs no credits and synthesizes nothing. Sarvam answers a bad key with 403
``invalid_api_key_error`` (401 from some gateways): both are a definite "no".
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.sarvam import wire


class SarvamVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        target = wire.endpoint(options, "text-to-speech/pronunciation-dictionary")
        try:
            data = await wire.send(target, wire.key_headers(secret), method="GET", timeout=timeout)
        except (AuthenticationFailed, PermissionDenied) as exc:
            return VerifyResult(valid=False, reason=exc.message)
        count = data.get("dictionary_count") if isinstance(data, dict) else None
        detail = {"pronunciation_dictionaries": str(count)} if isinstance(count, int) else {}
        return VerifyResult(valid=True, reason="listed the pronunciation dictionaries", detail=detail)


CALLER = SarvamVerifier()
