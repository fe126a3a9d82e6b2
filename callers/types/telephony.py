"""Outbound-call requests and responses, provider-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class CallActionKind(StrEnum):
    # Fetch call instructions from `url` when the call is answered (TwiML, NCCO, ...).
    WEBHOOK = "webhook"
    # Connect the answered call's audio both ways to the websocket at `url`.
    MEDIA_STREAM = "media_stream"


@dataclass(slots=True)
class CallAction:
    kind: CallActionKind
    url: str


@dataclass(slots=True)
class PlaceCallRequest:
    to: str  # E.164, e.g. "+14155550100"
    from_: str  # a number (or caller id) the account owns; `from` is a Python keyword
    action: CallAction
    status_callback_url: str | None = None
    # Passed through to the provider where it supports custom parameters, so that
    # the platform can recognise the call in later webhooks.
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PlaceCallResponse:
    provider_call_id: str
    status: str | None = None  # the provider's own status word, e.g. "queued"


@dataclass(slots=True)
class HangupRequest:
    provider_call_id: str
