"""From a vendor row and a credential's options to where and how a call is sent.

Resolved once per distinct (operation, options[, deployment]) and cached: the hot
path does a tuple hash and a dict lookup, then copies the key-less headers and adds
the key.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from callers.base import InvalidRequest, SecretFields
from callers.openai.transport import Endpoint, endpoint, with_key
from callers.openai.vendor import OpenAIWireVendor, UrlStyle
from callers.spec import InvalidCredentialField

_JSON = {"Content-Type": "application/json"}


class Operation(StrEnum):
    CHAT = "chat/completions"
    EMBED = "embeddings"


@dataclass(frozen=True, slots=True)
class Target:
    endpoint: Endpoint
    # How the chat body is written for this target (see OpenAIWireVendor).
    max_tokens_field: str
    stream_usage: bool


class VendorTargets:
    __slots__ = ("_cache", "_limit", "vendor")

    def __init__(self, vendor: OpenAIWireVendor, limit: int = 2048) -> None:
        self.vendor = vendor
        self._cache: dict[Hashable, Target] = {}
        # Keys hold option values and model names (never secrets); the bound only
        # matters when requests name ever-new Azure deployments.
        self._limit = limit

    def target(self, options: Mapping[str, str], model: str, operation: Operation) -> Target:
        if self.vendor.url_style is UrlStyle.AZURE_DEPLOYMENT:
            deployment = options.get(self._deployment_option(operation)) or model
            key: tuple[object, ...] = (operation, deployment, *options.items())
        else:
            deployment = ""
            key = (operation, *options.items())
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            found = self._cache[key] = self._build(options, operation, deployment)
        return found

    def headers(self, target: Target, secret: SecretFields) -> dict[str, str]:
        vendor = self.vendor
        return with_key(
            target.endpoint,
            secret,
            vendor.key_field,
            required=vendor.key_required,
            header=vendor.auth_header,
            prefix=vendor.auth_prefix,
        )

    def _deployment_option(self, operation: Operation) -> str:
        if operation is Operation.CHAT:
            return self.vendor.chat_deployment_option
        return self.vendor.embed_deployment_option

    def _build(self, options: Mapping[str, str], operation: Operation, deployment: str) -> Target:
        vendor = self.vendor
        headers = {**_JSON, **vendor.headers(options)}
        if vendor.url_style is UrlStyle.BASE_URL:
            url = f"{vendor.base_url(options)}/{operation.value}"
            return Target(endpoint(url, headers), vendor.max_tokens_field, stream_usage=True)
        settings = vendor.spec.with_defaults(options)
        root = settings.get("endpoint")
        if not root:  # only when the hub skipped validation: endpoint has no default
            raise InvalidCredentialField("options.endpoint", "required")
        if not deployment:
            raise InvalidRequest(
                f"no Azure deployment to call: set options.{self._deployment_option(operation)} "
                "or name the deployment as the request's model"
            )
        api_version = settings.get("api_version") or ""
        url = (
            f"{root.rstrip('/')}/openai/deployments/{quote(deployment, safe='')}/{operation.value}"
            f"?api-version={quote(api_version, safe='')}"
        )
        if vendor.is_legacy_api_version(api_version):
            return Target(endpoint(url, headers), "max_tokens", stream_usage=False)
        return Target(endpoint(url, headers), vendor.max_tokens_field, stream_usage=True)
