"""G.711 mu-law and A-law, by lookup tables that libsndfile's own codec fills.

Python 3.11's ``audioop`` would do this but is deprecated and gone in 3.13, and its
``audioop-lts`` port exists only for 3.13+. So the codec is libsndfile's (the same
library that reads and writes every file format here): the first use decodes all 256
codes and encodes all 65,536 16-bit values through it, once, and after that numpy
indexing converts any chunk in one vectorised step, with no per-chunk state.
"""

from __future__ import annotations

import functools
import io
from typing import Literal

from callers.audio._deps import missing_extra
from callers.types.speech import AudioEncoding

try:
    import numpy as np
    import numpy.typing as npt
    import soundfile as sf  # type: ignore[import-untyped]
except (ImportError, OSError) as exc:  # pragma: no cover - depends on the deployment
    raise missing_extra(exc) from exc

_SUBTYPES: dict[AudioEncoding, Literal["ULAW", "ALAW"]] = {
    AudioEncoding.MULAW: "ULAW",
    AudioEncoding.ALAW: "ALAW",
}


@functools.cache
def _tables(encoding: AudioEncoding) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    subtype = _SUBTYPES[encoding]
    decoded, _ = sf.read(
        io.BytesIO(bytes(range(256))),
        format="RAW",
        subtype=subtype,
        samplerate=8000,
        channels=1,
        dtype="int16",
    )
    out = io.BytesIO()
    sf.write(out, np.arange(-32768, 32768, dtype=np.int16), 8000, format="RAW", subtype=subtype)
    encoded = np.frombuffer(out.getvalue(), dtype=np.uint8)
    decode_table = np.ascontiguousarray(decoded, dtype=np.int16)
    encode_table = encoded.copy()
    decode_table.setflags(write=False)
    encode_table.setflags(write=False)
    return decode_table, encode_table


def decode(data: bytes, encoding: AudioEncoding) -> npt.NDArray[np.int16]:
    """G.711 bytes (one byte per sample) to 16-bit linear samples."""
    decode_table, _ = _tables(encoding)
    return decode_table[np.frombuffer(data, dtype=np.uint8)]


def encode(samples: npt.NDArray[np.int16], encoding: AudioEncoding) -> bytes:
    """16-bit linear samples to G.711 bytes."""
    _, encode_table = _tables(encoding)
    index = samples.astype(np.int32) + 32768
    return encode_table[index].tobytes()


def to_pcm16(data: bytes, encoding: AudioEncoding) -> bytes:
    """G.711 bytes to PCM s16le bytes."""
    return decode(data, encoding).astype("<i2", copy=False).tobytes()


def from_pcm16(data: bytes, encoding: AudioEncoding) -> bytes:
    """PCM s16le bytes (a whole number of samples) to G.711 bytes."""
    return encode(np.frombuffer(data, dtype="<i2").astype(np.int16), encoding)
