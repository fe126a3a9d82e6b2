"""EMBED over OpenAI's wire (POST .../embeddings), for every vendor row (no SDK)."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.openai import WIRE
from callers.openai import transport as http
from callers.openai.targets import Operation, VendorTargets
from callers.openai.vendor import OpenAIWireVendor
from callers.openai.wire import embed_body, parse_embeddings
from callers.types import EmbedRequest, EmbedResponse


class OpenAIWireEmbedder:
    __slots__ = ("targets", "vendor")

    def __init__(self, vendor: OpenAIWireVendor) -> None:
        self.vendor = vendor
        self.targets = VendorTargets(vendor)

    async def embed(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: EmbedRequest,
        *,
        timeout: float,
    ) -> EmbedResponse:
        target = self.targets.target(options, request.model, Operation.EMBED)
        headers = self.targets.headers(target, secret)
        data, request_id = await http.send(target.endpoint, headers, embed_body(request), timeout)
        return parse_embeddings(data, request_id, request.model)


CALLER = OpenAIWireEmbedder(WIRE)
