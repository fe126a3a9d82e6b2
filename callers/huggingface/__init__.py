"""Hugging Face inference: Inference Providers (serverless), Inference Endpoints, self-hosted TGI/TEI.

Chat goes to an OpenAI-compatible /v1/chat/completions: Hugging Face's router
(https://router.huggingface.co/v1, the default) or the `base_url` of an Inference
Endpoint or a self-hosted TGI. Embeddings use the feature-extraction task: on the
router, POST /hf-inference/models/{model}/pipeline/feature-extraction; elsewhere
TEI's POST /embed, which takes the same body and answers in the same shape.
Pure data; no SDK is needed for anything here.
"""

from callers.base import Capability
from callers.openai.vendor import OpenAIWireVendor
from callers.spec import CredentialField, ProviderSpec

ROUTER_BASE_URL = "https://router.huggingface.co/v1"

SPEC = ProviderSpec(
    name="huggingface",
    display_name="Hugging Face",
    secret_fields=(
        CredentialField(
            "api_key", required=True, description="User access token (hf_...) with inference scope"
        ),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default=ROUTER_BASE_URL,
            description="Hugging Face's Inference Providers router by default; or the URL of an "
            "Inference Endpoint or a self-hosted TGI/TEI server (with or without /v1)",
        ),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED}),
)

WIRE = OpenAIWireVendor(spec=SPEC, base_url_suffix="/v1")
