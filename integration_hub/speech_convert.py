"""SpeechService messages <-> the callers' neutral speech types.

Each function checks what it reads and raises INVALID_ARGUMENT naming the field, so
that a bad request is refused before any credential is decrypted or provider called.

Output formats are completed the way clients expect: a container alone implies its
usual encoding (wav: linear16, ogg: opus, mp3: mp3, flac: flac), an encoding alone
implies raw samples (linear16, mulaw, alaw) or its own container (mp3, opus: ogg), and
an unset sample rate is 8000 Hz for mu-law and A-law (the phone line's) and 24000 Hz
otherwise.
"""

from __future__ import annotations

from google.protobuf import duration_pb2, json_format

from callers import types as t
from callers.types import AudioContainer as C
from callers.types import AudioEncoding as E
from integration_hub.errors import invalid_field
from integration_hub.v1 import speech_pb2 as pb

_ENCODINGS: dict[int, E] = {
    pb.AUDIO_ENCODING_LINEAR16: E.PCM_S16LE,
    pb.AUDIO_ENCODING_MULAW: E.MULAW,
    pb.AUDIO_ENCODING_ALAW: E.ALAW,
    pb.AUDIO_ENCODING_MP3: E.MP3,
    pb.AUDIO_ENCODING_OPUS: E.OPUS,
    pb.AUDIO_ENCODING_FLAC: E.FLAC,
    pb.AUDIO_ENCODING_AAC: E.AAC,
}
_ENCODING_TO_PROTO = {v: k for k, v in _ENCODINGS.items()}
# FLAC has no container of its own in callers.audio: its codec framing is "raw".
_CONTAINERS: dict[int, C] = {
    pb.AUDIO_CONTAINER_RAW: C.RAW,
    pb.AUDIO_CONTAINER_WAV: C.WAV,
    pb.AUDIO_CONTAINER_OGG: C.OGG,
    pb.AUDIO_CONTAINER_WEBM: C.WEBM,
    pb.AUDIO_CONTAINER_MP3: C.MP3,
    pb.AUDIO_CONTAINER_MP4: C.MP4,
    pb.AUDIO_CONTAINER_FLAC: C.RAW,
}
_CONTAINER_TO_PROTO = {v: k for k, v in _CONTAINERS.items() if k != pb.AUDIO_CONTAINER_FLAC}
# What a container alone means, and an encoding alone.
_CONTAINER_ENCODING = {C.WAV: E.PCM_S16LE, C.OGG: E.OPUS, C.WEBM: E.OPUS, C.MP3: E.MP3, C.MP4: E.AAC}
_ENCODING_CONTAINER = {E.MP3: C.MP3, E.OPUS: C.OGG, E.AAC: C.MP4}
_SAMPLE_ENCODINGS = (E.PCM_S16LE, E.MULAW, E.ALAW)
G711_RATE, DEFAULT_OUTPUT_RATE = 8000, 24000
MIN_SPEED, MAX_SPEED = 0.25, 4.0


def _encoding(value: int, where: str) -> E | None:
    if value == pb.AUDIO_ENCODING_UNSPECIFIED:
        return None
    if value not in _ENCODINGS:
        raise invalid_field(f"{where}.encoding", f"unknown encoding {value}")
    return _ENCODINGS[value]


def _container(value: int, where: str) -> C | None:
    if value == pb.AUDIO_CONTAINER_UNSPECIFIED:
        return None
    if value not in _CONTAINERS:
        raise invalid_field(f"{where}.container", f"unknown container {value}")
    return _CONTAINERS[value]


def _flac(message: pb.AudioFormat) -> bool:
    return message.container == pb.AUDIO_CONTAINER_FLAC or message.encoding == pb.AUDIO_ENCODING_FLAC


def input_format(message: pb.AudioFormat, where: str = "audio_format") -> t.AudioFormat | C:
    """A declared input: a container with a header may stand alone (the file says the
    rest); raw samples need their encoding and sample rate."""
    encoding, container = _encoding(message.encoding, where), _container(message.container, where)
    if message.sample_rate_hz < 0 or message.channels < 0:
        raise invalid_field(where, "sample_rate_hz and channels must not be negative")
    if _flac(message):
        encoding, container = E.FLAC, C.RAW
    if container is None:
        if encoding is None:
            raise invalid_field(
                where, "required: a container (wav, mp3, ogg, webm, mp4, flac) or raw encoding"
            )
        container = _ENCODING_CONTAINER.get(encoding, C.RAW)
    if encoding is None:
        if container is C.RAW:
            raise invalid_field(f"{where}.encoding", "required for raw audio (linear16, mulaw or alaw)")
        return container
    return t.AudioFormat(encoding, container, message.sample_rate_hz or None, message.channels or 1)


def output_format(message: pb.AudioFormat, where: str = "output_format") -> t.AudioFormat:
    encoding, container = _encoding(message.encoding, where), _container(message.container, where)
    if message.sample_rate_hz < 0 or message.channels < 0:
        raise invalid_field(where, "sample_rate_hz and channels must not be negative")
    if _flac(message):
        encoding, container = E.FLAC, C.RAW
    if encoding is None and container is None:
        raise invalid_field(where, "required: e.g. wav linear16 24000 Hz, raw mulaw 8000 Hz, mp3, ogg opus")
    if encoding is None:
        assert container is not None
        if container is C.RAW:
            raise invalid_field(f"{where}.encoding", "required for raw audio (linear16, mulaw or alaw)")
        encoding = _CONTAINER_ENCODING.get(container, E.PCM_S16LE)
    if container is None:
        container = _ENCODING_CONTAINER.get(encoding, C.RAW)
    rate = message.sample_rate_hz or (G711_RATE if encoding in (E.MULAW, E.ALAW) else DEFAULT_OUTPUT_RATE)
    return t.AudioFormat(encoding, container, rate, message.channels or 1)


def format_to_proto(audio_format: t.AudioFormat) -> pb.AudioFormat:
    container = (
        pb.AUDIO_CONTAINER_FLAC
        if audio_format.encoding is E.FLAC
        else _CONTAINER_TO_PROTO[audio_format.container]
    )
    return pb.AudioFormat(
        container=container,  # type: ignore[arg-type]
        encoding=_ENCODING_TO_PROTO[audio_format.encoding],  # type: ignore[arg-type]
        sample_rate_hz=audio_format.sample_rate_hz or 0,
        channels=audio_format.channels,
    )


def seconds(value: float | None) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    if value is not None:
        duration.FromNanoseconds(int(value * 1e9))
    return duration


def _options(message: pb.TranscriptionOptions) -> dict[str, object]:
    provider_options = (
        json_format.MessageToDict(message.provider_options) if message.HasField("provider_options") else {}
    )
    keywords = [k.strip() for k in message.keywords]
    if any(not k for k in keywords):
        raise invalid_field("options.keywords", "must not contain empty words")
    return {
        "language": message.language or None,
        "punctuate": message.punctuate,
        "diarize": message.diarize,
        "word_timestamps": message.word_timestamps,
        "keywords": keywords,
        "provider_options": provider_options,
    }


def transcribe_request(message: pb.TranscribeRequest, model: str) -> t.TranscribeRequest:
    source = message.WhichOneof("source")
    if source is None:
        raise invalid_field("audio", "required: the audio bytes, or audio_url")
    url = message.audio_url if source == "audio_url" else None
    if url is not None and not url.startswith("https://"):
        raise invalid_field("audio_url", "must be an https URL")
    if source == "audio" and not message.audio:
        raise invalid_field("audio", "is empty")
    if url is not None and not message.HasField("audio_format"):
        # The provider fetches and reads the file itself; nothing here decodes it.
        audio_format = t.AudioFormat(E.MP3, C.MP3)
    else:
        declared = input_format(message.audio_format)
        audio_format = (
            declared
            if isinstance(declared, t.AudioFormat)
            else t.AudioFormat(_CONTAINER_ENCODING.get(declared, E.PCM_S16LE), declared)
        )
    return t.TranscribeRequest(
        audio=message.audio,
        audio_format=audio_format,
        model=model or None,
        audio_url=url,
        **_options(message.options),  # type: ignore[arg-type]
    )


def transcribe_response(
    response: t.TranscribeResponse, provider: str, duration: float | None
) -> pb.TranscribeResponse:
    proto = pb.TranscribeResponse(
        transcript=response.transcript,
        words=[word_to_proto(w) for w in response.words],
        language=response.language or "",
        provider=provider,
        provider_request_id=response.request_id or "",
    )
    if response.confidence is not None:
        proto.confidence = response.confidence
    proto.audio_duration.CopyFrom(seconds(response.duration if response.duration is not None else duration))
    return proto


def word_to_proto(word: t.Word) -> pb.Word:
    proto = pb.Word(
        text=word.text, start=seconds(word.start), end=seconds(word.end), speaker=word.speaker or ""
    )
    if word.confidence is not None:
        proto.confidence = word.confidence
    return proto


def stream_transcribe_request(config: pb.StreamTranscribeConfig) -> t.StreamTranscribeRequest:
    if not config.HasField("audio_format"):
        raise invalid_field("config.audio_format", "required: the format of the audio chunks that follow")
    declared = input_format(config.audio_format, "config.audio_format")
    if not isinstance(declared, t.AudioFormat):
        declared = t.AudioFormat(_CONTAINER_ENCODING.get(declared, E.OPUS), declared)
    endpointing = config.endpointing.ToMilliseconds() if config.HasField("endpointing") else None
    if endpointing is not None and not 0 <= endpointing <= 10_000:
        raise invalid_field("config.endpointing", "must be between 0 and 10 s")
    options = _options(config.options)
    return t.StreamTranscribeRequest(
        audio_format=declared,
        model=config.model or None,
        interim_results=config.interim_results,
        endpointing_ms=endpointing or None,
        **options,  # type: ignore[arg-type]
    )


def stream_transcribe_event(event: t.StreamTranscribeEvent) -> pb.StreamTranscribeResponse:
    if isinstance(event, t.TranscriptEvent):
        result = pb.TranscriptResult(
            transcript=event.transcript,
            is_final=event.is_final,
            words=[word_to_proto(w) for w in event.words],
        )
        if event.start is not None:
            result.start.CopyFrom(seconds(event.start))
        if event.end is not None:
            result.end.CopyFrom(seconds(event.end))
        if event.confidence is not None:
            result.confidence = event.confidence
        return pb.StreamTranscribeResponse(result=result)
    if isinstance(event, t.UtteranceEnd):
        return pb.StreamTranscribeResponse(utterance_end=pb.UtteranceEnd(at=seconds(event.at)))
    if isinstance(event, t.SpeechStarted):
        return pb.StreamTranscribeResponse(speech_started=pb.SpeechStarted(at=seconds(event.at)))
    raise TypeError(f"not a stream event: {type(event).__name__}")


def _text(text: str, ssml: str, which: str | None) -> tuple[str, bool]:
    if which is None:
        raise invalid_field("text", "required: text or ssml")
    value = text if which == "text" else ssml
    if not value.strip():
        raise invalid_field(which, "must not be empty")
    return value, which == "ssml"


def _speed(has: bool, value: float, where: str) -> float | None:
    if not has:
        return None
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise invalid_field(where, f"must be between {MIN_SPEED} and {MAX_SPEED}")
    return value


def _struct(message: object, has: bool) -> dict[str, object]:
    return json_format.MessageToDict(message) if has else {}  # type: ignore[arg-type]


def synthesize_request(message: pb.SynthesizeRequest, model: str) -> t.SynthesizeRequest:
    text, is_ssml = _text(message.text, message.ssml, message.WhichOneof("input"))
    if not message.voice.strip():
        raise invalid_field("voice", "required: a voice id (ListVoices)")
    if not message.HasField("output_format"):
        raise invalid_field("output_format", "required: e.g. wav linear16 24000 Hz, raw mulaw 8000 Hz, mp3")
    return t.SynthesizeRequest(
        text=text,
        voice=message.voice,
        output_format=output_format(message.output_format),
        is_ssml=is_ssml,
        language=message.language or None,
        model=model or None,
        speed=_speed(message.HasField("speed"), message.speed, "speed"),
        provider_options=_struct(message.provider_options, message.HasField("provider_options")),  # type: ignore[arg-type]
    )


def input_synthesize_request(config: pb.StreamSynthesizeInputConfig) -> t.SynthesizeRequest:
    if not config.voice.strip():
        raise invalid_field("config.voice", "required: a voice id (ListVoices)")
    if not config.HasField("output_format"):
        raise invalid_field("config.output_format", "required: e.g. raw linear16 24000 Hz, raw mulaw 8000 Hz")
    return t.SynthesizeRequest(
        text="",
        voice=config.voice,
        output_format=output_format(config.output_format, "config.output_format"),
        language=config.language or None,
        model=config.model or None,
        speed=_speed(config.HasField("speed"), config.speed, "config.speed"),
        provider_options=_struct(config.provider_options, config.HasField("provider_options")),  # type: ignore[arg-type]
    )


_GENDERS = {
    t.VoiceGender.FEMALE: pb.VOICE_GENDER_FEMALE,
    t.VoiceGender.MALE: pb.VOICE_GENDER_MALE,
    t.VoiceGender.NEUTRAL: pb.VOICE_GENDER_NEUTRAL,
}


def voice_to_proto(voice: t.Voice) -> pb.Voice:
    return pb.Voice(
        id=voice.id,
        name=voice.name,
        languages=voice.languages,
        gender=_GENDERS.get(voice.gender, pb.VOICE_GENDER_UNSPECIFIED)
        if voice.gender
        else pb.VOICE_GENDER_UNSPECIFIED,
        models=voice.models,
    )
