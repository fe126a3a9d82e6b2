"""VERIFY: one cheap authenticated read of the account, through the SDK.

With the Auth Token: GET /2010-04-01/Accounts/{AccountSid}.json (`accounts(sid).fetch_async`),
which says the account's status (active, suspended, closed) and type (Trial, Full).
With an API key: GET /2010-04-01/Accounts/{AccountSid}/Calls.json?PageSize=1
(`calls.page_async(page_size=1)`), since a Standard API key may not read the Account
resource (Twilio answers it 401 20003, as for a wrong key) but may use the Voice API,
which is what this credential is for. Both cost nothing.

A 401 (20003) or 403 is Twilio's verdict (valid=False, with its message); an account
that is not active is valid=False too (it cannot place calls). Anything else (outage,
throttling, timeout) is raised.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.twilio import client, errors


class TwilioVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        sdk, http = client.sdk(secret, options, timeout=timeout)
        sid = client.account_sid(options)
        with_key = client.uses_api_key(secret, options)
        try:
            if with_key:
                await sdk.calls.page_async(page_size=1)
            else:
                account = await sdk.api.v2010.accounts(sid).fetch_async()
        except errors.SDK_ERRORS as exc:
            failure = errors.from_sdk(
                exc, http, secrets=(secret.get("auth_token"), secret.get("api_key_secret"))
            )
        else:
            if with_key:
                return VerifyResult(valid=True, reason="the API key may read the account's calls")
            status, kind = account.status, account.type
            detail = {k: str(v) for k, v in (("status", status), ("type", kind)) if v}
            if status and str(status) != "active":
                return VerifyResult(valid=False, reason=f"the Twilio account is {status}", detail=detail)
            return VerifyResult(valid=True, reason="ok", detail=detail)
        if isinstance(failure, AuthenticationFailed | PermissionDenied):
            return VerifyResult(valid=False, reason=failure.message)
        raise failure


CALLER = TwilioVerifier()
