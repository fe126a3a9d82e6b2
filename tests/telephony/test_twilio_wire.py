"""Twilio Programmable Voice over its real wire: the callers (the twilio SDK's async path over
the pooled aiohttp session) against the loopback FakeTwilio, its signed status callbacks
received by a loopback receiver, and its side of a Media Stream played into a real
websocket server that uses the caller's MediaSession, with espeak-ng speech."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pytest
from aiohttp import WSMsgType, web

from callers import pools, registry
from callers.audio import g711
from callers.base import (
    AuthenticationFailed,
    CallerError,
    CallEventHandler,
    CallMedia,
    Capability,
    InvalidRequest,
    NotFound,
    NotSupported,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    Telephony,
    Verifier,
    WebhookRejected,
)
from callers.twilio import client as twilio_client
from callers.twilio import errors as twilio_errors
from callers.twilio import media as twilio_media
from callers.types import (
    AudioContainer,
    AudioEncoding,
    AudioFormat,
    CallAction,
    CallActionKind,
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
from tests.fakes.secret_fields import PlainSecret
from tests.fakes.twilio_server import FakeTwilio, MediaResult, twilio_signature
from tests.telephony.conftest import Speech

pytestmark = pytest.mark.timeout(30)

C, E = AudioContainer, AudioEncoding
MULAW = AudioFormat(E.MULAW, C.RAW, 8000, 1)
HUB_CALL = "hc_01HZX3TW"
TOKEN = "tok_5e4d3c2b1a0f9e8d7c6b5a4938271605"
TO, FROM = "+14155552671", "+14155550100"
NOWHERE = "http://127.0.0.1:9"  # nothing listens: a call would fail loudly
XML = '<?xml version="1.0" encoding="UTF-8"?>'


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as server:
        yield server


def secret_of(fake: FakeTwilio, **changes: str) -> PlainSecret:
    fields = {**fake.secret, **changes}
    return PlainSecret(**{k: v for k, v in fields.items() if v})


def telephony() -> Telephony:
    caller = registry.capability("twilio", Capability.TELEPHONY)
    assert isinstance(caller, Telephony)
    return caller


def webhooks() -> CallEventHandler:
    caller = registry.capability("twilio", Capability.CALL_EVENTS)
    assert isinstance(caller, CallEventHandler)
    return caller


def media() -> CallMedia:
    caller = registry.capability("twilio", Capability.CALL_MEDIA)
    assert isinstance(caller, CallMedia)
    return caller


def verifier() -> Verifier:
    caller = registry.capability("twilio", Capability.VERIFY)
    assert isinstance(caller, Verifier)
    return caller


def assert_no_secret(fake: FakeTwilio, error: BaseException) -> None:
    text = f"{error} {error.args!r} {error!r} {error.__context__!r} {error.__cause__!r}"
    for leaked in (fake.auth_token, fake.api_key_secret, "Basic "):
        assert leaked not in text, leaked
    basic = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
    assert basic not in text


# --- the hub's side: a webhook receiver and a media websocket server ---------------


@dataclass
class Received:
    request: WebhookRequest
    at: float


@dataclass
class HubServer:
    """The hub's public endpoints on loopback: events and the media websocket."""

    events: list[Received] = field(default_factory=list)
    media_script: (
        Callable[[web.WebSocketResponse, Any, list[tuple[MediaEvent, float]]], Coroutine[Any, Any, None]]
        | None
    ) = None
    media_events: list[tuple[MediaEvent, float]] = field(default_factory=list)
    media_sessions: list[Any] = field(default_factory=list)
    media_headers: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    async def __aenter__(self) -> HubServer:
        app = web.Application()
        app.router.add_post("/telephony/v1/calls/{call}/{token}/events", self._event)
        app.router.add_get("/telephony/v1/calls/{call}/{token}/media", self._media)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def url(self, what: str) -> str:
        return f"{self.base_url}/telephony/v1/calls/{HUB_CALL}/{TOKEN}/{what}"

    @property
    def media_url(self) -> str:
        return self.url("media").replace("http://", "ws://")

    @staticmethod
    async def as_webhook(request: web.Request) -> WebhookRequest:
        body = await request.read()
        if request.method == "GET":
            form = dict(request.query)
        else:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        headers = {k.lower(): v for k, v in request.headers.items()}
        return WebhookRequest(
            method=request.method, url=str(request.url), headers=headers, body=body, form=form
        )

    async def _event(self, request: web.Request) -> web.StreamResponse:
        self.events.append(Received(await self.as_webhook(request), time.monotonic()))
        return web.Response(status=204)

    async def _media(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.media_headers.append(headers)
        session = media().open_session({}, MediaOptions(headers=headers, query=request.query))
        self.media_sessions.append(session)
        script: asyncio.Task[None] | None = None
        try:
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                for event in session.decode(message.data):
                    self.media_events.append((event, time.monotonic()))
                    if event.kind is MediaEventKind.START and self.media_script is not None:
                        script = asyncio.create_task(self.media_script(ws, session, self.media_events))
        finally:
            if script is not None:
                script.cancel()
        return ws

    def kinds(self, kind: MediaEventKind) -> list[MediaEvent]:
        return [event for event, _ in self.media_events if event.kind is kind]


@pytest.fixture
async def hub() -> AsyncIterator[HubServer]:
    async with HubServer() as server:
        yield server


def stream_action(hub: HubServer, **parameters: str) -> CallAction:
    return CallAction(
        CallActionKind.MEDIA_STREAM,
        media_url=hub.media_url,
        stream_parameters={"hub_call_id": HUB_CALL, **parameters},
    )


def call_request(hub: HubServer, action: CallAction, **changes: Any) -> PlaceCallRequest:
    request = PlaceCallRequest(
        to=TO,
        from_=FROM,
        action=action,
        status_callback_url=hub.url("events"),
        answer_url=hub.url("answer"),
        hub_call_id=HUB_CALL,
        call_token=TOKEN,
    )
    return replace(request, **changes)


async def place(fake: FakeTwilio, hub: HubServer, action: CallAction | None = None, **changes: Any) -> str:
    request = call_request(hub, action or stream_action(hub), **changes)
    answer = await telephony().place_call(secret_of(fake), fake.options, request, timeout=5)
    return answer.provider_call_id


def sent_form(fake: FakeTwilio, index: int = -1) -> list[tuple[str, str]]:
    return list(fake.requests[index]["form"])


# --- the capabilities -------------------------------------------------------------


def test_spec_lists_the_telephony_capabilities_and_their_sdk() -> None:
    spec = registry.spec("twilio")
    assert spec.capabilities == {
        Capability.TELEPHONY,
        Capability.CALL_EVENTS,
        Capability.CALL_MEDIA,
        Capability.VERIFY,
    }
    assert spec.sdk_modules == ("twilio",)
    assert registry.sdk_installed("twilio")
    assert spec.with_defaults({})["api_base_url"] == "https://api.twilio.com"
    spec.validate(
        {"auth_token": "x" * 32}, {"account_sid": "AC" + "0" * 32, "api_base_url": "http://127.0.0.1:1"}
    )


def test_the_sdk_client_uses_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.setenv(name, f"env-{name.lower()}")

    async def build() -> None:
        sdk, http = twilio_client.sdk(
            PlainSecret(auth_token="t" * 32), {"account_sid": "AC" + "1" * 32}, timeout=5
        )
        assert (sdk.username, sdk.account_sid) == ("AC" + "1" * 32, "AC" + "1" * 32)
        assert (sdk.edge, sdk.region) == (None, None)
        assert sdk.api.base_url == "https://api.twilio.com"
        assert http.root == "https://api.twilio.com"
        assert "t" * 32 not in repr(sdk)

    asyncio.run(build())
    with pytest.raises(InvalidRequest, match="api_base_url"):
        twilio_client.api_root({"api_base_url": "https://api.twilio.com/2010-04-01"})
    assert twilio_client.api_root({"api_base_url": "http://[::1]:8080/"}) == "http://[::1]:8080"


async def test_media_stream_call_sends_inline_connect_stream_twiml(fake: FakeTwilio, hub: HubServer) -> None:
    request = call_request(hub, stream_action(hub, lang="en-GB"), metadata={"campaign": "spring"})
    answer = await telephony().place_call(secret_of(fake), fake.options, request, timeout=5)
    assert answer.raw_status == "queued"
    assert answer.status is CallStatus.QUEUED
    call = fake.calls[answer.provider_call_id]
    assert call.twiml == (
        f'{XML}<Response><Connect><Stream url="{hub.media_url}">'
        '<Parameter name="campaign" value="spring" />'
        f'<Parameter name="hub_call_id" value="{HUB_CALL}" />'
        '<Parameter name="lang" value="en-GB" />'
        "</Stream></Connect></Response>"
    )
    assert call.stream_url == hub.media_url
    assert call.stream_parameters == {"campaign": "spring", "hub_call_id": HUB_CALL, "lang": "en-GB"}
    assert (call.to, call.from_) == (TO, FROM)
    assert call.status_callback_url == hub.url("events")
    assert call.status_callback_events == ("initiated", "ringing", "answered", "completed")
    assert call.status_callback_method == "POST"
    assert (call.timeout, call.time_limit, call.machine_detection) == (None, None, None)
    assert "Url" not in call.raw  # the TwiML goes inline: Twilio fetches nothing at answer time
    sent = fake.requests[-1]
    assert sent["path"] == f"/2010-04-01/Accounts/{fake.account_sid}/Calls.json"
    assert sent["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert (
        sent["headers"]["Authorization"]
        == "Basic " + base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
    )
    assert sent["headers"]["User-Agent"].startswith("twilio-python/9.")
    assert [v for k, v in sent["form"] if k == "StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    assert HUB_CALL not in {v for k, v in sent["form"] if k not in ("Twiml",)}  # no idempotency key


async def test_say_call_speaks_with_voice_and_language_then_hangs_up(
    fake: FakeTwilio, hub: HubServer
) -> None:
    action = CallAction(
        CallActionKind.SAY, text="Your table is ready & waiting.", voice="Polly.Amy", language="en-GB"
    )
    call_id = await place(fake, hub, action)
    call = fake.calls[call_id]
    assert call.twiml == (
        f'{XML}<Response><Say language="en-GB" voice="Polly.Amy">Your table is ready &amp; waiting.</Say>'
        "<Hangup /></Response>"
    )
    assert call.say == {"text": "Your table is ready & waiting.", "voice": "Polly.Amy", "language": "en-GB"}
    plain = await place(fake, hub, CallAction(CallActionKind.SAY, text="Hi"))
    assert fake.calls[plain].twiml == f"{XML}<Response><Say>Hi</Say><Hangup /></Response>"


async def test_provider_instructions_pass_twiml_through(fake: FakeTwilio, hub: HubServer) -> None:
    twiml = '<Response><Play loop="2">https://example.com/hold.mp3</Play></Response>'
    call_id = await place(fake, hub, CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions=twiml))
    assert fake.calls[call_id].twiml == twiml
    sent = len(fake.requests)
    for bad, words in [
        ("", "TwiML document"),
        ("<Response><Say>unclosed</Response>", "not well-formed"),
        ("<Play>x</Play>", "root must be <Response>"),
        ('<!DOCTYPE r [<!ENTITY a "aaaa">]><Response>&a;</Response>', "DOCTYPE"),
        ("<Response>" + "<Pause/>" * 600 + "</Response>", "at most 4000"),
    ]:
        with pytest.raises(InvalidRequest, match=words):
            await place(fake, hub, CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions=bad))
    assert len(fake.requests) == sent  # refused before anything was sent


async def test_ring_timeout_time_limit_and_machine_detection(fake: FakeTwilio, hub: HubServer) -> None:
    call_id = await place(
        fake,
        hub,
        ring_timeout_seconds=25,
        time_limit_seconds=900,
        machine_detection=MachineDetection.DETECT,
    )
    call = fake.calls[call_id]
    assert (call.timeout, call.time_limit, call.machine_detection) == (25, 900, "Enable")
    assert call.async_amd
    assert call.async_amd_callback == hub.url("events")
    assert call.raw["AsyncAmdStatusCallbackMethod"] == ["POST"]
    assert call.raw["Timeout"] == ["25"]
    assert call.raw["TimeLimit"] == ["900"]


async def test_place_refuses_what_twilio_cannot_do_before_sending(fake: FakeTwilio, hub: HubServer) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ring_timeout_seconds": 0}, "1 to 600"),
        ({"ring_timeout_seconds": 601}, "1 to 600"),
        ({"time_limit_seconds": 0}, "at least 1"),
        ({"status_callback_url": "", "machine_detection": MachineDetection.DETECT}, "status_callback_url"),
        ({"action": CallAction(CallActionKind.SAY, text="  ")}, "must not be empty"),
        ({"action": CallAction(CallActionKind.MEDIA_STREAM, media_url="https://hub.example/m")}, "ws://"),
        (
            {"action": CallAction(CallActionKind.MEDIA_STREAM, media_url=hub.media_url + "?t=1")},
            "query string",
        ),
    ]
    for changes, words in cases:
        request = replace(call_request(hub, stream_action(hub)), **changes)
        with pytest.raises(InvalidRequest, match=words):
            await telephony().place_call(secret_of(fake), fake.options, request, timeout=5)
    assert fake.requests == []


async def test_api_key_auth_places_calls_but_not_ones_it_cannot_check(
    fake: FakeTwilio, hub: HubServer
) -> None:
    key = PlainSecret(**fake.key_secret)
    with pytest.raises(InvalidRequest, match=r"secret\.auth_token is needed") as refused:
        await telephony().place_call(key, fake.key_options, call_request(hub, stream_action(hub)), timeout=5)
    assert fake.requests == []
    assert_no_secret(fake, refused.value)
    quiet = call_request(hub, CallAction(CallActionKind.SAY, text="Hi"), status_callback_url="")
    answer = await telephony().place_call(key, fake.key_options, quiet, timeout=5)
    sent = fake.requests[-1]
    user = base64.b64decode(sent["headers"]["Authorization"][6:]).decode().split(":")[0]
    assert user == fake.api_key_sid  # the key's SID, not the account's
    assert sent["path"] == f"/2010-04-01/Accounts/{fake.account_sid}/Calls.json"
    assert "StatusCallback" not in fake.calls[answer.provider_call_id].raw
    # Both: the API key for REST, the Auth Token kept for signatures.
    both = PlainSecret(**fake.secret, **fake.key_secret)
    await telephony().place_call(both, fake.key_options, call_request(hub, stream_action(hub)), timeout=5)
    user = base64.b64decode(fake.requests[-1]["headers"]["Authorization"][6:]).decode().split(":")[0]
    assert user == fake.api_key_sid


async def test_get_call_follows_the_progression(fake: FakeTwilio, hub: HubServer) -> None:
    call_id = await place(fake, hub)
    state = await telephony().get_call(secret_of(fake), fake.options, call_id, timeout=5)
    assert (state.provider_call_id, state.status, state.raw_status) == (call_id, CallStatus.QUEUED, "queued")
    assert state.duration_seconds is None
    await fake.send_status(call_id, CallStatus.RINGING)
    state = await telephony().get_call(secret_of(fake), fake.options, call_id, timeout=5)
    assert (state.status, state.raw_status) == (CallStatus.RINGING, "ringing")
    await fake.send_status(call_id, CallStatus.IN_PROGRESS)
    state = await telephony().get_call(secret_of(fake), fake.options, call_id, timeout=5)
    assert (state.status, state.raw_status, state.duration_seconds) == (
        CallStatus.IN_PROGRESS,
        "in-progress",
        None,
    )
    fake.calls[call_id].start_time = fake.calls[call_id].start_time.replace(year=2020)  # type: ignore[union-attr]
    await fake.send_status(call_id, CallStatus.COMPLETED)
    state = await telephony().get_call(secret_of(fake), fake.options, call_id, timeout=5)
    assert (state.status, state.raw_status) == (CallStatus.COMPLETED, "completed")
    assert state.duration_seconds is not None
    assert state.duration_seconds > 86400
    assert fake.requests[-1]["path"] == f"/2010-04-01/Accounts/{fake.account_sid}/Calls/{call_id}.json"
    fake.calls[call_id].answered_by = "machine_end_beep"
    state = await telephony().get_call(secret_of(fake), fake.options, call_id, timeout=5)
    assert state.answered_by == "machine"
    with pytest.raises(NotFound, match="20404"):
        await telephony().get_call(secret_of(fake), fake.options, "CA" + "0" * 32, timeout=5)
    count = len(fake.requests)
    with pytest.raises(InvalidRequest, match="Call SID"):
        await telephony().get_call(secret_of(fake), fake.options, "../../Accounts", timeout=5)
    assert len(fake.requests) == count


async def test_hangup_ends_a_live_call_and_an_ended_one_quietly(fake: FakeTwilio, hub: HubServer) -> None:
    answered = await place(fake, hub)
    await fake.send_status(answered, CallStatus.IN_PROGRESS)
    await telephony().hangup(secret_of(fake), fake.options, HangupRequest(answered), timeout=5)
    assert fake.requests[-1]["method"] == "POST"
    assert fake.requests[-1]["path"].endswith(f"/Calls/{answered}.json")
    assert fake.requests[-1]["form"] == [("Status", "completed")]
    assert answered in fake.hung_up
    assert fake.calls[answered].status == "completed"
    ringing = await place(fake, hub)
    await fake.send_status(ringing, CallStatus.RINGING)
    await telephony().hangup(secret_of(fake), fake.options, HangupRequest(ringing), timeout=5)
    assert fake.calls[ringing].status == "canceled"
    # Already ended: Twilio answers the ended call (200), or 21220: both are fine.
    await telephony().hangup(secret_of(fake), fake.options, HangupRequest(answered), timeout=5)
    fake.ended_update_error = True
    count = len(fake.requests)
    await telephony().hangup(secret_of(fake), fake.options, HangupRequest(answered), timeout=5)
    assert [r["method"] for r in fake.requests[count:]] == ["POST", "GET"]  # refused, then read back
    with pytest.raises(NotFound):
        await telephony().hangup(secret_of(fake), fake.options, HangupRequest("CA" + "f" * 32), timeout=5)


async def test_every_error_is_classified(fake: FakeTwilio, hub: HubServer) -> None:
    request = call_request(hub, stream_action(hub))
    cases: list[tuple[str, type[CallerError], str]] = [
        ("bad_number", InvalidRequest, "Invalid 'To' Phone Number"),
        ("unauthorized", AuthenticationFailed, "Authenticate"),
        ("rate_limited", RateLimited, "Too Many Requests"),
        ("down", ProviderUnavailable, "Service Unavailable"),
        ("reset", ProviderUnavailable, "127.0.0.1"),
    ]
    errors: list[CallerError] = []
    for kind, expected, words in cases:
        fake.fail_next(kind)
        with pytest.raises(expected, match=words) as caught:
            await telephony().place_call(secret_of(fake), fake.options, request, timeout=5)
        errors.append(caught.value)
        assert type(caught.value) is expected, kind
    bad_number, unauthorized, rate_limited, down, _ = errors
    assert "error 21211" in bad_number.message
    assert bad_number.provider_status == 400
    assert unauthorized.provider_status == 401
    assert "error 20003" in unauthorized.message
    assert rate_limited.retry_after == 3.0
    assert "error 20429" in rate_limited.message
    assert down.provider_status == 503
    # Twilio's own checks, answered as Twilio answers them.
    with pytest.raises(InvalidRequest, match="21211") as caught:
        await telephony().place_call(secret_of(fake), fake.options, replace(request, to="+1555"), timeout=5)
    errors.append(caught.value)
    with pytest.raises(InvalidRequest, match=r"not yet verified.*21210") as caught:
        await telephony().place_call(
            secret_of(fake), fake.options, replace(request, from_="+12025550123"), timeout=5
        )
    errors.append(caught.value)
    with pytest.raises(AuthenticationFailed, match="20003") as caught:
        await telephony().place_call(secret_of(fake, auth_token="0" * 32), fake.options, request, timeout=5)
    errors.append(caught.value)
    for error in errors:
        assert_no_secret(fake, error)


async def test_timeout_and_refused_connections(fake: FakeTwilio, hub: HubServer) -> None:
    fake.delay = 2.0
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"127\.0\.0\.1") as slow:
        await telephony().get_call(secret_of(fake), fake.options, "CA" + "0" * 32, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert_no_secret(fake, slow.value)
    fake.delay = 0
    nowhere = {**fake.options, "api_base_url": NOWHERE}
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1") as refused:
        await telephony().place_call(
            secret_of(fake), nowhere, call_request(hub, stream_action(hub)), timeout=2
        )
    assert_no_secret(fake, refused.value)


def test_error_bodies_that_are_not_twilio_json() -> None:
    error = twilio_errors.http_error(502, "<html>Bad gateway</html>", None)
    assert isinstance(error, ProviderUnavailable)
    assert error.message == "Twilio: <html>Bad gateway</html>"
    problem = json.dumps(
        {"type": "https://x/e", "title": "Forbidden", "status": 403, "code": 20403, "detail": "No"}
    )
    assert isinstance(twilio_errors.http_error(403, problem, None), PermissionDenied)
    geo = json.dumps({"code": 21215, "message": "Account not authorized to call +2125550123", "status": 400})
    assert isinstance(twilio_errors.http_error(400, geo, None), PermissionDenied)
    echoed = twilio_errors.http_error(
        400, json.dumps({"code": 21211, "message": "bad sekrit-value"}), None, secrets=["sekrit-value"]
    )
    assert "sekrit-value" not in echoed.message


async def test_verify_reads_the_account_or_with_a_key_its_calls(fake: FakeTwilio) -> None:
    result = await verifier().verify(secret_of(fake), fake.options, timeout=5)
    assert result.valid
    assert result.detail == {"status": "active", "type": "Full"}
    assert fake.requests[-1]["path"] == f"/2010-04-01/Accounts/{fake.account_sid}.json"
    assert fake.auth_token not in repr(result)  # the Account resource holds the token
    bad = await verifier().verify(secret_of(fake, auth_token="f" * 32), fake.options, timeout=5)
    assert not bad.valid
    assert "Authenticate" in bad.reason
    keyed = await verifier().verify(PlainSecret(**fake.key_secret), fake.key_options, timeout=5)
    assert keyed.valid
    assert fake.requests[-1]["path"] == f"/2010-04-01/Accounts/{fake.account_sid}/Calls.json"
    assert fake.requests[-1]["query"] == {"PageSize": "1"}
    wrong_key = await verifier().verify(PlainSecret(api_key_secret="nope" * 8), fake.key_options, timeout=5)
    assert not wrong_key.valid
    fake.account_status = "suspended"
    suspended = await verifier().verify(secret_of(fake), fake.options, timeout=5)
    assert (suspended.valid, suspended.reason) == (False, "the Twilio account is suspended")
    fake.fail_next("down")
    with pytest.raises(ProviderUnavailable) as down:
        await verifier().verify(secret_of(fake), fake.options, timeout=5)
    fake.fail_next("rate_limited")
    with pytest.raises(RateLimited):
        await verifier().verify(secret_of(fake), fake.options, timeout=5)
    assert_no_secret(fake, down.value)


# --- webhooks -------------------------------------------------------------------------


async def received(hub: HubServer, count: int) -> list[WebhookRequest]:
    for _ in range(200):
        if len(hub.events) >= count:
            break
        await asyncio.sleep(0.01)
    return [r.request for r in hub.events]


PROGRESSION = [
    (CallStatus.QUEUED, "initiated"),
    (CallStatus.RINGING, "ringing"),
    (CallStatus.IN_PROGRESS, "in-progress"),
    (CallStatus.COMPLETED, "completed"),
]


async def test_every_progress_event_authenticates_and_parses(fake: FakeTwilio, hub: HubServer) -> None:
    call_id = await place(fake, hub)
    for status, _ in PROGRESSION:
        assert await fake.send_status(call_id, status) == 204
    hooks = await received(hub, 4)
    events = []
    for hook in hooks:
        assert hook.headers["content-type"] == "application/x-www-form-urlencoded"
        assert hook.headers["x-twilio-signature"]
        webhooks().authenticate(secret_of(fake), fake.options, hook)
        (event,) = webhooks().parse_events(fake.options, hook)
        events.append(event)
    for sequence, ((status, word), event) in enumerate(zip(PROGRESSION, events, strict=True)):
        assert (event.provider_call_id, event.status, event.raw_status) == (call_id, status, word)
        assert event.event_id == f"{call_id}:{word}:{sequence}"
        assert event.occurred_at is not None
        assert abs(time.time() - event.occurred_at.timestamp()) < 60
        assert event.raw["CallSid"] == call_id
        assert event.raw["CallbackSource"] == "call-progress-events"
    assert [e.duration_seconds for e in events] == [None, None, None, 0.0]
    assert events[-1].raw["CallDuration"] == "0"
    assert len({e.event_id for e in events}) == 4


@pytest.mark.parametrize(
    ("status", "word", "error"),
    [
        (CallStatus.BUSY, "busy", "SIP 486"),
        (CallStatus.NO_ANSWER, "no-answer", "SIP 487"),
        (CallStatus.FAILED, "failed", ""),
        (CallStatus.CANCELED, "canceled", ""),
    ],
)
async def test_calls_that_never_connect_end_with_their_reason(
    fake: FakeTwilio, hub: HubServer, status: CallStatus, word: str, error: str
) -> None:
    call_id = await place(fake, hub)
    await fake.send_status(call_id, CallStatus.RINGING)
    assert await fake.send_status(call_id, status) == 204
    _, hook = await received(hub, 2)
    webhooks().authenticate(secret_of(fake), fake.options, hook)
    (event,) = webhooks().parse_events(fake.options, hook)
    assert (event.status, event.raw_status, event.event_id) == (status, word, f"{call_id}:{word}:1")
    assert event.status is not None
    assert event.status.terminal
    assert event.error == error
    assert event.duration_seconds == 0.0
    state = await telephony().get_call(secret_of(fake), fake.options, call_id, timeout=5)
    assert state.status is status


async def test_failure_details_answered_by_and_tokens_in_callbacks(fake: FakeTwilio, hub: HubServer) -> None:
    call_id = await place(fake, hub, machine_detection=MachineDetection.DETECT)
    await fake.send_status(
        call_id,
        CallStatus.FAILED,
        ErrorCode="32009",
        ErrorMessage="Destination unreachable",
        CallToken="%7B%22x",
    )
    assert await fake.send_amd(call_id, "machine_end_beep") == 204
    failed, amd = await received(hub, 2)
    for hook in (failed, amd):
        webhooks().authenticate(secret_of(fake), fake.options, hook)
    (event,) = webhooks().parse_events(fake.options, failed)
    assert event.error == "Destination unreachable (error 32009)"
    assert "CallToken" not in event.raw  # a token of Twilio's: not kept
    (detected,) = webhooks().parse_events(fake.options, amd)
    assert (detected.status, detected.raw_status, detected.answered_by) == (None, "answered_by", "machine")
    assert detected.event_id == f"{call_id}:amd:machine_end_beep"
    assert detected.raw["MachineDetectionDuration"] == "2310"
    await fake.send_amd(call_id, "human")
    (*_, human) = await received(hub, 3)
    webhooks().authenticate(secret_of(fake), fake.options, human)
    assert webhooks().parse_events(fake.options, human)[0].answered_by == "human"


async def test_forged_unsigned_tampered_and_foreign_callbacks_are_rejected(
    fake: FakeTwilio, hub: HubServer
) -> None:
    call_id = await place(fake, hub)
    await fake.send_status(call_id, CallStatus.RINGING, forged=True)
    await fake.send_status(call_id, CallStatus.IN_PROGRESS, unsigned=True)
    await fake.send_status(call_id, CallStatus.COMPLETED)
    forged, unsigned, good = await received(hub, 3)
    rejections: list[WebhookRejected] = []

    def rejected(hook: WebhookRequest, words: str, secret: PlainSecret | None = None) -> None:
        with pytest.raises(WebhookRejected, match=words) as caught:
            webhooks().authenticate(secret or secret_of(fake), fake.options, hook)
        rejections.append(caught.value)

    rejected(forged, "does not match")
    rejected(unsigned, "no X-Twilio-Signature")
    webhooks().authenticate(secret_of(fake), fake.options, good)
    fields = dict(parse_qsl(good.body.decode()))
    tampered_body = urlencode({**fields, "CallStatus": "busy"}).encode()
    rejected(replace(good, body=tampered_body, form={}), "does not match")
    rejected(replace(good, url=good.url.replace(TOKEN, "tok_other")), "does not match")
    rejected(replace(good, url=good.url + "?x=1"), "does not match")
    other = FakeTwilio()
    rejected(good, "does not match", PlainSecret(auth_token=other.auth_token))
    rejected(good, r"secret\.auth_token is needed", PlainSecret(**fake.key_secret))
    settings = {
        **good.headers,
        "x-twilio-webhooks-signature-settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
    }
    rejected(replace(good, headers=settings), "SharedKey")
    for error in rejections:
        assert_no_secret(fake, error)
        assert good.headers["x-twilio-signature"] not in error.message  # never the expected value


async def test_a_replayed_callback_has_the_same_event_id(fake: FakeTwilio, hub: HubServer) -> None:
    call_id = await place(fake, hub)
    await fake.send_status(call_id, CallStatus.RINGING)
    await fake.send_status(call_id, CallStatus.IN_PROGRESS, replay_of=0)
    first, replayed = await received(hub, 2)
    assert replayed.body == first.body
    assert replayed.headers["x-twilio-signature"] == first.headers["x-twilio-signature"]
    webhooks().authenticate(secret_of(fake), fake.options, replayed)  # the scheme has no timestamp
    (a,) = webhooks().parse_events(fake.options, first)
    (b,) = webhooks().parse_events(fake.options, replayed)
    assert a.event_id == b.event_id == f"{call_id}:ringing:0"


async def test_the_signature_covers_the_url_port_variants_and_repeated_fields(fake: FakeTwilio) -> None:
    url = "https://hub.example.com/telephony/v1/calls/hc_1/tok_1/events"
    fields = [
        ("CallSid", "CA" + "a" * 32),
        ("CallStatus", "ringing"),
        ("SequenceNumber", "0"),
        ("X", "2"),
        ("X", "1"),
    ]
    body = urlencode(fields).encode()
    signature = twilio_signature(fake.auth_token, url, fields)
    hook = WebhookRequest("POST", url, {"x-twilio-signature": signature}, body, dict(fields))
    webhooks().authenticate(secret_of(fake), {}, hook)
    with_port = replace(hook, url=url.replace("hub.example.com", "hub.example.com:443"))
    webhooks().authenticate(secret_of(fake), {}, with_port)  # Twilio's signing varies on the port
    # A form the receiver parsed with the last value of a repeated name still checks: the body is used.
    webhooks().authenticate(secret_of(fake), {}, replace(hook, form={"CallSid": "x"}))


def test_parse_events_of_malformed_bodies_and_answer() -> None:
    def hook(body: dict[str, str]) -> WebhookRequest:
        return WebhookRequest("POST", "https://h/e", {}, urlencode(body).encode(), body)

    with pytest.raises(InvalidRequest, match="no CallSid"):
        webhooks().parse_events({}, hook({"CallStatus": "ringing"}))
    with pytest.raises(InvalidRequest, match="neither CallStatus nor AnsweredBy"):
        webhooks().parse_events({}, hook({"CallSid": "CA" + "1" * 32}))
    (odd,) = webhooks().parse_events(
        {}, hook({"CallSid": "CA" + "1" * 32, "CallStatus": "paused", "SequenceNumber": "3"})
    )
    assert (odd.status, odd.raw_status) == (None, "paused")
    with pytest.raises(InvalidRequest, match="UTF-8"):
        webhooks().parse_events({}, WebhookRequest("POST", "https://h/e", {}, b"\xff\xfe", {}))
    with pytest.raises(NotSupported, match="twilio"):
        webhooks().answer({}, hook({}), CallAction(CallActionKind.SAY, text="hi"))


# --- media ----------------------------------------------------------------------------


def mulaw_floats(data: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    return (g711.decode(data, E.MULAW).astype(np.float32) / 32768.0).astype(np.float32)


def speech_mulaw(speech: Speech) -> bytes:
    return speech.file("raw_mulaw_8k")


def heard(hub: HubServer) -> bytes:
    return b"".join(event.audio for event in hub.kinds(MediaEventKind.AUDIO))


async def test_media_start_and_the_callers_speech_reach_the_hub(
    fake: FakeTwilio, hub: HubServer, speech: Speech
) -> None:
    call_id = await place(fake, hub, stream_action(hub, lang="en-GB"), metadata={"campaign": "spring"})
    result = await fake.answer_media(
        call_id,
        speech.file("wav_16k"),
        audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
        realtime=False,
        receive_seconds=0.3,
        dtmf="5#",
    )
    (start,) = hub.kinds(MediaEventKind.START)
    assert start.start is not None
    assert (start.start.provider_call_id, start.start.stream_id) == (call_id, result.stream_sid)
    assert start.start.custom_parameters == {"campaign": "spring", "hub_call_id": HUB_CALL, "lang": "en-GB"}
    assert hub.media_headers[0]["x-twilio-signature"]  # Twilio signs the handshake too
    (session,) = hub.media_sessions
    assert session.native_format == MULAW
    assert session.frame_bytes == 160
    frames = hub.kinds(MediaEventKind.AUDIO)
    assert len(frames) == result.sent_frames
    assert {len(event.audio) for event in frames[:-1]} == {160}
    reference = speech.reference_at(8000)
    got = mulaw_floats(heard(hub))
    assert len(got) == result.sent_bytes
    assert abs(len(got) - len(reference)) < 160  # the same length, resampled by another library
    assert rms(got) > 0.02  # speech, not silence
    n = min(len(got), len(reference))
    assert aligned_correlation(got[:n], reference[:n]) > 0.95
    assert [event.digit for event in hub.kinds(MediaEventKind.DTMF)] == ["5", "#"]
    assert len(hub.kinds(MediaEventKind.STOP)) == 1
    assert hub.media_events[-1][0].kind is MediaEventKind.STOP
    assert result.frames == []  # the hub sent nothing back
    assert fake.calls[call_id].status == "in-progress"


async def test_audio_sent_back_arrives_as_twilio_frames_and_marks_echo_after_playback(
    fake: FakeTwilio, hub: HubServer, speech: Speech
) -> None:
    reply = speech_mulaw(speech)[: 8000 - 70]  # about a second, not a whole number of frames

    async def answer(ws: web.WebSocketResponse, session: Any, events: list[tuple[MediaEvent, float]]) -> None:
        size = session.frame_bytes
        for at in range(0, len(reply), size):
            await ws.send_str(session.audio_frame(reply[at : at + size]).data)
        mark = session.mark("reply-1")
        assert mark is not None
        await ws.send_str(mark.data)

    hub.media_script = answer
    call_id = await place(fake, hub)
    result: MediaResult = await fake.answer_media(
        call_id, speech_mulaw(speech)[:1600], audio_format=MULAW, receive_seconds=1.6
    )
    assert result.errors == []
    assert len(result.frames) == -(-len(reply) // 160)
    assert {len(frame.data) for frame in result.frames[:-1]} == {160}
    assert result.audio == reply
    assert result.messages[0] == {
        "event": "media",
        "streamSid": result.stream_sid,
        "media": {"payload": base64.b64encode(reply[:160]).decode()},
    }
    assert result.messages[-1] == {
        "event": "mark",
        "streamSid": result.stream_sid,
        "mark": {"name": "reply-1"},
    }
    ((name, sent_at),) = result.marks
    assert sent_at >= result.frames[-1].at
    ((played, echoed_at),) = result.marks_played
    assert (name, played) == ("reply-1", "reply-1")
    assert echoed_at - result.frames[0].at >= len(reply) / 8000 * 0.9  # after the audio played
    marks = [(event, at) for event, at in hub.media_events if event.kind is MediaEventKind.MARK]
    assert [event.mark for event, _ in marks] == ["reply-1"]
    assert marks[0][1] >= echoed_at


async def test_realtime_audio_is_paced_and_clear_returns_the_discarded_marks(
    fake: FakeTwilio, hub: HubServer, speech: Speech
) -> None:
    long_reply = speech_mulaw(speech)[: 8000 * 3]  # three seconds

    async def barge_in(
        ws: web.WebSocketResponse, session: Any, events: list[tuple[MediaEvent, float]]
    ) -> None:
        for at in range(0, len(long_reply), session.frame_bytes):
            await ws.send_str(session.audio_frame(long_reply[at : at + session.frame_bytes]).data)
        await ws.send_str(session.mark("never-played").data)
        await asyncio.sleep(0.3)
        await ws.send_str(session.clear().data)
        await ws.send_str(session.audio_frame(long_reply[:160]).data)
        await ws.send_str(session.mark("after-clear").data)

    hub.media_script = barge_in
    call_id = await place(fake, hub)
    result = await fake.answer_media(
        call_id, speech_mulaw(speech)[:8000], audio_format=MULAW, realtime=True, receive_seconds=1.5
    )
    arrivals = [at for event, at in hub.media_events if event.kind is MediaEventKind.AUDIO]
    assert len(arrivals) == 50
    assert arrivals[-1] - arrivals[0] > 0.8  # 50 frames of 20 ms, paced as a call plays them
    assert result.errors == []
    assert len(result.clears) == 1
    assert result.messages[-3]["event"] == "clear"
    assert [name for name, _ in result.marks] == ["never-played", "after-clear"]
    # Twilio answers a clear with the marks it discarded, at once; then plays on.
    assert [name for name, _ in result.marks_played] == ["never-played", "after-clear"]
    assert result.marks_played[0][1] - result.clears[0] < 0.1
    assert [event.mark for event in hub.kinds(MediaEventKind.MARK)] == ["never-played", "after-clear"]
    assert hub.kinds(MediaEventKind.CLEARED) == []  # Twilio has no such message
    cleared_mark_at = next(at for event, at in hub.media_events if event.kind is MediaEventKind.MARK)
    assert cleared_mark_at - result.connected_at < 1.0  # well before three seconds had played


def test_media_session_framing_and_malformed_messages() -> None:
    session = twilio_media.CALLER.open_session({}, MediaOptions())
    assert session.native_format is None
    assert session.frame_bytes == 160
    with pytest.raises(InvalidRequest, match="before the stream's start"):
        session.audio_frame(b"\xff" * 160)
    with pytest.raises(InvalidRequest, match="before the stream's start"):
        session.decode(json.dumps({"event": "media", "media": {"payload": "AA=="}}))
    assert session.decode(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})) == []
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {
            "streamSid": "MZ1",
            "callSid": "CA1",
            "accountSid": "AC1",
            "tracks": ["inbound"],
            "customParameters": {"n": 5},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    (event,) = session.decode(json.dumps(start))
    assert event.start is not None
    assert event.start.custom_parameters == {"n": "5"}
    assert session.native_format == MULAW
    assert json.loads(session.audio_frame(b"\x00\x01").data) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": "AAE="},
    }
    mark, clear = session.mark("m"), session.clear()
    assert mark is not None
    assert clear is not None
    assert json.loads(mark.data) == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "m"}}
    assert json.loads(clear.data) == {"event": "clear", "streamSid": "MZ1"}
    outbound = {"event": "media", "streamSid": "MZ1", "media": {"track": "outbound", "payload": "AA=="}}
    assert session.decode(json.dumps(outbound)) == []
    assert session.decode(json.dumps({"event": "future-thing", "streamSid": "MZ1"})) == []
    for bad, words in [
        (b"\x00\x01", "binary frame"),
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "!!"}}), "not base64"),
        (json.dumps({"event": "media", "streamSid": "MZ1"}), "no media object"),
        (json.dumps({"event": "media", "streamSid": "MZ2", "media": {"payload": "AA=="}}), "another stream"),
        (json.dumps({"event": "dtmf", "streamSid": "MZ1", "dtmf": {}}), "dtmf.digit"),
        (json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {}}), "mark.name"),
    ]:
        with pytest.raises(InvalidRequest, match=words):
            session.decode(bad)
    other = twilio_media.CALLER.open_session({}, MediaOptions())
    wideband = json.loads(json.dumps(start))
    wideband["start"]["mediaFormat"] = {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}
    with pytest.raises(InvalidRequest, match="audio/x-mulaw 8000"):
        other.decode(json.dumps(wideband))
