"""Cohere (api.cohere.com): chat and streaming (v2), embeddings, rerank, key verification.

Every capability goes through the official `cohere` SDK's v2 client, built per call
around the hub's pooled httpx client. Pure data: importing this package must not
import the SDK.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="cohere",
    display_name="Cohere",
    secret_fields=(CredentialField("api_key", required=True, description="Cohere API key"),),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.cohere.com",
            description="API root, without a version (the SDK adds /v1 or /v2 per endpoint)",
        ),
    ),
    capabilities=frozenset(
        {Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED, Capability.RERANK}
    ),
    sdk_modules=("cohere",),
)
