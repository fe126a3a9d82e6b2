"""VERIFY: GET /v1/Accounts/<sid>/Calls.json?PageSize=1 with the key and token.

The check Exotel's own authentication guide gives ("Testing Your Credentials"): it is
authenticated, free, places nothing, and proves the account SID, the key, the token and
the region together. A 401 (bad key/token, or a SID that does not match them) or 403 is
Exotel's verdict; a 404 is a SID this cluster does not have (a wrong SID, or the wrong
region): also a definite "no" for this credential. Anything else (throttling, an
outage, a timeout) is raised: it says nothing about the credential.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import AuthenticationFailed, NotFound, PermissionDenied, SecretFields, VerifyResult
from callers.exotel import wire


class ExotelVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        where = wire.target(options)
        url = where.url("Calls.json", query={"PageSize": "1"})
        try:
            data = await wire.request("GET", where, url, secret, options, timeout=timeout)
        except (AuthenticationFailed, PermissionDenied) as exc:
            return VerifyResult(valid=False, reason=exc.message)
        except NotFound as exc:
            return VerifyResult(
                valid=False,
                reason=(
                    f"{where.host} has no account {where.account_sid!r} (wrong SID or region): {exc.message}"
                ),
            )
        detail: dict[str, str] = {"cluster": where.host}
        metadata = wire.field(data, "Metadata") if isinstance(data, dict) else None
        if isinstance(metadata, dict) and wire.field(metadata, "Total") is not None:
            detail["calls"] = wire.text(wire.field(metadata, "Total"))
        return VerifyResult(valid=True, reason="listed the account's calls", detail=detail)


CALLER = ExotelVerifier()
