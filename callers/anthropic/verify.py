"""Verify a key by listing models (GET /v1/models): authenticated, free, no tokens spent."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import anthropic

from callers.anthropic.client import connect
from callers.anthropic.errors import caller_error, rejection_reason
from callers.base import ProviderTimeout, SecretFields, VerifyResult


class AnthropicVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        """401/403 are the provider's verdict on the key (valid=False); any other failure
        means we could not tell, so it is raised."""
        connection = connect(secret, options, timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                page = await connection.client.models.list(
                    limit=1000, extra_headers=connection.headers, timeout=timeout
                )
        except TimeoutError:
            raise ProviderTimeout(f"Anthropic did not answer within the {timeout:g} s timeout") from None
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            return VerifyResult(valid=False, reason=rejection_reason(exc))
        except anthropic.APIError as exc:
            raise caller_error(exc) from None
        return VerifyResult(valid=True, reason="ok", detail={"models": str(len(page.data))})


CALLER = AnthropicVerifier()
