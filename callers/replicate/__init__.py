"""Replicate: language models run as predictions over Replicate's HTTP API (no SDK).

Pure data. Chat and streaming chat map the conversation onto the prompt inputs that
Replicate's language models share (see convert.py); embeddings are left out because
Replicate has no embedding API, only community models whose inputs and outputs each
differ.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="replicate",
    display_name="Replicate",
    secret_fields=(CredentialField("api_token", required=True, description="Replicate API token (r8_...)"),),
    hint_field="api_token",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.replicate.com/v1",
            description="API root, ending in /v1",
        ),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT}),
    sdk_modules=(),  # plain HTTP over the hub's pooled aiohttp session
)
