"""A call through the hub end to end, against the fake Exotel: PlaceCall (Connect Voice AI
media streams, a Voicebot flow asking the hub's fixed answer URL, say through a Greeting
flow) and what Exotel received; status callbacks, which Exotel does not sign, authenticated
by the call's URL token (replayed, a wrong token, out of order) seen by GetCall, ListCalls
and WatchCalls; HangupCall, which Exotel cannot do for a live call; every class of error
Exotel answers, and a place whose outcome is unknown never retried; CallMedia: the call's
16-bit PCM reaches the agent at its rate, the agent's audio reaches Exotel in whole 20 ms
chunks of at least 3.2 kB paced in real time, marks come back once played, clear drops
what is queued."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import grpc
import pytest
from google.protobuf import duration_pb2

from callers.types import AudioContainer, AudioEncoding, AudioFormat, CallStatus
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import telephony_pb2 as pb
from tests.fakes.exotel_server import EXOPHONE, GREETING_APP_ID, VOICEBOT_APP_ID, FakeExotel
from tests.harness import HubUnderTest, free_port, running_hub, settings_for
from tests.telephony.conftest import Speech
from tests.telephony.hub_calls import (
    RETRYING_POLICY,
    Agent,
    check_paced,
    dominant_hz,
    error_info,
    pcm16,
    speech_like,
    stub,
    tone,
    url_parts,
    wait_until,
)

TO, FROM = "+919876543210", EXOPHONE
L16_8K = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 8000, 1)
L16_16K = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 16000, 1)


@pytest.fixture
async def exotel() -> AsyncIterator[FakeExotel]:
    async with FakeExotel(retry_after="0") as fake:
        yield fake


@pytest.fixture
async def hub(tmp_path: Path, exotel: FakeExotel) -> AsyncIterator[HubUnderTest]:
    port = free_port()
    settings = settings_for(
        tmp_path,
        database_url=None,
        http_port=port,
        public_url=f"http://127.0.0.1:{port}",
        policy=RETRYING_POLICY,
    )
    async with running_hub(settings) as running:
        # The flows' applets ask the hub's one fixed answer URL (set once in Exotel's console).
        exotel.answer_url = f"{running.http_base}/telephony/v1/exotel/answer"
        for name, options in (
            ("phone", exotel.options),  # Connect Voice AI: Exotel streams straight to the hub
            ("wideband", {**exotel.options, "stream_sample_rate": "16000"}),
            ("flow", exotel.flow_options),  # media through the Voicebot flow
        ):
            await running.credentials_stub().CreateCredential(
                cpb.CreateCredentialRequest(
                    provider="exotel", name=name, secret=exotel.secret, options=options
                ),
                metadata=running.auth(running.tokens.admin),
            )
        yield running


def invoke(hub: HubUnderTest) -> list[tuple[str, str]]:
    return hub.auth(hub.tokens.invoke_only)


def media_request(
    credential: str = "phone", metadata: dict[str, str] | None = None, **parameters: str
) -> pb.PlaceCallRequest:
    request = pb.PlaceCallRequest(
        credential=credential,
        to=TO,
        action=pb.CallAction(media_stream=pb.MediaStreamAction(parameters=parameters)),
        metadata={"order": "42"} if metadata is None else metadata,
    )
    setattr(request, "from", FROM)
    return request


def say_request(**say: str) -> pb.PlaceCallRequest:
    request = pb.PlaceCallRequest(
        credential="phone",
        to=TO,
        action=pb.CallAction(say=pb.SayAction(text="Your order has shipped.", **say)),
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


async def only_call(hub: HubUnderTest) -> pb.Call:
    (row,) = (await stub(hub.channel).ListCalls(pb.ListCallsRequest(), metadata=invoke(hub))).calls
    return row


def connects(exotel: FakeExotel) -> list[dict[str, object]]:
    return [
        r for r in exotel.requests if r["method"] == "POST" and str(r["path"]).endswith("/Calls/connect.json")
    ]


def token_of(exotel: FakeExotel, call: pb.Call) -> str:
    return url_parts(exotel.calls[call.provider_call_id].status_callback_url)[1]


# --- placing --------------------------------------------------------------------------


async def test_a_media_stream_call_hands_exotel_the_calls_own_urls(
    hub: HubUnderTest, exotel: FakeExotel
) -> None:
    request = media_request(agent="support")
    request.ring_timeout.CopyFrom(duration_pb2.Duration(seconds=30))
    request.time_limit.CopyFrom(duration_pb2.Duration(seconds=600))
    call = await place(hub, request)
    assert (call.provider, call.to, getattr(call, "from")) == ("exotel", TO, FROM)
    # Connect answers "in-progress" while it sets the call up: not answered yet.
    assert call.status == pb.CALL_STATUS_QUEUED
    fake_call = exotel.calls[call.provider_call_id]
    form = dict(fake_call.params)
    assert (form["From"], form["CallerId"]) == (TO, FROM)  # Exotel dials From, shows CallerId
    assert (form["StreamType"], "Url" in form) == ("bidirectional", False)
    media_id, token, leaf = url_parts(fake_call.media_url)
    assert (media_id, leaf) == (call.id, "media")
    assert (
        fake_call.media_url
        == f"ws://127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/{token}/media"
    )
    # The action's parameters and the call's metadata ride in the StreamUrl's query; no
    # sample-rate at Exotel's default 8 kHz.
    assert fake_call.stream_parameters == {"agent": "support", "order": "42"}
    assert "sample-rate" not in fake_call.stream_url
    assert fake_call.status_callback_url == (
        f"http://127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/{token}/events"
    )
    assert fake_call.status_callback_events == ["ringing", "answered", "terminal"]
    assert fake_call.status_callback_content_type == "application/json"
    assert fake_call.custom_field == f"{call.id}.{token}"
    assert (fake_call.ring_timeout, fake_call.time_limit) == (30, 600)
    assert exotel.api_token not in hub.logs.getvalue()


async def test_a_wideband_stream_asks_exotel_for_16_khz(hub: HubUnderTest, exotel: FakeExotel) -> None:
    call = await place(hub, media_request("wideband", agent="support"))
    fake_call = exotel.calls[call.provider_call_id]
    assert dict(parse_qsl(urlsplit(fake_call.stream_url).query)) == {
        "agent": "support",
        "order": "42",
        "sample-rate": "16000",
    }


async def test_a_say_call_runs_the_greeting_flow_which_asks_the_hub_for_its_text(
    hub: HubUnderTest, exotel: FakeExotel
) -> None:
    call = await place(hub, say_request())
    fake_call = exotel.calls[call.provider_call_id]
    assert (
        fake_call.flow_url == f"http://my.exotel.com/{exotel.account_sid}/exoml/start_voice/{GREETING_APP_ID}"
    )
    assert fake_call.stream_url == ""
    assert fake_call.custom_field == f"{call.id}.{token_of(exotel, call)}"
    # The Greeting applet: HEAD, then GET of the fixed answer URL, answered text/plain.
    assert await exotel.fetch_greeting(call.provider_call_id) == "Your order has shipped."
    assert fake_call.answer_fetches[0]["CustomField"] == fake_call.custom_field
    # A say call has no media: neither end can attach.
    media = (
        f"ws://127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/{token_of(exotel, call)}/media"
    )
    with pytest.raises(Exception, match="404"):
        await hub.http.ws_connect(media)


@pytest.mark.parametrize(
    ("request_of", "words"),
    [
        (lambda: say_request(voice="Aditi"), "voice and language set in the greeting flow"),
        (lambda: media_request("flow", agent="support"), "come from the action alone"),
        (lambda: media_request(a="1", b="2", c="3"), "at most 3 custom parameters"),
    ],
    ids=["say-with-a-voice", "flow-with-metadata", "four-parameters"],
)
async def test_what_exotel_cannot_carry_is_refused_before_calling(
    hub: HubUnderTest, exotel: FakeExotel, request_of: object, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await place(hub, request_of())  # type: ignore[operator]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "PROVIDER_INVALID_REQUEST"
    assert words in (caught.value.details() or "")
    assert connects(exotel) == []
    row = await only_call(hub)
    assert (row.status, words in row.error) == (pb.CALL_STATUS_FAILED, True), (row.status, row.error)


# --- events ---------------------------------------------------------------------------


async def test_status_progression_through_callbacks(hub: HubUnderTest, exotel: FakeExotel) -> None:
    call = await place(hub)
    sid = call.provider_call_id
    watch = stub(hub.channel).WatchCalls(pb.WatchCallsRequest(), metadata=invoke(hub))
    seen: list[pb.WatchCallsResponse] = []

    async def collect() -> None:
        async for item in watch:
            seen.append(item)

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.3)  # the watcher reads from "now"
    assert await exotel.send_status(sid, CallStatus.RINGING) == 200
    assert await exotel.send_status(sid, CallStatus.IN_PROGRESS) == 200
    answered = len(exotel.callbacks) - 1
    legs = [{"OnCallDuration": 45, "Status": "completed", "AnsweredBy": "HUMAN"}]
    assert await exotel.send_status(sid, CallStatus.COMPLETED, ConversationDuration=42, Legs=legs) == 200
    completed = len(exotel.callbacks) - 1
    # Exotel retries a callback (and anyone holding the URL can resend one): applied once.
    assert await exotel.send_status(sid, CallStatus.COMPLETED, replay_of=completed) == 200
    assert await exotel.send_status(sid, CallStatus.IN_PROGRESS, replay_of=answered) == 200
    # Exotel signs nothing: the token in the URL's path is the whole authentication.
    assert await exotel.send_status(sid, CallStatus.FAILED, forged=True) == 403
    assert await exotel.send_status(sid, CallStatus.FAILED, unsigned=True) in (404, 405)
    # Late: recorded, the call does not move back.
    assert await exotel.send_status(sid, CallStatus.RINGING) == 200
    assert await wait_until(lambda: len(seen) >= 4)
    await asyncio.sleep(0.3)  # nothing more arrives
    watch.cancel()
    collector.cancel()
    assert [(i.event.status, i.event.provider_status, i.event.applied) for i in seen] == [
        (pb.CALL_STATUS_RINGING, "ringing", True),
        (pb.CALL_STATUS_IN_PROGRESS, "in-progress", True),
        (pb.CALL_STATUS_COMPLETED, "completed", True),
        (pb.CALL_STATUS_RINGING, "ringing", False),
    ]
    assert all(i.event.HasField("occurred_at") for i in seen)  # Exotel's DateUpdated (IST)
    assert (seen[2].event.duration.seconds, seen[2].event.answered_by) == (42, "human")
    sequences = [i.event.sequence for i in seen]
    assert sequences == sorted(sequences)
    got = await get(hub, call.id)
    assert (got.status, got.provider_status, got.duration.seconds, got.answered_by) == (
        pb.CALL_STATUS_COMPLETED,
        "completed",
        42,
        "human",
    )
    resumed = stub(hub.channel).WatchCalls(
        pb.WatchCallsRequest(after_sequence=sequences[0]), metadata=invoke(hub)
    )
    again = [await asyncio.wait_for(anext(aiter(resumed)), 5) for _ in range(3)]
    resumed.cancel()
    assert [i.event.sequence for i in again] == sequences[1:]
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await stub(hub.channel).GetCall(
            pb.GetCallRequest(call_id=call.id), metadata=hub.auth(hub.tokens.other_tenant)
        )
    assert other.value.code() == grpc.StatusCode.NOT_FOUND
    assert exotel.api_token not in hub.logs.getvalue()


async def test_every_terminal_status_is_normalized(hub: HubUnderTest, exotel: FakeExotel) -> None:
    outcomes = {
        CallStatus.BUSY: pb.CALL_STATUS_BUSY,
        CallStatus.NO_ANSWER: pb.CALL_STATUS_NO_ANSWER,
        CallStatus.FAILED: pb.CALL_STATUS_FAILED,
        CallStatus.CANCELED: pb.CALL_STATUS_CANCELED,
        CallStatus.COMPLETED: pb.CALL_STATUS_COMPLETED,
    }
    placed: dict[CallStatus, pb.Call] = {}
    for status in outcomes:
        call = await place(hub)
        placed[status] = call
        assert await exotel.send_status(call.provider_call_id, CallStatus.RINGING) == 200
        if status is CallStatus.COMPLETED:
            assert await exotel.send_status(call.provider_call_id, CallStatus.IN_PROGRESS) == 200
        assert await exotel.send_status(call.provider_call_id, status, ConversationDuration=7) == 200
    for status, expected in outcomes.items():
        got = await get(hub, placed[status].id)
        assert (got.status, got.provider_status) == (expected, str(status)), status
        listed = await stub(hub.channel).ListCalls(pb.ListCallsRequest(status=expected), metadata=invoke(hub))
        assert [c.id for c in listed.calls] == [placed[status].id]
    assert (await get(hub, placed[CallStatus.COMPLETED].id)).duration.seconds == 7
    busy = placed[CallStatus.BUSY]
    with pytest.raises(Exception, match="410"):
        await hub.http.ws_connect(exotel.calls[busy.provider_call_id].media_url)
    agent = Agent(stub(hub.channel), invoke(hub), busy.id, 16000)
    await agent.finish(timeout=3)
    assert agent.stops == ["hangup"]


# --- hanging up -----------------------------------------------------------------------


async def test_hangup_of_a_live_call_is_not_supported_and_says_so(
    hub: HubUnderTest, exotel: FakeExotel
) -> None:
    call = await place(hub)
    assert await exotel.send_status(call.provider_call_id, CallStatus.RINGING) == 200
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(hub.channel).HangupCall(pb.HangupCallRequest(call_id=call.id), metadata=invoke(hub))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "CAPABILITY_NOT_SUPPORTED"
    details = caught.value.details() or ""
    assert "exotel" in details
    assert "hangup of a live call" in details
    assert "cannot end a call" in details
    # It says why (the Calls API has no operation for it) and what bounds the call instead.
    assert "no operation to end or update one" in details
    assert "time_limit" in details
    # Exotel was asked how the call is (it is live), not to end it.
    assert exotel.requests[-1]["method"] == "GET"
    assert str(exotel.requests[-1]["path"]).endswith(f"/Calls/{call.provider_call_id}.json")
    assert (await get(hub, call.id)).status == pb.CALL_STATUS_RINGING
    # Over at Exotel before its callback reached the hub: hanging up answers the call as it is.
    exotel.calls[call.provider_call_id].status = "completed"
    hung = await stub(hub.channel).HangupCall(pb.HangupCallRequest(call_id=call.id), metadata=invoke(hub))
    assert hung.call.status == pb.CALL_STATUS_RINGING
    # Over in the hub: Exotel is not asked at all.
    assert await exotel.send_status(call.provider_call_id, CallStatus.COMPLETED) == 200
    before = len(exotel.requests)
    hung = await stub(hub.channel).HangupCall(pb.HangupCallRequest(call_id=call.id), metadata=invoke(hub))
    assert hung.call.status == pb.CALL_STATUS_COMPLETED
    assert len(exotel.requests) == before


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "count", "code", "reason", "attempts", "words"),
    [
        (
            "bad_number",
            1,
            grpc.StatusCode.INVALID_ARGUMENT,
            "PROVIDER_INVALID_REQUEST",
            1,
            "not a valid phone number",
        ),
        (
            "unauthorized",
            1,
            grpc.StatusCode.UNAUTHENTICATED,
            "PROVIDER_AUTH_FAILED",
            1,
            "Authentication failed",
        ),
        # The provider said it did not take the call: retried (3 attempts), then its error.
        (
            "rate_limited",
            3,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "PROVIDER_RATE_LIMITED",
            3,
            "RATE_LIMIT_EXCEEDED",
        ),
        ("down", 3, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE", 3, "Service Unavailable"),
    ],
)
async def test_exotel_refusals_fail_the_call_with_the_reason(
    hub: HubUnderTest,
    exotel: FakeExotel,
    kind: str,
    count: int,
    code: grpc.StatusCode,
    reason: str,
    attempts: int,
    words: str,
) -> None:
    exotel.fail_next(kind, count)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await place(hub)
    assert caught.value.code() == code
    assert error_info(caught.value).reason == reason
    assert words in (caught.value.details() or "")
    assert len(connects(exotel)) == attempts
    assert exotel.api_token not in (caught.value.details() or "")
    row = await only_call(hub)
    assert (row.status, words in row.error) == (pb.CALL_STATUS_FAILED, True), (row.status, row.error)
    assert row.provider_call_id == ""


@pytest.mark.parametrize("failure", ["reset", "timeout"])
async def test_an_unknown_outcome_is_never_retried(
    hub: HubUnderTest, exotel: FakeExotel, failure: str
) -> None:
    request = media_request()
    if failure == "reset":
        exotel.fail_next("reset")
    else:
        exotel.delay = 1.5
        request.timeout.CopyFrom(duration_pb2.Duration(nanos=400_000_000))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await place(hub, request)
    exotel.delay = 0
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "CALL_OUTCOME_UNKNOWN"
    assert "not retried" in (caught.value.details() or "")
    assert len(connects(exotel)) == 1  # Exotel may be dialling it: never asked again
    row = await only_call(hub)
    assert (row.status, row.provider_call_id, row.error) == (pb.CALL_STATUS_QUEUED, "", "")


# --- media ----------------------------------------------------------------------------


async def test_call_media_round_trip(hub: HubUnderTest, exotel: FakeExotel, speech: Speech) -> None:
    call = await place(hub)
    reply = tone(440, 1.0, 16000)

    async def answer(agent: Agent) -> None:
        agent.send(audio=reply)
        agent.send(mark="reply-done")

    agent = Agent(stub(hub.channel), invoke(hub), call.id, 16000, on_start=answer)
    await asyncio.sleep(0.2)
    spoken = pcm16(speech.reference_at(8000)[: 3 * 8000])
    result = await exotel.answer_media(
        call.provider_call_id,
        spoken,
        audio_format=L16_8K,
        receive_seconds=0.6,
        dtmf="5",
        dtmf_after_seconds=1.0,
    )
    await agent.finish()
    start = agent.started[0]
    assert (start.call_id, start.provider_call_id) == (call.id, call.provider_call_id)
    assert dict(start.parameters) == {"agent": "support", "order": "42"}
    # Exotel's start names the two parties; its "from" is the number it dialled.
    assert {getattr(start, "from"), start.to} == {TO, FROM}
    # Exotel's 16-bit PCM at 8 kHz reached the agent at 16 kHz: twice the samples, speech.
    assert 2 * len(spoken) - 6400 <= len(agent.audio) <= 2 * len(spoken), (len(agent.audio), len(spoken))
    assert speech_like(bytes(agent.audio), 16000)
    assert agent.dtmf == ["5"]
    # The agent's second reached Exotel as 8 kHz PCM in chunks of 3.2 kB (200 ms), whole
    # 20 ms multiples (violations lists what Exotel refuses), paced in real time.
    assert result.violations == []
    chunks = result.audio
    assert 4 <= len(chunks) <= 5
    assert all(len(c.data) == 3200 for c in chunks[:-1])
    check_paced([c.at for c in chunks], 0.2)
    assert abs(dominant_hz(result.received, 8000) - 440) < 10
    assert [name for name, _ in result.marks_received] == ["reply-done"]
    assert [name for name, _ in agent.marks] == ["reply-done"]
    assert agent.marks[0][1] >= chunks[-1].at
    assert agent.stops == ["hangup"]  # Exotel's stop (callended)


async def test_call_media_at_16_khz_needs_no_resampling(
    hub: HubUnderTest, exotel: FakeExotel, speech: Speech
) -> None:
    call = await place(hub, media_request("wideband", agent="support"))

    async def answer(agent: Agent) -> None:
        agent.send(audio=tone(440, 1.0, 16000))
        agent.send(mark="reply-done")

    agent = Agent(stub(hub.channel), invoke(hub), call.id, 16000, on_start=answer)
    await asyncio.sleep(0.2)
    spoken = pcm16(speech.reference_at(16000)[: 2 * 16000])
    result = await exotel.answer_media(
        call.provider_call_id, spoken, audio_format=L16_16K, receive_seconds=0.6
    )
    await agent.finish()
    assert result.native_format == L16_16K
    assert dict(agent.started[0].parameters) == {"agent": "support", "order": "42"}
    assert len(spoken) - 3200 <= len(agent.audio) <= len(spoken)  # a chunk may go before attaching
    assert speech_like(bytes(agent.audio), 16000)
    # 1 s of 16 kHz: ten chunks of 3.2 kB (100 ms), all before the mark.
    assert result.violations == []
    assert [len(c.data) for c in result.audio] == [3200] * 10
    check_paced([c.at for c in result.audio], 0.1)
    assert [name for name, _ in agent.marks] == ["reply-done"]
    assert agent.marks[0][1] >= result.audio[-1].at


async def test_clear_drops_queued_audio_within_a_frame(hub: HubUnderTest, exotel: FakeExotel) -> None:
    call = await place(hub)

    async def talk_then_barge_in(agent: Agent) -> None:
        agent.send(audio=tone(300, 3.0, 8000))
        agent.send(mark="never-played")
        await asyncio.sleep(0.5)
        agent.send(clear=pb.ClearAudio())

    agent = Agent(stub(hub.channel), invoke(hub), call.id, 8000, on_start=talk_then_barge_in)
    await asyncio.sleep(0.2)
    result = await exotel.answer_media(
        call.provider_call_id, b"\0\0" * 800, audio_format=L16_8K, receive_seconds=1.5
    )
    await agent.finish()
    assert result.clears, "Exotel was told to clear its buffer"
    cleared = result.clears[0]
    late = [c for c in result.audio if c.at > cleared]
    assert len(late) <= 1, f"{len(late)} chunks after the clear"
    assert 2 <= len(result.audio) <= (cleared - result.audio[0].at) / 0.2 + 2  # 200 ms chunks
    assert result.violations == []
    assert [name for name, _ in agent.marks] == ["never-played"]  # dropped: reported at once, once
    assert result.marks_received == []


# --- the Voicebot flow ----------------------------------------------------------------


async def test_a_voicebot_flow_asks_the_fixed_answer_url_for_the_media_websocket(
    hub: HubUnderTest, exotel: FakeExotel, speech: Speech
) -> None:
    call = await place(hub, media_request("flow", metadata={}, agent="support"))
    fake_call = exotel.calls[call.provider_call_id]
    form = dict(fake_call.params)
    assert form["Url"] == f"http://my.exotel.com/{exotel.account_sid}/exoml/start_voice/{VOICEBOT_APP_ID}"
    assert (form["CallType"], "StreamUrl" in form) == ("trans", False)
    token = token_of(exotel, call)
    assert fake_call.custom_field == f"{call.id}.{token}"

    async def answer(agent: Agent) -> None:
        agent.send(audio=tone(440, 0.6, 8000))
        agent.send(mark="done")

    agent = Agent(stub(hub.channel), invoke(hub), call.id, 8000, on_start=answer)
    await asyncio.sleep(0.2)
    spoken = pcm16(speech.reference_at(8000)[: 2 * 8000])
    result = await exotel.answer_media(
        call.provider_call_id, spoken, audio_format=L16_8K, receive_seconds=0.6
    )
    await agent.finish()
    # The applet's GET carried the call's CustomField; the hub answered {"url": <media ws>}.
    assert fake_call.answer_fetches[0]["CustomField"] == fake_call.custom_field
    media = f"ws://127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/{token}/media"
    assert result.url == media + "?agent=support"
    assert agent.started[0].call_id == call.id
    assert dict(agent.started[0].parameters) == {"agent": "support"}
    assert len(spoken) - 3200 <= len(agent.audio) <= len(spoken)
    assert speech_like(bytes(agent.audio), 8000)
    assert sum(len(c.data) for c in result.audio) == 9600  # 0.6 s at 8 kHz
    assert [name for name, _ in agent.marks] == ["done"]


async def test_the_fixed_answer_url_answers_only_for_a_call_and_its_token(
    hub: HubUnderTest, exotel: FakeExotel
) -> None:
    call = await place(hub, media_request("flow", metadata={}, agent="support"))
    token = token_of(exotel, call)
    url = f"{hub.http_base}/telephony/v1/exotel/answer"
    query = {"CallSid": call.provider_call_id, "From": TO, "To": FROM, "Direction": "outbound-api"}
    async with hub.http.get(url, params={**query, "CustomField": f"{call.id}.{token}"}) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        answer = json.loads(await response.text())
    assert answer == {
        "url": f"ws://127.0.0.1:{hub.servers.http_port}/telephony/v1/calls/{call.id}/{token}/media?agent=support"
    }
    for custom in (f"{call.id}.not-the-token", f"nope.{token}", call.id, ""):
        async with hub.http.get(url, params={**query, "CustomField": custom}) as response:
            assert response.status == 403, custom
            assert "unknown call or wrong token" in await response.text()
    # Only Exotel's flows use a fixed answer URL.
    for provider in ("twilio", "nope"):
        async with hub.http.get(f"{hub.http_base}/telephony/v1/{provider}/answer", params=query) as response:
            assert response.status == 404, provider
