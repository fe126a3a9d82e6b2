"""Request mapping: AudioFormats as Cartesia's formats, languages, the TTS and STT fields.

TTS output. Cartesia writes raw and wav (pcm_s16le, pcm_f32le, pcm_mulaw, pcm_alaw) and
mp3 (32-192 kbit/s), each at 8000, 16000, 22050, 24000, 44100 or 48000 Hz, mono; its
websocket writes raw only. An asked format it writes is asked for as it is; any other
(ogg/opus, flac, 32 kHz PCM, stereo, ...) is made with callers.audio from pcm_s16le at
the asked rate, or at the nearest higher rate Cartesia has.

STT input. The batch endpoint reads files (wav, mp3, flac, ogg, webm, mp4/m4a); raw
samples are wrapped as WAV first, and G.711 WAV becomes PCM WAV. The websocket takes
raw pcm_s16le, pcm_mulaw and pcm_alaw at the stream's rate as they are; other streams
(multichannel) are converted to 16 kHz mono pcm_s16le chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from callers import audio
from callers.audio import formats
from callers.base import InvalidRequest
from callers.types import AudioContainer, AudioEncoding, AudioFormat, SynthesizeRequest, TranscribeRequest

C, E = AudioContainer, AudioEncoding
DEFAULT_TTS_MODEL = "sonic-2"
DEFAULT_STT_MODEL = "ink-whisper"
RATES = (8000, 16000, 22050, 24000, 44100, 48000)
MP3_BIT_RATE = 128_000
_WIRE_ENCODINGS = {E.PCM_S16LE: "pcm_s16le", E.MULAW: "pcm_mulaw", E.ALAW: "pcm_alaw"}

# The languages of Cartesia's TTS models (ISO 639-1), as its API reference lists them.
_TTS_LANGUAGE_LIST = (
    "en fr de es pt zh ja hi it ko nl pl ru sv tr tl bg ro ar cs el fi hr ms sk da ta uk hu no vi "
    "bn th he ka id te gu kn ml mr pa or ur"
)
TTS_LANGUAGES = frozenset(_TTS_LANGUAGE_LIST.split())
# The languages of ink-whisper (batch and websocket).
_STT_LANGUAGE_LIST = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th "
    "ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr "
    "pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt "
    "haw ln ha ba jw su yue"
)
STT_LANGUAGES = frozenset(_STT_LANGUAGE_LIST.split())
# Fields the caller sets itself: a provider option may not replace them.
_TTS_FIELDS = frozenset(
    {"model_id", "transcript", "voice", "output_format", "language", "context_id", "continue"}
)


@dataclass(frozen=True, slots=True)
class Output:
    """How the asked format is had: Cartesia's output_format, what it answers in, and
    whether that still has to be converted to the asked format."""

    wire: dict[str, Any]
    produced: AudioFormat
    convert: bool


def language_code(language: str | None, supported: frozenset[str], what: str) -> str | None:
    if not language:
        return None
    code = language.split("-")[0].split("_")[0].lower()
    if code not in supported:
        raise InvalidRequest(f"language: Cartesia {what} does not take {language!r}")
    return code


def tts_output(asked: AudioFormat, *, websocket: bool = False) -> Output:
    rate = formats.check_output_format(asked)  # an impossible format is refused by name
    native_rate = rate in RATES and asked.channels == 1
    written = asked.container is C.RAW or (asked.container is C.WAV and not websocket)
    if native_rate and asked.encoding in _WIRE_ENCODINGS and written:
        wire: dict[str, Any] = {
            "container": asked.container.value,
            "encoding": _WIRE_ENCODINGS[asked.encoding],
        }
        return Output({**wire, "sample_rate": rate}, asked, convert=False)
    if native_rate and asked.encoding is E.MP3 and not websocket:
        return Output({"container": "mp3", "sample_rate": rate, "bit_rate": MP3_BIT_RATE}, asked, False)
    pcm_rate = next((r for r in RATES if r >= rate), RATES[-1])
    produced = AudioFormat(E.PCM_S16LE, C.RAW, pcm_rate, 1)
    return Output({"container": "raw", "encoding": "pcm_s16le", "sample_rate": pcm_rate}, produced, True)


def stream_output(asked: AudioFormat, *, websocket: bool) -> Output:
    """The output of a stream: what Cartesia writes natively, or raw samples converted."""
    output = tts_output(asked, websocket=websocket)
    if output.convert and not formats.is_sample_format(asked):
        how = "raw pcm_s16le, mulaw or alaw" if websocket else "raw pcm_s16le, mulaw, alaw, or mp3 mono"
        raise InvalidRequest(
            f"output_format: {asked.encoding} in {asked.container} at {asked.sample_rate_hz} Hz cannot be "
            f"streamed from Cartesia; a stream carries {how} at {', '.join(map(str, RATES))} Hz "
            "(raw PCM at other rates is converted)"
        )
    if websocket is False and asked.container is C.WAV:
        raise InvalidRequest("output_format: a stream carries raw samples or mp3, not a wav file")
    return output


def _speed(request: SynthesizeRequest, model: str) -> dict[str, Any]:
    if request.speed is None or request.speed == 1.0:
        return {}
    if not 0.6 <= request.speed <= 1.5:
        raise InvalidRequest(f"speed: Cartesia takes 0.6 to 1.5, not {request.speed:g}")
    if not model.startswith("sonic-3"):
        raise InvalidRequest(
            f"speed: Cartesia applies speed (generation_config.speed) to sonic-3 models, not to {model!r}"
        )
    return {"generation_config": {"speed": request.speed}}


def tts_fields(request: SynthesizeRequest, output: Output) -> dict[str, Any]:
    """The fields of a generation, /tts/bytes and the websocket alike (without transcript)."""
    if request.is_ssml:
        raise InvalidRequest("is_ssml: Cartesia does not take SSML; send plain text")
    if not request.voice:
        raise InvalidRequest("voice: a Cartesia voice id is required")
    model = request.model or DEFAULT_TTS_MODEL
    body: dict[str, Any] = {
        "model_id": model,
        "voice": {"mode": "id", "id": request.voice},
        "output_format": output.wire,
    }
    language = language_code(request.language, TTS_LANGUAGES, "TTS")
    if language:
        body["language"] = language
    body.update(_speed(request, model))
    for name, value in request.provider_options.items():
        if name in _TTS_FIELDS or name in body:
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        body[name] = value
    return body


def tts_body(request: SynthesizeRequest, output: Output) -> dict[str, Any]:
    if not request.text:
        raise InvalidRequest("text: nothing to synthesize")
    return {**tts_fields(request, output), "transcript": request.text}


# --- speech to text -----------------------------------------------------------------

# Files the batch endpoint reads as they are: (container, encoding) -> (file name, content type).
_UPLOAD_AS_IS: dict[tuple[AudioContainer, AudioEncoding], tuple[str, str]] = {
    (C.WAV, E.PCM_S16LE): ("audio.wav", "audio/wav"),
    (C.MP3, E.MP3): ("audio.mp3", "audio/mpeg"),
    (C.RAW, E.MP3): ("audio.mp3", "audio/mpeg"),
    (C.RAW, E.FLAC): ("audio.flac", "audio/flac"),
    (C.OGG, E.OPUS): ("audio.ogg", "audio/ogg"),
    (C.WEBM, E.OPUS): ("audio.webm", "audio/webm"),
    (C.MP4, E.AAC): ("audio.m4a", "audio/mp4"),
}


def upload(request: TranscribeRequest) -> tuple[bytes, str, str]:
    """The file to send: (bytes, file name, content type)."""
    fmt = request.audio_format
    as_is = _UPLOAD_AS_IS.get((fmt.container, fmt.encoding))
    if as_is is not None:
        return request.audio, *as_is
    wav = AudioFormat(E.PCM_S16LE, C.WAV, fmt.sample_rate_hz or 16_000, fmt.channels)
    return audio.convert(request.audio, fmt, wav), "audio.wav", "audio/wav"


def _refuse_unsupported(diarize: bool, what: str) -> None:
    if diarize:
        raise InvalidRequest(f"diarize: Cartesia {what} does not tell speakers apart")


def transcription_form(request: TranscribeRequest) -> aiohttp.FormData:
    if request.audio_url:
        raise InvalidRequest("audio_url: Cartesia's transcription API takes the audio itself, not a URL")
    _refuse_unsupported(request.diarize, "batch transcription")
    if request.keywords:
        raise InvalidRequest("keywords: Cartesia's batch transcription (ink-whisper) has no keyword boosting")
    language = language_code(request.language, STT_LANGUAGES, "STT")
    data, filename, content_type = upload(request)
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    form.add_field("model", request.model or DEFAULT_STT_MODEL)
    if language:
        form.add_field("language", language)
    if request.word_timestamps:
        form.add_field("timestamp_granularities[]", "word")
    for name, value in request.provider_options.items():
        if name in ("file", "model", "language", "timestamp_granularities[]"):
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        form.add_field(name, value if isinstance(value, str) else orjson.dumps(value).decode())
    return form


@dataclass(frozen=True, slots=True)
class StreamInput:
    """What the STT websocket is told the audio is, and the conversion to it, if any."""

    encoding: str
    sample_rate: int
    source: AudioFormat
    target: AudioFormat
    convert: bool


def stream_input(fmt: AudioFormat) -> StreamInput:
    if not formats.is_sample_format(fmt):
        raise InvalidRequest(
            f"audio_format: Cartesia's live transcription takes raw samples (pcm_s16le, mulaw, alaw), "
            f"not {fmt.encoding} in {fmt.container}"
        )
    rate = formats.check_stream_format(fmt, output=False)
    if fmt.channels == 1:
        return StreamInput(_WIRE_ENCODINGS[fmt.encoding], rate, fmt, fmt, convert=False)
    target = AudioFormat(E.PCM_S16LE, C.RAW, 16_000, 1)
    return StreamInput("pcm_s16le", 16_000, fmt, target, convert=True)


def stream_query(
    model: str | None,
    language: str | None,
    stream: StreamInput,
    *,
    diarize: bool,
    keywords: list[str],
    endpointing_ms: int | None,
    provider_options: Mapping[str, Any],
) -> list[tuple[str, str]]:
    _refuse_unsupported(diarize, "live transcription")
    query = [
        ("model", model or DEFAULT_STT_MODEL),
        ("encoding", stream.encoding),
        ("sample_rate", str(stream.sample_rate)),
    ]
    code = language_code(language, STT_LANGUAGES, "STT")
    if code:
        query.append(("language", code))
    if endpointing_ms is not None:
        if endpointing_ms <= 0:
            raise InvalidRequest(f"endpointing_ms: must be positive, not {endpointing_ms}")
        # ink-whisper finalizes a transcript after this much silence.
        query.append(("max_silence_duration_secs", f"{endpointing_ms / 1000:g}"))
    query.extend(("keyterm", word) for word in keywords)
    taken = {name for name, _ in query}
    for name, value in provider_options.items():
        if name in taken or name in ("api_key", "cartesia_version"):
            raise InvalidRequest(f"provider_options.{name}: set by the hub, not a provider option")
        query.append((name, value if isinstance(value, str) else orjson.dumps(value).decode()))
    return query
