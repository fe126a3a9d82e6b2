"""From a SynthesizeRequest to ElevenLabs's parameters, and from its audio to the asked format.

Output formats (the `output_format` query parameter, codec_rate[_bitrate]):
- raw PCM s16le at 8, 16, 22.05, 24, 32, 44.1 and 48 kHz: pcm_<rate>, natively;
- WAV PCM at those rates: wav_<rate> natively for a whole answer (the streaming
  endpoint has no wav_*; a WAV file is not a stream format anyway);
- raw mu-law / A-law 8 kHz: ulaw_8000 / alaw_8000, natively; in a WAV container:
  the same samples wrapped by callers.audio;
- MP3 at 22.05, 24 and 44.1 kHz: mp3_22050_32, mp3_24000_48, mp3_44100_128, natively;
  MP3 at another rate: PCM from ElevenLabs, encoded by callers.audio (whole answers only);
- Ogg/Opus and FLAC: PCM from ElevenLabs, encoded by callers.audio (whole answers only).
  ElevenLabs's opus_48000_* formats are not used: their container is not documented,
  and the hub answers exactly Ogg/Opus.
ElevenLabs speaks mono; more channels are made by callers.audio (whole answers only).
PCM at 44.1 kHz needs ElevenLabs's Pro tier: asked for natively, a lower tier's refusal
is ElevenLabs's answer (PermissionDenied/InvalidRequest), not converted around.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callers import audio
from callers.base import InvalidRequest
from callers.types import AudioContainer, AudioEncoding, AudioFormat, SynthesizeRequest

C, E = AudioContainer, AudioEncoding

DEFAULT_MODEL = "eleven_multilingual_v2"
MODELS = ("eleven_multilingual_v2", "eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_v3")
# Models that take no language_code (ElevenLabs: "not supported for multilingual_v2
# models"); they speak the language of the text.
_NO_LANGUAGE_CODE = frozenset({"eleven_multilingual_v2", "eleven_multilingual_v1", "eleven_monolingual_v1"})

PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
_MP3_NATIVE = {22050: "mp3_22050_32", 24000: "mp3_24000_48", 44100: "mp3_44100_128"}

# provider_options that go into voice_settings.
VOICE_SETTINGS = ("stability", "similarity_boost", "style", "use_speaker_boost")
# provider_options passed on to the SDK's text_to_speech.convert/stream as they are.
REST_OPTIONS = (
    "seed",
    "previous_text",
    "next_text",
    "previous_request_ids",
    "next_request_ids",
    "apply_text_normalization",
    "apply_language_text_normalization",
    "use_pvc_as_ivc",
    "enable_logging",
    "optimize_streaming_latency",
)
# provider_options of the stream-input websocket: query parameters, and the
# generation schedule of the first message.
WEBSOCKET_QUERY_OPTIONS = (
    "inactivity_timeout",
    "auto_mode",
    "apply_text_normalization",
    "enable_logging",
    "sync_alignment",
    "seed",
)
WEBSOCKET_MESSAGE_OPTIONS = ("chunk_length_schedule",)


@dataclass(frozen=True, slots=True)
class Output:
    """How the asked format is obtained: ElevenLabs's output_format, what that is, and
    whether it still needs converting to the asked format."""

    native: str
    source: AudioFormat
    convert: bool


def _pcm(rate: int) -> Output:
    return Output(f"pcm_{rate}", AudioFormat(E.PCM_S16LE, C.RAW, rate), convert=True)


def _pcm_for(rate: int) -> Output:
    """PCM at `rate` when ElevenLabs writes it, else at the next higher rate it writes."""
    return _pcm(next((r for r in PCM_RATES if r >= rate), PCM_RATES[-1]))


def output_for(asked: AudioFormat, *, stream: bool) -> Output:
    """ElevenLabs's output_format for `asked`; InvalidRequest naming what a stream cannot carry."""
    rate = audio.check_output_format(asked)
    enc, container = asked.encoding, asked.container
    native: Output | None = None
    if asked.channels == 1:
        if enc is E.PCM_S16LE and container is C.RAW:
            native = Output(f"pcm_{rate}", asked, convert=False)
        elif enc is E.PCM_S16LE and container is C.WAV and not stream:
            native = Output(f"wav_{rate}", asked, convert=False)
        elif enc in (E.MULAW, E.ALAW):
            name = "ulaw_8000" if enc is E.MULAW else "alaw_8000"
            raw = AudioFormat(enc, C.RAW, 8000)
            native = Output(name, raw, convert=container is not C.RAW)
        elif enc is E.MP3 and rate in _MP3_NATIVE:
            native = Output(_MP3_NATIVE[rate], asked, convert=False)
    if native is not None and not (stream and native.convert):
        return native
    if stream:
        raise InvalidRequest(
            f"output_format: ElevenLabs cannot stream {enc} in {container} at {rate} Hz "
            f"with {asked.channels} channel(s); streams are mono raw linear16 "
            f"({', '.join(str(r) for r in PCM_RATES)} Hz), raw mulaw/alaw 8000 Hz, or mp3 at "
            f"{', '.join(str(r) for r in _MP3_NATIVE)} Hz"
        )
    if native is not None:
        return native
    return _pcm_for(rate)


def finish(data: bytes, output: Output, asked: AudioFormat) -> bytes:
    """ElevenLabs's whole answer in the asked format."""
    return audio.convert(data, output.source, asked) if output.convert else data


def language_code(request: SynthesizeRequest, model: str) -> str | None:
    """ISO 639-1 from the BCP-47 tag ("pt-BR" -> "pt"), for the models that take one."""
    if not request.language or model in _NO_LANGUAGE_CODE:
        return None
    primary = request.language.split("-")[0].split("_")[0].lower()
    if not primary.isalpha() or not 2 <= len(primary) <= 3:
        raise InvalidRequest(f"language: {request.language!r} is not a BCP-47 language tag")
    return primary


def check_text(request: SynthesizeRequest) -> None:
    if request.is_ssml:
        raise InvalidRequest(
            'ssml: ElevenLabs takes plain text (with inline <break time="1s" /> tags), not SSML documents'
        )


def _split_options(
    request: SynthesizeRequest, allowed: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(voice_settings, the other provider options); InvalidRequest naming an unknown one."""
    settings: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for name, value in request.provider_options.items():
        if name in VOICE_SETTINGS:
            settings[name] = value
        elif name in allowed:
            other[name] = value
        else:
            known = ", ".join((*VOICE_SETTINGS, *allowed))
            raise InvalidRequest(f"provider_options.{name}: not an ElevenLabs option here (known: {known})")
    if request.speed is not None:
        settings["speed"] = request.speed
    return settings, other


def rest_arguments(request: SynthesizeRequest, output: Output) -> dict[str, Any]:
    """Keyword arguments of the SDK's text_to_speech.convert / .stream (voice id apart)."""
    from elevenlabs.types import VoiceSettings

    check_text(request)
    if not request.text.strip():
        raise InvalidRequest("text: nothing to synthesize")
    model = request.model or DEFAULT_MODEL
    settings, other = _split_options(request, REST_OPTIONS)
    arguments: dict[str, Any] = {"text": request.text, "model_id": model, "output_format": output.native}
    code = language_code(request, model)
    if code is not None:
        arguments["language_code"] = code
    if settings:
        arguments["voice_settings"] = VoiceSettings(**settings)
    arguments.update(other)
    return arguments


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class WebsocketSetup:
    query: dict[str, str]
    first_message: dict[str, Any]


def websocket_setup(request: SynthesizeRequest, output: Output) -> WebsocketSetup:
    """The query of the stream-input URL and its first message ({"text": " ", ...})."""
    check_text(request)
    model = request.model or DEFAULT_MODEL
    settings, other = _split_options(request, (*WEBSOCKET_QUERY_OPTIONS, *WEBSOCKET_MESSAGE_OPTIONS))
    query = {"model_id": model, "output_format": output.native}
    code = language_code(request, model)
    if code is not None:
        query["language_code"] = code
    first: dict[str, Any] = {"text": " "}
    if settings:
        first["voice_settings"] = settings
    for name, value in other.items():
        if name == "chunk_length_schedule":
            if not isinstance(value, list) or not all(isinstance(v, int | float) for v in value):
                raise InvalidRequest("provider_options.chunk_length_schedule: a list of numbers (50-500)")
            first["generation_config"] = {"chunk_length_schedule": value}
        else:
            query[name] = _query_value(value)
    return WebsocketSetup(query=query, first_message=first)
