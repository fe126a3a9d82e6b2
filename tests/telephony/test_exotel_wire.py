"""Exotel voice over its real wire: the REST API (Calls/connect, Call details), status
callbacks, the flows' dynamic URLs and the AgentStream media websocket, against the
loopback FakeExotel, with a small stand-in for the hub's public routes on loopback and
real speech made by espeak-ng/sox."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from aiohttp import WSMsgType, web

from callers import pools, registry
from callers.base import (
    AuthenticationFailed,
    CallerError,
    CallEventHandler,
    CallMedia,
    Capability,
    InvalidRequest,
    MediaSession,
    NotFound,
    NotSupported,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    Telephony,
    Verifier,
    WebhookRejected,
)
from callers.exotel import webhooks as exotel_webhooks
from callers.exotel import wire
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    CallAction,
    CallActionKind,
    CallEvent,
    CallStatus,
    HangupRequest,
    MachineDetection,
    MediaEvent,
    MediaEventKind,
    MediaOptions,
    PlaceCallRequest,
    WebhookRequest,
)
from tests.audio.conftest import aligned_correlation, rms
from tests.fakes.exotel_server import (
    ACCOUNT_SID,
    API_KEY,
    API_TOKEN,
    EXOPHONE,
    GREETING_APP_ID,
    VOICEBOT_APP_ID,
    FakeExotel,
    FakeFlow,
)
from tests.fakes.secret_fields import PlainSecret
from tests.telephony.conftest import Speech

pytestmark = pytest.mark.timeout(30)

C, E = AudioContainer, AudioEncoding
SECRET = PlainSecret(api_token=API_TOKEN)
WRONG_TOKEN = "exo-token-revoked-000111"
CUSTOMER = "+919876543210"
IST = timezone(timedelta(hours=5, minutes=30))
NOWHERE = {"account_sid": ACCOUNT_SID, "api_key": API_KEY, "api_base_url": "http://127.0.0.1:9"}
PCM8K = AudioFormat(E.PCM_S16LE, C.RAW, 8000, 1)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def telephony() -> Telephony:
    caller = registry.capability("exotel", Capability.TELEPHONY)
    assert isinstance(caller, Telephony)
    return caller


def events_handler() -> CallEventHandler:
    caller = registry.capability("exotel", Capability.CALL_EVENTS)
    assert isinstance(caller, CallEventHandler)
    return caller


def media() -> CallMedia:
    caller = registry.capability("exotel", Capability.CALL_MEDIA)
    assert isinstance(caller, CallMedia)
    return caller


def verifier() -> Verifier:
    caller = registry.capability("exotel", Capability.VERIFY)
    assert isinstance(caller, Verifier)
    return caller


def no_secret_in(exc: BaseException) -> None:
    """The token (and the Basic credentials made from it) appear nowhere in the error."""
    basic = base64.b64encode(f"{API_KEY}:{API_TOKEN}".encode()).decode()
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen), *(str(a) for a in seen.args)):
            assert API_TOKEN not in text
            assert WRONG_TOKEN not in text
            assert basic not in text
        seen = seen.__cause__ or seen.__context__


# --- a stand-in for the hub's public routes -----------------------------------------


@dataclass
class HubCall:
    token: str
    action: CallAction


@dataclass
class MediaLog:
    session: MediaSession
    events: list[tuple[MediaEvent, float]] = field(default_factory=list)
    frames_sent: list[int] = field(default_factory=list)
    sent_audio_at: float = 0.0
    mark_sent_at: float = 0.0
    clear_sent_at: float = 0.0
    query: dict[str, str] = field(default_factory=dict)

    def of(self, kind: MediaEventKind) -> list[MediaEvent]:
        return [event for event, _ in self.events if event.kind is kind]

    @property
    def audio(self) -> bytes:
        return b"".join(event.audio for event in self.of(MediaEventKind.AUDIO))


@dataclass
class Hub:
    """The hub's public routes as the real hub will serve them, on loopback: the per-call
    events URL (token checked first), the fixed Exotel answer URL, the media websocket."""

    options: dict[str, str]
    calls: dict[str, HubCall] = field(default_factory=dict)
    events: list[CallEvent] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    answered: list[WebhookRequest] = field(default_factory=list)
    media: list[MediaLog] = field(default_factory=list)
    reply_audio: bytes = b""
    mark_after_reply: str = ""
    clear_after: float | None = None
    hang_up_after: float | None = None
    url: str = ""

    async def __aenter__(self) -> Hub:
        app = web.Application()
        app.router.add_post("/telephony/v1/calls/{hub_call_id}/{token}/events", self._events)
        app.router.add_get("/telephony/v1/exotel/answer", self._answer)
        app.router.add_get("/telephony/v1/calls/{hub_call_id}/{token}/media", self._media)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    @property
    def answer_url(self) -> str:
        return f"{self.url}/telephony/v1/exotel/answer"

    def place(self, hub_call_id: str, token: str, action: CallAction, **more: object) -> PlaceCallRequest:
        self.calls[hub_call_id] = HubCall(token, action)
        base = f"{self.url}/telephony/v1/calls/{hub_call_id}/{token}"
        return PlaceCallRequest(
            to=CUSTOMER,
            from_=EXOPHONE,
            action=action,
            status_callback_url=f"{base}/events",
            answer_url=self.answer_url,
            hub_call_id=hub_call_id,
            call_token=token,
            **more,  # type: ignore[arg-type]
        )

    def media_url(self, hub_call_id: str, token: str) -> str:
        return f"ws://{self.url.removeprefix('http://')}/telephony/v1/calls/{hub_call_id}/{token}/media"

    def _token_ok(self, hub_call_id: str, token: str) -> bool:
        call = self.calls.get(hub_call_id)
        return call is not None and hmac.compare_digest(call.token, token)

    @staticmethod
    async def _webhook(request: web.Request) -> WebhookRequest:
        body = await request.read()
        form: dict[str, str] = {}
        if request.method in ("GET", "HEAD"):
            form = dict(request.query)
        elif request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}
        headers = {k.lower(): v for k, v in request.headers.items()}
        return WebhookRequest(request.method, str(request.url), headers, body, form)

    async def _events(self, request: web.Request) -> web.Response:
        if not self._token_ok(request.match_info["hub_call_id"], request.match_info["token"]):
            self.refused.append((403, request.path))
            return web.Response(status=403)
        hook = await self._webhook(request)
        handler = events_handler()
        try:
            handler.authenticate(SECRET, self.options, hook)
            self.events += handler.parse_events(self.options, hook)
        except WebhookRejected as exc:
            self.refused.append((403, exc.message))
            return web.Response(status=403)
        except InvalidRequest as exc:
            self.refused.append((400, exc.message))
            return web.Response(status=400)
        return web.Response(status=200)

    async def _answer(self, request: web.Request) -> web.Response:
        hook = await self._webhook(request)
        try:
            hub_call_id, token = exotel_webhooks.call_reference(hook)
        except WebhookRejected as exc:
            self.refused.append((403, exc.message))
            return web.Response(status=403)
        if not self._token_ok(hub_call_id, token):
            self.refused.append((403, "token"))
            return web.Response(status=403)
        self.answered.append(hook)
        instructions = events_handler().answer(self.options, hook, self.calls[hub_call_id].action)
        return web.Response(body=instructions.body, headers={"Content-Type": instructions.content_type})

    async def _media(self, request: web.Request) -> web.WebSocketResponse:
        if not self._token_ok(request.match_info["hub_call_id"], request.match_info["token"]):
            raise web.HTTPForbidden()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = media().open_session(
            self.options, MediaOptions(headers=dict(request.headers), query=dict(request.query))
        )
        log = MediaLog(session, query=dict(request.query))
        self.media.append(log)
        tasks: list[asyncio.Task[None]] = []
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            for event in session.decode(message.data):
                log.events.append((event, time.monotonic()))
                if event.kind is MediaEventKind.START:
                    tasks.append(asyncio.ensure_future(self._speak(ws, log)))
                if event.kind is MediaEventKind.STOP:
                    await ws.close()
        for task in tasks:
            task.cancel()
        return ws

    async def _speak(self, ws: web.WebSocketResponse, log: MediaLog) -> None:
        session = log.session
        if self.hang_up_after is not None:
            await asyncio.sleep(self.hang_up_after)
            await ws.close()
            return
        size = session.frame_bytes
        log.sent_audio_at = time.monotonic()
        for at in range(0, len(self.reply_audio), size):
            await ws.send_str(str(session.audio_frame(self.reply_audio[at : at + size]).data))
            log.frames_sent.append(len(self.reply_audio[at : at + size]))
        if self.mark_after_reply:
            mark = session.mark(self.mark_after_reply)
            assert mark is not None
            log.mark_sent_at = time.monotonic()
            await ws.send_str(str(mark.data))
        if self.clear_after is not None:
            await asyncio.sleep(self.clear_after)
            clear = session.clear()
            assert clear is not None
            log.clear_sent_at = time.monotonic()
            await ws.send_str(str(clear.data))


def tone(seconds: float, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()


def stream_action(hub: Hub, hub_call_id: str, token: str, **parameters: str) -> CallAction:
    return CallAction(
        CallActionKind.MEDIA_STREAM, media_url=hub.media_url(hub_call_id, token), stream_parameters=parameters
    )


# --- registry -------------------------------------------------------------------------


def test_every_capability_resolves_to_its_protocol() -> None:
    spec = registry.spec("exotel")
    assert spec.capabilities == {
        Capability.VERIFY,
        Capability.TELEPHONY,
        Capability.CALL_EVENTS,
        Capability.CALL_MEDIA,
    }
    assert spec.sdk_modules == ()
    assert registry.sdk_installed("exotel")
    telephony(), events_handler(), media(), verifier()
    spec.validate({"api_token": "t"}, {"account_sid": "a", "api_key": "k", "voicebot_app_id": "12"})


# --- placing calls --------------------------------------------------------------------


async def test_media_stream_connects_voice_ai_straight_to_the_media_url() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        action = stream_action(hub, "hc-1", "tok1", agent="a1")
        request = hub.place(
            "hc-1",
            "tok1",
            action,
            ring_timeout_seconds=30,
            time_limit_seconds=600,
            metadata={"campaign": "c9"},
        )
        placed = await telephony().place_call(SECRET, fake.options, request, timeout=5)
    sent = fake.requests[-1]
    assert sent["method"] == "POST"
    assert sent["path"] == f"/v1/Accounts/{ACCOUNT_SID}/Calls/connect.json"
    assert (
        sent["headers"]["Authorization"]
        == "Basic " + base64.b64encode(f"{API_KEY}:{API_TOKEN}".encode()).decode()
    )
    assert sent["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    call = fake.calls[placed.provider_call_id]
    base = f"{hub.url}/telephony/v1/calls/hc-1/tok1"
    assert call.params == [
        ("From", CUSTOMER),
        ("CallerId", EXOPHONE),
        ("StreamUrl", f"{hub.media_url('hc-1', 'tok1')}?agent=a1&campaign=c9"),
        ("StreamType", "bidirectional"),
        ("CustomField", "hc-1.tok1"),
        ("StatusCallback", f"{base}/events"),
        ("StatusCallbackContentType", "application/json"),
        ("StatusCallbackEvents[0]", "ringing"),
        ("StatusCallbackEvents[1]", "answered"),
        ("StatusCallbackEvents[2]", "terminal"),
        ("TimeOut", "30"),
        ("TimeLimit", "600"),
    ]
    assert call.media_url == hub.media_url("hc-1", "tok1")
    assert call.stream_parameters == {"agent": "a1", "campaign": "c9"}
    assert (call.to, call.from_, call.ring_timeout, call.time_limit) == (CUSTOMER, EXOPHONE, 30, 600)
    # Connect answers "in-progress" at once, before anyone answered: the hub sees queued.
    assert (placed.raw_status, placed.status) == ("in-progress", CallStatus.QUEUED)


async def test_media_stream_through_the_voicebot_flow_and_its_dynamic_url() -> None:
    async with FakeExotel() as fake, Hub(fake.flow_options) as hub:
        fake.answer_url = hub.answer_url
        action = stream_action(hub, "hc-2", "tok2", agent="a2")
        placed = await telephony().place_call(
            SECRET, fake.flow_options, hub.place("hc-2", "tok2", action), timeout=5
        )
        call = fake.calls[placed.provider_call_id]
        assert (
            dict(call.params)["Url"]
            == f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/{VOICEBOT_APP_ID}"
        )
        assert dict(call.params)["CallType"] == "trans"
        assert "StreamUrl" not in dict(call.params)
        assert dict(call.params)["CustomField"] == "hc-2.tok2"
        result = await fake.answer_media(
            placed.provider_call_id, tone(0.5), audio_format=PCM8K, realtime=False, receive_seconds=0.2
        )
    # Exotel asked the hub's fixed answer URL, which found the call through CustomField.
    assert call.answer_fetches[0]["CustomField"] == "hc-2.tok2"
    assert hub.answered[0].form["CallSid"] == placed.provider_call_id
    assert result.url == f"{hub.media_url('hc-2', 'tok2')}?agent=a2"
    assert result.custom_parameters == {"agent": "a2"}
    start = hub.media[0].of(MediaEventKind.START)[0].start
    assert start is not None
    assert start.custom_parameters == {"agent": "a2"}
    assert start.provider_call_id == placed.provider_call_id


async def test_flow_media_stream_refuses_metadata_and_needs_the_token() -> None:
    async with FakeExotel() as fake, Hub(fake.flow_options) as hub:
        action = stream_action(hub, "hc-3", "tok3")
        with pytest.raises(InvalidRequest, match="stream_parameters"):
            await telephony().place_call(
                SECRET, fake.flow_options, hub.place("hc-3", "tok3", action, metadata={"m": "1"}), timeout=5
            )
        tokenless = hub.place("hc-3", "tok3", action)
        tokenless.call_token = ""
        with pytest.raises(InvalidRequest, match="call_token is required"):
            await telephony().place_call(SECRET, fake.flow_options, tokenless, timeout=5)
    assert fake.requests == []


async def test_say_goes_through_the_greeting_flow_which_reads_the_text_from_the_hub() -> None:
    text = "Namaste. Your order has shipped."
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        fake.answer_url = hub.answer_url
        action = CallAction(CallActionKind.SAY, text=text)
        placed = await telephony().place_call(
            SECRET, fake.options, hub.place("hc-4", "tok4", action), timeout=5
        )
        call = fake.calls[placed.provider_call_id]
        assert (
            dict(call.params)["Url"]
            == f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/{GREETING_APP_ID}"
        )
        assert await fake.fetch_greeting(placed.provider_call_id) == text
    assert call.spoken == [text]
    assert [hook.method for hook in hub.answered] == ["HEAD", "GET"]


@pytest.mark.parametrize(
    ("action", "options_change", "message"),
    [
        (CallAction(CallActionKind.SAY, text="hi", voice="Aditi"), {}, "voice and language"),
        (CallAction(CallActionKind.SAY, text="hi", language="hi-IN"), {}, "voice and language"),
        (CallAction(CallActionKind.SAY, text="  "), {}, "action.text"),
        (CallAction(CallActionKind.SAY, text="hi"), {"greeting_app_id": ""}, "greeting_app_id is required"),
        (CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions="<Response/>"), {}, "App Bazaar flow"),
        (
            CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions="https://evil.example/flow"),
            {},
            "App Bazaar flow",
        ),
        (CallAction(CallActionKind.MEDIA_STREAM, media_url="https://hub.example/m"), {}, "ws:// or wss://"),
    ],
)
async def test_actions_exotel_cannot_do_are_refused_before_anything_is_sent(
    action: CallAction, options_change: dict[str, str], message: str
) -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        options = {k: v for k, v in {**fake.options, **options_change}.items() if v}
        with pytest.raises(InvalidRequest, match=message):
            await telephony().place_call(SECRET, options, hub.place("hc-5", "tok5", action), timeout=5)
    assert fake.requests == []


async def test_provider_instructions_are_a_flow_passed_through() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        fake.flows["4321"] = FakeFlow("ivr")
        by_id = CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions="4321")
        placed = await telephony().place_call(
            SECRET, fake.options, hub.place("hc-6", "tok6", by_id), timeout=5
        )
        flow = f"https://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/4321"
        by_url = CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions=flow)
        again = await telephony().place_call(
            SECRET, fake.options, hub.place("hc-7", "tok7", by_url), timeout=5
        )
        with pytest.raises(InvalidRequest, match="metadata"):
            await telephony().place_call(
                SECRET, fake.options, hub.place("hc-8", "tok8", by_id, metadata={"m": "1"}), timeout=5
            )
    assert (
        fake.calls[placed.provider_call_id].flow_url
        == f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/4321"
    )
    assert fake.calls[again.provider_call_id].flow_url == flow
    assert fake.calls[again.provider_call_id].call_type == "trans"


def test_a_mumbai_account_runs_its_flows_on_my_in_exotel_com() -> None:
    options = {"account_sid": "acme", "api_key": "k", "subdomain": "api.in.exotel.com"}
    assert wire.flow_url(options, "77") == "http://my.in.exotel.com/acme/exoml/start_voice/77"
    assert (
        str(wire.target(options).url("Calls.json")) == "https://api.in.exotel.com/v1/Accounts/acme/Calls.json"
    )
    assert str(wire.target({"account_sid": "acme"}).root) == "https://api.exotel.com"


async def test_limits_exotel_sets_are_checked_first() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        action = stream_action(hub, "hc-9", "tok9")
        cases: list[tuple[PlaceCallRequest, str]] = [
            (
                hub.place("hc-9", "tok9", action, machine_detection=MachineDetection.DETECT),
                "answering-machine",
            ),
            (hub.place("hc-9", "tok9", action, time_limit_seconds=14401), "14400"),
            (hub.place("hc-9", "tok9", action, ring_timeout_seconds=0), "ring_timeout_seconds"),
            (
                hub.place("hc-9", "tok9", action, metadata={"a": "1", "b": "2", "c": "3", "d": "4"}),
                "at most 3",
            ),
            (hub.place("hc-9", "tok9", action, metadata={"big": "x" * 300}), "256"),
            (hub.place("hc-9", "tok9", action, metadata={"sample-rate": "16000"}), "stream_sample_rate"),
            (hub.place("h" * 100, "t" * 40, stream_action(hub, "h", "t")), "128"),
            (hub.place("hc-9", "to.k", action), "must not contain"),
        ]
        long_url = CallAction(CallActionKind.MEDIA_STREAM, media_url="wss://hub.example/" + "m" * 600)
        cases.append((hub.place("hc-9", "tok9", long_url), "600"))
        for request, message in cases:
            with pytest.raises(InvalidRequest, match=message):
                await telephony().place_call(SECRET, fake.options, request, timeout=5)
    assert fake.requests == []


async def test_the_sample_rate_option_asks_exotel_for_16k_audio(speech: Speech) -> None:
    async with FakeExotel() as fake, Hub({**fake.options, "stream_sample_rate": "16000"}) as hub:
        options = hub.options
        placed = await telephony().place_call(
            SECRET, options, hub.place("hc-10", "tok10", stream_action(hub, "hc-10", "tok10")), timeout=5
        )
        assert dict(fake.calls[placed.provider_call_id].params)["StreamUrl"].endswith("?sample-rate=16000")
        hub.reply_audio = tone(0.3, 16000)
        result = await fake.answer_media(
            placed.provider_call_id,
            speech.file("wav_16k"),
            audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
            realtime=False,
            receive_seconds=0.5,
        )
    log = hub.media[0]
    assert log.query == {"sample-rate": "16000"}
    assert log.session.native_format == AudioFormat(E.PCM_S16LE, C.RAW, 16000, 1)
    assert log.session.frame_bytes == 3200  # Exotel's 3.2 kB minimum: 100 ms at 16 kHz
    reference = speech.reference_at(16000)
    assert abs(len(log.audio) // 2 - len(reference)) <= 16000 * 0.1
    assert result.violations == []
    assert all(len(piece.data) % 640 == 0 for piece in result.audio)


# --- reading and ending calls ---------------------------------------------------------


async def test_get_call_follows_the_call_through_its_callbacks() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        request = hub.place("hc-11", "tok11", stream_action(hub, "hc-11", "tok11"))
        sid = (await telephony().place_call(SECRET, fake.options, request, timeout=5)).provider_call_id
        seen = [await telephony().get_call(SECRET, fake.options, sid, timeout=5)]
        for status in (CallStatus.RINGING, CallStatus.IN_PROGRESS):
            assert await fake.send_status(sid, status) == 200
            seen.append(await telephony().get_call(SECRET, fake.options, sid, timeout=5))
        assert await fake.send_status(sid, CallStatus.COMPLETED, ConversationDuration=42, Duration=47) == 200
        seen.append(await telephony().get_call(SECRET, fake.options, sid, timeout=5))
        assert fake.requests[-1]["query"] == {"details": "true"}
        assert fake.requests[-1]["path"] == f"/v1/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
        with pytest.raises(NotFound) as missing:
            await telephony().get_call(SECRET, fake.options, "0" * 32, timeout=5)
    assert [(s.status, s.raw_status) for s in seen] == [
        (CallStatus.QUEUED, "queued"),
        (CallStatus.RINGING, "ringing"),
        (CallStatus.IN_PROGRESS, "in-progress"),
        (CallStatus.COMPLETED, "completed"),
    ]
    assert seen[-1].duration_seconds == 47.0
    assert seen[0].duration_seconds is None
    assert all(s.provider_call_id == sid for s in seen)
    assert "not found" in missing.value.message
    assert missing.value.provider_status == 404


async def test_hangup_says_exotel_cannot_end_a_live_call_and_returns_once_it_ended() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        request = hub.place("hc-12", "tok12", stream_action(hub, "hc-12", "tok12"))
        sid = (await telephony().place_call(SECRET, fake.options, request, timeout=5)).provider_call_id
        await fake.send_status(sid, CallStatus.IN_PROGRESS)
        with pytest.raises(NotSupported) as live:
            await telephony().hangup(SECRET, fake.options, HangupRequest(sid), timeout=5)
        await fake.send_status(sid, CallStatus.COMPLETED)
        await telephony().hangup(SECRET, fake.options, HangupRequest(sid), timeout=5)
        with pytest.raises(NotFound):
            await telephony().hangup(SECRET, fake.options, HangupRequest("f" * 32), timeout=5)
    assert live.value.provider == "exotel"
    assert "cannot end a call" in str(live.value)
    assert "in-progress" in str(live.value)
    assert [r["method"] for r in fake.requests] == ["POST", "GET", "GET", "GET"]  # nothing else was tried


async def test_the_hub_closing_the_media_websocket_ends_a_voicebot_call() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        hub.hang_up_after = 0.2
        request = hub.place("hc-13", "tok13", stream_action(hub, "hc-13", "tok13"))
        sid = (await telephony().place_call(SECRET, fake.options, request, timeout=5)).provider_call_id
        result = await fake.answer_media(sid, tone(3.0), audio_format=PCM8K, realtime=True, receive_seconds=2)
        state = await telephony().get_call(SECRET, fake.options, sid, timeout=5)
        await telephony().hangup(SECRET, fake.options, HangupRequest(sid), timeout=5)
    assert result.closed_by_hub
    assert sid in fake.hung_up
    assert result.sent_chunks < 30  # the call ended under the audio
    assert state.status is CallStatus.COMPLETED


# --- errors ---------------------------------------------------------------------------


async def test_an_invalid_number_is_exotels_400_with_its_message_and_code() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        request = hub.place("hc-14", "tok14", stream_action(hub, "hc-14", "tok14"))
        request.to = "+91-not-a-number"
        with pytest.raises(InvalidRequest) as bad:
            await telephony().place_call(SECRET, fake.options, request, timeout=5)
        fake.fail_next("bad_number")
        request.to = CUSTOMER
        with pytest.raises(InvalidRequest) as forced:
            await telephony().place_call(SECRET, fake.options, request, timeout=5)
    assert (
        bad.value.message == "Exotel: From number +91-not-a-number is not a valid phone number (code 34001)"
    )
    assert bad.value.provider_status == 400
    assert "code 34001" in forced.value.message
    no_secret_in(bad.value)


@pytest.mark.parametrize(
    ("kind", "expected", "status"),
    [
        ("unauthorized", AuthenticationFailed, 401),
        ("rate_limited", RateLimited, 429),
        ("down", ProviderUnavailable, 503),
        ("reset", ProviderUnavailable, None),
    ],
)
async def test_provider_failures_map_to_the_caller_errors(
    kind: str, expected: type[CallerError], status: int | None
) -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        request = hub.place("hc-15", "tok15", stream_action(hub, "hc-15", "tok15"))
        # aiohttp resends an idempotent request (GET) once when its connection drops
        # (RFC 9112 section 9.3.1): each GET then meets two resets.
        fake.fail_next(kind, count=5 if kind == "reset" else 3)
        failures: list[CallerError] = []
        for attempt in (
            telephony().place_call(SECRET, fake.options, request, timeout=5),
            telephony().get_call(SECRET, fake.options, "a" * 32, timeout=5),
            telephony().hangup(SECRET, fake.options, HangupRequest("a" * 32), timeout=5),
        ):
            with pytest.raises(expected) as caught:
                await attempt
            failures.append(caught.value)
    for failure in failures:
        assert failure.provider_status == status
        no_secret_in(failure)
    if kind == "rate_limited":
        assert all(f.retry_after == 7.0 for f in failures)
        assert "Rate limit exceeded" in failures[0].message
    if kind == "unauthorized":
        assert (
            failures[0].message
            == "Exotel: Authentication failed. Invalid API Key or Token. (code UNAUTHORIZED)"
        )


async def test_a_wrong_token_or_account_is_refused_and_never_quoted() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        request = hub.place("hc-16", "tok16", stream_action(hub, "hc-16", "tok16"))
        with pytest.raises(AuthenticationFailed) as wrong_token:
            await telephony().place_call(PlainSecret(api_token=WRONG_TOKEN), fake.options, request, timeout=5)
        with pytest.raises(AuthenticationFailed, match="INVALID_ACCOUNT_SID") as wrong_sid:
            await telephony().get_call(SECRET, {**fake.options, "account_sid": "other"}, "a" * 32, timeout=5)
    no_secret_in(wrong_token.value)
    no_secret_in(wrong_sid.value)


async def test_timeouts_and_refused_connections() -> None:
    async with FakeExotel(delay=1.5) as fake, Hub(fake.options) as hub:
        request = hub.place("hc-17", "tok17", stream_action(hub, "hc-17", "tok17"))
        started = time.monotonic()
        with pytest.raises(ProviderTimeout) as slow:
            await telephony().place_call(SECRET, fake.options, request, timeout=0.3)
        assert time.monotonic() - started < 1.0
        with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1") as refused:
            await telephony().get_call(SECRET, NOWHERE, "a" * 32, timeout=2)
    no_secret_in(slow.value)
    no_secret_in(refused.value)


# --- verify ---------------------------------------------------------------------------


async def test_verify_lists_one_call_and_tells_a_bad_credential() -> None:
    async with FakeExotel() as fake:
        good = await verifier().verify(SECRET, fake.options, timeout=5)
        assert fake.requests[-1]["path"] == f"/v1/Accounts/{ACCOUNT_SID}/Calls.json"
        assert fake.requests[-1]["query"] == {"PageSize": "1"}
        bad = await verifier().verify(PlainSecret(api_token=WRONG_TOKEN), fake.options, timeout=5)
        other = await verifier().verify(SECRET, {**fake.options, "account_sid": "nobody"}, timeout=5)
        fake.fail_next("rate_limited")
        with pytest.raises(RateLimited):
            await verifier().verify(SECRET, fake.options, timeout=5)
        fake.fail_next("down")
        with pytest.raises(ProviderUnavailable):
            await verifier().verify(SECRET, fake.options, timeout=5)
    assert good.valid
    assert good.detail == {"cluster": "127.0.0.1", "calls": "0"}
    assert not bad.valid
    assert "Authentication failed" in bad.reason
    assert not other.valid
    assert WRONG_TOKEN not in bad.reason
    assert API_TOKEN not in bad.reason


async def test_registry_verify_reaches_the_fake() -> None:
    async with FakeExotel() as fake:
        result = await registry.verify("exotel", PlainSecret(**fake.secret), fake.options, timeout=5)
    assert result.valid


# --- status callbacks -----------------------------------------------------------------


async def test_every_status_exotel_posts_is_parsed() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        sids = {}
        for index, terminal in enumerate(
            (
                CallStatus.COMPLETED,
                CallStatus.BUSY,
                CallStatus.NO_ANSWER,
                CallStatus.FAILED,
                CallStatus.CANCELED,
            )
        ):
            hub_call_id = f"hc-s{index}"
            request = hub.place(hub_call_id, f"tk{index}", stream_action(hub, hub_call_id, f"tk{index}"))
            sid = (await telephony().place_call(SECRET, fake.options, request, timeout=5)).provider_call_id
            sids[terminal] = sid
            if terminal is CallStatus.COMPLETED:
                assert await fake.send_status(sid, CallStatus.RINGING) == 200
                assert await fake.send_status(sid, CallStatus.IN_PROGRESS) == 200
                legs = [{"OnCallDuration": 40, "Status": "completed", "AnsweredBy": "HUMAN"}]
                assert await fake.send_status(sid, terminal, ConversationDuration=40, Legs=legs) == 200
            else:
                assert await fake.send_status(sid, terminal) == 200
        with pytest.raises(ValueError, match="queued"):
            await fake.send_status(sids[CallStatus.BUSY], CallStatus.QUEUED)
    assert hub.refused == []
    assert [(e.status, e.raw_status) for e in hub.events] == [
        (CallStatus.RINGING, "ringing"),
        (CallStatus.IN_PROGRESS, "in-progress"),
        (CallStatus.COMPLETED, "completed"),
        (CallStatus.BUSY, "busy"),
        (CallStatus.NO_ANSWER, "no-answer"),
        (CallStatus.FAILED, "failed"),
        (CallStatus.CANCELED, "canceled"),
    ]
    ringing, answered, completed = hub.events[:3]
    sid = sids[CallStatus.COMPLETED]
    assert ringing.event_id == f"{sid}:ringing:ringing:{ringing.raw['DateUpdated']}"
    assert answered.event_id.startswith(f"{sid}:in-progress:answered:")
    assert completed.event_id.startswith(f"{sid}:completed:terminal:")
    assert len({e.event_id for e in hub.events}) == len(hub.events)
    assert completed.duration_seconds == 40.0
    assert ringing.duration_seconds is None
    assert completed.answered_by == "human"
    assert answered.answered_by is None
    assert completed.occurred_at is not None
    assert completed.occurred_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert completed.occurred_at == datetime.strptime(
        completed.raw["DateUpdated"], "%Y-%m-%d %H:%M:%S"
    ).replace(tzinfo=IST)
    assert completed.raw["EventType"] == "terminal"
    assert json.loads(completed.raw["Legs"])[0]["AnsweredBy"] == "HUMAN"
    # The call token rides in CustomField; it is dropped from what is kept.
    assert completed.raw["CustomField"] == "hc-s0"
    for index, event in enumerate(hub.events[2:]):
        assert f"tk{index}" not in json.dumps(event.raw)


async def test_form_encoded_and_default_callbacks_are_read_the_same() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        request = hub.place("hc-20", "tok20", stream_action(hub, "hc-20", "tok20"))
        sid = (await telephony().place_call(SECRET, fake.options, request, timeout=5)).provider_call_id
        fake.calls[sid].status_callback_content_type = ""  # Exotel's default: a form
        assert await fake.send_status(sid, CallStatus.IN_PROGRESS) == 200
        fake.calls[sid].status_callback_events = []  # nothing subscribed: the 4 default fields
        assert await fake.send_status(sid, CallStatus.COMPLETED) == 200
    assert fake.callbacks[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    answered, completed = hub.events
    assert (answered.status, answered.raw["EventType"]) == (CallStatus.IN_PROGRESS, "answered")
    assert set(completed.raw) == {"CallSid", "DateUpdated", "Status", "RecordingUrl"}
    assert completed.status is CallStatus.COMPLETED
    assert completed.event_id == f"{sid}:completed:terminal:{completed.raw['DateUpdated']}"


async def test_replays_keep_their_event_id_and_forgeries_are_stopped_by_the_url_token() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        request = hub.place("hc-21", "tok21", stream_action(hub, "hc-21", "tok21"))
        sid = (await telephony().place_call(SECRET, fake.options, request, timeout=5)).provider_call_id
        assert await fake.send_status(sid, CallStatus.IN_PROGRESS) == 200
        assert await fake.send_status(sid, CallStatus.IN_PROGRESS, replay_of=0) == 200
        assert await fake.send_status(sid, CallStatus.COMPLETED, forged=True) == 403
        assert await fake.send_status(sid, CallStatus.COMPLETED, unsigned=True) in (403, 404, 405)
    first, replayed = hub.events
    assert first.event_id == replayed.event_id  # the hub applies it once
    assert fake.callbacks[1].body == fake.callbacks[0].body
    assert len(hub.refused) >= 1
    assert "/tok21/" not in fake.callbacks[2].url


def test_authenticate_accepts_anything_because_exotel_signs_nothing() -> None:
    """Documented: the per-call URL token, checked by the hub, is the authentication. A
    forged body, a tampered one, another credential's secret: nothing here can tell."""
    body = json.dumps({"CallSid": "x" * 32, "Status": "completed", "DateUpdated": "2026-01-15 14:30:45"})
    hook = WebhookRequest(
        "POST", "https://hub.example/e", {"content-type": "application/json"}, body.encode(), {}
    )
    handler = events_handler()
    tampered = WebhookRequest(
        "POST", hook.url, hook.headers, body.replace("completed", "failed").encode(), {}
    )
    for secret, request in (
        (SECRET, hook),
        (PlainSecret(api_token="another-credential"), hook),
        (SECRET, tampered),
    ):
        handler.authenticate(secret, {}, request)  # does not raise
    assert handler.parse_events({}, tampered)[0].status is CallStatus.FAILED  # nothing can tell


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"Status": "completed"}', "application/json", "CallSid is missing"),
        (b'{"CallSid": "abc"}', "application/json", "Status is missing"),
        (b"{not json", "application/json", "does not parse"),
        (b"[1, 2]", "application/json", "not an object"),
        (
            b'{"CallSid": "abc", "Status": "busy", "DateUpdated": "yesterday"}',
            "application/json",
            "DateUpdated",
        ),
    ],
)
def test_malformed_callbacks_are_invalid_requests(body: bytes, content_type: str, message: str) -> None:
    hook = WebhookRequest("POST", "https://hub.example/e", {"content-type": content_type}, body, {})
    with pytest.raises(InvalidRequest, match=message):
        events_handler().parse_events({}, hook)


def test_statuses_the_hub_does_not_track_have_no_status() -> None:
    def parse(status: str) -> CallEvent:
        body = json.dumps({"CallSid": "abc", "Status": status, "EventType": "terminal"}).encode()
        hook = WebhookRequest("POST", "https://h/e", {"content-type": "application/json"}, body, {})
        return events_handler().parse_events({}, hook)[0]

    assert parse("queued").status is CallStatus.QUEUED
    assert parse("cancelled").status is CallStatus.CANCELED
    odd = parse("on-hold")
    assert (odd.status, odd.raw_status, odd.occurred_at) == (None, "on-hold", None)


# --- the answer URL -------------------------------------------------------------------


def test_call_reference_reads_custom_field_and_refuses_a_request_without_one() -> None:
    query = WebhookRequest(
        "GET", "https://hub.example/telephony/v1/exotel/answer", {}, b"", {"CustomField": "hc.x.tok"}
    )
    assert exotel_webhooks.call_reference(query) == ("hc.x", "tok")
    in_url = WebhookRequest("HEAD", "https://hub.example/a?CallSid=1&CustomField=hc-9.t9", {}, b"", {})
    assert exotel_webhooks.call_reference(in_url) == ("hc-9", "t9")
    for value in ("", "no-dot", ".tok", "hc."):
        with pytest.raises(WebhookRejected, match="no call reference"):
            exotel_webhooks.call_reference(
                WebhookRequest("GET", "https://h/a", {}, b"", {"CustomField": value})
            )


def test_answer_gives_the_applets_what_they_expect() -> None:
    handler = events_handler()
    hook = WebhookRequest("GET", "https://hub.example/a", {}, b"", {"CustomField": "hc.t"})
    stream = CallAction(
        CallActionKind.MEDIA_STREAM, media_url="wss://hub.example/m/hc/t/media", stream_parameters={"a": "1"}
    )
    answered = handler.answer({"stream_sample_rate": "24000"}, hook, stream)
    assert answered.content_type == "application/json"
    assert json.loads(answered.body) == {"url": "wss://hub.example/m/hc/t/media?a=1&sample-rate=24000"}
    said = handler.answer({}, hook, CallAction(CallActionKind.SAY, text="नमस्ते"))
    assert (said.content_type, said.body.decode()) == ("text/plain", "नमस्ते")
    with pytest.raises(InvalidRequest, match="provider_instructions"):
        handler.answer({}, hook, CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions="12"))


# --- media ----------------------------------------------------------------------------


async def test_media_both_ways_with_real_speech_in_real_time(speech: Speech) -> None:
    reply = tone(1.05)  # 1.05 s: five 200 ms frames (3.2 kB) and a 50 ms tail
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        hub.reply_audio, hub.mark_after_reply = reply, "reply-done"
        request = hub.place(
            "hc-30", "tok30", stream_action(hub, "hc-30", "tok30", agent="a1"), metadata={"k": "v"}
        )
        sid = (await telephony().place_call(SECRET, fake.options, request, timeout=5)).provider_call_id
        wav = speech.file("wav_8k")
        result = await fake.answer_media(
            sid,
            wav,
            audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
            realtime=True,
            receive_seconds=0.6,
            dtmf="5",
        )
    log = hub.media[0]
    kinds = [event.kind for event, _ in log.events]
    assert kinds[0] is MediaEventKind.START
    assert kinds[-1] is MediaEventKind.STOP
    start = log.events[0][0].start
    assert start is not None
    assert start.provider_call_id == sid
    assert start.stream_id == result.stream_sid
    assert (start.from_, start.to) == (CUSTOMER, EXOPHONE)
    assert start.custom_parameters == {"agent": "a1", "k": "v"}
    assert log.session.native_format == PCM8K
    assert log.session.frame_bytes == 3200
    assert [event.digit for event in log.of(MediaEventKind.DTMF)] == ["5"]
    # What the hub heard is the speech: as long, not silence, the same waveform.
    heard = (np.frombuffer(log.audio, dtype="<i2") / 32768).astype(np.float32)
    reference = speech.reference_at(8000)
    assert abs(len(heard) - len(reference)) <= 800  # within the last 100 ms chunk
    assert rms(heard) > 0.01
    assert aligned_correlation(heard, reference) > 0.95
    # ... and it came at the pace of the call.
    audio_times = [at for event, at in log.events if event.kind is MediaEventKind.AUDIO]
    assert audio_times[-1] - audio_times[0] == pytest.approx(len(reference) / 8000 - 0.1, abs=0.4)
    # What the hub said arrived as Exotel takes it: 3.2 kB frames, a tail padded to 20 ms.
    assert log.frames_sent == [3200] * 5 + [800]
    assert [len(piece.data) for piece in result.audio] == [3200] * 5 + [960]
    assert result.received[: len(reply)] == reply
    assert result.received[len(reply) :] == b"\x00" * 160
    assert result.violations == []
    # The mark came back once Exotel had played the audio before it (1.06 s of it).
    assert [name for name, _ in result.marks_received] == ["reply-done"]
    assert [event.mark for event in log.of(MediaEventKind.MARK)] == ["reply-done"]
    mark_at = next(at for event, at in log.events if event.kind is MediaEventKind.MARK)
    assert mark_at - log.sent_audio_at == pytest.approx(1.06, abs=0.25)


async def test_clear_drops_the_rest_and_the_pending_mark_comes_back_at_once() -> None:
    async with FakeExotel() as fake, Hub(fake.options) as hub:
        hub.reply_audio, hub.mark_after_reply, hub.clear_after = tone(4.0), "long-reply", 0.3
        request = hub.place("hc-31", "tok31", stream_action(hub, "hc-31", "tok31"))
        sid = (await telephony().place_call(SECRET, fake.options, request, timeout=5)).provider_call_id
        result = await fake.answer_media(
            sid, tone(1.0), audio_format=PCM8K, realtime=True, receive_seconds=0.5
        )
    log = hub.media[0]
    assert len(result.clears) == 1
    assert result.clears[0] - log.clear_sent_at < 0.2
    mark_at = next(at for event, at in log.events if event.kind is MediaEventKind.MARK)
    assert mark_at - log.sent_audio_at < 1.0  # not after the 4 s of audio
    assert result.violations == []


async def test_malformed_media_messages_are_invalid_requests() -> None:
    session = media().open_session({}, MediaOptions())
    assert session.native_format is None
    assert session.frame_bytes == 3200
    with pytest.raises(InvalidRequest, match="before the stream's start"):
        session.audio_frame(b"\x00" * 320)
    with pytest.raises(InvalidRequest, match="before the stream's start"):
        session.mark("m")
    for message, what in (
        (b"\x00\x01", "binary"),
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"media": {}}', "without an event"),
        ('{"event": "start", "start": {"stream_sid": "s"}}', "call_sid"),
        ('{"event": "start"}', "'start'"),
        ('{"event": "media", "media": {}}', "base64 payload"),
        ('{"event": "media", "media": {"payload": "%%%"}}', "not valid base64"),
        ('{"event": "dtmf", "dtmf": {"duration": "200"}}', "without a digit"),
        (
            '{"event": "start", "start": {"stream_sid": "s", "call_sid": "c", '
            '"media_format": {"sample_rate": "11025"}}}',
            "11025",
        ),
    ):
        with pytest.raises(InvalidRequest, match=what):
            session.decode(message)
    assert session.decode('{"event": "connected"}') == []
    assert session.decode('{"event": "something-new"}') == []
    started = session.decode(
        '{"event": "start", "stream_sid": "S1", "start": {"call_sid": "C1", "media_format": '
        '{"encoding": "audio/x-mulaw", "sample_rate": "8000"}}}'
    )
    assert started[0].start is not None
    assert started[0].start.stream_id == "S1"
    assert session.native_format == AudioFormat(E.MULAW, C.RAW, 8000, 1)
    assert session.frame_bytes == 3200
    frame = json.loads(str(session.audio_frame(b"\x7f" * 100).data))
    assert frame == {
        "event": "media",
        "stream_sid": "S1",
        "media": {"payload": base64.b64encode(b"\x7f" * 100 + b"\xff" * 60).decode()},
    }
    cleared, marked = session.clear(), session.mark("m1")
    assert cleared is not None
    assert marked is not None
    assert json.loads(str(cleared.data)) == {"event": "clear", "stream_sid": "S1"}
    assert json.loads(str(marked.data)) == {"event": "mark", "stream_sid": "S1", "mark": {"name": "m1"}}
    assert session.decode('{"event": "stop", "stop": {"reason": "stopped"}}')[0].kind is MediaEventKind.STOP
    assert math.isclose(session.frame_bytes / 8000, 0.4)  # mu-law: a byte a sample
