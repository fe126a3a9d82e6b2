"""AssemblyAI (speech to text): the v2 transcript API and Universal Streaming (v3).

Pure data. The capability modules speak the wire over the hub's pooled aiohttp session
(callers.assemblyai.wire explains why not the `assemblyai` SDK), so no SDK is imported.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="assemblyai",
    display_name="AssemblyAI",
    secret_fields=(CredentialField("api_key", required=True, description="AssemblyAI API key"),),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.assemblyai.com",
            description="API root; https://api.eu.assemblyai.com for EU data residency",
        ),
        CredentialField(
            "streaming_url",
            kind="url",
            default="https://streaming.assemblyai.com",
            description=(
                "Universal Streaming host (its websocket is opened as wss:// on it); "
                "https://streaming.eu.assemblyai.com for EU data residency"
            ),
        ),
    ),
    capabilities=frozenset({Capability.STT, Capability.STREAM_STT, Capability.VERIFY}),
    sdk_modules=(),
    speech_formats=SpeechFormats(
        stt_input=(
            "wav, mp3, flac, ogg/opus, webm/opus, mp4/aac (raw samples sent as wav); "
            "live: raw linear16/mulaw mono at any rate"
        ),
    ),
)
