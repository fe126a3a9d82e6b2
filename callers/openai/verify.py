"""Verify a key by listing models: one real authenticated call, no tokens spent.

One implementation serves every OpenAI-wire vendor (openai, openrouter,
openai_compatible), parametrised by the vendor's data row; Azure builds its own
client and reuses `verify_by_listing_models`.
"""

from __future__ import annotations

from collections.abc import Mapping

import openai

from callers.base import SecretFields, VerifyResult
from callers.openai import WIRE
from callers.openai.client import RequestHeaders, connect
from callers.openai.errors import caller_error, rejection_reason
from callers.openai.vendor import OpenAIWireVendor


async def verify_by_listing_models(client: openai.AsyncOpenAI, headers: RequestHeaders) -> VerifyResult:
    """GET {base_url}/models through `client`.

    A 401/403 is the provider's verdict on the key, so it is an answer (valid=False);
    anything else that goes wrong means we could not tell, so it is raised.
    """
    try:
        page = await client.models.list(extra_headers=headers)
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        return VerifyResult(valid=False, reason=rejection_reason(exc))
    except openai.APIError as exc:
        raise caller_error(exc) from None
    return VerifyResult(valid=True, reason="ok", detail={"models": str(len(page.data))})


class OpenAIWireVerifier:
    def __init__(self, vendor: OpenAIWireVendor) -> None:
        self.vendor = vendor

    async def verify(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        *,
        timeout: float,
    ) -> VerifyResult:
        async with connect(self.vendor, secret, options, timeout=timeout) as connection:
            return await verify_by_listing_models(connection.client, connection.headers)


CALLER = OpenAIWireVerifier(WIRE)
