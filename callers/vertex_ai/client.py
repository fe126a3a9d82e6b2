"""The vertex_ai Connector: a service-account token, then a Vertex-mode genai.Client."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.gemini.client import GoogleConnection, open_connection, upstream, vertex_client
from callers.google_service_account import FIELD
from callers.vertex_ai import API_VERSION, SPEC
from callers.vertex_ai.auth import authorize, load_credentials


async def connect_with_service_account(
    secret: SecretFields, options: Mapping[str, str], timeout: float
) -> GoogleConnection:
    settings = SPEC.with_defaults(options)
    project, location = settings["project"], settings["location"]
    # Without a base_url the SDK derives the endpoint from the location (regional,
    # multi-regional or global); the pool key only has to tell endpoints apart.
    base_url = settings.get("base_url")
    pool_key = upstream(base_url) if base_url else f"https://{location}-aiplatform.googleapis.com"
    credentials, token_uri = load_credentials(secret.reveal(FIELD))
    await authorize(credentials, token_uri, timeout=timeout)
    return open_connection(
        pool_key,
        base_url=base_url,
        api_version=API_VERSION,
        timeout=timeout,
        build=lambda http: vertex_client(credentials, project, location, http),
    )
