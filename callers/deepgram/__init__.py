"""Deepgram (speech to text, text to speech). Pure data: no SDK import here.

STT: Nova-3 / Nova-2 prerecorded (POST /v1/listen) and live (websocket /v1/listen).
TTS: Aura / Aura-2 (POST /v1/speak, the answer streamed as it is made). Voices are
the TTS models of GET /v1/models; a key is verified with GET /v1/projects.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="deepgram",
    display_name="Deepgram",
    secret_fields=(
        CredentialField("api_key", required=True, description="Deepgram API key, sent as 'Token <key>'"),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "base_url",
            kind="url",
            default="https://api.deepgram.com",
            description="API root (or self-hosted)",
        ),
    ),
    capabilities=frozenset(
        {
            Capability.STT,
            Capability.STREAM_STT,
            Capability.TTS,
            Capability.STREAM_TTS,
            Capability.VOICES,
            Capability.VERIFY,
        }
    ),
    sdk_modules=("deepgram",),
    speech_formats=SpeechFormats(
        stt_input="wav, mp3, flac, ogg/opus, webm/opus, mp4/aac; live: raw linear16/mulaw/alaw at any rate",
        tts_output=(
            "raw and wav linear16 at 8/16/24/32/48 kHz, mulaw/alaw 8 kHz, mp3 22.05 kHz, "
            "ogg/opus 48 kHz, flac at 8/16/22.05/32/48 kHz"
        ),
    ),
)
