"""Sarvam AI: Indic speech to text (Saarika, Saaras) and text to speech (Bulbul).

Every capability speaks Sarvam's wire directly over the pooled aiohttp session (REST
and websockets; see wire.py for why not the sarvamai SDK, whose source is the wire
reference), so no SDK is needed at run time. Pure data: importing this package
imports neither aiohttp nor the SDK.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="sarvam",
    display_name="Sarvam AI",
    secret_fields=(
        CredentialField(
            "api_key", required=True, description="API subscription key, sent as api-subscription-key"
        ),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.sarvam.ai",
            description="API root; websockets use the same host with wss://",
        ),
    ),
    capabilities=frozenset(
        {
            Capability.VERIFY,
            Capability.STT,
            Capability.STREAM_STT,
            Capability.TTS,
            Capability.STREAM_TTS,
            Capability.STREAM_TTS_INPUT,
            Capability.VOICES,
        }
    ),
    speech_formats=SpeechFormats(
        stt_input=(
            "wav, mp3, flac, ogg/opus, webm/opus, mp4/aac;"
            " live: raw linear16 at 8 or 16 kHz (other raw input converted)"
        ),
        tts_output=(
            "wav linear16 at 8, 16, 22.05, 24 kHz (bulbul:v3 also 32, 44.1, 48 kHz); live: raw linear16, mp3"
        ),
    ),
    sdk_modules=(),
)
