"""A call through the hub end to end, against the fake Twilio: PlaceCall (a media stream,
say, machine detection) and what Twilio received; status callbacks signed as Twilio signs
them (every status, replayed, forged, unsigned, out of order) seen by GetCall, ListCalls and
WatchCalls; HangupCall; every class of error Twilio answers, and a place whose outcome is
unknown never retried; CallMedia: the call's mulaw 8 kHz reaches the agent as linear16
16 kHz, the agent's audio reaches the call as 160-byte mulaw frames paced at 20 ms, marks
come back once played, clear drops what is queued."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import grpc
import pytest
from google.protobuf import duration_pb2

from callers import audio as hub_audio
from callers.types import AudioContainer, AudioEncoding, AudioFormat, CallStatus
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import telephony_pb2 as pb
from tests.fakes.twilio_server import FakeTwilio, twilio_signature
from tests.harness import HubUnderTest, free_port, running_hub, settings_for
from tests.telephony.conftest import Speech
from tests.telephony.hub_calls import (
    RETRYING_POLICY,
    Agent,
    check_paced,
    dominant_hz,
    dominant_per_window,
    error_info,
    pcm16,
    speech_like,
    stub,
    tone,
    url_parts,
    wait_until,
)

TO, FROM = "+14155552671", "+14155550100"  # FROM is a number the fake account owns
L16_8K = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 8000, 1)
MULAW_8K = AudioFormat(AudioEncoding.MULAW, AudioContainer.RAW, 8000, 1)


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(retry_after="0") as fake:
        yield fake


@pytest.fixture
async def hub(tmp_path: Path, twilio: FakeTwilio) -> AsyncIterator[HubUnderTest]:
    port = free_port()
    settings = settings_for(
        tmp_path,
        database_url=None,
        http_port=port,
        public_url=f"http://127.0.0.1:{port}",
        policy=RETRYING_POLICY,
    )
    async with running_hub(settings) as running:
        await running.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="twilio", name="phone", secret=twilio.secret, options=twilio.options
            ),
            metadata=running.auth(running.tokens.admin),
        )
        yield running


def invoke(hub: HubUnderTest) -> list[tuple[str, str]]:
    return hub.auth(hub.tokens.invoke_only)


def media_request(**parameters: str) -> pb.PlaceCallRequest:
    request = pb.PlaceCallRequest(
        credential="phone",
        to=TO,
        action=pb.CallAction(media_stream=pb.MediaStreamAction(parameters=parameters)),
        metadata={"order": "42"},
    )
    setattr(request, "from", FROM)
    return request


async def place(hub: HubUnderTest, request: pb.PlaceCallRequest | None = None) -> pb.Call:
    response = await stub(hub.channel).PlaceCall(
        request or media_request(agent="support"), metadata=invoke(hub)
    )
    return response.call


async def get(hub: HubUnderTest, call_id: str) -> pb.Call:
    return (await stub(hub.channel).GetCall(pb.GetCallRequest(call_id=call_id), metadata=invoke(hub))).call


def creates(twilio: FakeTwilio) -> list[dict[str, object]]:
    return [r for r in twilio.requests if r["method"] == "POST" and str(r["path"]).endswith("/Calls.json")]


# --- placing --------------------------------------------------------------------------


async def test_a_media_stream_call_hands_twilio_the_calls_own_urls(
    hub: HubUnderTest, twilio: FakeTwilio
) -> None:
    request = media_request(agent="support")
    request.ring_timeout.CopyFrom(duration_pb2.Duration(seconds=30))
    request.time_limit.CopyFrom(duration_pb2.Duration(seconds=600))
    request.idempotency_key = "order-42-call"
    call = await place(hub, request)
    assert (call.provider, call.credential_name, call.to, getattr(call, "from")) == (
        "twilio",
        "phone",
        TO,
        FROM,
    )
    assert call.status == pb.CALL_STATUS_QUEUED
    assert dict(call.metadata) == {"order": "42"}
    fake_call = twilio.calls[call.provider_call_id]
    assert (fake_call.to, fake_call.from_) == (TO, FROM)
    # The TwiML connects the call's own media URL (its token in the path, no query: Twilio
    # takes none) and the events go to the same call's URL, with the same token.
    base = f"127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/"
    assert fake_call.stream_url.startswith("ws://" + base)
    assert fake_call.status_callback_url.startswith("http://" + base)
    media_id, media_token, leaf = url_parts(fake_call.stream_url)
    events_id, events_token, events_leaf = url_parts(fake_call.status_callback_url)
    assert (media_id, leaf, events_id, events_leaf) == (call.id, "media", call.id, "events")
    assert media_token == events_token
    assert len(media_token) >= 40
    assert "?" not in fake_call.stream_url
    # The action's parameters and the call's metadata ride as <Parameter>s of the <Stream>.
    assert fake_call.stream_parameters == {"agent": "support", "order": "42"}
    assert fake_call.status_callback_events == ("initiated", "ringing", "answered", "completed")
    assert fake_call.status_callback_method == "POST"
    assert (fake_call.timeout, fake_call.time_limit, fake_call.machine_detection) == (30, 600, None)
    assert fake_call.say is None
    # The token is never shown to the platform's clients.
    assert media_token not in str(call)
    # A retried PlaceCall with the same key answers the same call: Twilio is not asked again.
    again = await place(hub, request)
    assert again.id == call.id
    assert len(creates(twilio)) == 1
    listed = await stub(hub.channel).ListCalls(pb.ListCallsRequest(), metadata=invoke(hub))
    assert [c.id for c in listed.calls] == [call.id]
    assert twilio.auth_token not in hub.logs.getvalue()


async def test_a_say_call_runs_twilios_say_and_hangs_up(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    request = pb.PlaceCallRequest(
        credential="phone",
        to=TO,
        action=pb.CallAction(
            say=pb.SayAction(text="Your order has shipped.", voice="Polly.Joanna", language="en-US")
        ),
        metadata={"order": "42"},
    )
    setattr(request, "from", FROM)
    call = await place(hub, request)
    fake_call = twilio.calls[call.provider_call_id]
    assert fake_call.say == {"text": "Your order has shipped.", "voice": "Polly.Joanna", "language": "en-US"}
    assert fake_call.twiml is not None
    assert "<Hangup" in fake_call.twiml
    assert fake_call.stream_url == ""
    # Twilio has nowhere to carry metadata for a say call: it stays with the hub.
    assert dict((await get(hub, call.id)).metadata) == {"order": "42"}
    # A say call has no media stream: neither end can attach.
    _, token, _ = url_parts(fake_call.status_callback_url)
    media = f"ws://127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/{token}/media"
    with pytest.raises(Exception, match="404"):
        await hub.http.ws_connect(media)
    agent = Agent(stub(hub.channel), invoke(hub), call.id, 16000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.finish()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "media_stream" in (caught.value.details() or "")


async def test_machine_detection_reports_who_answered(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    request = media_request()
    request.machine_detection = pb.MACHINE_DETECTION_DETECT
    call = await place(hub, request)
    fake_call = twilio.calls[call.provider_call_id]
    assert (fake_call.machine_detection, fake_call.async_amd) == ("Enable", True)
    assert fake_call.async_amd_callback == fake_call.status_callback_url
    assert await twilio.send_status(call.provider_call_id, CallStatus.IN_PROGRESS) == 200
    assert await twilio.send_amd(call.provider_call_id, "machine_end_beep", forged=True) == 403
    assert await twilio.send_amd(call.provider_call_id, "machine_end_beep") == 200
    got = await get(hub, call.id)
    assert (got.status, got.answered_by) == (pb.CALL_STATUS_IN_PROGRESS, "machine")


# --- events ---------------------------------------------------------------------------


async def test_status_progression_through_signed_callbacks(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    call = await place(hub)
    sid = call.provider_call_id
    watch = stub(hub.channel).WatchCalls(pb.WatchCallsRequest(), metadata=invoke(hub))
    seen: list[pb.WatchCallsResponse] = []

    async def collect() -> None:
        async for item in watch:
            seen.append(item)

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.3)  # the watcher reads from "now"
    assert await twilio.send_status(sid, CallStatus.QUEUED) == 200  # "initiated"
    assert await twilio.send_status(sid, CallStatus.RINGING) == 200
    assert await twilio.send_status(sid, CallStatus.IN_PROGRESS) == 200
    answered = len(twilio.callbacks) - 1
    assert (await get(hub, call.id)).status == pb.CALL_STATUS_IN_PROGRESS
    assert await twilio.send_status(sid, CallStatus.COMPLETED, CallDuration="42") == 200
    completed = len(twilio.callbacks) - 1
    # Replayed byte for byte (Twilio retries; anyone can resend a captured one): applied once.
    assert await twilio.send_status(sid, CallStatus.COMPLETED, replay_of=completed) == 200
    assert await twilio.send_status(sid, CallStatus.IN_PROGRESS, replay_of=answered) == 200
    # Not signed with the account's Auth Token: refused, nothing recorded.
    assert await twilio.send_status(sid, CallStatus.FAILED, forged=True) == 403
    assert await twilio.send_status(sid, CallStatus.FAILED, unsigned=True) == 403
    # Late (Twilio does not promise order): recorded, the call does not move back.
    assert await twilio.send_status(sid, CallStatus.RINGING) == 200
    assert await wait_until(lambda: len(seen) >= 5)
    await asyncio.sleep(0.3)  # nothing more arrives
    watch.cancel()
    collector.cancel()
    events = [(i.event.status, i.event.provider_status, i.event.applied) for i in seen]
    assert [e[:2] for e in events] == [
        (pb.CALL_STATUS_QUEUED, "initiated"),
        (pb.CALL_STATUS_RINGING, "ringing"),
        (pb.CALL_STATUS_IN_PROGRESS, "in-progress"),
        (pb.CALL_STATUS_COMPLETED, "completed"),
        (pb.CALL_STATUS_RINGING, "ringing"),
    ]
    # ("initiated" is QUEUED, where the call already is: it moves nothing, applied or not.)
    assert [e[2] for e in events[1:]] == [True, True, True, False]
    assert {i.event.call_id for i in seen} == {call.id}
    assert all(i.event.HasField("occurred_at") and i.event.HasField("received_at") for i in seen)
    assert seen[3].event.duration.seconds == 42
    assert seen[3].call.status == pb.CALL_STATUS_COMPLETED
    assert seen[4].call.status == pb.CALL_STATUS_COMPLETED  # the call after the late event
    sequences = [i.event.sequence for i in seen]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 5
    got = await get(hub, call.id)
    assert (got.status, got.provider_status, got.duration.seconds) == (
        pb.CALL_STATUS_COMPLETED,
        "completed",
        42,
    )
    # Resuming after the first event misses nothing.
    resumed = stub(hub.channel).WatchCalls(
        pb.WatchCallsRequest(after_sequence=sequences[0]), metadata=invoke(hub)
    )
    again = [await asyncio.wait_for(anext(aiter(resumed)), 5) for _ in range(4)]
    resumed.cancel()
    assert [i.event.sequence for i in again] == sequences[1:]
    # Another tenant sees none of it.
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await stub(hub.channel).GetCall(
            pb.GetCallRequest(call_id=call.id), metadata=hub.auth(hub.tokens.other_tenant)
        )
    assert other.value.code() == grpc.StatusCode.NOT_FOUND
    logs = hub.logs.getvalue()
    assert "rejected a twilio webhook" in logs
    assert twilio.auth_token not in logs


async def test_every_terminal_status_is_normalized(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    outcomes = {
        CallStatus.BUSY: (pb.CALL_STATUS_BUSY, {}, "SIP 486"),
        CallStatus.NO_ANSWER: (pb.CALL_STATUS_NO_ANSWER, {}, "SIP 487"),
        CallStatus.FAILED: (
            pb.CALL_STATUS_FAILED,
            {"ErrorCode": "32009", "ErrorMessage": "Your TwiML tried to Dial a number that is not allowed"},
            "Your TwiML tried to Dial a number that is not allowed (error 32009)",
        ),
        CallStatus.CANCELED: (pb.CALL_STATUS_CANCELED, {}, ""),
        CallStatus.COMPLETED: (pb.CALL_STATUS_COMPLETED, {"CallDuration": "7"}, ""),
    }
    placed: dict[CallStatus, pb.Call] = {}
    for status, (_, extra, _) in outcomes.items():
        call = await place(hub)
        placed[status] = call
        assert await twilio.send_status(call.provider_call_id, CallStatus.RINGING) == 200
        if status is CallStatus.COMPLETED:
            assert await twilio.send_status(call.provider_call_id, CallStatus.IN_PROGRESS) == 200
        assert await twilio.send_status(call.provider_call_id, status, **extra) == 200
    for status, (expected, _, error) in outcomes.items():
        got = await get(hub, placed[status].id)
        assert (got.status, got.provider_status, got.error) == (expected, str(status), error), status
        listed = await stub(hub.channel).ListCalls(pb.ListCallsRequest(status=expected), metadata=invoke(hub))
        assert [c.id for c in listed.calls] == [placed[status].id]
    assert (await get(hub, placed[CallStatus.COMPLETED].id)).duration.seconds == 7
    # An ended call: hanging up answers it as it is, without asking Twilio; its media
    # websocket is gone; an agent attaching is told it stopped.
    before = len(twilio.requests)
    hung = await stub(hub.channel).HangupCall(
        pb.HangupCallRequest(call_id=placed[CallStatus.BUSY].id), metadata=invoke(hub)
    )
    assert hung.call.status == pb.CALL_STATUS_BUSY
    assert len(twilio.requests) == before
    fake_call = twilio.calls[placed[CallStatus.BUSY].provider_call_id]
    with pytest.raises(Exception, match="410"):
        await hub.http.ws_connect(fake_call.stream_url)
    agent = Agent(stub(hub.channel), invoke(hub), placed[CallStatus.BUSY].id, 16000)
    await agent.finish(timeout=3)
    assert agent.stops == ["hangup"]


async def test_callbacks_that_do_not_belong_to_the_call(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    first, second = await place(hub), await place(hub)
    # Signed by Twilio, for another call than the URL's: refused.
    status = await twilio.send_status(
        first.provider_call_id, CallStatus.RINGING, CallSid=second.provider_call_id
    )
    assert status == 400
    # The first call's URL with the second call's token: the token is checked before the
    # signature, and one answer says "unknown call or wrong token".
    _, token, _ = url_parts(twilio.calls[second.provider_call_id].status_callback_url)
    url = f"{hub.http_base}/telephony/v1/calls/{first.id}/{token}/events"
    fields = [("CallSid", first.provider_call_id), ("CallStatus", "ringing"), ("SequenceNumber", "9")]
    headers = {
        "X-Twilio-Signature": twilio_signature(twilio.auth_token, url, fields),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with hub.http.post(url, data=urlencode(fields), headers=headers) as response:
        assert response.status == 403
        assert "unknown call or wrong token" in await response.text()
    assert (await get(hub, first.id)).status == pb.CALL_STATUS_QUEUED
    assert (await get(hub, second.id)).status == pb.CALL_STATUS_QUEUED


# --- hanging up -----------------------------------------------------------------------


async def test_hangup_of_a_live_call_ends_it_at_twilio(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    call = await place(hub)
    sid = call.provider_call_id
    assert await twilio.send_status(sid, CallStatus.RINGING) == 200
    assert await twilio.send_status(sid, CallStatus.IN_PROGRESS) == 200
    hung = await stub(hub.channel).HangupCall(pb.HangupCallRequest(call_id=call.id), metadata=invoke(hub))
    assert sid in twilio.hung_up
    update = twilio.requests[-1]
    assert (update["method"], str(update["path"]).endswith(f"/Calls/{sid}.json")) == ("POST", True)
    assert ("Status", "completed") in update["form"]  # type: ignore[operator]
    # Until Twilio's event says how it ended, the call is as it was.
    assert hung.call.status == pb.CALL_STATUS_IN_PROGRESS
    assert await twilio.send_status(sid, CallStatus.COMPLETED) == 200
    assert (await get(hub, call.id)).status == pb.CALL_STATUS_COMPLETED
    before = len(twilio.requests)
    again = await stub(hub.channel).HangupCall(pb.HangupCallRequest(call_id=call.id), metadata=invoke(hub))
    assert again.call.status == pb.CALL_STATUS_COMPLETED
    assert len(twilio.requests) == before
    # A call that has not been answered yet is hung up too (Twilio cancels it).
    queued = await place(hub)
    await stub(hub.channel).HangupCall(pb.HangupCallRequest(call_id=queued.id), metadata=invoke(hub))
    assert queued.provider_call_id in twilio.hung_up
    assert twilio.calls[queued.provider_call_id].status == "canceled"


async def test_hangup_errors_are_twilios(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    call = await place(hub)
    twilio.fail_next("unauthorized")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(hub.channel).HangupCall(pb.HangupCallRequest(call_id=call.id), metadata=invoke(hub))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "PROVIDER_AUTH_FAILED"
    assert call.provider_call_id not in twilio.hung_up
    assert (await get(hub, call.id)).status == pb.CALL_STATUS_QUEUED


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "count", "code", "reason", "attempts", "words"),
    [
        ("bad_number", 1, grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_INVALID_REQUEST", 1, "21211"),
        ("unauthorized", 1, grpc.StatusCode.UNAUTHENTICATED, "PROVIDER_AUTH_FAILED", 1, "20003"),
        # The provider said it did not take the call: retried (3 attempts), then its error.
        ("rate_limited", 3, grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED", 3, "20429"),
        ("down", 3, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE", 3, "20503"),
    ],
)
async def test_twilio_refusals_fail_the_call_with_the_reason(
    hub: HubUnderTest,
    twilio: FakeTwilio,
    kind: str,
    count: int,
    code: grpc.StatusCode,
    reason: str,
    attempts: int,
    words: str,
) -> None:
    twilio.fail_next(kind, count)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await place(hub)
    assert caught.value.code() == code
    assert error_info(caught.value).reason == reason
    assert words in (caught.value.details() or "")
    assert len(creates(twilio)) == attempts
    assert twilio.auth_token not in (caught.value.details() or "")
    # The call's row says it failed, and why.
    (row,) = (await stub(hub.channel).ListCalls(pb.ListCallsRequest(), metadata=invoke(hub))).calls
    assert (row.status, words in row.error) == (pb.CALL_STATUS_FAILED, True), (row.status, row.error)
    assert row.provider_call_id == ""


async def test_a_refusal_then_an_answer_is_one_call(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    twilio.fail_next("rate_limited")  # a 429 says Twilio did not take the call: safe to retry
    call = await place(hub)
    assert len(creates(twilio)) == 2
    assert list(twilio.calls) == [call.provider_call_id]
    assert call.status == pb.CALL_STATUS_QUEUED


@pytest.mark.parametrize("failure", ["reset", "timeout"])
async def test_an_unknown_outcome_is_never_retried(
    hub: HubUnderTest, twilio: FakeTwilio, failure: str
) -> None:
    request = media_request()
    if failure == "reset":
        twilio.fail_next("reset")
    else:
        twilio.delay = 1.5
        request.timeout.CopyFrom(duration_pb2.Duration(nanos=400_000_000))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await place(hub, request)
    twilio.delay = 0
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "CALL_OUTCOME_UNKNOWN"
    assert "not retried" in (caught.value.details() or "")
    # Twilio may have placed it: asked once, never again (a retry could ring twice).
    assert len(creates(twilio)) == 1
    (row,) = (await stub(hub.channel).ListCalls(pb.ListCallsRequest(), metadata=invoke(hub))).calls
    assert (row.status, row.provider_call_id, row.error) == (pb.CALL_STATUS_QUEUED, "", "")
    with pytest.raises(grpc.aio.AioRpcError) as hangup:
        await stub(hub.channel).HangupCall(pb.HangupCallRequest(call_id=row.id), metadata=invoke(hub))
    assert hangup.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(hangup.value).reason == "CALL_NOT_PLACED"
    assert len(creates(twilio)) == 1


# --- media ----------------------------------------------------------------------------


@pytest.mark.parametrize("handshake", ["forged", "missing"])
async def test_a_media_websocket_not_signed_by_twilio_is_refused_before_the_upgrade(
    hub: HubUnderTest, twilio: FakeTwilio, handshake: str
) -> None:
    call = await place(hub)
    stream_url = twilio.calls[call.provider_call_id].stream_url
    # The right URL token is not enough: Twilio signs its handshake, and this one is not
    # (a wrong Auth Token, or no X-Twilio-Signature at all).
    headers = twilio.stream_headers(call.provider_call_id, forged=True) if handshake == "forged" else {}
    async with hub.http.get(
        stream_url.replace("ws://", "http://", 1),
        headers={
            **headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as refused:
        assert refused.status == 403
        reason = await refused.text()
    assert "signature check failed" in reason
    assert ("no X-Twilio-Signature" in reason) == (handshake == "missing")
    assert twilio.auth_token not in hub.logs.getvalue()
    # Signed over another URL (a different call's token in the path): refused too.
    other = await place(hub)
    elsewhere = {
        "X-Twilio-Signature": twilio_signature(
            twilio.auth_token, twilio.calls[other.provider_call_id].stream_url, []
        )
    }
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await hub.http.ws_connect(stream_url, headers=elsewhere)
    assert caught.value.status == 403
    # Signed as Twilio signs it, over the wss:// (here ws://) URL and no parameters: accepted.
    agent = Agent(stub(hub.channel), invoke(hub), call.id, 8000)
    result = await twilio.answer_media(
        call.provider_call_id, tone(300, 0.4, 8000), audio_format=L16_8K, receive_seconds=0.5
    )
    await agent.finish()
    assert result.stream_sid
    assert agent.started
    assert agent.stops == ["hangup"]


async def test_call_media_round_trip(hub: HubUnderTest, twilio: FakeTwilio, speech: Speech) -> None:
    call = await place(hub)
    reply = tone(440, 1.0, 16000)

    async def answer(agent: Agent) -> None:
        agent.send(audio=reply)
        agent.send(mark="reply-done")

    agent = Agent(stub(hub.channel), invoke(hub), call.id, 16000, on_start=answer)
    await asyncio.sleep(0.2)  # attached, waiting for the call to be answered
    spoken = pcm16(speech.reference_at(8000)[: 3 * 8000])  # 3 s of the sentence
    seconds = len(spoken) / 16000
    result = await twilio.answer_media(
        call.provider_call_id, spoken, audio_format=L16_8K, receive_seconds=seconds + 0.5, dtmf="12"
    )
    await agent.finish()
    start = agent.started[0]
    assert (start.call_id, start.provider_call_id) == (call.id, call.provider_call_id)
    assert dict(start.parameters) == {"agent": "support", "order": "42"}
    # The call's mulaw 8 kHz reached the agent as linear16 16 kHz: twice the samples (less
    # the resampler's delay, see test_the_calls_last_audio_reaches_the_agent, and a frame
    # or two before the agent's end attached), and speech.
    assert result.sent_frames == -(-len(spoken) // 2 // 160)
    assert 2 * len(spoken) - 6400 <= len(agent.audio) <= 2 * len(spoken), (len(agent.audio), len(spoken))
    assert speech_like(bytes(agent.audio), 16000)
    assert agent.dtmf == ["1", "2"]
    # The agent's second at 16 kHz reached Twilio as mulaw frames of 160 bytes (20 ms),
    # paced in real time, and still the 440 Hz it was (all of it before the mark: see
    # test_an_utterance_plays_whole_before_its_mark).
    assert result.errors == []
    assert {m["streamSid"] for m in result.messages} == {result.stream_sid}
    assert 46 <= len(result.frames) <= 50
    assert all(len(f.data) == 160 for f in result.frames[:-1])
    check_paced([f.at for f in result.frames], 0.02)
    played = hub_audio.convert(result.audio, MULAW_8K, L16_8K)
    assert abs(dominant_hz(played, 8000) - 440) < 10
    # The mark went to Twilio behind the audio, and came back to the agent once played.
    assert [name for name, _ in result.marks] == ["reply-done"]
    assert result.marks[0][1] >= result.frames[-1].at
    assert [name for name, _ in agent.marks] == ["reply-done"]
    assert agent.marks[0][1] >= result.frames[-1].at
    assert agent.stops == ["hangup"]  # Twilio's stop message: the call ended


async def test_clear_drops_queued_audio_within_a_frame(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    call = await place(hub)

    async def talk_then_barge_in(agent: Agent) -> None:
        agent.send(audio=tone(300, 3.0, 8000))
        agent.send(mark="never-played")
        await asyncio.sleep(0.5)
        agent.send(clear=pb.ClearAudio())

    agent = Agent(stub(hub.channel), invoke(hub), call.id, 8000, on_start=talk_then_barge_in)
    await asyncio.sleep(0.2)
    result = await twilio.answer_media(call.provider_call_id, b"", audio_format=MULAW_8K, receive_seconds=1.5)
    await agent.finish()
    assert result.clears, "Twilio was told to clear its buffer"
    cleared = result.clears[0]
    # At most the frame already on its way when the clear came; nothing of the 2.5 s left.
    late = [f for f in result.frames if f.at > cleared]
    assert len(late) <= 1, f"{len(late)} frames after the clear"
    assert 10 <= len(result.frames) <= (cleared - result.frames[0].at) / 0.02 + 2
    assert [name for name, _ in agent.marks] == ["never-played"]  # dropped: reported at once, once
    assert result.marks == []  # it never reached Twilio


# The three tests below fail today: the hub never flushes or resets its StreamConverters
# (integration_hub/telephony/media_provider.py), whose soxr resampler holds the last tens
# of milliseconds of what it was fed. They apply wherever the agent's rate is not the
# provider's (Twilio always: mulaw 8 kHz; Exotel and Vonage at another rate).


async def test_an_utterance_plays_whole_before_its_mark(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    """A mark says "the audio before me has played": all of it, the resampler's tail too.

    Fails today: the agent's linear16 16 kHz goes through a StreamConverter to mulaw 8 kHz
    that holds its last ~66 ms (530 bytes), which the hub does not flush at the mark: 46
    frames and a short one reach Twilio, the mark is reported, and the held tail goes out
    only at the start of the agent's next utterance."""
    call = await place(hub)

    async def answer(agent: Agent) -> None:
        agent.send(audio=tone(440, 1.0, 16000))
        agent.send(mark="reply-done")

    agent = Agent(stub(hub.channel), invoke(hub), call.id, 16000, on_start=answer)
    await asyncio.sleep(0.2)
    result = await twilio.answer_media(call.provider_call_id, b"", audio_format=MULAW_8K, receive_seconds=1.6)
    await agent.finish()
    assert [name for name, _ in agent.marks] == ["reply-done"]
    before_mark = [f for f in result.frames if f.at <= result.marks[0][1]]
    assert sum(len(f.data) for f in before_mark) == 8000, "1 s of mulaw 8 kHz before the mark"
    assert [len(f.data) for f in before_mark] == [160] * 50


async def test_clear_also_drops_the_audio_held_in_the_converter(
    hub: HubUnderTest, twilio: FakeTwilio
) -> None:
    """After a clear, the next utterance starts with its own audio.

    Fails today: clear empties the hub's frame queue but not the outbound StreamConverter,
    whose held tail of the cleared utterance (~66 ms) is played first when the agent speaks
    again."""
    call = await place(hub)

    async def on_start(agent: Agent) -> None:
        agent.send(audio=tone(300, 3.0, 16000))
        agent.send(mark="first")
        await asyncio.sleep(0.4)
        agent.send(clear=pb.ClearAudio())

    agent = Agent(stub(hub.channel), invoke(hub), call.id, 16000, on_start=on_start)
    await asyncio.sleep(0.2)
    answering = asyncio.create_task(
        twilio.answer_media(call.provider_call_id, b"", audio_format=MULAW_8K, receive_seconds=2.0)
    )
    # The dropped mark comes back when the hub has cleared: then the agent speaks again.
    assert await wait_until(lambda: bool(agent.marks))
    agent.send(audio=tone(1000, 0.5, 16000))
    agent.send(mark="second")
    result = await answering
    await agent.finish()
    assert [name for name, _ in agent.marks] == ["first", "second"]
    after = [f for f in result.frames if f.at > result.clears[0]]
    assert len(after) >= 20, "the second utterance was played"
    # after[0] may be the frame that was on its way when the clear came; then 1000 Hz only.
    heard = [round(dominant_hz(hub_audio.convert(f.data, MULAW_8K, L16_8K), 8000)) for f in after[1:5]]
    assert all(abs(hz - 1000) < 100 for hz in heard), f"the frames after the clear are at {heard} Hz"


async def test_the_calls_last_audio_reaches_the_agent(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    """Everything the caller said reaches the agent before the stop.

    Fails today: the inbound mulaw 8 kHz -> linear16 16 kHz StreamConverter holds its last
    ~84 ms (2680 bytes), and the hub sends the stop without flushing it."""
    call = await place(hub)
    agent = Agent(stub(hub.channel), invoke(hub), call.id, 16000)
    await asyncio.sleep(0.2)
    # A second at 1000 Hz, and the last 100 ms at 2000 Hz: all of them must reach the agent.
    spoken = tone(1000, 1.0, 8000) + tone(2000, 0.1, 8000)
    await twilio.answer_media(call.provider_call_id, spoken, audio_format=L16_8K, receive_seconds=1.5)
    await agent.finish()
    assert agent.stops == ["hangup"]
    windows = [round(hz) for hz in dominant_per_window(bytes(agent.audio), 16000)]
    trailing = next((i for i, hz in enumerate(reversed(windows)) if abs(hz - 2000) >= 150), len(windows))
    assert trailing >= 4, f"{trailing} of the 5 last 20 ms at 2000 Hz reached the agent: {windows[-7:]}"


async def test_the_agent_gets_the_calls_audio_in_20_ms_frames(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    """CallMediaResponse.audio is "linear16 mono at the config's rate, 20 ms frames", each
    as the call's 20 ms arrives.

    Fails today: soxr's streaming resampler at quality HQ (callers/audio/resample.py, used
    by the hub's StreamConverter) works in blocks: fed Twilio's 20 ms frames (mulaw 8 kHz
    to 16 kHz), it answers nothing for five frames, then 3320 bytes (104 ms) at once, so the
    agent hears the caller in 104 ms bursts, each up to ~100 ms late."""
    call = await place(hub)
    agent = Agent(stub(hub.channel), invoke(hub), call.id, 16000)
    await asyncio.sleep(0.2)
    await twilio.answer_media(
        call.provider_call_id, tone(1000, 1.0, 8000), audio_format=L16_8K, receive_seconds=1.3
    )
    await agent.finish()
    sizes = [size for size, _ in agent.chunks]
    assert len(sizes) >= 40
    assert all(size == 640 for size in sizes[1:-1]), f"audio messages of {sorted(set(sizes))} bytes"


async def test_one_agent_and_one_stream_per_call(hub: HubUnderTest, twilio: FakeTwilio) -> None:
    call = await place(hub)
    first = Agent(stub(hub.channel), invoke(hub), call.id, 8000)
    await asyncio.sleep(0.2)
    answering = asyncio.create_task(
        twilio.answer_media(
            call.provider_call_id, tone(200, 1.0, 8000), audio_format=L16_8K, receive_seconds=1.5
        )
    )
    assert await wait_until(lambda: bool(first.started))
    # A second agent for the same call is refused while the first is attached.
    second = Agent(stub(hub.channel), invoke(hub), call.id, 8000)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await second.finish()
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "another CallMedia stream" in (refused.value.details() or "")
    # A second provider websocket for the call (signed as Twilio signs) is closed at once.
    duplicate = await hub.http.ws_connect(
        twilio.calls[call.provider_call_id].stream_url, headers=twilio.stream_headers(call.provider_call_id)
    )
    message = await asyncio.wait_for(duplicate.receive(), 5)
    assert duplicate.close_code == 1008, message
    await duplicate.close()
    await answering
    await first.finish()
    assert first.stops == ["hangup"]
    assert len(first.audio) > 0.9 * 16000  # the first agent got the call's second of audio
