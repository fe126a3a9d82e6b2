"""Telephony, provider-neutral: placing calls, the provider's call events, live call media.

Three capabilities, one module each in a provider package (callers.registry):
- TELEPHONY (telephony.py): place a call, hang it up, read its state from the provider,
  find the provider's calls by their numbers (for a call whose place answer was lost);
- CALL_EVENTS (webhooks.py): authenticate and parse what the provider posts back
  (status callbacks), authenticate its media websocket's opening request, and answer the
  provider's request for call instructions;
- CALL_MEDIA (media.py): the provider's live-audio websocket, framed both ways.

The hub owns everything else: call ids, the public URLs it gives providers (each with an
unguessable per-call token in its path, checked before a caller is asked anything),
idempotency of events, the order of states, audio conversion and pacing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class CallStatus(StrEnum):
    """A call's state, the same for every provider."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def rank(self) -> int:
        """Progress order: an event never moves a call to a lower rank (late or reordered
        callbacks are recorded but do not change the call's state)."""
        return _RANK[self]

    @property
    def terminal(self) -> bool:
        return _RANK[self] == _TERMINAL


_TERMINAL = 3
_RANK = {
    CallStatus.QUEUED: 0,
    CallStatus.RINGING: 1,
    CallStatus.IN_PROGRESS: 2,
    CallStatus.COMPLETED: _TERMINAL,
    CallStatus.BUSY: _TERMINAL,
    CallStatus.NO_ANSWER: _TERMINAL,
    CallStatus.FAILED: _TERMINAL,
    CallStatus.CANCELED: _TERMINAL,
}


class CallActionKind(StrEnum):
    # Connect the answered call's audio both ways to the hub's media websocket
    # (`CallAction.media_url`), where an agent reaches it through CallMedia.
    MEDIA_STREAM = "media_stream"
    # Speak `text` with the provider's TTS voice, then hang up.
    SAY = "say"
    # The provider's own instructions, passed through as given: TwiML (twilio), an NCCO
    # JSON array (vonage), an applet/flow URL or app id (exotel). The caller checks only
    # that it is of the right kind (XML, a JSON array, a URL), not what it does.
    PROVIDER_INSTRUCTIONS = "provider_instructions"


class MachineDetection(StrEnum):
    OFF = "off"
    # Detect a human or a machine and report it in the call's events (answered_by).
    DETECT = "detect"


@dataclass(slots=True)
class CallAction:
    kind: CallActionKind
    # MEDIA_STREAM: the wss:// URL of the hub's media endpoint for this call (its token
    # is in the path: Twilio's <Stream url> takes no query string).
    media_url: str = ""
    # MEDIA_STREAM: custom parameters the provider hands back in the stream's start
    # (Twilio <Parameter>, Vonage websocket headers, Exotel custom_parameters).
    stream_parameters: dict[str, str] = field(default_factory=dict)
    # SAY: the text, and the provider's voice and language names ("" = its default).
    text: str = ""
    voice: str = ""
    language: str = ""
    # PROVIDER_INSTRUCTIONS: passed through (see above).
    instructions: str = ""


@dataclass(slots=True)
class PlaceCallRequest:
    to: str  # E.164, validated by the hub (phonenumbers), e.g. "+14155550100"
    from_: str  # E.164 number (or caller id) the account owns; `from` is a Python keyword
    action: CallAction
    # Where the provider posts call events: the hub's per-call URL (token in the path).
    status_callback_url: str
    # Where a provider that fetches instructions when the call is answered asks for
    # them (Vonage answer_url, Exotel's dynamic applet URL); the hub serves it by asking
    # the caller's CallEventHandler.answer().
    answer_url: str
    # The hub's call id: the provider's idempotency key where it has one, and a custom
    # parameter where it passes some back, so that events find their call.
    hub_call_id: str
    # The per-call token in the paths of the URLs above, for a provider that must hand
    # the call's reference back through a URL without a path of the hub's choosing
    # (Exotel's dynamic applet URL, via CustomField "<hub_call_id>.<token>").
    call_token: str = ""
    ring_timeout_seconds: int | None = None  # how long it rings before no-answer
    time_limit_seconds: int | None = None  # the longest the call may last
    machine_detection: MachineDetection = MachineDetection.OFF
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PlaceCallResponse:
    provider_call_id: str
    raw_status: str = ""  # the provider's own status word, e.g. "queued", "started"
    status: CallStatus | None = None


@dataclass(slots=True)
class HangupRequest:
    provider_call_id: str


@dataclass(slots=True)
class CallState:
    """A call as the provider reports it now (reconciling when callbacks were lost)."""

    provider_call_id: str
    status: CallStatus
    raw_status: str
    duration_seconds: float | None = None
    answered_by: str | None = None
    # When the provider created the call, where it says (find_calls matches on it).
    created_at: datetime | None = None


@dataclass(slots=True)
class FindCallsRequest:
    """The calls a provider placed to `to` from `from_` created in [created_after,
    created_before]: how the hub learns whether a call whose place answer was lost (no
    provider id, and no event ever came) was placed at all, since none of the providers
    takes an idempotency key on call creation."""

    to: str  # E.164
    from_: str  # E.164
    created_after: datetime
    created_before: datetime


@dataclass(slots=True)
class WebhookRequest:
    """An HTTP request a provider made to the hub, as the caller needs it to check it.

    `url` is the public URL the provider used (HUB_PUBLIC_URL + path + query), which
    Twilio's signature covers; `headers` have lower-case names; `form` is the parsed
    application/x-www-form-urlencoded body, or the query for a GET (empty otherwise).
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    form: Mapping[str, str]


@dataclass(slots=True)
class CallEvent:
    provider_call_id: str
    # None for an event that is not a change of state (a recording, an input event).
    status: CallStatus | None
    raw_status: str
    # The provider's identity of this event: the same event delivered twice (a retry, a
    # replay) has the same id and is applied once. E.g. twilio "<CallSid>:<CallStatus>:
    # <SequenceNumber>", vonage "<uuid>:<status>:<timestamp>".
    event_id: str
    occurred_at: datetime | None = None
    duration_seconds: float | None = None
    answered_by: str | None = None  # "human" / "machine" where detection ran
    error: str = ""  # the provider's reason for a failed call, when it gives one
    # The event's fields as the provider sent them, kept with the event; never holds a
    # secret (callers drop signature fields and tokens).
    raw: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Instructions:
    """An answer to the provider's request for call instructions (TwiML, NCCO, JSON)."""

    content_type: str
    body: bytes


class MediaEventKind(StrEnum):
    START = "start"
    AUDIO = "audio"
    DTMF = "dtmf"
    MARK = "mark"  # a mark the hub sent has been played out by the provider
    CLEARED = "cleared"  # the provider confirmed a clear
    STOP = "stop"


@dataclass(slots=True)
class MediaStart:
    provider_call_id: str
    stream_id: str
    from_: str = ""
    to: str = ""
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class MediaEvent:
    kind: MediaEventKind
    start: MediaStart | None = None  # START
    audio: bytes = b""  # AUDIO: in the session's `native_format`, as the provider sent it
    digit: str = ""  # DTMF
    mark: str = ""  # MARK


@dataclass(slots=True)
class OutgoingFrame:
    """One message to send on the provider's websocket: text (JSON) or binary."""

    data: str | bytes


@dataclass(slots=True)
class MediaOptions:
    """What the hub tells a media session about its connection."""

    # The connection's first request, for providers that put call data in headers.
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
