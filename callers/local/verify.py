"""VERIFY: load the default model and embed one word.

There is no key to check: what can fail is the deployment (the extra not installed,
the weights missing or unreadable), which is raised as MissingExtra or
ProviderUnavailable, the hub's "could not tell". A model that loads and embeds is a
working credential; the first verify also warms the model up for later calls.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields, VerifyResult
from callers.local.embed import CALLER as EMBEDDER
from callers.local.models import DEFAULT_MODEL
from callers.local.runtime import RUNTIME
from callers.types import EmbedRequest


class LocalVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        answer = await EMBEDDER.embed(
            secret, options, EmbedRequest(model=DEFAULT_MODEL.name, inputs=["ok"]), timeout=timeout
        )
        loaded = await RUNTIME.model(DEFAULT_MODEL)
        return VerifyResult(
            valid=True,
            reason="ok",
            detail={
                "model": DEFAULT_MODEL.name,
                "dimensions": str(len(answer.vectors[0])),
                "max_seq_length": str(loaded.max_tokens),
            },
        )


CALLER = LocalVerifier()
