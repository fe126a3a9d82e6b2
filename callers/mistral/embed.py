"""EMBED through Mistral's embeddings endpoint (POST /v1/embeddings)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from callers.base import SecretFields
from callers.mistral import convert_embed
from callers.mistral.client import check_parameters, connect, host
from callers.mistral.errors import provider_errors
from callers.types import EmbedRequest, EmbedResponse


class MistralEmbedder:
    async def embed(
        self, secret: SecretFields, options: Mapping[str, str], request: EmbedRequest, *, timeout: float
    ) -> EmbedResponse:
        arguments = convert_embed.embed_arguments(request)
        sdk, recorder = connect(secret, options, timeout=timeout)
        check_parameters(sdk.embeddings.create_async, arguments)
        with provider_errors(host(options), timeout):
            async with asyncio.timeout(timeout):
                response = await sdk.embeddings.create_async(**arguments)
        return convert_embed.embed_response(
            response.model_dump(by_alias=True, mode="json"), request_id=recorder.request_id()
        )


CALLER = MistralEmbedder()
