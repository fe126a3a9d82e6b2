"""Which audio formats the hub reads and writes, and the checks of a declared format.

Pure data and checks, no audio library: the hub validates a request's AudioFormat
with these before touching the bytes. FLAC has no AudioContainer of its own: a FLAC
file is declared as encoding ``flac`` in the ``raw`` container (the codec's own
framing), as an MP3 file may be declared ``mp3`` in either ``raw`` or ``mp3``.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.audio.errors import AudioError
from callers.types.speech import AudioContainer, AudioEncoding, AudioFormat

E = AudioEncoding
C = AudioContainer

# Headerless sample encodings: what telephony media streams and raw PCM uploads carry.
SAMPLE_ENCODINGS: frozenset[AudioEncoding] = frozenset({E.PCM_S16LE, E.MULAW, E.ALAW})
BYTES_PER_SAMPLE: Mapping[AudioEncoding, int] = {E.PCM_S16LE: 2, E.MULAW: 1, E.ALAW: 1}

# Rates accepted for input audio: the common speech and music rates.
INPUT_SAMPLE_RATES: tuple[int, ...] = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# G.711 is the phone line's codec, written at 8 kHz (read at any input rate).
G711_SAMPLE_RATES: tuple[int, ...] = (8000,)
MAX_CHANNELS = 8

# What can be read, per container.
INPUT_ENCODINGS: Mapping[AudioContainer, tuple[AudioEncoding, ...]] = {
    C.RAW: (E.PCM_S16LE, E.MULAW, E.ALAW, E.MP3, E.FLAC),
    C.WAV: (E.PCM_S16LE, E.MULAW, E.ALAW),
    C.MP3: (E.MP3,),
    C.OGG: (E.OPUS,),
    C.WEBM: (E.OPUS,),
    C.MP4: (E.AAC,),
}

# What can be written, per container, and at which rates per encoding.
OUTPUT_ENCODINGS: Mapping[AudioContainer, tuple[AudioEncoding, ...]] = {
    C.RAW: (E.PCM_S16LE, E.MULAW, E.ALAW, E.MP3, E.FLAC),
    C.WAV: (E.PCM_S16LE, E.MULAW, E.ALAW),
    C.MP3: (E.MP3,),
    C.OGG: (E.OPUS,),
}
PCM_OUTPUT_SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
OUTPUT_SAMPLE_RATES: Mapping[AudioEncoding, tuple[int, ...]] = {
    E.PCM_S16LE: PCM_OUTPUT_SAMPLE_RATES,
    E.FLAC: PCM_OUTPUT_SAMPLE_RATES,
    E.MULAW: G711_SAMPLE_RATES,
    E.ALAW: G711_SAMPLE_RATES,
    # MPEG-1, -2 and -2.5 layer III rates
    E.MP3: (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
    # Opus codes at these rates only (RFC 6716)
    E.OPUS: (8000, 12000, 16000, 24000, 48000),
}


def is_sample_format(audio_format: AudioFormat) -> bool:
    """Headerless samples (raw PCM or G.711), whose rate and channels must be declared."""
    return audio_format.container is C.RAW and audio_format.encoding in SAMPLE_ENCODINGS


def _names(values: tuple[object, ...]) -> str:
    return ", ".join(str(v) for v in values)


def _check_pair(
    encoding: AudioEncoding,
    container: AudioContainer,
    table: Mapping[AudioContainer, tuple[AudioEncoding, ...]],
) -> None:
    if container not in table:
        raise AudioError(
            "audio_format.container",
            f"{container} is not supported here; supported: {_names(tuple(table))}",
        )
    if encoding not in table[container]:
        raise AudioError(
            "audio_format.encoding",
            f"{encoding} is not supported in the {container} container; "
            f"supported there: {_names(table[container])}",
        )


def _check_channels(channels: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError("audio_format.channels", f"{channels} is not between 1 and {MAX_CHANNELS}")


def check_sample_rate(encoding: AudioEncoding, rate: int, supported: tuple[int, ...]) -> None:
    if rate not in supported:
        raise AudioError(
            "audio_format.sample_rate_hz",
            f"{rate} Hz is not supported for {encoding}; supported: {_names(supported)}",
        )


def check_input_format(audio_format: AudioFormat) -> None:
    """Raise AudioError unless audio declared this way can be read."""
    _check_pair(audio_format.encoding, audio_format.container, INPUT_ENCODINGS)
    _check_channels(audio_format.channels)
    rate = audio_format.sample_rate_hz
    if is_sample_format(audio_format) and rate is None:
        raise AudioError(
            "audio_format.sample_rate_hz", f"raw {audio_format.encoding} audio needs its sample rate"
        )
    if rate is not None:
        check_sample_rate(audio_format.encoding, rate, INPUT_SAMPLE_RATES)


def check_output_format(audio_format: AudioFormat) -> int:
    """Raise AudioError unless audio can be written this way; the output sample rate."""
    _check_pair(audio_format.encoding, audio_format.container, OUTPUT_ENCODINGS)
    _check_channels(audio_format.channels)
    if audio_format.encoding is E.OPUS and audio_format.channels > 2:
        raise AudioError("audio_format.channels", "ogg/opus output is mono or stereo")
    if audio_format.sample_rate_hz is None:
        raise AudioError("audio_format.sample_rate_hz", "an output format needs its sample rate")
    rate = audio_format.sample_rate_hz
    check_sample_rate(audio_format.encoding, rate, OUTPUT_SAMPLE_RATES[audio_format.encoding])
    return rate


def check_stream_format(audio_format: AudioFormat, *, output: bool) -> int:
    """Streams carry headerless samples only: PCM s16le, mu-law or A-law; the sample rate."""
    if not is_sample_format(audio_format):
        raise AudioError(
            "audio_format.encoding",
            f"{audio_format.encoding} in {audio_format.container} cannot be converted as a stream; "
            f"streams are raw {_names(tuple(sorted(SAMPLE_ENCODINGS)))}",
        )
    if output:
        return check_output_format(audio_format)
    check_input_format(audio_format)
    rate = audio_format.sample_rate_hz
    if rate is None:  # (check_input_format has refused this already)
        raise AudioError("audio_format.sample_rate_hz", "a stream needs its sample rate")
    return rate
