"""Vonage's call status words and the hub's CallStatus.

From the Voice API webhook reference (https://developer.vonage.com/en/voice/voice-api/
webhook-reference) and vonage_voice's CallState: started, ringing, answered, machine,
completed, busy, cancelled, failed, rejected, timeout, unanswered; plus the events that
are not a change of the call's state (human / machine from machine detection,
disconnected from a websocket leg, record, input, transfer, errors).
"""

from __future__ import annotations

from callers.types import CallStatus

TO_CALL_STATUS: dict[str, CallStatus] = {
    "started": CallStatus.QUEUED,
    "ringing": CallStatus.RINGING,
    "answered": CallStatus.IN_PROGRESS,
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "cancelled": CallStatus.CANCELED,
    "failed": CallStatus.FAILED,
    "rejected": CallStatus.FAILED,
    "timeout": CallStatus.NO_ANSWER,  # rang for longer than ringing_timer
    "unanswered": CallStatus.NO_ANSWER,
}

# Machine detection's verdicts: who answered, not a change of state (the call is answered).
ANSWERED_BY = frozenset({"human", "machine"})

# The Vonage word the fake (and anything that needs the reverse) uses for each status.
FROM_CALL_STATUS: dict[CallStatus, str] = {
    CallStatus.QUEUED: "started",
    CallStatus.RINGING: "ringing",
    CallStatus.IN_PROGRESS: "answered",
    CallStatus.COMPLETED: "completed",
    CallStatus.BUSY: "busy",
    CallStatus.NO_ANSWER: "unanswered",
    CallStatus.FAILED: "failed",
    CallStatus.CANCELED: "cancelled",
}


def call_status(raw: str) -> CallStatus | None:
    return TO_CALL_STATUS.get(raw)
