"""The TwiML a call runs, sent inline with the call (the Calls resource's `Twiml`).

Built with the SDK's twilio.twiml.voice_response, per action:

- MEDIA_STREAM: ``<Response><Connect><Stream url="wss://..."><Parameter name= value=/>
  ...</Stream></Connect></Response>``: a bidirectional Media Stream
  (https://www.twilio.com/docs/voice/twiml/stream); <Connect> holds the call for as long
  as the websocket is open. The url takes no query string (Twilio refuses it: error
  31920), so the hub's token is in the path; the parameters come back in the start
  message's `customParameters`. Twilio connects only to wss:// (error 31910); ws:// is
  accepted here for loopback tests;
- SAY: ``<Response><Say voice= language=>text</Say><Hangup/></Response>``
  (https://www.twilio.com/docs/voice/twiml/say);
- PROVIDER_INSTRUCTIONS: the caller's own TwiML, passed through as given once it is
  checked to be one well-formed XML document whose root is <Response> (no DOCTYPE or
  entity declarations: TwiML needs none, and refusing them keeps the parser safe).

Twilio takes at most 4000 characters of inline TwiML (the `Twiml` parameter); longer is
refused here, naming the limit.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.twiml.voice_response import Connect, VoiceResponse  # type: ignore[import-untyped]

from callers.base import InvalidRequest
from callers.types import CallAction, CallActionKind

MAX_TWIML_CHARS = 4000
_DECLARATIONS = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def for_action(action: CallAction, parameters: Mapping[str, str]) -> str:
    """The TwiML of `action`; `parameters` are the stream's custom parameters (MEDIA_STREAM)."""
    if action.kind is CallActionKind.MEDIA_STREAM:
        twiml = media_stream(action.media_url, parameters)
    elif action.kind is CallActionKind.SAY:
        twiml = say(action.text, voice=action.voice, language=action.language)
    elif action.kind is CallActionKind.PROVIDER_INSTRUCTIONS:
        twiml = checked(action.instructions)
    else:  # pragma: no cover - a new kind must be mapped here first
        raise InvalidRequest(f"action.kind {action.kind!r} is not supported by twilio")
    if len(twiml) > MAX_TWIML_CHARS:
        raise InvalidRequest(
            f"the call's TwiML is {len(twiml)} characters; Twilio takes at most {MAX_TWIML_CHARS} inline"
        )
    return twiml


def media_stream(url: str, parameters: Mapping[str, str]) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise InvalidRequest("action.media_url must be a ws:// or wss:// URL")
    if parts.query or parts.fragment:
        raise InvalidRequest(
            "action.media_url must not have a query string: Twilio's <Stream url> takes none "
            "(put the token in the path, and values in stream_parameters)"
        )
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=url)
    for name, value in parameters.items():
        if not name:
            raise InvalidRequest("action.stream_parameters: a parameter name is empty")
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response.to_xml())


def say(text: str, *, voice: str = "", language: str = "") -> str:
    if not text.strip():
        raise InvalidRequest("action.text must not be empty for a SAY call")
    response = VoiceResponse()
    response.say(message=text, voice=voice or None, language=language or None)
    response.hangup()
    return str(response.to_xml())


def checked(instructions: str) -> str:
    """`instructions` as given, if it is a TwiML document (<Response> root)."""
    text = instructions.strip()
    if not text:
        raise InvalidRequest("action.instructions must be a TwiML document (<Response>...</Response>)")
    if _DECLARATIONS.search(text):
        raise InvalidRequest("action.instructions: TwiML must not declare a DOCTYPE or entities")
    try:
        # No DTD reaches the parser (refused above): no entity expansion, nothing external.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise InvalidRequest(f"action.instructions is not well-formed XML ({exc})") from None
    if root.tag != "Response":
        raise InvalidRequest(f"action.instructions: the TwiML root must be <Response>, not <{root.tag[:40]}>")
    return text
