"""Voyage AI (api.voyageai.com): embeddings, rerank, key check. No chat.

Spoken as plain JSON over the hub's pooled aiohttp session rather than through the
`voyageai` SDK, whose async client cannot be used safely here: it pools connections
only through a module-level context variable (otherwise a new session per request),
exposes no response headers (so no request id), and for some model names runs the
model in-process instead, downloading weights from Hugging Face with
trust_remote_code. The API is two small JSON endpoints. Pure data: importing this
package must import neither an SDK nor aiohttp.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="voyageai",
    display_name="Voyage AI",
    secret_fields=(CredentialField("api_key", required=True, description="Voyage AI API key (pa-...)"),),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.voyageai.com/v1",
            description="API root, ending in /v1",
        ),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.EMBED, Capability.RERANK}),
    # No SDK: the capabilities need only aiohttp, a dependency of the hub itself.
    sdk_modules=(),
)
