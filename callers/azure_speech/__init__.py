"""Azure AI Speech (speech to text, text to speech), spoken directly: REST over the pooled
aiohttp session and the real-time websocket protocol over aiohttp's websocket client, so
no SDK is needed (the `azure_speech` extra is empty). Pure data.

- STT: short-audio REST (<= 60 s, a language given, no diarization), else fast
  transcription (callers.azure_speech.transcribe has the rule);
- STREAM_STT: the real-time websocket (speech.config / audio / speech.hypothesis /
  speech.phrase / turn.end);
- TTS, STREAM_TTS: POST cognitiveservices/v1 with SSML, the answer streamed;
- VOICES, VERIFY: GET cognitiveservices/voices/list.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec, SpeechFormats

SPEC = ProviderSpec(
    name="azure_speech",
    display_name="Azure AI Speech",
    secret_fields=(
        CredentialField(
            "api_key", required=True, description="Speech resource key, sent as Ocp-Apim-Subscription-Key"
        ),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField(
            "region",
            required=True,
            description=(
                "Region of the Speech resource, e.g. eastus: the hosts are "
                "{region}.stt.speech.microsoft.com, {region}.tts.speech.microsoft.com and "
                "{region}.api.cognitive.microsoft.com "
                "(.azure.cn for china* regions)"
            ),
        ),
        CredentialField(
            "endpoint",
            kind="url",
            description=(
                "Custom-domain or private endpoint, e.g. https://NAME.cognitiveservices.azure.com; when set, "
                "every API is reached under it instead of the regional hosts: {endpoint}/stt/speech/... "
                "(REST and websocket), {endpoint}/tts/cognitiveservices/..., "
                "{endpoint}/speechtotext/transcriptions:transcribe"
            ),
        ),
    ),
    capabilities=frozenset(
        {
            Capability.VERIFY,
            Capability.STT,
            Capability.STREAM_STT,
            Capability.TTS,
            Capability.STREAM_TTS,
            Capability.VOICES,
        }
    ),
    sdk_modules=(),
    speech_formats=SpeechFormats(
        stt_input=(
            "wav linear16 16 kHz (short audio); wav, mp3, flac, ogg/opus, webm/opus, mp4/aac "
            "(fast transcription)"
        ),
        tts_output=(
            "wav and raw linear16 at 8/16/22.05/24/44.1/48 kHz, mulaw/alaw 8 kHz, "
            "mp3 and ogg/opus at 16/24/48 kHz"
        ),
    ),
)
