"""A call through the hub end to end, against the fake Vonage: PlaceCall, signed events
(replayed, forged, out of order) seen by GetCall and WatchCalls, and CallMedia: the
call's speech reaches the agent as linear16, the agent's audio reaches the call paced
in real time, marks come back when played, clear drops queued audio at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from callers.types import AudioContainer, AudioEncoding, AudioFormat, CallStatus
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import telephony_pb2 as pb
from integration_hub.v1 import telephony_pb2_grpc
from tests.fakes.vonage_server import FakeVonage
from tests.harness import HubUnderTest, free_port, running_hub, settings_for
from tests.telephony.conftest import Speech
from tests.test_metrics import delta, scrape

TO, FROM = "+14155552671", "+14155550199"
L16_16K = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 16000, 1)


@pytest.fixture
async def vonage() -> AsyncIterator[FakeVonage]:
    async with FakeVonage() as fake:
        yield fake


@pytest.fixture
async def hub(tmp_path: Path, vonage: FakeVonage) -> AsyncIterator[HubUnderTest]:
    port = free_port()
    settings = settings_for(
        tmp_path, database_url=None, http_port=port, public_url=f"http://127.0.0.1:{port}"
    )
    async with running_hub(settings) as running:
        await running.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="vonage", name="phone", secret=vonage.secret, options=vonage.options
            ),
            metadata=running.auth(running.tokens.admin),
        )
        yield running


def stub(hub: HubUnderTest) -> telephony_pb2_grpc.TelephonyServiceStub:
    return telephony_pb2_grpc.TelephonyServiceStub(hub.channel)


async def place(hub: HubUnderTest, **parameters: str) -> pb.Call:
    request = pb.PlaceCallRequest(
        credential="phone",
        to=TO,
        action=pb.CallAction(media_stream=pb.MediaStreamAction(parameters=parameters)),
        metadata={"order": "42"},
    )
    setattr(request, "from", FROM)
    response = await stub(hub).PlaceCall(request, metadata=hub.auth(hub.tokens.invoke_only))
    return response.call


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def test_place_and_events_through_the_hub(hub: HubUnderTest, vonage: FakeVonage) -> None:
    call = await place(hub, agent="support")
    assert call.provider == "vonage"
    assert call.provider_call_id in vonage.calls
    fake_call = vonage.calls[call.provider_call_id]
    assert fake_call.media_url.startswith(
        f"ws://127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/"
    )
    assert fake_call.stream_parameters["agent"] == "support"
    assert fake_call.status_callback_url.endswith("/events")
    auth = hub.auth(hub.tokens.invoke_only)
    before = await scrape(hub)
    watch = stub(hub).WatchCalls(pb.WatchCallsRequest(), metadata=auth)
    seen: list[pb.WatchCallsResponse] = []

    async def collect() -> None:
        async for item in watch:
            seen.append(item)

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.3)  # the watcher is reading from "now"
    assert await vonage.send_status(call.provider_call_id, CallStatus.RINGING) == 200
    assert await vonage.send_status(call.provider_call_id, CallStatus.IN_PROGRESS) == 200
    replay = len(vonage.callbacks) - 1
    assert await vonage.send_status(call.provider_call_id, CallStatus.COMPLETED, duration="42") == 200
    assert await vonage.send_status(call.provider_call_id, CallStatus.COMPLETED, replay_of=replay) == 200
    assert await vonage.send_status(call.provider_call_id, CallStatus.FAILED, forged=True) == 403
    assert await vonage.send_status(call.provider_call_id, CallStatus.FAILED, unsigned=True) == 403
    assert (
        await vonage.send_status(
            call.provider_call_id, CallStatus.RINGING, timestamp="2026-01-01T00:00:00.000Z"
        )
        == 200
    )
    deadline = time.monotonic() + 5
    while len(seen) < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    watch.cancel()
    collector.cancel()
    statuses = [(item.event.status, item.event.applied) for item in seen]
    assert statuses == [
        (pb.CALL_STATUS_RINGING, True),
        (pb.CALL_STATUS_IN_PROGRESS, True),
        (pb.CALL_STATUS_COMPLETED, True),
        (pb.CALL_STATUS_RINGING, False),  # late: recorded, not applied
    ]
    sequences = [item.event.sequence for item in seen]
    assert sequences == sorted(sequences)
    got = await stub(hub).GetCall(pb.GetCallRequest(call_id=call.id), metadata=auth)
    assert got.call.status == pb.CALL_STATUS_COMPLETED
    assert got.call.duration.seconds == 42
    # Resuming after the first event misses nothing.
    resumed = stub(hub).WatchCalls(pb.WatchCallsRequest(after_sequence=sequences[0]), metadata=auth)
    again = [await anext(aiter(resumed)) for _ in range(3)]
    resumed.cancel()
    assert [item.event.sequence for item in again] == sequences[1:]
    # Another tenant sees none of it.
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await stub(hub).GetCall(
            pb.GetCallRequest(call_id=call.id), metadata=hub.auth(hub.tokens.other_tenant)
        )
    assert other.value.code() == grpc.StatusCode.NOT_FOUND
    assert vonage.signature_secret not in hub.logs.getvalue()
    after = await scrape(hub)
    events = "hub_call_events_total"
    assert delta(after, before, events, provider="vonage", outcome="applied") == 3
    assert delta(after, before, events, provider="vonage", outcome="duplicate") == 1
    assert delta(after, before, events, provider="vonage", outcome="late") == 1
    assert delta(after, before, "hub_webhook_rejections_total", endpoint="events", status="403") == 2


async def test_call_media_round_trip(hub: HubUnderTest, vonage: FakeVonage, speech: Speech) -> None:
    call = await place(hub, agent="support")
    auth = hub.auth(hub.tokens.invoke_only)
    outgoing: asyncio.Queue[pb.CallMediaRequest | None] = asyncio.Queue()
    config = pb.CallMediaRequest(config=pb.CallMediaConfig(call_id=call.id, sample_rate_hz=16000))
    await outgoing.put(config)

    async def requests() -> AsyncIterator[pb.CallMediaRequest]:
        while (item := await outgoing.get()) is not None:
            yield item

    media = stub(hub).CallMedia(requests(), metadata=auth)
    spoken = pcm16(speech.reference_at(16000))
    reply = pcm16(0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000))  # 1 s
    received = bytearray()
    marks: list[tuple[str, float]] = []
    started: list[pb.MediaStarted] = []
    stop: list[str] = []

    async def agent() -> None:
        async for message in media:
            which = message.WhichOneof("message")
            if which == "start":
                started.append(message.start)
                await outgoing.put(pb.CallMediaRequest(audio=reply))
                await outgoing.put(pb.CallMediaRequest(mark="reply-done"))
            elif which == "audio":
                received.extend(message.audio)
            elif which == "mark":
                marks.append((message.mark, time.monotonic()))
            elif which == "stop":
                stop.append(message.stop.reason)
                return

    agent_task = asyncio.create_task(agent())
    await asyncio.sleep(0.2)  # attached and waiting for the call to be answered
    seconds = len(spoken) / 32000
    result = await vonage.answer_media(
        call.provider_call_id, spoken, audio_format=L16_16K, receive_seconds=seconds + 0.5
    )
    await asyncio.wait_for(agent_task, 5)
    await outgoing.put(None)
    assert started[0].call_id == call.id
    assert started[0].parameters["agent"] == "support"
    assert started[0].parameters["order"] == "42"  # metadata rides along
    # The call's speech reached the agent as linear16 16 kHz: same length (padding aside), not silence.
    assert abs(len(received) - len(spoken)) <= 640 * 2
    assert np.abs(np.frombuffer(bytes(received), "<i2")).mean() > 100
    # The agent's second of audio arrived as 50 frames of 20 ms, paced in real time.
    assert result.errors == []
    frames = result.frames[:50]
    assert len(result.frames) == 50
    assert all(len(f.data) == 640 for f in frames)
    span = frames[-1].at - frames[0].at
    assert 0.9 <= span <= 1.1, span
    assert [name for name, _ in marks] == ["reply-done"]
    samples = await scrape(hub)
    assert samples[("hub_media_frames_total", (("direction", "out"), ("fate", "sent")))] >= 50
    assert marks[0][1] >= frames[-1].at
    assert stop == ["provider"]


async def test_clear_drops_queued_audio_within_a_frame(hub: HubUnderTest, vonage: FakeVonage) -> None:
    call = await place(hub)
    outgoing: asyncio.Queue[pb.CallMediaRequest | None] = asyncio.Queue()
    await outgoing.put(pb.CallMediaRequest(config=pb.CallMediaConfig(call_id=call.id, sample_rate_hz=8000)))

    async def requests() -> AsyncIterator[pb.CallMediaRequest]:
        while (item := await outgoing.get()) is not None:
            yield item

    media = stub(hub).CallMedia(requests(), metadata=hub.auth(hub.tokens.invoke_only))
    cleared_at: list[float] = []
    marks: list[str] = []

    async def agent() -> None:
        async for message in media:
            which = message.WhichOneof("message")
            if which == "start":
                three_seconds = pcm16(0.3 * np.sin(2 * np.pi * 300 * np.arange(24000) / 8000))
                await outgoing.put(pb.CallMediaRequest(audio=three_seconds))
                await outgoing.put(pb.CallMediaRequest(mark="never-played"))
                await asyncio.sleep(0.5)
                cleared_at.append(time.monotonic())
                await outgoing.put(pb.CallMediaRequest(clear=pb.ClearAudio()))
            elif which == "mark":
                marks.append(message.mark)
            elif which == "stop":
                return

    agent_task = asyncio.create_task(agent())
    await asyncio.sleep(0.2)
    result = await vonage.answer_media(call.provider_call_id, b"", audio_format=L16_16K, receive_seconds=1.5)
    await asyncio.wait_for(agent_task, 5)
    await outgoing.put(None)
    assert result.clears, "the provider was told to clear its buffer"
    after = [f for f in result.frames if f.at > cleared_at[0] + 0.03]
    assert after == [], f"{len(after)} frames after the clear"
    assert 20 <= len(result.frames) <= 30  # about 0.5 s of 20 ms frames went out first
    assert marks == ["never-played"]  # a dropped mark is reported at once


async def test_media_refuses_strangers(hub: HubUnderTest) -> None:
    call = await place(hub)
    url = f"ws://127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/wrong-token/media"
    with pytest.raises(Exception, match="403"):
        await hub.http.ws_connect(url)

    async def config_only(call_id: str, rate: int = 16000) -> AsyncIterator[pb.CallMediaRequest]:
        yield pb.CallMediaRequest(config=pb.CallMediaConfig(call_id=call_id, sample_rate_hz=rate))

    for token, call_id, rate, code in [
        (hub.tokens.other_tenant, call.id, 16000, grpc.StatusCode.NOT_FOUND),
        (hub.tokens.invoke_only, call.id, 11025, grpc.StatusCode.INVALID_ARGUMENT),
        (hub.tokens.invoke_only, "nope", 16000, grpc.StatusCode.NOT_FOUND),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub(hub).CallMedia(config_only(call_id, rate), metadata=hub.auth(token)):
                pass
        assert caught.value.code() == code
