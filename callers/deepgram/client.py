"""Where a Deepgram call goes, and the SDK client that takes it there.

One `AsyncDeepgramClient` (deepgram-sdk) per configured base URL, pooled like every
other client (`pools.shared`), over the pooled httpx client of the upstream. The pooled
SDK client holds no key: it is built with an empty one, and each call puts its own key
on its own request (`request_options`), read from the secret at that moment. So what
outlives a call is connections, never a key (callers.pools).

The SDK's HTTP retries are off (`max_retries=0`: the hub owns retries) and the pooled
httpx client follows no redirect, so the key only ever reaches the configured address.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from deepgram import AsyncDeepgramClient
from deepgram.core.request_options import RequestOptions
from deepgram.environment import DeepgramClientEnvironment

from callers import pools
from callers.base import ProviderUnavailable, SecretFields
from callers.deepgram import SPEC

SDK_POOL = "deepgram-sdk"
KEY_FIELD = "api_key"


@dataclass(frozen=True, slots=True)
class Target:
    """One configured base URL, resolved once; never holds a key."""

    base: str  # http(s)://host[:port][/prefix], no trailing slash
    ws_base: str  # the same as ws(s)://
    upstream: str  # scheme://host[:port]: the key of the connection pools
    host: str  # for messages


_TARGETS: dict[str, Target] = {}


def target(options: Mapping[str, str]) -> Target:
    url = SPEC.with_defaults(options)["base_url"].rstrip("/")
    found = _TARGETS.get(url)
    if found is None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Options are validated as http(s) URLs when stored; this guards a direct call.
            raise ProviderUnavailable(f"not an http(s) URL: {url!r}")
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        found = Target(
            base=url,
            ws_base=f"{ws_scheme}://{parts.netloc}{parts.path}",
            upstream=f"{parts.scheme}://{parts.netloc}",
            host=parts.hostname,
        )
        if len(_TARGETS) >= 1024:
            _TARGETS.clear()
        _TARGETS[url] = found
    return found


def sdk(where: Target) -> AsyncDeepgramClient:
    """The pooled, keyless SDK client of `where`."""

    def make() -> AsyncDeepgramClient:
        environment = DeepgramClientEnvironment(
            base=where.base, production=where.ws_base, agent=where.ws_base, agent_rest=where.base
        )
        made = AsyncDeepgramClient(
            api_key="",  # every request carries its own key (request_options)
            environment=environment,
            httpx_client=pools.httpx_client(where.upstream),
            max_retries=0,
        )
        with warnings.catch_warnings():
            # The SDK's sub-clients load lazily, and with them its websocket clients on
            # websockets.legacy, which these callers do not use (callers.deepgram.transcribe
            # says why): that deprecation says nothing about this code. Loaded here, once.
            warnings.filterwarnings("ignore", message=r"websockets\.", category=DeprecationWarning)
            _ = (made.listen.v1.media, made.speak.v1.audio, made.manage.v1.models, made.manage.v1.projects)
        return made

    return pools.shared(SDK_POOL, where.base, make, _nothing_to_close)


async def _nothing_to_close(client: AsyncDeepgramClient) -> None:
    # Its only resource is the pooled httpx client, which its own pool entry closes.
    return None


def auth_header(secret: SecretFields) -> str:
    return "Token " + secret.reveal(KEY_FIELD)


def request_options(
    secret: SecretFields,
    timeout: float,
    *,
    query: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> RequestOptions:
    """This call's key, timeout and extra query parameters, for one SDK request.

    A fresh session id per call: the SDK's own is made once per client, which here is
    shared by every credential calling this base URL.
    """
    sent = {"Authorization": auth_header(secret), "x-deepgram-session-id": str(uuid.uuid4())}
    if headers:
        sent.update(headers)
    options = RequestOptions(timeout=timeout, max_retries=0, additional_headers=sent)
    if query:
        options["additional_query_parameters"] = dict(query)
    return options
