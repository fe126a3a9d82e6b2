"""VERIFY with a one-word embedding: the cheapest authenticated call Voyage offers.

Voyage has no free endpoint that checks a key (no model listing, no key check), so
verifying spends a token or two on its cheapest embedding model. A 401/403 is Voyage's
verdict on the key, so it is an answer (valid=False); anything else that goes wrong
means we could not tell, and is raised.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.voyageai.wire import post

# Voyage's lowest-priced general embedding model.
VERIFY_MODEL = "voyage-3.5-lite"


class VoyageVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        body = {"input": ["ok"], "model": VERIFY_MODEL}
        try:
            answer = await post(secret, options, "embeddings", body, timeout=timeout)
        except (AuthenticationFailed, PermissionDenied) as rejected:
            reason = f"provider rejected the key ({rejected.provider_status}): {rejected.message}"
            return VerifyResult(valid=False, reason=reason)
        tokens = (
            (answer.body.get("usage") or {}).get("total_tokens") if isinstance(answer.body, dict) else None
        )
        return VerifyResult(
            valid=True, reason="ok", detail={"model": VERIFY_MODEL, "tokens": str(tokens or 0)}
        )


CALLER = VoyageVerifier()
