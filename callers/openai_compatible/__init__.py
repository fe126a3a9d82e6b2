"""Any server speaking OpenAI's wire API: vLLM, Ollama, TGI, LiteLLM, LM Studio, ...

The key is optional because self-hosted engines often run without one; the base URL
is required because there is no default server. Pure data: no SDK import here.
"""

from callers.base import Capability
from callers.openai.vendor import OpenAIWireVendor
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="openai_compatible",
    display_name="OpenAI-compatible server",
    secret_fields=(
        CredentialField("api_key", description="Bearer token, if the server requires one (vLLM --api-key)"),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            required=True,
            kind="url",
            description="API root including /v1, e.g. http://vllm.internal:8000/v1",
        ),
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

WIRE = OpenAIWireVendor(spec=SPEC)
