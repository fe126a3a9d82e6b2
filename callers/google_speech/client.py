"""Per call: a token from the service account; per loop and endpoint: a pooled gRPC client.

The token is fetched with callers.vertex_ai.auth (the JWT bearer grant to the key
file's token_uri, asynchronous and bounded by the call's timeout) and sent as the
call's `authorization` metadata, so the pooled channel itself carries no credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc

from callers import pools
from callers.base import InvalidRequest, SecretFields
from callers.google_service_account import FIELD
from callers.google_speech import SPEC
from callers.vertex_ai.auth import authorize, load_credentials

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one service answers: gRPC target (host:port) and whether TLS is used."""

    address: str
    secure: bool


def _parse(url: str) -> Target:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = parts.hostname or ""
    if parts.scheme == "http":
        if host not in _LOOPBACK:
            raise InvalidRequest("options.endpoint: plain http is only allowed to a loopback address")
        return Target(f"{host}:{parts.port or 80}", secure=False)
    if parts.scheme != "https" or not host:
        raise InvalidRequest("options.endpoint must be an https URL")
    return Target(f"{host}:{parts.port or 443}", secure=True)


def speech_target(options: Mapping[str, str]) -> Target:
    settings = SPEC.with_defaults(options)
    endpoint = settings.get("endpoint")
    if endpoint:
        return _parse(endpoint)
    location = settings.get("location", "global")
    host = "speech.googleapis.com" if location == "global" else f"{location}-speech.googleapis.com"
    return Target(f"{host}:443", secure=True)


def tts_target(options: Mapping[str, str]) -> Target:
    """Text-to-Speech: the endpoint override too (a fake, a proxy), except a Speech host."""
    endpoint = SPEC.with_defaults(options).get("endpoint")
    if endpoint:
        target = _parse(endpoint)
        host, _, port = target.address.rpartition(":")
        if host.endswith("-speech.googleapis.com") or host == "speech.googleapis.com":
            regional = host.removesuffix("speech.googleapis.com")
            return Target(f"{regional}texttospeech.googleapis.com:{port}", secure=True)
        return target
    return Target("texttospeech.googleapis.com:443", secure=True)


def project_of(secret: SecretFields, options: Mapping[str, str]) -> str:
    project = options.get("project")
    if project:
        return project
    import json

    try:
        document = json.loads(secret.reveal(FIELD))
    except ValueError:
        document = {}
    value = document.get("project_id") if isinstance(document, dict) else None
    if not isinstance(value, str) or not value:
        raise InvalidRequest("options.project is required: the key file names no project_id")
    return value


def recognizer(secret: SecretFields, options: Mapping[str, str]) -> str:
    location = SPEC.with_defaults(options).get("location", "global")
    return f"projects/{project_of(secret, options)}/locations/{location}/recognizers/_"


async def auth_metadata(secret: SecretFields, *, timeout: float) -> Metadata:
    credentials, token_uri = load_credentials(secret.reveal(FIELD))
    await authorize(credentials, token_uri, timeout=timeout)
    return (("authorization", f"Bearer {credentials.token}"),)


def _channel(target: Target) -> grpc.aio.Channel:
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if target.secure:
        return grpc.aio.secure_channel(target.address, grpc.ssl_channel_credentials(), options=options)
    return grpc.aio.insecure_channel(target.address, options=options)


async def _close(client: Any) -> None:
    await client.transport.close()


def speech_client(target: Target) -> Any:
    """The loop's google.cloud.speech_v2 SpeechAsyncClient for `target`."""
    from google.cloud.speech_v2.services.speech import SpeechAsyncClient
    from google.cloud.speech_v2.services.speech.transports import SpeechGrpcAsyncIOTransport

    def make() -> Any:
        host = target.address.rpartition(":")[0]
        transport = SpeechGrpcAsyncIOTransport(host=host, channel=_channel(target))
        return SpeechAsyncClient(transport=transport)

    return pools.shared("grpc.google_speech", target.address, make, _close)


def tts_client(target: Target) -> Any:
    """The loop's google.cloud.texttospeech_v1 TextToSpeechAsyncClient for `target`."""
    from google.cloud.texttospeech_v1.services.text_to_speech import TextToSpeechAsyncClient
    from google.cloud.texttospeech_v1.services.text_to_speech.transports import (
        TextToSpeechGrpcAsyncIOTransport,
    )

    def make() -> Any:
        host = target.address.rpartition(":")[0]
        transport = TextToSpeechGrpcAsyncIOTransport(host=host, channel=_channel(target))
        return TextToSpeechAsyncClient(transport=transport)

    return pools.shared("grpc.google_tts", target.address, make, _close)
