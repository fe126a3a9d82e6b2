"""Live Twilio: skipped unless TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN hold a real account's
credentials. Same assertions as the fake tests, on the real API:

- always (free, no call placed): verify (and with a wrong token: not valid), an unknown
  Call SID is NotFound, an invalid 'To' number is InvalidRequest 21211; with
  TWILIO_API_KEY_SID + TWILIO_API_KEY_SECRET also verify with the API key;
- only with TWILIO_FROM (a number the account owns) and TWILIO_TO (a phone that may ring):
  a real SAY call (it costs a call), read back, hung up, read back ended, hung up again.
  No status callback is asked for: Twilio would need a public URL to post it to.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import AuthenticationFailed, Capability, InvalidRequest, NotFound, Telephony
from callers.types import CallAction, CallActionKind, CallStatus, HangupRequest, PlaceCallRequest
from tests.fakes.secret_fields import PlainSecret

ACCOUNT = os.environ.get("TWILIO_ACCOUNT_SID", "")
TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
KEY_SID = os.environ.get("TWILIO_API_KEY_SID", "")
KEY_SECRET = os.environ.get("TWILIO_API_KEY_SECRET", "")
FROM = os.environ.get("TWILIO_FROM", "")
TO = os.environ.get("TWILIO_TO", "")
pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not (ACCOUNT and TOKEN), reason="TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN are not set"),
]
OPTIONS = {"account_sid": ACCOUNT}


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def telephony() -> Telephony:
    caller = registry.capability("twilio", Capability.TELEPHONY)
    assert isinstance(caller, Telephony)
    return caller


def say_request(to: str, from_: str) -> PlaceCallRequest:
    return PlaceCallRequest(
        to=to,
        from_=from_,
        action=CallAction(CallActionKind.SAY, text="This is a test call from the integration hub. Goodbye."),
        status_callback_url="",
        answer_url="",
        hub_call_id="hc_live_test",
        ring_timeout_seconds=20,
        time_limit_seconds=60,
    )


async def test_live_verify_and_the_errors_that_place_no_call() -> None:
    secret = PlainSecret(auth_token=TOKEN)
    result = await registry.verify("twilio", secret, OPTIONS, timeout=30)
    assert result.valid, result.reason
    assert result.detail.get("status") == "active"
    bad = await registry.verify("twilio", PlainSecret(auth_token="0" * 32), OPTIONS, timeout=30)
    assert not bad.valid
    assert TOKEN not in bad.reason
    if KEY_SID and KEY_SECRET:
        keyed = await registry.verify(
            "twilio", PlainSecret(api_key_secret=KEY_SECRET), {**OPTIONS, "api_key_sid": KEY_SID}, timeout=30
        )
        assert keyed.valid, keyed.reason
    with pytest.raises(NotFound, match="20404"):
        await telephony().get_call(secret, OPTIONS, "CA" + "0" * 32, timeout=30)
    with pytest.raises(InvalidRequest, match=r"error 212\d\d") as invalid:
        await telephony().place_call(
            secret, OPTIONS, say_request("+1555", FROM or "+15005550006"), timeout=30
        )
    assert TOKEN not in str(invalid.value)
    with pytest.raises(AuthenticationFailed) as refused:
        await telephony().get_call(PlainSecret(auth_token="0" * 32), OPTIONS, "CA" + "0" * 32, timeout=30)
    assert "0" * 32 not in str(refused.value)


@pytest.mark.skipif(not (FROM and TO), reason="TWILIO_FROM / TWILIO_TO are not set (a real call costs money)")
async def test_live_call_is_placed_read_and_hung_up() -> None:
    secret = PlainSecret(auth_token=TOKEN)
    placed = await telephony().place_call(secret, OPTIONS, say_request(TO, FROM), timeout=30)
    assert placed.provider_call_id.startswith("CA")
    assert placed.status is CallStatus.QUEUED
    state = await telephony().get_call(secret, OPTIONS, placed.provider_call_id, timeout=30)
    assert state.status in (CallStatus.QUEUED, CallStatus.RINGING, CallStatus.IN_PROGRESS)
    await telephony().hangup(secret, OPTIONS, HangupRequest(placed.provider_call_id), timeout=30)
    for _ in range(20):
        state = await telephony().get_call(secret, OPTIONS, placed.provider_call_id, timeout=30)
        if state.status.terminal:
            break
        await asyncio.sleep(0.5)
    assert state.status in (CallStatus.CANCELED, CallStatus.COMPLETED, CallStatus.NO_ANSWER)
    # Hanging up an ended call returns normally.
    await telephony().hangup(secret, OPTIONS, HangupRequest(placed.provider_call_id), timeout=30)
