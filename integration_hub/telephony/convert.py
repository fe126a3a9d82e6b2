"""Between the TelephonyService's protobuf messages and the stored / neutral forms."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from callers import types as t
from integration_hub.errors import invalid_field
from integration_hub.store.calls import CallEventRow, CallRow
from integration_hub.v1 import telephony_pb2 as pb

_STATUS_TO_PROTO: dict[t.CallStatus, pb.CallStatus.ValueType] = {
    t.CallStatus.QUEUED: pb.CALL_STATUS_QUEUED,
    t.CallStatus.RINGING: pb.CALL_STATUS_RINGING,
    t.CallStatus.IN_PROGRESS: pb.CALL_STATUS_IN_PROGRESS,
    t.CallStatus.COMPLETED: pb.CALL_STATUS_COMPLETED,
    t.CallStatus.BUSY: pb.CALL_STATUS_BUSY,
    t.CallStatus.NO_ANSWER: pb.CALL_STATUS_NO_ANSWER,
    t.CallStatus.FAILED: pb.CALL_STATUS_FAILED,
    t.CallStatus.CANCELED: pb.CALL_STATUS_CANCELED,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}
MAX_TEXT = 5000  # characters of a say action
MAX_INSTRUCTIONS = 64 * 1024
MAX_PARAMETERS = 32
MAX_PARAMETER_CHARS = 500


def status_to_proto(status: str) -> pb.CallStatus.ValueType:
    try:
        return _STATUS_TO_PROTO[t.CallStatus(status)]
    except ValueError:
        return pb.CALL_STATUS_UNSPECIFIED


def status_from_proto(value: pb.CallStatus.ValueType, field: str) -> t.CallStatus | None:
    if value == pb.CALL_STATUS_UNSPECIFIED:
        return None
    found = _STATUS_FROM_PROTO.get(value)
    if found is None:
        raise invalid_field(field, f"unknown call status {value}")
    return found


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def _duration_ms(ms: int | None) -> duration_pb2.Duration | None:
    if ms is None:
        return None
    value = duration_pb2.Duration()
    value.FromMilliseconds(ms)
    return value


def call_to_proto(row: CallRow) -> pb.Call:
    call = pb.Call(
        id=row.id,
        credential_id=row.credential_id,
        credential_name=row.credential_name,
        provider=row.provider,
        provider_call_id=row.provider_call_id,
        to=row.to_number,
        status=status_to_proto(row.status),
        provider_status=row.provider_status,
        answered_by=row.answered_by,
        error=row.error,
        metadata=dict(row.metadata),
        campaign_id=row.campaign_id or "",
        attempt=row.attempt,
        created_at=_timestamp(row.created_at),
        updated_at=_timestamp(row.updated_at),
        duration=_duration_ms(row.duration_ms),
    )
    setattr(call, "from", row.from_number)  # `from` is a Python keyword
    return call


def event_to_proto(event: CallEventRow) -> pb.CallEvent:
    return pb.CallEvent(
        sequence=event.sequence,
        call_id=event.call_id,
        status=status_to_proto(event.status) if event.status else pb.CALL_STATUS_UNSPECIFIED,
        provider_status=event.provider_status,
        occurred_at=_timestamp(event.occurred_at),
        received_at=_timestamp(event.received_at),
        duration=_duration_ms(event.duration_ms),
        answered_by=event.answered_by,
        error=event.error,
        applied=event.applied,
    )


def check_parameters(values: Mapping[str, str], field: str) -> dict[str, str]:
    if len(values) > MAX_PARAMETERS:
        raise invalid_field(field, f"at most {MAX_PARAMETERS} entries")
    for key, value in values.items():
        if not key or len(key) > 64 or not key.replace("_", "").replace("-", "").isalnum():
            raise invalid_field(field, f"key {key[:64]!r}: letters, digits, - and _ only, 1 to 64 characters")
        if len(value) > MAX_PARAMETER_CHARS:
            raise invalid_field(f"{field}.{key}", f"at most {MAX_PARAMETER_CHARS} characters")
    return dict(values)


def action_from_proto(action: pb.CallAction, field: str = "action") -> dict[str, Any]:
    """The call's action as stored (and later made a CallAction with its URLs)."""
    kind = action.WhichOneof("action")
    if kind is None:
        raise invalid_field(field, "required: one of media_stream, say, provider_instructions")
    if kind == "media_stream":
        parameters = check_parameters(action.media_stream.parameters, f"{field}.media_stream.parameters")
        return {"kind": t.CallActionKind.MEDIA_STREAM.value, "parameters": parameters}
    if kind == "say":
        text = action.say.text.strip()
        if not text:
            raise invalid_field(f"{field}.say.text", "required")
        if len(text) > MAX_TEXT:
            raise invalid_field(f"{field}.say.text", f"at most {MAX_TEXT} characters")
        return {
            "kind": t.CallActionKind.SAY.value,
            "text": text,
            "voice": action.say.voice,
            "language": action.say.language,
        }
    instructions = action.provider_instructions.strip()
    if not instructions:
        raise invalid_field(f"{field}.provider_instructions", "required")
    if len(instructions.encode()) > MAX_INSTRUCTIONS:
        raise invalid_field(f"{field}.provider_instructions", f"at most {MAX_INSTRUCTIONS} bytes")
    return {"kind": t.CallActionKind.PROVIDER_INSTRUCTIONS.value, "instructions": instructions}


def neutral_action(stored: Mapping[str, Any], media_url: str) -> t.CallAction:
    kind = t.CallActionKind(stored["kind"])
    return t.CallAction(
        kind=kind,
        media_url=media_url if kind is t.CallActionKind.MEDIA_STREAM else "",
        stream_parameters=dict(stored.get("parameters", {})),
        text=str(stored.get("text", "")),
        voice=str(stored.get("voice", "")),
        language=str(stored.get("language", "")),
        instructions=str(stored.get("instructions", "")),
    )


def machine_detection(value: int) -> t.MachineDetection:
    return t.MachineDetection.DETECT if value == pb.MACHINE_DETECTION_DETECT else t.MachineDetection.OFF


def whole_seconds(value: duration_pb2.Duration, field: str, *, low: int, high: int) -> int | None:
    if not (value.seconds or value.nanos):
        return None
    seconds = value.ToTimedelta().total_seconds()
    if not low <= seconds <= high:
        raise invalid_field(field, f"must be from {low} to {high} seconds")
    return round(seconds)
