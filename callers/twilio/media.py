"""CALL_MEDIA: Twilio Media Streams, bidirectional (<Connect><Stream>), framed both ways.

The protocol (https://www.twilio.com/docs/voice/media-streams/websocket-messages): every
message is a JSON text frame with an `event`.

From Twilio:
- ``{"event": "connected", "protocol": "Call", "version": "1.0.0"}``: nothing to report;
- ``{"event": "start", "sequenceNumber": "1", "streamSid": "MZ...", "start": {"streamSid",
  "accountSid", "callSid", "tracks": ["inbound"], "customParameters": {...}, "mediaFormat":
  {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}``: START (the
  stream's custom parameters are the <Parameter>s of the call's TwiML; Twilio's start
  names no From or To, so those stay empty), and the native format: mulaw 8 kHz mono;
- ``{"event": "media", "streamSid", "sequenceNumber", "media": {"track": "inbound",
  "chunk": "2", "timestamp": "5", "payload": "<base64 mulaw>"}}``: AUDIO (20 ms, 160
  bytes, each); other tracks than inbound are not the caller's audio and are skipped;
- ``{"event": "dtmf", "streamSid", "dtmf": {"track": "inbound_track", "digit": "1"}}``: DTMF;
- ``{"event": "mark", "streamSid", "mark": {"name": "..."}}``: MARK, once the audio sent
  before that mark has played, or at once when a clear discarded it;
- ``{"event": "stop", "streamSid", "stop": {"accountSid", "callSid"}}``: STOP.

To Twilio (audio/x-mulaw 8 kHz, base64, no header):
- ``{"event": "media", "streamSid", "media": {"payload": "<base64>"}}``;
- ``{"event": "mark", "streamSid", "mark": {"name": "..."}}``;
- ``{"event": "clear", "streamSid"}``: Twilio empties its playback buffer and answers with
  the marks it discarded (mark events), not with a "cleared" message: there is no CLEARED
  event for Twilio.

frame_bytes is 160 (20 ms of mulaw at 8 kHz), what Twilio itself sends; Twilio takes any
size, buffers it and plays it at real time.
"""

from __future__ import annotations

import base64
import binascii
import json
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

MULAW_8K = AudioFormat(AudioEncoding.MULAW, AudioContainer.RAW, 8000, 1)
FRAME_BYTES = 160
_ENCODINGS = {"audio/x-mulaw": AudioEncoding.MULAW}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


class TwilioMediaSession:
    def __init__(self) -> None:
        self.stream_sid = ""
        self.call_sid = ""
        self._format: AudioFormat | None = None

    @property
    def native_format(self) -> AudioFormat | None:
        return self._format

    @property
    def frame_bytes(self) -> int:
        return FRAME_BYTES

    def decode(self, message: str | bytes) -> list[MediaEvent]:
        if isinstance(message, bytes | bytearray):
            raise InvalidRequest("Twilio Media Streams send JSON text frames; got a binary frame")
        try:
            data = orjson.loads(message)  # 50 messages a second a call: orjson's 4x matters
        except ValueError:  # orjson.JSONDecodeError is one
            raise InvalidRequest("a Twilio media stream message is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("a Twilio media stream message is not a JSON object")
        event = data.get("event")
        if event == "start":
            return [self._start(data)]
        if event not in ("media", "dtmf", "mark", "stop"):
            return []  # connected, and anything Twilio may add later
        self._check_stream(data, str(event))
        if event == "media":
            return self._media(data)
        if event == "dtmf":
            digit = _text(_object(data, "dtmf").get("digit"))
            if not digit:
                raise InvalidRequest("a Twilio dtmf message has no dtmf.digit")
            return [MediaEvent(MediaEventKind.DTMF, digit=digit)]
        if event == "mark":
            name = _object(data, "mark").get("name")
            if not isinstance(name, str):
                raise InvalidRequest("a Twilio mark message has no mark.name")
            return [MediaEvent(MediaEventKind.MARK, mark=name)]
        return [MediaEvent(MediaEventKind.STOP)]

    def _start(self, data: Mapping[str, Any]) -> MediaEvent:
        start = _object(data, "start")
        stream_sid = _text(start.get("streamSid")) or _text(data.get("streamSid"))
        call_sid = _text(start.get("callSid"))
        if not stream_sid or not call_sid:
            raise InvalidRequest("a Twilio start message has no start.streamSid or start.callSid")
        media_format = start.get("mediaFormat")
        if not isinstance(media_format, dict):
            raise InvalidRequest("a Twilio start message has no start.mediaFormat")
        encoding = _ENCODINGS.get(_text(media_format.get("encoding")))
        rate, channels = media_format.get("sampleRate"), media_format.get("channels", 1)
        if encoding is None or rate != 8000 or channels != 1:
            raise InvalidRequest(
                "a Twilio start message names a media format other than audio/x-mulaw 8000 Hz mono: "
                f"{json.dumps(media_format)[:120]}"
            )
        parameters = start.get("customParameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidRequest("a Twilio start message's start.customParameters is not an object")
        self.stream_sid, self.call_sid = stream_sid, call_sid
        self._format = AudioFormat(encoding, AudioContainer.RAW, 8000, 1)
        return MediaEvent(
            MediaEventKind.START,
            start=MediaStart(
                provider_call_id=call_sid,
                stream_id=stream_sid,
                custom_parameters={str(k): str(v) for k, v in parameters.items()},
            ),
        )

    def _media(self, data: Mapping[str, Any]) -> list[MediaEvent]:
        media = _object(data, "media")
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            return []
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise InvalidRequest("a Twilio media message has no media.payload")
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("a Twilio media message's media.payload is not base64") from None
        return [MediaEvent(MediaEventKind.AUDIO, audio=audio)]

    def _check_stream(self, data: Mapping[str, Any], event: str) -> None:
        if not self.stream_sid:
            raise InvalidRequest(f"a Twilio {event} message arrived before the stream's start message")
        sid = data.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            raise InvalidRequest(f"a Twilio {event} message names another stream than this one")

    def _sid(self, what: str) -> str:
        if not self.stream_sid:
            raise InvalidRequest(f"cannot send {what} to Twilio before the stream's start message")
        return self.stream_sid

    def audio_frame(self, frame: bytes) -> OutgoingFrame:
        message = {
            "event": "media",
            "streamSid": self._sid("audio"),
            "media": {"payload": base64.b64encode(frame).decode("ascii")},
        }
        # orjson: 50 frames a second a call (the same compact text as json.dumps's for a
        # stream sid and base64, which are ASCII).
        return OutgoingFrame(orjson.dumps(message).decode())

    def mark(self, name: str) -> OutgoingFrame | None:
        message = {"event": "mark", "streamSid": self._sid("a mark"), "mark": {"name": name}}
        return OutgoingFrame(json.dumps(message, separators=(",", ":")))

    def clear(self) -> OutgoingFrame | None:
        message = {"event": "clear", "streamSid": self._sid("a clear")}
        return OutgoingFrame(json.dumps(message, separators=(",", ":")))


def _object(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    found = data.get(name)
    if not isinstance(found, dict):
        raise InvalidRequest(f"a Twilio {data.get('event')} message has no {name} object")
    return found


class TwilioCallMedia:
    def open_session(self, options: Mapping[str, str], connection: MediaOptions) -> TwilioMediaSession:
        return TwilioMediaSession()


CALLER = TwilioCallMedia()
