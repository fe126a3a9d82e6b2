"""A cohere SDK client per call, over the pooled httpx client of the upstream.

The SDK client is cheap to build and holds the key, so it lives for one call only;
what outlives the call is the pooled httpx client, which holds connections and no key.
Never use the SDK client as a context manager: its `__aexit__` closes the httpx
client it was given, which here is the shared pool.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import cohere

from callers import pools
from callers.base import InvalidRequest, SecretFields
from callers.cohere import SPEC


def base_url(options: Mapping[str, str]) -> str:
    return SPEC.with_defaults(options)["base_url"]


def upstream(url: str) -> str:
    """The pool key of `url`: scheme://host[:port]."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def connect(secret: SecretFields, options: Mapping[str, str], *, timeout: float) -> cohere.AsyncClientV2:
    """The SDK's v2 client for this call.

    Everything is passed explicitly: given an api_key and a base_url, the SDK reads
    neither CO_API_KEY nor CO_API_URL from the hub's environment. max_retries=0
    because the hub owns retries; `timeout` bounds each connect/read of the SDK,
    and the callers bound the whole call on top of it.
    """
    url = base_url(options)
    return cohere.AsyncClientV2(
        api_key=secret.reveal("api_key"),
        base_url=url,
        timeout=timeout,
        max_retries=0,
        httpx_client=pools.httpx_client(upstream(url)),
        # Otherwise chat() is wrapped in a decorator that logs a warning per call.
        log_warning_experimental_features=False,
    )


def host(options: Mapping[str, str]) -> str:
    """The provider's host name, for error messages."""
    return urlsplit(base_url(options)).hostname or "cohere"


# Set by the SDK method itself; a provider option must not override it.
_RESERVED_PARAMETERS = frozenset({"stream", "request_options"})


def check_parameters(method: Callable[..., Any], body: Mapping[str, Any]) -> None:
    """Refuse body fields the SDK method has no parameter for, naming them.

    Bodies (provider options included) are passed to the SDK as keyword arguments;
    an unknown one would otherwise surface as a TypeError from inside the call.
    """
    accepted = set(inspect.signature(method).parameters) - _RESERVED_PARAMETERS
    unknown = sorted(set(body) - accepted)
    if unknown:
        raise InvalidRequest(f"unknown Cohere parameter(s): {', '.join(unknown)}")
