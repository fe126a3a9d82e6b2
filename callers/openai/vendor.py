"""A vendor that speaks OpenAI's wire API, described as one row of data.

In pydantic-ai's terms this is the provider half (credentials, base URL, headers,
how the key is presented); the wire half (OpenAI's /v1 chat and embeddings JSON,
server-sent events) is shared code in this package (`callers.openai.wire` and
`callers.openai.transport`). Adding an OpenAI-compatible vendor is a new row, not
new code. No SDK and no HTTP client import here: provider packages import this
module from their `__init__`, which must stay pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from callers.spec import InvalidCredentialField, ProviderSpec


class UrlStyle(StrEnum):
    # {base_url}/chat/completions, {base_url}/embeddings: OpenAI and everyone copying it.
    BASE_URL = "base_url"
    # {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...: Azure.
    AZURE_DEPLOYMENT = "azure_deployment"


@dataclass(frozen=True, slots=True)
class OpenAIWireVendor:
    spec: ProviderSpec
    # Options sent as HTTP headers on every request: option name -> header name.
    option_headers: Mapping[str, str] = field(default_factory=dict)
    # The secret field holding the key.
    key_field: str = "api_key"
    # How the key travels: `{auth_header}: {auth_prefix}{key}`. Azure uses `api-key: <key>`.
    auth_header: str = "Authorization"
    auth_prefix: str = "Bearer "
    # The request field that caps the completion's length. OpenAI deprecated
    # `max_tokens` for `max_completion_tokens` (its reasoning models reject the old
    # one); most OpenAI-compatible servers (vLLM, TGI, Ollama, OpenRouter) document
    # `max_tokens`.
    max_tokens_field: str = "max_tokens"
    url_style: UrlStyle = UrlStyle.BASE_URL
    # Appended to base_url when the configured URL does not already end with it:
    # servers configured by their root (Hugging Face endpoints, TGI) serve the
    # OpenAI API under /v1.
    base_url_suffix: str = ""
    # For UrlStyle.AZURE_DEPLOYMENT: the options naming the deployment per operation.
    # When the option is unset, the request's model names the deployment.
    chat_deployment_option: str = "deployment"
    embed_deployment_option: str = "embedding_deployment"
    # Azure: API versions dated before this one (YYYY-MM-DD) reject both
    # `max_completion_tokens` and `stream_options`; requests pinned to them get
    # `max_tokens`, and streams without token counts.
    legacy_api_versions_before: str = ""

    def is_legacy_api_version(self, api_version: str) -> bool:
        cutoff = self.legacy_api_versions_before
        # Dated versions compare as text ("2024-06-01" < "2024-09-01-preview"[:10]).
        return bool(cutoff) and api_version[:1].isdigit() and api_version[:10] < cutoff

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key_required(self) -> bool:
        """False for vendors whose servers may run without any key (self-hosted engines)."""
        return any(f.name == self.key_field and f.required for f in self.spec.secret_fields)

    def base_url(self, options: Mapping[str, str]) -> str:
        """The API root from the options, or the vendor's default when it has one."""
        url = self.spec.with_defaults(options).get("base_url")
        if not url:
            # Only reachable when the hub skipped validation: base_url is required
            # exactly for the vendors that have no default.
            raise InvalidCredentialField("options.base_url", "required")
        url = url.rstrip("/")
        if self.base_url_suffix and not url.endswith(self.base_url_suffix):
            url += self.base_url_suffix
        return url

    def headers(self, options: Mapping[str, str]) -> dict[str, str]:
        """The vendor headers that these options configure."""
        return {
            header: options[option] for option, header in self.option_headers.items() if options.get(option)
        }
