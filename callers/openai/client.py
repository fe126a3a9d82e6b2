"""One official-SDK client per call, fed only from the vault's secret and the options.

The client lives for one call (`async with`), so the decrypted key is held no longer
than the request that uses it, and no connection pool outlives the credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeAlias

import openai

from callers.base import SecretFields
from callers.openai.vendor import OpenAIWireVendor

RequestHeaders: TypeAlias = dict[str, str | openai.Omit]

# Headers the SDK would otherwise fill from the hub's own process environment:
# OPENAI_ORG_ID / OPENAI_PROJECT_ID when no value is passed, and OPENAI_CUSTOM_HEADERS
# always (it can even replace Authorization). Keys and settings come only from the
# vault, so every request states these explicitly, as `omit` when not configured.
_ENVIRONMENT_FED_HEADERS = ("Authorization", "OpenAI-Organization", "OpenAI-Project")

# Why a placeholder for keyless servers (self-hosted vLLM, Ollama, TGI): the SDK's
# constructor refuses an empty key, and api_key=None would make it read OPENAI_API_KEY
# from the environment. The placeholder satisfies the constructor and is never sent:
# `pinned_headers` omits Authorization on each request, through the SDK's documented
# `omit`, which its header validation accepts as "no auth, on purpose". The tests
# assert that the server received no Authorization header at all.
_KEYLESS_PLACEHOLDER = "keyless"


def pinned_headers(configured: Mapping[str, str]) -> RequestHeaders:
    """Per-request headers: the configured ones, and `omit` for the environment-fed rest."""
    headers: RequestHeaders = {name: openai.omit for name in _ENVIRONMENT_FED_HEADERS}
    headers.update(configured)
    return headers


@dataclass(frozen=True, slots=True)
class OpenAIConnection:
    client: openai.AsyncOpenAI
    # Pass as `extra_headers=` on every request made through `client`.
    headers: RequestHeaders


@asynccontextmanager
async def connect(
    vendor: OpenAIWireVendor,
    secret: SecretFields,
    options: Mapping[str, str],
    *,
    timeout: float,
) -> AsyncIterator[OpenAIConnection]:
    """An SDK client for `vendor`, closed when the block ends.

    max_retries=0: the hub owns retries (it knows the tenant's budget and deadline);
    a retrying SDK would multiply calls and overrun `timeout`.
    """
    # The SDK's own httpx client follows redirects, resending every header but
    # Authorization across origins: a vendor's key header (Azure's `api-key`) would go
    # wherever a redirect points. A 3xx is an error instead (callers.openai.errors).
    key = secret.reveal(vendor.key_field) if vendor.key_required else secret.get(vendor.key_field)
    configured = vendor.headers(options)
    if key:
        configured["Authorization"] = f"Bearer {key}"
    async with openai.AsyncOpenAI(
        api_key=key or _KEYLESS_PLACEHOLDER,
        base_url=vendor.base_url(options),
        timeout=timeout,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(follow_redirects=False),
    ) as client:
        yield OpenAIConnection(client=client, headers=pinned_headers(configured))
