"""Where ElevenLabs answers, and the SDK client of one call.

REST calls go through the `elevenlabs` SDK's AsyncElevenLabs, built per call over the
pooled httpx client of the upstream (callers.pools): the SDK client is cheap and holds
the key, so it lives for one call only; what outlives the call is the httpx client,
which holds connections and no key. Everything is passed explicitly: given api_key and
base_url the SDK reads neither ELEVENLABS_API_KEY nor an environment from the hub's
process. Retries are off (`max_retries=0`): the hub owns retries.

The pooled httpx client does not follow redirects, so the key only ever goes to the
configured address.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit, urlunsplit

# Imported here, when a capability module is loaded, so that a deployment without the
# SDK gets MissingExtra from the registry rather than an ImportError mid-call.
from elevenlabs.client import AsyncElevenLabs

from callers import pools
from callers.base import InvalidRequest, ProviderUnavailable, SecretFields
from callers.elevenlabs import SPEC

if TYPE_CHECKING:
    from elevenlabs.core.request_options import RequestOptions

KEY_FIELD = "api_key"
KEY_HEADER = "xi-api-key"
# ElevenLabs voice ids are short alphanumeric strings ("21m00Tcm4TlvDq8ikWAM"); anything
# else would be spliced into the request path, so it is refused before any call.
_VOICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The response headers that carry ElevenLabs's id for the request, best first.
REQUEST_ID_HEADERS = ("request-id", "x-request-id")


def base_url(options: Mapping[str, str]) -> str:
    url = SPEC.with_defaults(options)["base_url"].rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Options are validated as http(s) URLs when stored; this guards a direct call.
        raise ProviderUnavailable("options.base_url is not an http(s) URL")
    return url


def upstream(url: str) -> str:
    """The pool key of `url`: scheme://host[:port]."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def host(options: Mapping[str, str]) -> str:
    """The provider's host name, for error messages."""
    return urlsplit(base_url(options)).hostname or "ElevenLabs"


def voice_id(voice: str) -> str:
    if not _VOICE_ID.fullmatch(voice):
        raise InvalidRequest(
            f"voice: {voice[:80]!r} is not an ElevenLabs voice id (letters, digits, '_' and '-'; "
            "list them with the voices capability)"
        )
    return voice


def key(secret: SecretFields) -> str:
    return secret.reveal(KEY_FIELD)


def sdk(secret: SecretFields, options: Mapping[str, str], *, timeout: float) -> AsyncElevenLabs:
    """The SDK client of this call (never used as a context manager: the httpx client is shared)."""
    url = base_url(options)
    return AsyncElevenLabs(
        api_key=key(secret),
        base_url=url,
        timeout=timeout,
        httpx_client=pools.httpx_client(upstream(url)),
    )


def request_options(timeout: float, *, stream: bool = False) -> RequestOptions:
    """Per request: the timeout of each connect/read, no retries; for streams, chunks as they arrive.

    The SDK hands `timeout_in_seconds` to httpx as it is (a float works although the
    TypedDict says int), and `chunk_size=None` makes it iterate the body in the pieces
    the network delivered instead of re-cutting it into 1024-byte blocks.
    """
    found: dict[str, Any] = {"timeout_in_seconds": timeout, "max_retries": 0}
    if stream:
        found["chunk_size"] = None
    return cast("RequestOptions", found)


def request_id(headers: Mapping[str, str]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in REQUEST_ID_HEADERS:
        value = lowered.get(name)
        if value:
            return value
    return None


def websocket_url(options: Mapping[str, str], path: str, query: Mapping[str, str]) -> str:
    """The ws(s) URL of `path` under the base URL (http -> ws, https -> wss)."""
    parts = urlsplit(base_url(options))
    scheme = "wss" if parts.scheme == "https" else "ws"
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
    return urlunsplit((scheme, parts.netloc, f"{parts.path}{path}", encoded, ""))
