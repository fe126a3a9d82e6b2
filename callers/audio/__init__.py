"""Audio for the speech callers and the hub's validation: probe, convert, stream.

Importing this package is cheap: numpy, soundfile (libsndfile), soxr and PyAV load
with the first function that needs them, and raise MissingExtra naming the
``speech`` extra when absent. The error type and the format tables are plain.

- `probe(data, declared)`: check bytes against their declared AudioFormat (or just
  the container) and describe them (AudioInfo), or raise AudioError(field, problem).
- `decode` / `encode` / `convert`: whole buffers, to and from PCM s16le (`Pcm`).
- `StreamConverter` / `convert_stream`: raw samples chunk by chunk, bounded memory.
- `pcm_seconds` / `raw_seconds` / `audio_seconds`: durations for usage accounting.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from callers.audio.errors import AudioError
from callers.audio.formats import check_input_format, check_output_format, check_stream_format
from callers.audio.info import NO_LIMITS, AudioInfo, Limits

if TYPE_CHECKING:
    from callers.audio.duration import audio_seconds, pcm_seconds, raw_seconds
    from callers.audio.pcm import Pcm
    from callers.audio.probing import probe
    from callers.audio.stream import StreamConverter, convert_stream
    from callers.audio.transcode import convert, decode, encode

__all__ = [
    "NO_LIMITS",
    "AudioError",
    "AudioInfo",
    "Limits",
    "Pcm",
    "StreamConverter",
    "audio_seconds",
    "check_input_format",
    "check_output_format",
    "check_stream_format",
    "convert",
    "convert_stream",
    "decode",
    "encode",
    "pcm_seconds",
    "probe",
    "raw_seconds",
]

# Name -> the module that defines it, loaded on first access. No module is named like
# a function it defines: importing `callers.audio.x` binds the package attribute `x` to
# the module, which would then shadow the function of that name.
_LAZY = {
    "convert": "transcode",
    "decode": "transcode",
    "encode": "transcode",
    "audio_seconds": "duration",
    "pcm_seconds": "duration",
    "raw_seconds": "duration",
    "Pcm": "pcm",
    "probe": "probing",
    "StreamConverter": "stream",
    "convert_stream": "stream",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
