"""Azure OpenAI Service: OpenAI models deployed in an Azure resource.

Chat, streaming and embeddings speak the wire directly (the shared OpenAI-wire code,
with `api-key` auth and deployment URLs); the `openai` SDK is used only to verify.
Pure data: importing this package must import neither the SDK nor aiohttp.
"""

from callers.base import Capability
from callers.openai.vendor import OpenAIWireVendor, UrlStyle
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="azure_openai",
    display_name="Azure OpenAI",
    secret_fields=(
        CredentialField("api_key", required=True, description="Key 1 or Key 2 of the Azure OpenAI resource"),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "endpoint",
            required=True,
            kind="url",
            description="Resource endpoint, e.g. https://my-resource.openai.azure.com",
        ),
        CredentialField("api_version", default="2024-10-21", description="Azure OpenAI REST API version"),
        CredentialField(
            "deployment",
            description="Deployment that chat calls go to; when unset, the request's model names it",
        ),
        CredentialField(
            "embedding_deployment",
            description="Deployment that embedding calls go to; when unset, the request's model names it",
        ),
        CredentialField("region", description="Azure region of the resource (a label, e.g. eastus)"),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED}),
    sdk_modules=("openai",),
)

WIRE = OpenAIWireVendor(
    spec=SPEC,
    auth_header="api-key",
    auth_prefix="",
    url_style=UrlStyle.AZURE_DEPLOYMENT,
    # Azure's reasoning models and newer runtimes reject max_tokens; the field (and
    # stream_options) exist since API version 2024-09-01-preview, so in the default
    # GA version 2024-10-21. Credentials pinned to older versions get the old forms.
    max_tokens_field="max_completion_tokens",
    legacy_api_versions_before="2024-09-01",
    chat_deployment_option="deployment",
    embed_deployment_option="embedding_deployment",
)
