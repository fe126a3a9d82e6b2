"""Live Vonage Voice: skipped unless VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY (the PEM,
or VONAGE_PRIVATE_KEY_FILE, its path) are set. The same assertions as the fake tests,
against api.nexmo.com (or VONAGE_API_BASE_URL): verify (and a key Vonage does not know),
an unknown call, and, when VONAGE_TO_NUMBER and VONAGE_FROM_NUMBER are set too, one short
SAY call (it rings VONAGE_TO_NUMBER and costs a little) read back and hung up.
VONAGE_SIGNATURE_SECRET (and VONAGE_API_KEY) are needed to place calls, as in production.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from callers import pools, registry
from callers.base import Capability, NotFound, Telephony
from callers.types import CallAction, CallActionKind, CallStatus, HangupRequest, PlaceCallRequest
from tests.fakes.secret_fields import PlainSecret

APPLICATION_ID = os.environ.get("VONAGE_APPLICATION_ID", "")
_KEY_FILE = os.environ.get("VONAGE_PRIVATE_KEY_FILE", "")
PRIVATE_KEY = os.environ.get("VONAGE_PRIVATE_KEY", "") or (Path(_KEY_FILE).read_text() if _KEY_FILE else "")
SIGNATURE_SECRET = os.environ.get("VONAGE_SIGNATURE_SECRET", "")
TO_NUMBER = os.environ.get("VONAGE_TO_NUMBER", "")
FROM_NUMBER = os.environ.get("VONAGE_FROM_NUMBER", "")
OPTIONS = {
    "application_id": APPLICATION_ID,
    "api_base_url": os.environ.get("VONAGE_API_BASE_URL", "https://api.nexmo.com"),
    **({"api_key": os.environ["VONAGE_API_KEY"]} if os.environ.get("VONAGE_API_KEY") else {}),
}
pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (APPLICATION_ID and PRIVATE_KEY), reason="VONAGE_APPLICATION_ID / VONAGE_PRIVATE_KEY are not set"
    ),
]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def secret() -> PlainSecret:
    fields = {"private_key": PRIVATE_KEY, "signature_secret": SIGNATURE_SECRET}
    return PlainSecret(**{k: v for k, v in fields.items() if v})


def telephony() -> Telephony:
    caller = registry.capability("vonage", Capability.TELEPHONY)
    assert isinstance(caller, Telephony)
    return caller


async def test_live_verify_and_an_unknown_key() -> None:
    result = await registry.verify("vonage", secret(), OPTIONS, timeout=30)
    assert result.valid, result.reason
    assert "calls" in result.detail
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    refused = await registry.verify("vonage", PlainSecret(private_key=pem), OPTIONS, timeout=30)
    assert not refused.valid
    assert pem.splitlines()[1] not in refused.reason


async def test_live_unknown_call_is_not_found() -> None:
    with pytest.raises(NotFound):
        await telephony().get_call(secret(), OPTIONS, "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", timeout=30)


@pytest.mark.skipif(
    not (TO_NUMBER and FROM_NUMBER and SIGNATURE_SECRET),
    reason="VONAGE_TO_NUMBER / VONAGE_FROM_NUMBER / VONAGE_SIGNATURE_SECRET are not set",
)
async def test_live_say_call_is_placed_read_and_hung_up() -> None:
    request = PlaceCallRequest(
        to=TO_NUMBER,
        from_=FROM_NUMBER,
        action=CallAction(
            CallActionKind.SAY, text="This is a test call from the integration hub.", language="en-US"
        ),
        status_callback_url="https://example.com/vonage-live-test/events",
        answer_url="https://example.com/vonage-live-test/answer",
        hub_call_id="live-vonage",
        ring_timeout_seconds=20,
        time_limit_seconds=60,
    )
    placed = await telephony().place_call(secret(), OPTIONS, request, timeout=30)
    assert placed.provider_call_id
    assert placed.status is CallStatus.QUEUED
    state = await telephony().get_call(secret(), OPTIONS, placed.provider_call_id, timeout=30)
    assert state.provider_call_id == placed.provider_call_id
    await telephony().hangup(secret(), OPTIONS, HangupRequest(placed.provider_call_id), timeout=30)
    for _ in range(20):
        state = await telephony().get_call(secret(), OPTIONS, placed.provider_call_id, timeout=30)
        if state.status.terminal:
            break
        await asyncio.sleep(1)
    assert state.status.terminal, state
    # Hanging up again, once it has ended, is not an error.
    await telephony().hangup(secret(), OPTIONS, HangupRequest(placed.provider_call_id), timeout=30)
