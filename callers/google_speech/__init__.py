"""Google Cloud Speech-to-Text and Text-to-Speech, by service account.

Pure data: the SDK (google-cloud-speech v2, google-cloud-texttospeech v1, gRPC) is
imported by the capability modules only.
"""

from callers.base import Capability
from callers.google_service_account import FIELD, check_service_account
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="google_speech",
    display_name="Google Cloud Speech",
    secret_fields=(
        CredentialField(FIELD, required=True, kind="json", description="Service-account key file (JSON)"),
    ),
    hint_field=FIELD,
    option_fields=(
        CredentialField("project", description="Google Cloud project ID; default: the key file's project_id"),
        CredentialField(
            "location", default="global", description="Speech-to-Text v2 location, e.g. us or eu"
        ),
        CredentialField(
            "endpoint", kind="url", description="API endpoint override, e.g. https://eu-speech.googleapis.com"
        ),
    ),
    extra_validation=check_service_account,
    capabilities=frozenset(
        {
            Capability.STT,
            Capability.STREAM_STT,
            Capability.TTS,
            Capability.STREAM_TTS,
            Capability.STREAM_TTS_INPUT,
            Capability.VOICES,
            Capability.VERIFY,
        }
    ),
    speech_formats=SpeechFormats(
        stt_input="wav, mp3, flac, ogg/opus, webm/opus, mp4/aac; raw linear16/mulaw/alaw at any rate",
        tts_output=(
            "wav linear16 at any rate, mp3, ogg/opus; streamed (Chirp 3: HD voices only): "
            "raw linear16/mulaw/alaw at any rate, ogg/opus"
        ),
    ),
    sdk_modules=("google.cloud.speech_v2", "google.cloud.texttospeech_v1", "google.auth", "grpc"),
)
