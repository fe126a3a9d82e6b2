"""NCCOs (Vonage Call Control Objects) for the hub's call actions. Pure: no I/O.

The same NCCO goes inline with the call (POST /v1/calls `ncco`) and answers Vonage's
answer_url request (webhooks.answer), so both paths play the same instructions. Shapes
from the NCCO reference (https://developer.vonage.com/en/voice/voice-api/ncco-reference)
and vonage_voice.models.ncco:
- MEDIA_STREAM: [{"action": "connect", "endpoint": [{"type": "websocket", "uri": media_url,
  "content-type": "audio/l16;rate=16000", "headers": {...}}]}]; Vonage hands `headers`
  back at the top level of the websocket's first message (websocket:connected), at most
  512 bytes of them (the websocket guide);
- SAY: [{"action": "talk", "text", "language", "style", "premium"}], then the NCCO ends and
  Vonage hangs up. `voice` is Vonage's style number ("2"), or "premium" / "premium:<n>":
  Vonage's named voices (voiceName) are deprecated in favour of language + style;
- PROVIDER_INSTRUCTIONS: an NCCO (a JSON array of action objects) passed through as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from yarl import URL

from callers.base import InvalidRequest
from callers.types import CallAction, CallActionKind
from callers.vonage import SPEC

MAX_HEADERS_BYTES = 512  # Vonage: the websocket `headers` object, at most 512 bytes
MAX_TALK_CHARS = 1500  # Vonage: talk.text, up to 1,500 characters
CONTENT_TYPE = "audio/l16;rate={rate}"

Ncco = list[dict[str, Any]]


def media_rate(options: Mapping[str, str]) -> int:
    return int(SPEC.with_defaults(options)["media_sample_rate"])


def _websocket_uri(media_url: str) -> str:
    try:
        url = URL(media_url)
    except ValueError:
        url = URL()
    if url.scheme not in ("ws", "wss") or not url.host:
        raise InvalidRequest("action.media_url must be a ws:// or wss:// URL")
    return media_url


def _headers(action: CallAction, metadata: Mapping[str, str]) -> dict[str, str]:
    headers = {**metadata, **action.stream_parameters}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise InvalidRequest("action.stream_parameters and metadata must map names to strings")
    size = len(orjson.dumps(headers))
    if size > MAX_HEADERS_BYTES:
        raise InvalidRequest(
            f"action.stream_parameters and metadata are {size} bytes as Vonage websocket headers; "
            f"Vonage takes at most {MAX_HEADERS_BYTES}"
        )
    return headers


def _talk(action: CallAction) -> dict[str, Any]:
    text = action.text
    if not text.strip():
        raise InvalidRequest("action.text is required for SAY")
    if len(text) > MAX_TALK_CHARS:
        raise InvalidRequest(f"action.text is {len(text)} characters; Vonage's talk takes at most 1500")
    talk: dict[str, Any] = {"action": "talk", "text": text}
    if action.language:
        talk["language"] = action.language
    voice = action.voice.strip()
    if voice:
        style = voice
        if voice == "premium" or voice.startswith("premium:"):
            talk["premium"] = True
            style = voice.removeprefix("premium").removeprefix(":")
        if style:
            if not (style.isascii() and style.isdigit()):
                raise InvalidRequest(
                    "action.voice for Vonage is a style number (e.g. '2'), 'premium' or 'premium:<style>'; "
                    "Vonage's voice names are deprecated in favour of language and style"
                )
            talk["style"] = int(style)
    return talk


def _passed_through(instructions: str) -> Ncco:
    try:
        parsed = orjson.loads(instructions)
    except orjson.JSONDecodeError:
        raise InvalidRequest("action.instructions must be an NCCO: a JSON array of actions") from None
    if not isinstance(parsed, list) or not parsed:
        raise InvalidRequest("action.instructions must be an NCCO: a non-empty JSON array of actions")
    for index, item in enumerate(parsed):
        if not isinstance(item, dict) or not isinstance(item.get("action"), str) or not item["action"]:
            raise InvalidRequest(
                f"action.instructions[{index}] must be an NCCO action: an object with an 'action' name"
            )
    return parsed


def build(action: CallAction, options: Mapping[str, str], metadata: Mapping[str, str] | None = None) -> Ncco:
    """The NCCO for `action`; InvalidRequest names what is wrong with it."""
    if action.kind is CallActionKind.MEDIA_STREAM:
        endpoint: dict[str, Any] = {
            "type": "websocket",
            "uri": _websocket_uri(action.media_url),
            "content-type": CONTENT_TYPE.format(rate=media_rate(options)),
        }
        headers = _headers(action, metadata or {})
        if headers:
            endpoint["headers"] = headers
        return [{"action": "connect", "endpoint": [endpoint]}]
    if action.kind is CallActionKind.SAY:
        return [_talk(action)]
    if action.kind is CallActionKind.PROVIDER_INSTRUCTIONS:
        return _passed_through(action.instructions)
    raise InvalidRequest(f"action.kind {action.kind!r} is not one Vonage can play")
