"""Requests and responses of Speech-to-Text v2 and Text-to-Speech v1 <-> the hub's types."""

from __future__ import annotations

import datetime
from typing import Any

from google.cloud.speech_v2.types import cloud_speech as stt
from google.cloud.texttospeech_v1.types import cloud_tts as tts

from callers import audio
from callers.base import InvalidRequest
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    StreamTranscribeEvent,
    SynthesizeRequest,
    TranscribeRequest,
    TranscribeResponse,
    TranscriptEvent,
    Voice,
    VoiceGender,
    Word,
)
from callers.types.speech import SpeechStarted, UtteranceEnd

C, E = AudioContainer, AudioEncoding
DEFAULT_MODEL = "long"
CHUNK_BYTES = 15 * 1024  # per StreamingRecognize message (Google's limit: 25 KB)

_EXPLICIT = {
    E.PCM_S16LE: stt.ExplicitDecodingConfig.AudioEncoding.LINEAR16,
    E.MULAW: stt.ExplicitDecodingConfig.AudioEncoding.MULAW,
    E.ALAW: stt.ExplicitDecodingConfig.AudioEncoding.ALAW,
}
# Containers Google detects by itself (auto_decoding_config).
_AUTO = frozenset({(C.WAV, E.PCM_S16LE), (C.WAV, E.MULAW), (C.WAV, E.ALAW), (C.MP3, E.MP3), (C.RAW, E.MP3)})
_AUTO |= {(C.RAW, E.FLAC), (C.OGG, E.OPUS), (C.WEBM, E.OPUS), (C.MP4, E.AAC)}


def seconds(value: Any) -> float | None:
    """A Duration as proto-plus gives it (timedelta), in seconds."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return None


def _decoding(audio_format: AudioFormat) -> dict[str, Any]:
    if audio_format.container is C.RAW and audio_format.encoding in _EXPLICIT:
        explicit = stt.ExplicitDecodingConfig(
            encoding=_EXPLICIT[audio_format.encoding],
            sample_rate_hertz=audio_format.sample_rate_hz or 16000,
            audio_channel_count=audio_format.channels,
        )
        return {"explicit_decoding_config": explicit}
    return {"auto_decoding_config": stt.AutoDetectDecodingConfig()}


def recognition_config(
    audio_format: AudioFormat,
    *,
    model: str | None,
    language: str | None,
    punctuate: bool,
    diarize: bool,
    word_timestamps: bool,
    keywords: list[str],
) -> stt.RecognitionConfig:
    features = stt.RecognitionFeatures(
        enable_automatic_punctuation=punctuate,
        enable_word_time_offsets=word_timestamps,
        enable_word_confidence=word_timestamps,
    )
    if diarize:
        features.diarization_config = stt.SpeakerDiarizationConfig(min_speaker_count=1, max_speaker_count=6)
    config = stt.RecognitionConfig(
        model=model or DEFAULT_MODEL,
        language_codes=[language or "auto"],
        features=features,
        **_decoding(audio_format),
    )
    if keywords:
        phrases = [stt.PhraseSet.Phrase(value=k, boost=10.0) for k in keywords]
        inline = stt.SpeechAdaptation.AdaptationPhraseSet(inline_phrase_set=stt.PhraseSet(phrases=phrases))
        config.adaptation = stt.SpeechAdaptation(phrase_sets=[inline])
    return config


def prepare_audio(request: TranscribeRequest) -> tuple[bytes, AudioFormat]:
    """The bytes to send: as they are where Google reads them, else 16 kHz WAV."""
    fmt = request.audio_format
    if (fmt.container is C.RAW and fmt.encoding in _EXPLICIT) or (fmt.container, fmt.encoding) in _AUTO:
        return request.audio, fmt
    wav = AudioFormat(E.PCM_S16LE, C.WAV, 16000, 1)
    return audio.convert(request.audio, fmt, wav), wav


def recognize_request(request: TranscribeRequest, recognizer: str) -> stt.RecognizeRequest:
    if request.audio_url is not None:
        if not request.audio_url.startswith("gs://"):
            raise InvalidRequest("audio_url: Google Speech-to-Text reads only gs:// URIs, not https URLs")
        content: dict[str, Any] = {"uri": request.audio_url}
        fmt = request.audio_format
    else:
        data, fmt = prepare_audio(request)
        content = {"content": data}
    config = recognition_config(
        fmt,
        model=request.model,
        language=request.language,
        punctuate=request.punctuate,
        diarize=request.diarize,
        word_timestamps=request.word_timestamps,
        keywords=request.keywords,
    )
    return stt.RecognizeRequest(recognizer=recognizer, config=config, **content)


def words_of(alternative: Any) -> list[Word]:
    return [
        Word(
            text=w.word,
            start=seconds(w.start_offset) or 0.0,
            end=seconds(w.end_offset) or 0.0,
            confidence=w.confidence or None,
            speaker=w.speaker_label or None,
        )
        for w in alternative.words
    ]


def transcribe_response(response: stt.RecognizeResponse) -> TranscribeResponse:
    texts: list[str] = []
    words: list[Word] = []
    confidences: list[float] = []
    language: str | None = None
    end: float | None = None
    for result in response.results:
        if not result.alternatives:
            continue
        best = result.alternatives[0]
        texts.append(best.transcript.strip())
        words.extend(words_of(best))
        if best.confidence:
            confidences.append(best.confidence)
        language = language or result.language_code or None
        end = seconds(result.result_end_offset) or end
    billed = seconds(response.metadata.total_billed_duration)
    return TranscribeResponse(
        transcript=" ".join(t for t in texts if t),
        words=words,
        language=language,
        duration=end if end is not None else billed,
        confidence=sum(confidences) / len(confidences) if confidences else None,
        request_id=response.metadata.request_id or None,
    )


def stream_events(response: stt.StreamingRecognizeResponse, last_end: float) -> list[StreamTranscribeEvent]:
    events: list[StreamTranscribeEvent] = []
    kind = stt.StreamingRecognizeResponse.SpeechEventType
    at = seconds(response.speech_event_offset)
    if response.speech_event_type == kind.SPEECH_ACTIVITY_BEGIN:
        events.append(SpeechStarted(at=at))
    elif response.speech_event_type in (kind.SPEECH_ACTIVITY_END, kind.END_OF_SINGLE_UTTERANCE):
        events.append(UtteranceEnd(at=at))
    for result in response.results:
        if not result.alternatives:
            continue
        best = result.alternatives[0]
        end = seconds(result.result_end_offset)
        words = words_of(best)
        events.append(
            TranscriptEvent(
                transcript=best.transcript.strip(),
                is_final=result.is_final,
                words=words,
                start=words[0].start if words else (last_end if result.is_final else None),
                end=end,
                confidence=best.confidence or None,
            )
        )
    return events


# --- text to speech -----------------------------------------------------------------

# Asked format -> (Google encoding, whether Google's bytes are exactly that format).
# LINEAR16 answers are WAV files (a RIFF header); MULAW/ALAW are headerless as well
# as WAV-wrapped depending on the voice, so G.711 is taken via LINEAR16 and converted.
_TTS_NATIVE = {
    (C.WAV, E.PCM_S16LE): tts.AudioEncoding.LINEAR16,
    (C.MP3, E.MP3): tts.AudioEncoding.MP3,
    (C.RAW, E.MP3): tts.AudioEncoding.MP3,
    (C.OGG, E.OPUS): tts.AudioEncoding.OGG_OPUS,
}
GOOGLE_PCM = tts.AudioEncoding.LINEAR16


def synthesis_plan(output: AudioFormat) -> tuple[Any, bool]:
    """(encoding to ask for, whether its bytes need converting to `output`)."""
    audio.check_output_format(output)
    native = _TTS_NATIVE.get((output.container, output.encoding))
    if native is not None and output.channels == 1:
        return native, False
    return GOOGLE_PCM, True


def synthesize_request(request: SynthesizeRequest, encoding: Any, rate: int) -> tts.SynthesizeSpeechRequest:
    text = {"ssml": request.text} if request.is_ssml else {"text": request.text}
    language = request.language or language_of_voice(request.voice)
    voice = tts.VoiceSelectionParams(language_code=language, name=request.voice)
    config = tts.AudioConfig(audio_encoding=encoding, sample_rate_hertz=rate)
    if request.speed is not None:
        config.speaking_rate = request.speed
    return tts.SynthesizeSpeechRequest(input=tts.SynthesisInput(**text), voice=voice, audio_config=config)


def language_of_voice(voice: str) -> str:
    # "en-US-Neural2-C" -> "en-US"
    parts = voice.split("-")
    return "-".join(parts[:2]) if len(parts) >= 3 else "en-US"


_GENDERS = {
    tts.SsmlVoiceGender.MALE: VoiceGender.MALE,
    tts.SsmlVoiceGender.FEMALE: VoiceGender.FEMALE,
    tts.SsmlVoiceGender.NEUTRAL: VoiceGender.NEUTRAL,
}


def voice_model(name: str) -> list[str]:
    for family in ("Chirp3-HD", "Chirp-HD", "Neural2", "WaveNet", "Wavenet", "Studio", "Standard", "News"):
        if f"-{family}-" in name or name.endswith(f"-{family}"):
            return [family.replace("Wavenet", "WaveNet")]
    return []


def voice(v: Any) -> Voice:
    return Voice(
        id=v.name,
        name=v.name,
        languages=list(v.language_codes),
        gender=_GENDERS.get(v.ssml_gender),
        models=voice_model(v.name),
    )
