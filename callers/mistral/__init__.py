"""Mistral AI (api.mistral.ai): chat and streaming with tools, embeddings, key verification.

Every capability goes through the official `mistralai` SDK (3.x, built on httpx2),
built per call around a pooled httpx2 client. Pure data: importing this package must
not import the SDK.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="mistral",
    display_name="Mistral AI",
    secret_fields=(CredentialField("api_key", required=True, description="Mistral API key"),),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.mistral.ai/v1",
            description="API root, ending in /v1 (e.g. https://api.eu.mistral.ai/v1)",
        ),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED}),
    sdk_modules=("mistralai",),
)
