"""Verify an Azure OpenAI key: GET {endpoint}/openai/models?api-version=... with `api-key`.

The resource-level models list needs no deployment, so a key can be checked before
any deployment exists; `deployment` is therefore deliberately not passed here.
"""

from __future__ import annotations

from collections.abc import Mapping

import openai

from callers.azure_openai import SPEC
from callers.base import SecretFields, VerifyResult
from callers.openai.client import pinned_headers
from callers.openai.verify import verify_by_listing_models
from callers.spec import InvalidCredentialField


class AzureOpenAIVerifier:
    async def verify(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        *,
        timeout: float,
    ) -> VerifyResult:
        settings = SPEC.with_defaults(options)
        endpoint = settings.get("endpoint")
        if not endpoint:  # only when the hub skipped validation: endpoint has no default
            raise InvalidCredentialField("options.endpoint", "required")
        key = secret.reveal("api_key")
        # Every argument is passed explicitly: with any of them missing the SDK would
        # fall back to AZURE_OPENAI_* / OPENAI_API_VERSION from the hub's environment.
        # No redirects: the SDK's default client follows them, and httpx would resend the
        # `api-key` header to wherever one points (it drops only Authorization).
        async with openai.AsyncAzureOpenAI(
            api_key=key,
            azure_endpoint=endpoint,
            api_version=settings["api_version"],
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(follow_redirects=False),
        ) as client:
            return await verify_by_listing_models(client, pinned_headers({"api-key": key}))


CALLER = AzureOpenAIVerifier()
