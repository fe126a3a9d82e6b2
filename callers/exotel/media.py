"""CALL_MEDIA: Exotel's AgentStream websocket (the Voicebot applet, Connect Voice AI).

The protocol, as the newest reference states it (developer.exotel.com/docs/agentstream/
stream-voicebot-applet, "WebSocket Message Protocol"; the older support article and
some samples write streamSid/callSid, which Exotel's current docs do not):

From Exotel, JSON text frames:
- ``{"event": "connected"}``;
- ``{"event": "start", "sequence_number", "stream_sid", "start": {"stream_sid",
  "call_sid", "account_sid", "from", "to", "custom_parameters": {...}, "media_format":
  {"encoding": "raw", "sample_rate": "8000", "bit_rate": "128"}}}``;
- ``{"event": "media", "sequence_number", "stream_sid", "media": {"chunk", "timestamp",
  "payload"}}``: base64 raw 16-bit little-endian mono PCM ("raw/slin") at the sample
  rate of the start (8000 by default; 16000 or 24000 when the URL asked ``sample-rate``);
- ``{"event": "dtmf", ..., "dtmf": {"duration", "digit"}}``;
- ``{"event": "mark", ..., "mark": {"name"}}``: a mark the bot sent has been played;
- ``{"event": "stop", ..., "stop": {"call_sid", "account_sid", "reason"}}`` (stopped,
  callended).

To Exotel: ``{"event": "media", "stream_sid", "media": {"payload"}}``, ``{"event":
"mark", "stream_sid", "mark": {"name"}}``, ``{"event": "clear", "stream_sid"}``. A
payload must be a multiple of 320 bytes (20 ms at 8 kHz): a shorter tail makes Exotel
wait 20 ms, a gap; 3.2 kB is its minimum (smaller chunks break up with network jitter;
Exotel calls it "100 ms", which it is at 16 kHz: at 8 kHz it is 200 ms) and 100 kB its
maximum. So frame_bytes is 3.2 kB rounded up to whole 20 ms (200 ms at 8 kHz, 100 ms at
16 kHz, 80 ms at 24 kHz), and a short last frame is padded with silence to whole 20 ms.
Exotel confirms no clear (there is no CLEARED event unless it sends a "clear" back), and
the extension guide's mu-law media format (beta) is read when the start says so.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from callers.base import InvalidRequest
from callers.exotel import wire
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

MIN_CHUNK_BYTES = 3200  # Exotel's minimum chunk
STEP_MS = 20  # chunks are whole multiples of this (320 bytes at 8 kHz linear16)
RATES = (8000, 16000, 24000)
_MULAW = ("mulaw", "ulaw", "x-mulaw", "audio/x-mulaw", "pcmu")


def _bytes_per_ms(native: AudioFormat) -> int:
    rate = native.sample_rate_hz or 8000
    width = 1 if native.encoding is AudioEncoding.MULAW else 2
    return rate * width // 1000


def _object(message: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = message.get(name)
    if not isinstance(value, dict):
        raise InvalidRequest(f"exotel media: a {message.get('event')} message has no {name!r} object")
    return value


def _format(media_format: object, requested_rate: int) -> AudioFormat:
    """The stream's native audio from the start's media_format."""
    encoding = AudioEncoding.PCM_S16LE
    rate = requested_rate
    if isinstance(media_format, dict):
        said = wire.text(media_format.get("encoding")).strip().lower()
        if said in _MULAW or said.startswith("audio/x-mulaw"):
            encoding = AudioEncoding.MULAW
        given = wire.text(media_format.get("sample_rate")).strip()
        if given:
            try:
                rate = int(float(given))
            except ValueError:
                raise InvalidRequest(f"exotel media: start.media_format.sample_rate {given!r}") from None
    if rate not in RATES and encoding is AudioEncoding.PCM_S16LE:
        raise InvalidRequest(f"exotel media: unsupported sample rate {rate} (Exotel streams {RATES})")
    return AudioFormat(encoding, AudioContainer.RAW, rate, 1)


class ExotelMediaSession:
    """One Exotel media websocket. Not shared: made per connection by open_session."""

    def __init__(self, requested_rate: int) -> None:
        self._requested_rate = requested_rate
        self._native: AudioFormat | None = None
        self._stream_sid = ""

    @property
    def native_format(self) -> AudioFormat | None:
        return self._native

    @property
    def frame_bytes(self) -> int:
        step = _bytes_per_ms(self._assumed()) * STEP_MS
        return -(-MIN_CHUNK_BYTES // step) * step

    def _assumed(self) -> AudioFormat:
        """The native format, or before the start, the one the URL asked for."""
        return self._native or AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, self._requested_rate)

    def decode(self, message: str | bytes) -> list[MediaEvent]:
        if isinstance(message, bytes):
            raise InvalidRequest("exotel media: a binary message (Exotel sends JSON text frames)")
        try:
            data = orjson.loads(message)
        except orjson.JSONDecodeError:
            raise InvalidRequest("exotel media: a message that is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("exotel media: a message that is not a JSON object")
        event = data.get("event")
        if not isinstance(event, str):
            raise InvalidRequest("exotel media: a message without an event")
        if event == "start":
            return [self._start(data)]
        if event == "media":
            return [MediaEvent(MediaEventKind.AUDIO, audio=self._payload(_object(data, "media")))]
        if event == "dtmf":
            digit = wire.text(_object(data, "dtmf").get("digit")).strip()
            if not digit:
                raise InvalidRequest("exotel media: a dtmf message without a digit")
            return [MediaEvent(MediaEventKind.DTMF, digit=digit)]
        if event == "mark":
            name = wire.text(_object(data, "mark").get("name"))
            return [MediaEvent(MediaEventKind.MARK, mark=name)]
        if event == "clear":
            return [MediaEvent(MediaEventKind.CLEARED)]
        if event == "stop":
            return [MediaEvent(MediaEventKind.STOP)]
        return []  # connected, and anything newer this session does not use

    def _start(self, data: Mapping[str, Any]) -> MediaEvent:
        start = _object(data, "start")
        stream_sid = wire.text(start.get("stream_sid") or data.get("stream_sid")).strip()
        call_sid = wire.text(start.get("call_sid")).strip()
        if not stream_sid or not call_sid:
            raise InvalidRequest("exotel media: the start message has no stream_sid or call_sid")
        parameters = start.get("custom_parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidRequest("exotel media: start.custom_parameters is not an object")
        self._native = _format(start.get("media_format"), self._requested_rate)
        self._stream_sid = stream_sid
        return MediaEvent(
            MediaEventKind.START,
            start=MediaStart(
                provider_call_id=call_sid,
                stream_id=stream_sid,
                from_=wire.text(start.get("from")),
                to=wire.text(start.get("to")),
                custom_parameters={str(k): wire.text(v) for k, v in parameters.items()},
            ),
        )

    def _payload(self, media: Mapping[str, Any]) -> bytes:
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise InvalidRequest("exotel media: a media message without a base64 payload")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("exotel media: a media payload that is not valid base64") from None

    def _sid(self, what: str) -> str:
        if not self._stream_sid:
            raise InvalidRequest(f"exotel media: cannot send {what} before the stream's start message")
        return self._stream_sid

    def audio_frame(self, frame: bytes) -> OutgoingFrame:
        sid = self._sid("audio")
        native = self._assumed()
        step = _bytes_per_ms(native) * STEP_MS
        short = -len(frame) % step
        if short:
            silence = b"\xff" if native.encoding is AudioEncoding.MULAW else b"\x00"
            frame += silence * short
        payload = base64.b64encode(frame).decode("ascii")
        return OutgoingFrame(
            orjson.dumps({"event": "media", "stream_sid": sid, "media": {"payload": payload}}).decode()
        )

    def mark(self, name: str) -> OutgoingFrame | None:
        sid = self._sid("a mark")
        message = {"event": "mark", "stream_sid": sid, "mark": {"name": name}}
        return OutgoingFrame(orjson.dumps(message).decode())

    def clear(self) -> OutgoingFrame | None:
        sid = self._sid("a clear")
        return OutgoingFrame(orjson.dumps({"event": "clear", "stream_sid": sid}).decode())


class ExotelMedia:
    def open_session(self, options: Mapping[str, str], connection: MediaOptions) -> ExotelMediaSession:
        # The rate the URL asked for (stream_url puts it there), until the start says.
        asked = connection.query.get(wire.SAMPLE_RATE_PARAMETER) or wire.option(options, "stream_sample_rate")
        try:
            rate = int(asked) if asked else 8000
        except ValueError:
            rate = 8000
        return ExotelMediaSession(rate if rate in RATES else 8000)


CALLER = ExotelMedia()
