"""VERIFY: GET {api_base_url}/v1/calls?page_size=1 with a freshly minted application JWT.

The cheapest authenticated Voice API call: it lists at most one of the application's
calls, costs nothing and places no call. It proves that the application id and its
private key go together (Vonage checks the JWT's RS256 signature against the public key
it holds for the application). A 401/403 is Vonage's "no" (valid=False), and so is a
private key that cannot sign a JWT at all. The signature secret cannot be checked
remotely (Vonage only uses it to sign what it sends): the detail says whether it is set,
since calls cannot be placed without it.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.vonage import WEBHOOK_KEY_FIELD, auth, wire


class VonageVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        try:
            token = auth.application_jwt(secret, options)
        except AuthenticationFailed as exc:
            return VerifyResult(valid=False, reason=exc.message)
        target = wire.endpoint(options, "v1/calls", {"page_size": "1"})
        try:
            data = await wire.send(target, token, method="GET", timeout=timeout)
        except (AuthenticationFailed, PermissionDenied) as exc:
            return VerifyResult(valid=False, reason=exc.message)
        signing = "ready" if secret.get(WEBHOOK_KEY_FIELD) else "secret.signature_secret missing"
        detail = {"signed_webhooks": signing}
        count = data.get("count") if isinstance(data, dict) else None
        if isinstance(count, int) and not isinstance(count, bool):
            detail["calls"] = str(count)
        return VerifyResult(valid=True, reason="listed the application's calls with its JWT", detail=detail)


CALLER = VonageVerifier()
