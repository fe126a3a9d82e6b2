"""TELEPHONY: place, hang up and read calls through Twilio's Calls resource.

Through the `twilio` SDK's async path (client.py: a per-call client over the pooled
aiohttp session, no retries, no environment), so no request blocks the event loop:

- place_call: POST /2010-04-01/Accounts/{AccountSid}/Calls.json (`calls.create_async`)
  with To, From, Twiml (inline, twiml.py: the call's instructions go with it, so Twilio
  fetches nothing at answer time and `answer_url` is not used), StatusCallback +
  StatusCallbackEvent initiated, ringing, answered, completed + StatusCallbackMethod POST
  (every progress event: completed also reports busy, no-answer, failed, canceled),
  Timeout (ring_timeout_seconds, 1..600), TimeLimit (time_limit_seconds), and for
  machine_detection DETECT: MachineDetection=Enable with AsyncAmd=true and the AMD
  result posted to the same status callback URL (AsyncAmdStatusCallback, POST), so the
  media stream starts the moment the call is answered instead of after the seconds AMD
  takes, and answered_by arrives as its own event (webhooks.py).
  `metadata` goes as <Stream> custom parameters for MEDIA_STREAM (the hub's
  stream_parameters win on a name clash); Twilio's Calls resource has no custom fields
  otherwise, so for SAY and PROVIDER_INSTRUCTIONS metadata stays with the hub.
  Twilio has no idempotency key on Calls.create: `hub_call_id` is not sent, and a
  retried create may place a second call; the hub guards against double calls itself
  (it does not retry a create whose outcome is unknown).
  Status callbacks are signed with the account's Auth Token: a credential that has only
  an API key cannot check them, so place_call refuses a call with a status callback
  URL (InvalidRequest naming secret.auth_token) rather than place a call whose events
  would all be rejected.
- hangup: POST .../Calls/{CallSid}.json Status=completed (`update_async`), which ends a
  call in any live state (Status=canceled would leave an answered call up). A call
  that has already ended is not an error: Twilio answers either the ended call (200) or
  error 21220 (not in a state that allows the change), after which the call is read
  back and, being over, hangup returns.
- get_call: GET .../Calls/{CallSid}.json (`fetch_async`): status, duration, answered_by.
- find_calls: GET .../Calls.json?To=..&From=.. (`list_async`, newest first, at most
  FIND_LIMIT): Twilio filters calls by number but by start time only (a call that never
  started has none), so the creation window is checked here, on date_created.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from callers.base import InvalidRequest, ProviderUnavailable, SecretFields
from callers.twilio import client, errors, statuses, twiml
from callers.types import (
    CallActionKind,
    CallState,
    FindCallsRequest,
    HangupRequest,
    MachineDetection,
    PlaceCallRequest,
    PlaceCallResponse,
)

T = TypeVar("T")

STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
MAX_RING_SECONDS = 600
FIND_LIMIT = 50  # calls to one number from one number within minutes: a handful at most


def _secrets(secret: SecretFields) -> tuple[str | None, ...]:
    return (secret.get("auth_token"), secret.get("api_key_secret"))


async def _run(
    secret: SecretFields,
    options: Mapping[str, str],
    timeout: float,
    operation: Callable[[Any], Awaitable[T]],
) -> T:
    sdk, http = client.sdk(secret, options, timeout=timeout)
    try:
        return await operation(sdk)
    except errors.SDK_ERRORS as exc:
        failure = errors.from_sdk(exc, http, secrets=_secrets(secret))
    raise failure  # outside the except block: nothing chained to the SDK's exception


def _create_params(request: PlaceCallRequest, has_auth_token: bool) -> dict[str, Any]:
    action = request.action
    parameters: dict[str, str] = {}
    if action.kind is CallActionKind.MEDIA_STREAM:
        parameters = {**request.metadata, **action.stream_parameters}
    params: dict[str, Any] = {
        "to": request.to,
        "from_": request.from_,
        "twiml": twiml.for_action(action, parameters),
    }
    if request.status_callback_url:
        if not has_auth_token:
            raise InvalidRequest(
                "secret.auth_token is needed to check the signatures of Twilio's status callbacks "
                "(Twilio signs them with the account's Auth Token, not with an API key): add it to "
                "the credential, or place the call without a status callback"
            )
        params["status_callback"] = request.status_callback_url
        params["status_callback_event"] = list(STATUS_CALLBACK_EVENTS)
        params["status_callback_method"] = "POST"
    if request.ring_timeout_seconds is not None:
        if not 1 <= request.ring_timeout_seconds <= MAX_RING_SECONDS:
            raise InvalidRequest(f"ring_timeout_seconds: Twilio rings for 1 to {MAX_RING_SECONDS} seconds")
        params["timeout"] = request.ring_timeout_seconds
    if request.time_limit_seconds is not None:
        if request.time_limit_seconds < 1:
            raise InvalidRequest("time_limit_seconds must be at least 1")
        params["time_limit"] = request.time_limit_seconds
    if request.machine_detection is MachineDetection.DETECT:
        if not request.status_callback_url:
            raise InvalidRequest(
                "machine_detection needs a status_callback_url, where Twilio reports AnsweredBy"
            )
        params["machine_detection"] = "Enable"
        params["async_amd"] = "true"
        params["async_amd_status_callback"] = request.status_callback_url
        params["async_amd_status_callback_method"] = "POST"
    return params


class TwilioTelephony:
    async def place_call(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: PlaceCallRequest,
        *,
        timeout: float,
    ) -> PlaceCallResponse:
        params = _create_params(request, has_auth_token=bool(secret.get("auth_token")))

        async def create(sdk: Any) -> Any:
            return await sdk.calls.create_async(**params)

        call = await _run(secret, options, timeout, create)
        raw = str(call.status or "")
        return PlaceCallResponse(
            provider_call_id=str(call.sid), raw_status=raw, status=statuses.status_of(raw)
        )

    async def hangup(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: HangupRequest,
        *,
        timeout: float,
    ) -> None:
        sid = client.check_call_sid(request.provider_call_id)
        sdk, http = client.sdk(secret, options, timeout=timeout)
        try:
            await sdk.calls(sid).update_async(status="completed")
        except errors.SDK_ERRORS as exc:
            failure = errors.from_sdk(exc, http, secrets=_secrets(secret))
        else:
            return
        ended = http.last_status == 400 and errors.error_code(http.last_body) == errors.INVALID_CALL_STATE
        if not ended:
            raise failure
        # Not in a state to be hung up: over already, or so Twilio says; read it back.
        state = await self.get_call(secret, options, sid, timeout=max(http.remaining(), 0.001))
        if not state.status.terminal:
            raise failure

    async def find_calls(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: FindCallsRequest,
        *,
        timeout: float,
    ) -> list[CallState]:
        async def listing(sdk: Any) -> Any:
            return await sdk.calls.list_async(
                to=request.to, from_=request.from_, limit=FIND_LIMIT, page_size=FIND_LIMIT
            )

        found = []
        for call in await _run(secret, options, timeout, listing):
            created = call.date_created
            if created is None or not request.created_after <= created <= request.created_before:
                continue
            found.append(_state(call, str(call.sid or "")))
        return found

    async def get_call(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        provider_call_id: str,
        *,
        timeout: float,
    ) -> CallState:
        sid = client.check_call_sid(provider_call_id)

        async def fetch(sdk: Any) -> Any:
            return await sdk.calls(sid).fetch_async()

        return _state(await _run(secret, options, timeout, fetch), sid)


def _state(call: Any, sid: str) -> CallState:
    """A CallInstance as the hub's CallState."""
    raw = str(call.status or "")
    status = statuses.status_of(raw)
    if status is None:
        raise ProviderUnavailable(f"unexpected answer from Twilio: call status {raw[:40]!r}")
    return CallState(
        provider_call_id=str(call.sid or sid),
        status=status,
        raw_status=raw,
        duration_seconds=statuses.seconds(call.duration) if status.terminal else None,
        answered_by=statuses.answered_by(call.answered_by),
        created_at=call.date_created,
    )


CALLER = TwilioTelephony()
