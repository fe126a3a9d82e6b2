"""Cartesia (text to speech, speech to text). Pure data.

Every capability speaks Cartesia's wire itself over the pooled aiohttp session (HTTP and
websockets, see client.py for why not the SDK), so no SDK module is needed.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="cartesia",
    display_name="Cartesia",
    secret_fields=(CredentialField("api_key", required=True, description="Cartesia API key (sk_car_...)"),),
    hint_field="api_key",
    option_fields=(
        CredentialField("base_url", kind="url", default="https://api.cartesia.ai", description="API root"),
        CredentialField(
            "api_version", default="2025-04-16", description="Sent as the Cartesia-Version header"
        ),
    ),
    capabilities=frozenset(
        {
            Capability.TTS,
            Capability.STREAM_TTS,
            Capability.STREAM_TTS_INPUT,
            Capability.VOICES,
            Capability.VERIFY,
            Capability.STT,
            Capability.STREAM_STT,
        }
    ),
    speech_formats=SpeechFormats(
        stt_input="wav, mp3, flac, ogg/opus, webm/opus, mp4/aac; live: raw linear16/mulaw/alaw at any rate",
        tts_output="raw and wav linear16/mulaw/alaw, mp3, at 8, 16, 22.05, 24, 44.1, 48 kHz (live: raw)",
    ),
    sdk_modules=(),
)
