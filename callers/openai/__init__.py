"""OpenAI (api.openai.com), and the OpenAI-wire code other vendors reuse.

Chat, streaming and embeddings speak the wire directly over the pooled aiohttp
session (`chat.py`, `embed.py`); the `openai` SDK is used only to verify keys.
Pure data: importing this package must import neither the SDK nor aiohttp.
"""

from callers.base import Capability
from callers.openai.vendor import OpenAIWireVendor
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="openai",
    display_name="OpenAI",
    secret_fields=(CredentialField("api_key", required=True, description="OpenAI API key (sk-...)"),),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url", kind="url", default="https://api.openai.com/v1", description="API root, ending in /v1"
        ),
        CredentialField("organization", description="Organization ID (org-...), sent as OpenAI-Organization"),
        CredentialField("project", description="Project ID (proj_...), sent as OpenAI-Project"),
    ),
    capabilities=frozenset(
        {
            Capability.VERIFY,
            Capability.CHAT,
            Capability.STREAM_CHAT,
            Capability.EMBED,
            Capability.STT,
            Capability.TTS,
            Capability.STREAM_TTS,
            Capability.VOICES,
        }
    ),
    speech_formats=SpeechFormats(
        stt_input="wav, mp3, flac, ogg/opus, webm/opus, mp4/aac",
        tts_output="mp3, ogg/opus, flac, wav and raw linear16 at 24 kHz",
    ),
    sdk_modules=("openai",),
)

WIRE = OpenAIWireVendor(
    spec=SPEC,
    option_headers={"organization": "OpenAI-Organization", "project": "OpenAI-Project"},
    # OpenAI deprecated max_tokens; its reasoning models accept only this one.
    max_tokens_field="max_completion_tokens",
)
