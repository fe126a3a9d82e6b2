"""TELEPHONY: place a call (POST /v1/calls), hang it up (PUT /v1/calls/{uuid}), read it
(GET /v1/calls/{uuid}), over the pooled aiohttp session with a per-call application JWT.

A call goes out with its NCCO inline (ncco.build), not with answer_url: Vonage then needs
no round trip to the hub when the callee answers, and a hub that is slow or unreachable at
that moment cannot leave an answered call without instructions. (webhooks.answer serves
the same NCCO, for an application whose answer_url points at the hub.)

- status_callback_url -> event_url (POST, JSON). Vonage signs those callbacks with the
  account's signature secret (signed callbacks must be enabled on the application), and
  the hub rejects every unsigned one, so a call is refused before it is placed when
  secret.signature_secret is missing: its events could never be accepted.
- ring_timeout_seconds -> ringing_timer (1..120 s), time_limit_seconds -> length_timer
  (1..86400 s), machine_detection DETECT -> machine_detection "continue" (or, with
  options.machine_detection=advanced, advanced_machine_detection {behavior: continue,
  mode: detect}): the call goes on and its events say human / machine.
- metadata rides with MEDIA_STREAM as websocket headers (with stream_parameters, which win
  on a clash); Vonage has no other per-call custom data that comes back, so it is not sent
  for SAY / PROVIDER_INSTRUCTIONS. The hub's call is found from the per-call URLs.
- Idempotency: the Voice API has no idempotency key on POST /v1/calls (hub_call_id cannot
  be handed to it); a retried create places a second call, so the hub must not retry a
  create whose outcome is unknown.
- hangup: Vonage answers a hangup of a call that has ended with an error (404), so on a
  refusal the call is read: an ended call returns normally, an unknown one is NotFound.
- find_calls: GET /v1/calls?date_start&date_end&order=desc, one page (100), matched on the
  to and from numbers here (the API filters calls by time, not by number).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from callers.base import (
    CallerError,
    InvalidRequest,
    NotFound,
    ProviderUnavailable,
    SecretFields,
)
from callers.types import (
    CallState,
    CallStatus,
    FindCallsRequest,
    HangupRequest,
    MachineDetection,
    PlaceCallRequest,
    PlaceCallResponse,
)
from callers.vonage import SPEC, WEBHOOK_KEY_FIELD, auth, ncco, statuses, wire

MAX_RINGING_TIMER = 120
MAX_LENGTH_TIMER = 86400


def _number(value: str, field: str) -> str:
    digits = value.strip().removeprefix("+")
    if not (digits.isascii() and digits.isdigit() and 6 <= len(digits) <= 15):
        raise InvalidRequest(f"{field} must be an E.164 phone number for Vonage, e.g. +14155550100")
    return digits


def _callback_url(url: str) -> str:
    if not url.startswith(("https://", "http://")):
        raise InvalidRequest("status_callback_url must be an http(s) URL")
    return url


def _bounded(value: int | None, field: str, maximum: int, vonage_name: str) -> int | None:
    if value is None:
        return None
    if not 1 <= value <= maximum:
        raise InvalidRequest(f"{field} must be between 1 and {maximum} s for Vonage ({vonage_name})")
    return value


def call_body(secret: SecretFields, options: Mapping[str, str], request: PlaceCallRequest) -> dict[str, Any]:
    """The POST /v1/calls body; every check happens here, before anything is signed or sent."""
    if request.status_callback_url and not secret.get(WEBHOOK_KEY_FIELD):
        raise InvalidRequest(
            "secret.signature_secret is required to place Vonage calls: their status callbacks are "
            "signed with it, and without it no callback of the call could be accepted"
        )
    body: dict[str, Any] = {
        "to": [{"type": "phone", "number": _number(request.to, "to")}],
        "from": {"type": "phone", "number": _number(request.from_, "from_")},
        "ncco": ncco.build(request.action, options, request.metadata),
    }
    if request.status_callback_url:
        body["event_url"] = [_callback_url(request.status_callback_url)]
        body["event_method"] = "POST"
    ringing = _bounded(
        request.ring_timeout_seconds, "ring_timeout_seconds", MAX_RINGING_TIMER, "ringing_timer"
    )
    if ringing is not None:
        body["ringing_timer"] = ringing
    length = _bounded(request.time_limit_seconds, "time_limit_seconds", MAX_LENGTH_TIMER, "length_timer")
    if length is not None:
        body["length_timer"] = length
    if request.machine_detection is MachineDetection.DETECT:
        if SPEC.with_defaults(options)["machine_detection"] == "advanced":
            body["advanced_machine_detection"] = {"behavior": "continue", "mode": "detect"}
        else:
            body["machine_detection"] = "continue"
    return body


def _duration(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value)
        except ValueError:
            return None
    return None


def call_state(provider_call_id: str, data: object) -> CallState:
    if not isinstance(data, dict):
        raise ProviderUnavailable("unexpected answer from Vonage: the call is not a JSON object")
    raw = data.get("status")
    if not isinstance(raw, str):
        raise ProviderUnavailable("unexpected answer from Vonage: the call has no status")
    answered_by: str | None = None
    if raw == "machine":  # a call state in GET /v1/calls: answered, by a machine
        status: CallStatus | None = CallStatus.IN_PROGRESS
        answered_by = "machine"
    else:
        status = statuses.call_status(raw)
    if status is None:
        raise ProviderUnavailable(f"Vonage reported a call status the hub does not know: {raw!r}")
    uuid = data.get("uuid")
    return CallState(
        provider_call_id=uuid if isinstance(uuid, str) and uuid else provider_call_id,
        status=status,
        raw_status=raw,
        duration_seconds=_duration(data.get("duration")),
        answered_by=answered_by,
    )


FIND_PAGE = 100  # Vonage's largest page


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number_of(end: object) -> str:
    return str(end.get("number", "")) if isinstance(end, dict) else ""


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def found_calls(data: object, request: FindCallsRequest) -> list[CallState]:
    """The calls of a GET /v1/calls page that are to and from the request's numbers."""
    embedded = data.get("_embedded") if isinstance(data, dict) else None
    records = embedded.get("calls") if isinstance(embedded, dict) else None
    if not isinstance(records, list):
        raise ProviderUnavailable("unexpected answer from Vonage: the call list has no _embedded.calls")
    to, from_ = _number(request.to, "to"), _number(request.from_, "from_")
    found = []
    for record in records:
        if not isinstance(record, dict):
            continue
        if _number_of(record.get("to")) != to or _number_of(record.get("from")) != from_:
            continue
        state = call_state(str(record.get("uuid", "")), record)
        state.created_at = _when(record.get("date_created")) or _when(record.get("start_time"))
        found.append(state)
    return found


class VonageTelephony:
    async def place_call(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: PlaceCallRequest,
        *,
        timeout: float,
    ) -> PlaceCallResponse:
        body = call_body(secret, options, request)
        target = wire.endpoint(options, "v1/calls")
        data = await wire.send(
            target, auth.application_jwt(secret, options), method="POST", json=body, timeout=timeout
        )
        uuid = data.get("uuid") if isinstance(data, dict) else None
        if not isinstance(uuid, str) or not uuid:
            raise ProviderUnavailable(f"unexpected answer from {target.host}: the created call has no uuid")
        raw = data.get("status")
        raw_status = raw if isinstance(raw, str) else ""
        return PlaceCallResponse(
            provider_call_id=uuid, raw_status=raw_status, status=statuses.call_status(raw_status)
        )

    async def hangup(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: HangupRequest,
        *,
        timeout: float,
    ) -> None:
        path = wire.call_path(request.provider_call_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        token = auth.application_jwt(secret, options)
        refused: CallerError | None = None
        try:
            await wire.send(
                wire.endpoint(options, path),
                token,
                method="PUT",
                json={"action": "hangup"},
                timeout=timeout,
            )
        except (NotFound, InvalidRequest) as exc:
            refused = exc
        if refused is None:
            return
        # Refused: a call that has already ended is the usual reason. Its state decides.
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise refused
        data = await wire.send(wire.endpoint(options, path), token, method="GET", timeout=remaining)
        if call_state(request.provider_call_id, data).status.terminal:
            return
        raise refused

    async def get_call(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        provider_call_id: str,
        *,
        timeout: float,
    ) -> CallState:
        path = wire.call_path(provider_call_id)
        data = await wire.send(
            wire.endpoint(options, path), auth.application_jwt(secret, options), method="GET", timeout=timeout
        )
        return call_state(provider_call_id, data)

    async def find_calls(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: FindCallsRequest,
        *,
        timeout: float,
    ) -> list[CallState]:
        # GET /v1/calls filters by time (date_start, date_end) but not by number: the
        # numbers are matched here, on one page of the window's newest calls.
        query = {
            "date_start": _iso(request.created_after),
            "date_end": _iso(request.created_before),
            "page_size": str(FIND_PAGE),
            "order": "desc",
        }
        data = await wire.send(
            wire.endpoint(options, "v1/calls", query),
            auth.application_jwt(secret, options),
            method="GET",
            timeout=timeout,
        )
        return found_calls(data, request)


CALLER = VonageTelephony()
