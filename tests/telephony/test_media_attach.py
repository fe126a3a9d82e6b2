"""A CallMedia stream that attaches before its call is answered, through the hub against the
fake Twilio: it waits on a doorbell in the media directory (no polling), and is let in the
moment the provider's websocket opens; one whose call ends first gets its stop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callers.types import AudioContainer, AudioEncoding, AudioFormat, CallStatus
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import telephony_pb2 as pb
from tests.fakes.twilio_server import FakeTwilio
from tests.harness import HubUnderTest, free_port, running_hub, settings_for
from tests.telephony.hub_calls import Agent, stub, tone, wait_until

pytestmark = pytest.mark.timeout(60)
TO, FROM = "+14155552671", "+14155550100"
L16_8K = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 8000, 1)


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(retry_after="0") as fake:
        yield fake


@pytest.fixture
async def hub(tmp_path: Path, twilio: FakeTwilio) -> AsyncIterator[HubUnderTest]:
    port = free_port()
    settings = settings_for(
        tmp_path, database_url=None, http_port=port, public_url=f"http://127.0.0.1:{port}"
    )
    async with running_hub(settings) as running:
        await running.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="twilio", name="phone", secret=twilio.secret, options=twilio.options
            ),
            metadata=running.auth(running.tokens.admin),
        )
        yield running


async def place(hub: HubUnderTest) -> pb.Call:
    request = pb.PlaceCallRequest(
        credential="phone", to=TO, action=pb.CallAction(media_stream=pb.MediaStreamAction())
    )
    setattr(request, "from", FROM)
    response = await stub(hub.channel).PlaceCall(request, metadata=hub.auth(hub.tokens.invoke_only))
    return response.call


def doorbells(hub: HubUnderTest, call_id: str) -> list[str]:
    media_dir = hub.hub.own_media_dir
    assert media_dir is not None
    return [name for name in os.listdir(media_dir) if name.startswith(f"{call_id}.wait-")]


async def test_a_waiting_agent_is_let_in_as_the_provider_end_opens(
    hub: HubUnderTest, twilio: FakeTwilio
) -> None:
    call = await place(hub)
    agent = Agent(stub(hub.channel), hub.auth(hub.tokens.invoke_only), call.id, 8000)
    assert await wait_until(lambda: bool(doorbells(hub, call.id)))
    await asyncio.sleep(0.3)  # waiting: on its doorbell, one of them
    assert len(doorbells(hub, call.id)) == 1
    result = await twilio.answer_media(
        call.provider_call_id, tone(500, 0.5, 8000), audio_format=L16_8K, receive_seconds=0.8
    )
    await agent.finish()
    assert agent.started, "the agent got the call's start"
    # In at once (rung, not found by a poll): well within the frames' 20 ms pace.
    assert agent.started_at - result.connected_at < 0.25, agent.started_at - result.connected_at
    assert len(agent.audio) >= 0.4 * 16000, "the call's audio reached the agent"
    assert doorbells(hub, call.id) == [], "the doorbell is gone with its wait"


async def test_a_call_that_ends_before_it_is_answered_stops_the_waiting_agent(
    hub: HubUnderTest, twilio: FakeTwilio
) -> None:
    call = await place(hub)
    agent = Agent(stub(hub.channel), hub.auth(hub.tokens.invoke_only), call.id, 8000)
    assert await wait_until(lambda: bool(doorbells(hub, call.id)))
    assert await twilio.send_status(call.provider_call_id, CallStatus.NO_ANSWER) == 200
    await agent.finish(timeout=5)
    assert agent.stops == ["hangup"]
    assert doorbells(hub, call.id) == []
