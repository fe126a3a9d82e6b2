"""CALL_MEDIA: the websocket Vonage opens to the hub for a call's audio (NCCO connect to a
websocket endpoint), framed both ways. Pure framing: no I/O.

The protocol (Vonage's websocket guide, https://developer.vonage.com/en/voice/voice-api/
guides/websockets):
- first, a text message {"event": "websocket:connected", "content-type":
  "audio/l16;rate=16000", <the endpoint's headers, at the top level>}. It names no call
  and no stream: START's provider_call_id and stream_id are "" and the custom parameters
  (the hub's stream_parameters and metadata) are what identifies the call, with the
  per-call media URL itself;
- then binary messages, each 20 ms of the call's audio: linear16 little-endian mono at the
  content-type's rate (640 bytes at 16 kHz, 320 at 8 kHz, 960 at 24 kHz);
- text events: {"event": "websocket:dtmf", "digit": "5", "duration": 260};
  {"event": "websocket:notify", "payload": {...}}, the echo of a notify command once the
  audio queued before it has played (MARK, named by payload.name); {"event":
  "websocket:cleared"} once a clear command has emptied Vonage's playback buffer;
- to Vonage: binary messages of exactly 20 ms each (a shorter last frame is padded with
  silence here: Vonage takes only whole frames), {"action": "notify", "payload": {"name":
  ...}} for a mark, {"action": "clear"} for a barge-in.
Vonage sends no stop message: the call's audio ends when it closes the websocket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from callers.base import InvalidRequest
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    MediaEvent,
    MediaEventKind,
    MediaOptions,
    MediaStart,
    OutgoingFrame,
)
from callers.vonage import MEDIA_SAMPLE_RATES, ncco

FRAME_SECONDS = 0.02
_DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")
_CLEAR = orjson.dumps({"action": "clear"}).decode()


def _frame_bytes(rate: int) -> int:
    return int(rate * FRAME_SECONDS) * 2


def _rate_of(content_type: object) -> int:
    """16000 from "audio/l16;rate=16000"; InvalidRequest for anything but l16 at a Vonage rate."""
    if not isinstance(content_type, str):
        raise InvalidRequest("websocket:connected has no content-type")
    kind, _, params = content_type.replace(" ", "").lower().partition(";")
    rate = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name == "rate":
            rate = value
    if kind != "audio/l16" or rate not in MEDIA_SAMPLE_RATES:
        raise InvalidRequest(
            f"websocket:connected content-type {content_type!r} is not audio/l16 at 8, 16 or 24 kHz"
        )
    return int(rate)


def _parameter(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class VonageMediaSession:
    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._format: AudioFormat | None = None

    @property
    def native_format(self) -> AudioFormat | None:
        return self._format

    @property
    def frame_bytes(self) -> int:
        return _frame_bytes(self._rate)

    def decode(self, message: str | bytes) -> list[MediaEvent]:
        if isinstance(message, bytes | bytearray | memoryview):
            return self._audio(bytes(message))
        try:
            data = orjson.loads(message)
        except orjson.JSONDecodeError:
            raise InvalidRequest("a Vonage websocket text message is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise InvalidRequest("a Vonage websocket text message has no event name")
        event = data["event"]
        if event == "websocket:connected":
            return self._connected(data)
        if event == "websocket:dtmf":
            digit = data.get("digit")
            if not isinstance(digit, str) or len(digit) != 1 or digit not in _DTMF_DIGITS:
                raise InvalidRequest("websocket:dtmf has no single digit (0-9, *, #, A-D)")
            return [MediaEvent(MediaEventKind.DTMF, digit=digit)]
        if event == "websocket:notify":
            payload = data.get("payload")
            name = payload.get("name") if isinstance(payload, dict) else None
            if not isinstance(name, str):
                return []  # a notify that is not one of the hub's marks
            return [MediaEvent(MediaEventKind.MARK, mark=name)]
        if event == "websocket:cleared":
            return [MediaEvent(MediaEventKind.CLEARED)]
        return []  # other events (and future ones) are of no interest

    def _connected(self, data: Mapping[str, Any]) -> list[MediaEvent]:
        if self._format is not None:
            raise InvalidRequest("a second websocket:connected on the same Vonage websocket")
        self._rate = _rate_of(data.get("content-type"))
        self._format = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, self._rate, 1)
        custom = {
            str(name): _parameter(value)
            for name, value in data.items()
            if name not in ("event", "content-type")
        }
        start = MediaStart(provider_call_id="", stream_id="", custom_parameters=custom)
        return [MediaEvent(MediaEventKind.START, start=start)]

    def _audio(self, data: bytes) -> list[MediaEvent]:
        if self._format is None:
            raise InvalidRequest("Vonage sent audio before websocket:connected")
        if len(data) % 2:
            raise InvalidRequest(f"a Vonage audio message of {len(data)} bytes is not whole 16-bit samples")
        if not data:
            return []
        return [MediaEvent(MediaEventKind.AUDIO, audio=data)]

    def audio_frame(self, frame: bytes) -> OutgoingFrame:
        size = self.frame_bytes
        if len(frame) > size:
            raise InvalidRequest(f"an audio frame of {len(frame)} bytes is longer than Vonage's {size}")
        if len(frame) % 2:
            raise InvalidRequest(f"an audio frame of {len(frame)} bytes is not whole 16-bit samples")
        if len(frame) < size:
            frame = frame + bytes(size - len(frame))  # Vonage plays only whole 20 ms frames
        return OutgoingFrame(frame)

    def mark(self, name: str) -> OutgoingFrame | None:
        return OutgoingFrame(orjson.dumps({"action": "notify", "payload": {"name": name}}).decode())

    def clear(self) -> OutgoingFrame | None:
        return OutgoingFrame(_CLEAR)


class VonageMedia:
    def open_session(self, options: Mapping[str, str], connection: MediaOptions) -> VonageMediaSession:
        return VonageMediaSession(ncco.media_rate(options))


CALLER = VonageMedia()
