"""The Speech service's real-time websocket protocol, as the Speech SDKs speak it.

Client to service:
- text messages: header lines ("Path: speech.config", "X-RequestId", "X-Timestamp",
  "Content-Type"), each ending in CRLF, a blank line, then the JSON body;
- binary audio messages: a 2-byte big-endian length of the header block, the header
  block ("Path: audio", "X-RequestId", "X-Timestamp", and "Content-Type: audio/x-wav"
  on the first), then the payload. The first payload is a WAV header describing the
  samples that follow (PCM s16le, 16 kHz, mono here); an audio message with an empty
  payload marks the end of the audio.

Service to client: text messages of the same header/body form, by Path: turn.start,
speech.startDetected {Offset}, speech.hypothesis {Text, Offset, Duration},
speech.phrase {RecognitionStatus, DisplayText, Offset, Duration, NBest}, speech.endDetected
{Offset}, turn.end. Offsets and durations are 100-nanosecond ticks from the start of the
audio.
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from callers.base import InvalidRequest, PermissionDenied, ProviderUnavailable, RateLimited
from callers.errors import AuthenticationFailed, CallerError

TICKS_PER_SECOND = 10_000_000
SAMPLE_RATE = 16_000
CRLF = "\r\n"


def new_id() -> str:
    """A request or connection id as the SDKs make them: a UUID without dashes, upper-case."""
    return uuid.uuid4().hex.upper()


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text_message(path: str, request_id: str, body: dict[str, Any]) -> str:
    headers = (
        f"Path: {path}{CRLF}X-RequestId: {request_id}{CRLF}X-Timestamp: {timestamp()}{CRLF}"
        f"Content-Type: application/json{CRLF}"
    )
    return headers + CRLF + orjson.dumps(body).decode()


def audio_message(request_id: str, payload: bytes, *, first: bool = False) -> bytes:
    headers = f"Path: audio{CRLF}X-RequestId: {request_id}{CRLF}X-Timestamp: {timestamp()}{CRLF}"
    if first:
        headers += f"Content-Type: audio/x-wav{CRLF}"
    block = headers.encode("ascii")
    return struct.pack(">H", len(block)) + block + payload


def wav_header(sample_rate: int = SAMPLE_RATE, channels: int = 1, bits: int = 16) -> bytes:
    """A RIFF/WAVE header for a stream of unknown length (sizes 0), as the SDKs send it."""
    block_align = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 0)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, bits)
        + b"data"
        + struct.pack("<I", 0)
    )


def speech_config() -> dict[str, Any]:
    return {
        "context": {
            "system": {"name": "integration-hub", "version": "1", "build": "Python", "lang": "Python"},
            "os": {"platform": "Linux", "name": "integration-hub", "version": "1"},
            "audio": {
                "source": {
                    "bitspersample": 16,
                    "channelcount": 1,
                    "connectivity": "Unknown",
                    "manufacturer": "integration-hub",
                    "model": "Stream",
                    "samplerate": SAMPLE_RATE,
                    "type": "Stream",
                }
            },
        }
    }


def speech_context(keywords: list[str]) -> dict[str, Any]:
    """The phrase list (dynamic grammar) the SDKs send as speech.context."""
    return {"dgi": {"Groups": [{"Type": "Generic", "Items": [{"Text": k} for k in keywords]}]}}


def parse_text(message: str) -> tuple[dict[str, str], Any]:
    """A service text message: (headers with lower-case names, the decoded JSON body or None)."""
    head, _, body = message.partition(CRLF + CRLF)
    headers: dict[str, str] = {}
    for line in head.split(CRLF):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if not body.strip():
        return headers, None
    try:
        return headers, orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable(
            f"Azure Speech sent a {headers.get('path', 'message')} whose body is not JSON"
        ) from None


def seconds(ticks: object) -> float | None:
    return (
        ticks / TICKS_PER_SECOND if isinstance(ticks, int | float) and not isinstance(ticks, bool) else None
    )


# RecognitionStatus values that end a phrase without text: not errors.
SILENT_STATUSES = frozenset({"NoMatch", "InitialSilenceTimeout", "BabbleTimeout", "EndOfDictation"})


def status_error(status: str, text: str) -> CallerError:
    """A phrase whose RecognitionStatus reports a failure."""
    message = f"Azure Speech recognition failed: {status}" + (f" ({text})" if text else "")
    if status == "TooManyRequests":
        return RateLimited(message)
    if status == "BadRequest":
        return InvalidRequest(message)
    if status == "Forbidden":
        return PermissionDenied(message)
    return ProviderUnavailable(message)


def close_error(code: int | None, reason: str) -> CallerError:
    """The service closed the websocket before the end of the turn."""
    detail = f" ({reason})" if reason else ""
    message = f"Azure Speech closed the real-time connection with code {code}{detail}"
    lowered = reason.lower()
    if code == 1007:
        return InvalidRequest(message)
    if code == 1008:
        if any(word in lowered for word in ("quota", "throttl", "too many", "rate")):
            return RateLimited(message)
        if any(word in lowered for word in ("auth", "key", "subscription", "token")):
            return AuthenticationFailed(message)
        return PermissionDenied(message)
    return ProviderUnavailable(message)
