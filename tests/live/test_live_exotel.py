"""Live Exotel: skipped unless EXOTEL_ACCOUNT_SID, EXOTEL_API_KEY and EXOTEL_API_TOKEN are set
(EXOTEL_SUBDOMAIN: api.exotel.com by default, api.in.exotel.com for Mumbai accounts).

The same assertions as the fake tests, on the real service, as far as a machine without a
public URL can go: verify (and a refused token), the error for an unknown call and for an
invalid number (with EXOTEL_CALLER_ID, an ExoPhone of the account: nothing is dialled),
and, only with EXOTEL_LIVE_CALL_TO (a phone you own, which will ring) and
EXOTEL_LIVE_FLOW_ID (any App Bazaar flow of the account), a real call placed through the
flow, read back, and the hang-up refusal while it is live. Media streams and callbacks
need the hub on a public wss:// URL: they are covered by the fake, not here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import Capability, InvalidRequest, NotFound, NotSupported, Telephony
from callers.types import CallAction, CallActionKind, HangupRequest, PlaceCallRequest
from tests.fakes.secret_fields import PlainSecret

SID = os.environ.get("EXOTEL_ACCOUNT_SID", "")
KEY = os.environ.get("EXOTEL_API_KEY", "")
TOKEN = os.environ.get("EXOTEL_API_TOKEN", "")
SUBDOMAIN = os.environ.get("EXOTEL_SUBDOMAIN", "api.exotel.com")
CALLER_ID = os.environ.get("EXOTEL_CALLER_ID", "")
CALL_TO = os.environ.get("EXOTEL_LIVE_CALL_TO", "")
FLOW_ID = os.environ.get("EXOTEL_LIVE_FLOW_ID", "")
pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not (SID and KEY and TOKEN), reason="EXOTEL_ACCOUNT_SID/_API_KEY/_API_TOKEN unset"),
]
OPTIONS = {"account_sid": SID, "api_key": KEY, "subdomain": SUBDOMAIN}


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def telephony() -> Telephony:
    caller = registry.capability("exotel", Capability.TELEPHONY)
    assert isinstance(caller, Telephony)
    return caller


async def test_live_verify_and_a_refused_token() -> None:
    result = await registry.verify("exotel", PlainSecret(api_token=TOKEN), OPTIONS, timeout=30)
    assert result.valid, result.reason
    assert result.detail["cluster"] == SUBDOMAIN
    bad = await registry.verify("exotel", PlainSecret(api_token="exo-invalid-0000"), OPTIONS, timeout=30)
    assert not bad.valid
    assert "exo-invalid-0000" not in bad.reason
    assert TOKEN not in bad.reason


async def test_live_unknown_call_is_not_found() -> None:
    with pytest.raises(NotFound) as missing:
        await telephony().get_call(PlainSecret(api_token=TOKEN), OPTIONS, "0" * 32, timeout=30)
    assert TOKEN not in str(missing.value)


def _request(to: str, flow: str) -> PlaceCallRequest:
    return PlaceCallRequest(
        to=to,
        from_=CALLER_ID,
        action=CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions=flow),
        status_callback_url="",
        answer_url="",
        hub_call_id="live-test",
        call_token="",
        ring_timeout_seconds=20,
        time_limit_seconds=60,
    )


@pytest.mark.skipif(not CALLER_ID, reason="EXOTEL_CALLER_ID (an ExoPhone of the account) is not set")
async def test_live_an_invalid_number_is_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        await telephony().place_call(
            PlainSecret(api_token=TOKEN), OPTIONS, _request("+1", FLOW_ID or "1"), timeout=30
        )
    assert refused.value.provider_status == 400
    assert refused.value.message.startswith("Exotel: ")
    assert TOKEN not in str(refused.value)


@pytest.mark.skipif(
    not (CALLER_ID and CALL_TO and FLOW_ID),
    reason="EXOTEL_CALLER_ID, EXOTEL_LIVE_CALL_TO and EXOTEL_LIVE_FLOW_ID are needed to place a real call",
)
async def test_live_place_read_and_hang_up_a_call() -> None:
    secret = PlainSecret(api_token=TOKEN)
    placed = await telephony().place_call(secret, OPTIONS, _request(CALL_TO, FLOW_ID), timeout=30)
    assert placed.provider_call_id
    state = await telephony().get_call(secret, OPTIONS, placed.provider_call_id, timeout=30)
    assert state.provider_call_id == placed.provider_call_id
    if not state.status.terminal:
        with pytest.raises(NotSupported):
            await telephony().hangup(secret, OPTIONS, HangupRequest(placed.provider_call_id), timeout=30)
    for _ in range(60):  # the time limit is 60 s
        state = await telephony().get_call(secret, OPTIONS, placed.provider_call_id, timeout=30)
        if state.status.terminal:
            break
        await asyncio.sleep(2)
    assert state.status.terminal, state.raw_status
    await telephony().hangup(secret, OPTIONS, HangupRequest(placed.provider_call_id), timeout=30)
