"""ElevenLabs text to speech: REST synthesis and streaming through the `elevenlabs` SDK,
input streaming over the stream-input websocket, voices, verify.

Pure data: importing this package imports neither the SDK nor aiohttp.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="elevenlabs",
    display_name="ElevenLabs",
    secret_fields=(
        CredentialField("api_key", required=True, description="ElevenLabs API key, sent as xi-api-key"),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.elevenlabs.io",
            description="API root; a data-residency root such as https://api.eu.residency.elevenlabs.io",
        ),
    ),
    capabilities=frozenset(
        {
            Capability.TTS,
            Capability.STREAM_TTS,
            Capability.STREAM_TTS_INPUT,
            Capability.VOICES,
            Capability.VERIFY,
        }
    ),
    speech_formats=SpeechFormats(
        tts_output=(
            "raw and wav linear16 at 8, 16, 22.05, 24, 32, 44.1, 48 kHz, mulaw/alaw 8 kHz,"
            " mp3 22.05/24/44.1 kHz (streamed: raw, mp3)"
        ),
    ),
    sdk_modules=("elevenlabs",),
)
