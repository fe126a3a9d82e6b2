"""Twilio's call status words, and answering machine detection's answers, normalized.

A Call resource's `status` (https://www.twilio.com/docs/voice/api/call-resource#call-status-values)
is one of queued, ringing, in-progress, completed, busy, no-answer, failed, canceled; a
status callback's `CallStatus` also says `initiated` (Twilio has handed the call to a
carrier), which is still a call waiting to ring: queued here. The `answered` progress
event arrives with CallStatus `in-progress`.

AnsweredBy (https://www.twilio.com/docs/voice/answering-machine-detection) is human,
machine_start, machine_end_beep, machine_end_silence, machine_end_other, fax or unknown:
"human", "machine" (every machine_* and fax: no person took the call) or "unknown".
"""

from __future__ import annotations

from callers.types import CallStatus

STATUSES: dict[str, CallStatus] = {
    "queued": CallStatus.QUEUED,
    "initiated": CallStatus.QUEUED,
    "ringing": CallStatus.RINGING,
    "in-progress": CallStatus.IN_PROGRESS,
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELED,
}


def status_of(raw: str) -> CallStatus | None:
    """The normalized status of a Twilio status word; None for a word the hub does not track."""
    return STATUSES.get(raw.strip().lower())


def answered_by(raw: str | None) -> str | None:
    if not raw:
        return None
    word = raw.strip().lower()
    if word == "human":
        return "human"
    if word.startswith("machine") or word == "fax":
        return "machine"
    return "unknown"


def seconds(raw: object) -> float | None:
    """A duration Twilio gives as a string of whole seconds ("42"), or None."""
    if raw is None or raw == "":
        return None
    try:
        value = float(str(raw))
    except ValueError:
        return None
    return value if value >= 0 else None
