"""Where a Hugging Face call goes: the serverless router, or a dedicated server.

The credential's `base_url` decides. Left at its default it is Hugging Face's
router (Inference Providers), where embeddings are the hf-inference provider's
feature-extraction pipeline and keys are checked against the Hub's whoami. Any
other URL is one server (an Inference Endpoint, or self-hosted TGI/TEI), which
serves TEI's /embed and TGI/TEI's /info itself.

Module-level constants rather than literals in the code, so that tests can point
"Hugging Face" at a local fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import quote

from callers.huggingface import WIRE
from callers.openai.transport import Endpoint, endpoint

# The router's root (its OpenAI-compatible API is ROUTER + "/v1").
ROUTER = "https://router.huggingface.co"
# The Hub's token introspection (what huggingface_hub's `whoami` calls).
WHOAMI_URL = "https://huggingface.co/api/whoami-v2"

_JSON = {"Content-Type": "application/json"}
# Keys hold option values and model names, never secrets; forgotten when full.
_cache: dict[tuple[object, ...], Endpoint] = {}
_CACHE_LIMIT = 2048


def _cached(key: tuple[object, ...], url: Callable[[], str], headers: Mapping[str, str]) -> Endpoint:
    found = _cache.get(key)
    if found is None:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        found = _cache[key] = endpoint(url(), headers)
    return found


def server_root(options: Mapping[str, str]) -> str:
    """The configured server without its /v1 API suffix."""
    return WIRE.base_url(options).removesuffix("/v1")


def is_router(root: str) -> bool:
    return root == ROUTER


def _embed_url(options: Mapping[str, str], model: str) -> str:
    root = server_root(options)
    if is_router(root):
        # Model ids are "org/name": the slash is part of the path.
        return f"{root}/hf-inference/models/{quote(model, safe='/')}/pipeline/feature-extraction"
    return f"{root}/embed"


def embed_endpoint(options: Mapping[str, str], model: str) -> Endpoint:
    # ROUTER is part of the key so that tests moving it never see a stale entry.
    key = ("embed", ROUTER, model, *options.items())
    return _cached(key, lambda: _embed_url(options, model), _JSON)


def verify_endpoint(options: Mapping[str, str]) -> Endpoint:
    def url() -> str:
        root = server_root(options)
        return WHOAMI_URL if is_router(root) else f"{root}/info"

    return _cached(("verify", ROUTER, WHOAMI_URL, *options.items()), url, {})
