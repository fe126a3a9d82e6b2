"""Vonage Voice over its real wire: the callers against the loopback FakeVonage (REST with a
real RS256 application JWT), its signed callbacks received by a loopback receiver, and its
side of the call websocket played into a real websocket server that uses the caller's
MediaSession, with espeak-ng speech."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import jwt
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
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    Telephony,
    Verifier,
    WebhookRejected,
)
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
from callers.vonage import auth as vonage_auth
from callers.vonage import media as vonage_media
from callers.vonage import wire as vonage_wire
from tests.audio.conftest import aligned_correlation, rms
from tests.fakes.secret_fields import PlainSecret
from tests.fakes.vonage_server import FakeVonage, MediaResult, pkcs1_pem, pkcs8_pem, rsa_key
from tests.telephony.conftest import Speech

pytestmark = pytest.mark.timeout(30)

C, E = AudioContainer, AudioEncoding
PCM16K = AudioFormat(E.PCM_S16LE, C.RAW, 16000, 1)
HUB_CALL = "hc_01HZX3"
TOKEN = "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
NOWHERE = "http://127.0.0.1:9"  # nothing listens: a call would fail loudly


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


@pytest.fixture
async def fake() -> AsyncIterator[FakeVonage]:
    async with FakeVonage() as server:
        yield server


def secret_of(fake: FakeVonage, **changes: str) -> PlainSecret:
    fields = {**fake.secret, **changes}
    return PlainSecret(**{k: v for k, v in fields.items() if v})


def telephony() -> Telephony:
    caller = registry.capability("vonage", Capability.TELEPHONY)
    assert isinstance(caller, Telephony)
    return caller


def webhooks() -> CallEventHandler:
    caller = registry.capability("vonage", Capability.CALL_EVENTS)
    assert isinstance(caller, CallEventHandler)
    return caller


def media() -> CallMedia:
    caller = registry.capability("vonage", Capability.CALL_MEDIA)
    assert isinstance(caller, CallMedia)
    return caller


def verifier() -> Verifier:
    caller = registry.capability("vonage", Capability.VERIFY)
    assert isinstance(caller, Verifier)
    return caller


def assert_no_secret(fake: FakeVonage, error: BaseException) -> None:
    text = f"{error} {error.args!r} {error!r}"
    body = "".join(fake.private_key.splitlines()[1:-1])
    for leaked in (fake.signature_secret, body[:40], body[-40:], "Bearer ey", "eyJ"):
        assert leaked not in text, leaked


# --- the hub's side: a webhook receiver and a media websocket server ---------------


@dataclass
class Received:
    request: WebhookRequest
    at: float


@dataclass
class HubServer:
    """The hub's public endpoints on loopback: events, answer_url, and the media websocket."""

    secret: PlainSecret
    options: dict[str, str]
    answer_action: CallAction | None = None
    events: list[Received] = field(default_factory=list)
    media_script: (
        Callable[[web.WebSocketResponse, Any, list[tuple[MediaEvent, float]]], Awaitable[None]] | None
    ) = None
    media_events: list[tuple[MediaEvent, float]] = field(default_factory=list)
    media_sessions: list[Any] = field(default_factory=list)
    base_url: str = ""

    async def __aenter__(self) -> HubServer:
        app = web.Application()
        app.router.add_post("/telephony/v1/calls/{call}/{token}/events", self._event)
        app.router.add_route("*", "/telephony/v1/calls/{call}/{token}/answer", self._answer)
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
        form = dict(request.query) if request.method == "GET" else {}
        headers = {k.lower(): v for k, v in request.headers.items()}
        return WebhookRequest(
            method=request.method, url=str(request.url), headers=headers, body=body, form=form
        )

    async def _event(self, request: web.Request) -> web.StreamResponse:
        self.events.append(Received(await self.as_webhook(request), time.monotonic()))
        return web.Response(status=204)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        hook = await self.as_webhook(request)
        try:
            webhooks().authenticate(self.secret, self.options, hook)
        except WebhookRejected as exc:
            return web.Response(status=403, text=exc.message)
        assert self.answer_action is not None
        instructions = webhooks().answer(self.options, hook, self.answer_action)
        return web.Response(body=instructions.body, content_type=instructions.content_type)

    async def _media(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connection = MediaOptions(
            headers={k.lower(): v for k, v in request.headers.items()}, query=request.query
        )
        session = media().open_session(self.options, connection)
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
async def hub(fake: FakeVonage) -> AsyncIterator[HubServer]:
    async with HubServer(secret_of(fake), fake.options) as server:
        yield server


def stream_action(hub: HubServer, **parameters: str) -> CallAction:
    return CallAction(
        CallActionKind.MEDIA_STREAM,
        media_url=hub.media_url,
        stream_parameters={"hub_call_id": HUB_CALL, **parameters},
    )


def call_request(hub: HubServer, action: CallAction, **changes: Any) -> PlaceCallRequest:
    request = PlaceCallRequest(
        to="+14155550100",
        from_="+14155550199",
        action=action,
        status_callback_url=hub.url("events"),
        answer_url=hub.url("answer"),
        hub_call_id=HUB_CALL,
        call_token=TOKEN,
    )
    return replace(request, **changes)


async def place(fake: FakeVonage, hub: HubServer, action: CallAction | None = None, **changes: Any) -> str:
    request = call_request(hub, action or stream_action(hub), **changes)
    answer = await telephony().place_call(secret_of(fake), fake.options, request, timeout=5)
    return answer.provider_call_id


# --- the capabilities -------------------------------------------------------------


def test_spec_lists_the_telephony_capabilities_and_their_sdk() -> None:
    spec = registry.spec("vonage")
    assert spec.capabilities >= {
        Capability.VERIFY,
        Capability.TELEPHONY,
        Capability.CALL_EVENTS,
        Capability.CALL_MEDIA,
    }
    assert registry.sdk_installed("vonage")
    assert spec.with_defaults({})["api_base_url"] == "https://api.nexmo.com"
    assert spec.with_defaults({})["media_sample_rate"] == "16000"
    spec.validate(
        {"private_key": pkcs8_pem(rsa_key())}, {"application_id": "app", "media_sample_rate": "8000"}
    )
    assert isinstance(telephony(), Telephony)
    assert isinstance(webhooks(), CallEventHandler)
    assert isinstance(media(), CallMedia)
    assert isinstance(verifier(), Verifier)


# --- placing calls ------------------------------------------------------------------


async def test_media_stream_call_sends_an_inline_connect_ncco(fake: FakeVonage, hub: HubServer) -> None:
    request = call_request(hub, stream_action(hub, lang="en-GB"), metadata={"campaign": "spring"})
    answer = await telephony().place_call(secret_of(fake), fake.options, request, timeout=5)
    assert (answer.raw_status, answer.status) == ("started", CallStatus.QUEUED)
    call = fake.calls[answer.provider_call_id]
    assert call.raw == {
        "to": [{"type": "phone", "number": "14155550100"}],
        "from": {"type": "phone", "number": "14155550199"},
        "ncco": [
            {
                "action": "connect",
                "endpoint": [
                    {
                        "type": "websocket",
                        "uri": hub.media_url,
                        "content-type": "audio/l16;rate=16000",
                        "headers": {"campaign": "spring", "hub_call_id": HUB_CALL, "lang": "en-GB"},
                    }
                ],
            }
        ],
        "event_url": [hub.url("events")],
        "event_method": "POST",
    }
    assert call.media_url == hub.media_url
    assert call.status_callback_url == hub.url("events")
    sent = fake.requests[-1]
    assert (sent["method"], sent["path"]) == ("POST", "/v1/calls")
    assert sent["headers"]["Authorization"].startswith("Bearer ey")


async def test_say_call_speaks_with_language_and_style(fake: FakeVonage, hub: HubServer) -> None:
    say = CallAction(CallActionKind.SAY, text="Your code is 1 2 3 4", voice="2", language="en-GB")
    call_id = await place(fake, hub, say)
    assert fake.calls[call_id].ncco == [
        {"action": "talk", "text": "Your code is 1 2 3 4", "language": "en-GB", "style": 2}
    ]
    premium = CallAction(CallActionKind.SAY, text="Hello", voice="premium:6")
    call_id = await place(fake, hub, premium)
    assert fake.calls[call_id].ncco == [{"action": "talk", "text": "Hello", "premium": True, "style": 6}]
    plain = await place(fake, hub, CallAction(CallActionKind.SAY, text="Hello"))
    assert fake.calls[plain].ncco == [{"action": "talk", "text": "Hello"}]
    before = len(fake.requests)
    with pytest.raises(InvalidRequest, match="style number"):
        await place(fake, hub, CallAction(CallActionKind.SAY, text="Hello", voice="Amy"))
    with pytest.raises(InvalidRequest, match="at most 1500"):
        await place(fake, hub, CallAction(CallActionKind.SAY, text="x" * 1501))
    with pytest.raises(InvalidRequest, match=r"action\.text"):
        await place(fake, hub, CallAction(CallActionKind.SAY, text=" "))
    assert len(fake.requests) == before  # refused before anything was sent


async def test_provider_instructions_pass_an_ncco_through(fake: FakeVonage, hub: HubServer) -> None:
    ncco = [
        {"action": "talk", "text": "Press 1 to confirm", "bargeIn": True},
        {"action": "input", "type": ["dtmf"], "dtmf": {"maxDigits": 1}, "eventUrl": [hub.url("events")]},
    ]
    action = CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions=json.dumps(ncco))
    call_id = await place(fake, hub, action)
    assert fake.calls[call_id].ncco == ncco
    before = len(fake.requests)
    for wrong in ("<Response><Say>hi</Say></Response>", "{}", "[]", '[{"text": "no action"}]', "[1]"):
        with pytest.raises(InvalidRequest, match="NCCO"):
            await place(fake, hub, CallAction(CallActionKind.PROVIDER_INSTRUCTIONS, instructions=wrong))
    assert len(fake.requests) == before


async def test_ring_timeout_time_limit_and_machine_detection(fake: FakeVonage, hub: HubServer) -> None:
    call_id = await place(
        fake, hub, ring_timeout_seconds=25, time_limit_seconds=600, machine_detection=MachineDetection.DETECT
    )
    raw = fake.calls[call_id].raw
    assert (raw["ringing_timer"], raw["length_timer"], raw["machine_detection"]) == (25, 600, "continue")
    assert "advanced_machine_detection" not in raw
    advanced = {**fake.options, "machine_detection": "advanced"}
    request = call_request(hub, stream_action(hub), machine_detection=MachineDetection.DETECT)
    answer = await telephony().place_call(secret_of(fake), advanced, request, timeout=5)
    raw = fake.calls[answer.provider_call_id].raw
    assert raw["advanced_machine_detection"] == {"behavior": "continue", "mode": "detect"}
    assert "machine_detection" not in raw
    plain = fake.calls[await place(fake, hub)].raw
    assert not {"ringing_timer", "length_timer", "machine_detection"} & set(plain)
    before = len(fake.requests)
    with pytest.raises(InvalidRequest, match=r"ring_timeout_seconds .*ringing_timer"):
        await place(fake, hub, ring_timeout_seconds=121)
    with pytest.raises(InvalidRequest, match=r"time_limit_seconds .*length_timer"):
        await place(fake, hub, time_limit_seconds=0)
    assert len(fake.requests) == before


async def test_place_refuses_what_vonage_cannot_do_before_sending(fake: FakeVonage, hub: HubServer) -> None:
    before = len(fake.requests)
    no_signing = PlainSecret(private_key=fake.private_key)
    with pytest.raises(InvalidRequest, match=r"secret\.signature_secret is required"):
        await telephony().place_call(
            no_signing, fake.options, call_request(hub, stream_action(hub)), timeout=5
        )
    with pytest.raises(InvalidRequest, match="ws:// or wss://"):
        await place(fake, hub, CallAction(CallActionKind.MEDIA_STREAM, media_url="https://hub.example/media"))
    with pytest.raises(InvalidRequest, match="at most 512"):
        await place(fake, hub, stream_action(hub, blob="x" * 600))
    with pytest.raises(InvalidRequest, match=r"E\.164"):
        await place(fake, hub, to="sip:alice@example.com")
    assert len(fake.requests) == before


async def test_a_pkcs1_private_key_signs_too(fake: FakeVonage, hub: HubServer) -> None:
    secret = PlainSecret(private_key=pkcs1_pem(rsa_key()), signature_secret=fake.signature_secret)
    request = call_request(hub, stream_action(hub))
    answer = await telephony().place_call(secret, fake.options, request, timeout=5)
    assert answer.provider_call_id in fake.calls


def test_keys_are_validated_once_and_only_a_keyed_digest_is_kept() -> None:
    pem = pkcs8_pem(rsa_key())
    # Text after the PEM block that would make JwtClient open a file path is never handed to it.
    noisy = PlainSecret(private_key=pem + "kept in /etc/vonage/private.key")
    token = vonage_auth.application_jwt(noisy, {"application_id": "app-1"})
    claims = jwt.decode(token, rsa_key().public_key(), algorithms=["RS256"])
    assert claims["application_id"] == "app-1"
    assert claims["exp"] - claims["iat"] == 15 * 60
    body = "".join(pem.splitlines()[1:-1]).encode()
    kept = list(vonage_auth._validated)
    assert kept
    assert all(
        len(digest) == 32 and digest not in pem.encode() and body[:16] not in digest for digest in kept
    )


# --- reading and ending calls --------------------------------------------------------


async def test_get_call_follows_the_progression(fake: FakeVonage, hub: HubServer) -> None:
    call_id = await place(fake, hub)
    secret = secret_of(fake)
    state = await telephony().get_call(secret, fake.options, call_id, timeout=5)
    assert (state.provider_call_id, state.status, state.raw_status) == (call_id, CallStatus.QUEUED, "started")
    for status, raw in ((CallStatus.RINGING, "ringing"), (CallStatus.IN_PROGRESS, "answered")):
        assert await fake.send_status(call_id, status) == 204
        state = await telephony().get_call(secret, fake.options, call_id, timeout=5)
        assert (state.status, state.raw_status, state.duration_seconds) == (status, raw, None)
    await fake.send_status(call_id, CallStatus.IN_PROGRESS, vonage_status="machine")
    state = await telephony().get_call(secret, fake.options, call_id, timeout=5)
    assert (state.status, state.raw_status, state.answered_by) == (
        CallStatus.IN_PROGRESS,
        "machine",
        "machine",
    )
    fake.calls[call_id].start_time = "2020-01-01T12:00:00.000Z"
    await fake.send_status(call_id, CallStatus.COMPLETED)
    state = await telephony().get_call(secret, fake.options, call_id, timeout=5)
    assert (state.status, state.raw_status) == (CallStatus.COMPLETED, "completed")
    assert state.duration_seconds is not None
    assert state.duration_seconds > 0
    busy = await place(fake, hub)
    await fake.send_status(busy, CallStatus.BUSY)
    state = await telephony().get_call(secret, fake.options, busy, timeout=5)
    assert (state.status, state.duration_seconds) == (CallStatus.BUSY, 0.0)
    with pytest.raises(NotFound, match="doesn't exist") as missing:
        await telephony().get_call(secret, fake.options, "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", timeout=5)
    assert missing.value.provider_status == 404
    with pytest.raises(InvalidRequest, match="not a Vonage call UUID"):
        await telephony().get_call(secret, fake.options, "../v1/calls?x=1", timeout=5)


async def test_hangup_ends_a_live_call_and_an_ended_one_quietly(fake: FakeVonage, hub: HubServer) -> None:
    call_id = await place(fake, hub)
    secret = secret_of(fake)
    await fake.send_status(call_id, CallStatus.IN_PROGRESS)
    await telephony().hangup(secret, fake.options, HangupRequest(call_id), timeout=5)
    assert call_id in fake.hung_up
    assert fake.calls[call_id].status == "completed"
    puts = [r for r in fake.requests if r["method"] == "PUT"]
    assert json.loads(puts[-1]["body"]) == {"action": "hangup"}
    assert puts[-1]["path"] == f"/v1/calls/{call_id}"
    # Again, now that it has ended: Vonage answers 404, the call reads completed.
    await telephony().hangup(secret, fake.options, HangupRequest(call_id), timeout=5)
    ended = await place(fake, hub)
    await fake.send_status(ended, CallStatus.NO_ANSWER)
    await telephony().hangup(secret, fake.options, HangupRequest(ended), timeout=5)
    assert ended not in fake.hung_up
    with pytest.raises(NotFound):
        await telephony().hangup(
            secret, fake.options, HangupRequest("aaaaaaaa-bbbb-cccc-dddd-0123456789ab"), timeout=5
        )


# --- errors ---------------------------------------------------------------------------


async def test_every_error_is_classified(fake: FakeVonage, hub: HubServer) -> None:
    secret = secret_of(fake)
    request = call_request(hub, stream_action(hub))

    async def placed() -> CallerError:
        with pytest.raises(CallerError) as caught:
            await telephony().place_call(secret, fake.options, request, timeout=5)
        assert_no_secret(fake, caught.value)
        return caught.value

    fake.fail_next("bad_number")
    error = await placed()
    assert isinstance(error, InvalidRequest)
    assert error.provider_status == 400
    assert "to[0].number" in error.message
    assert "(validation)" in error.message
    fake.fail_next("unauthorized")
    error = await placed()
    assert isinstance(error, AuthenticationFailed)
    assert "You did not provide correct credentials." in error.message
    assert "(unauthorized)" in error.message
    fake.fail_next("forbidden")
    assert isinstance(await placed(), PermissionDenied)
    fake.fail_next("rate_limited")
    error = await placed()
    assert isinstance(error, RateLimited)
    assert error.retry_after == 2.0
    fake.fail_next("down")
    error = await placed()
    assert isinstance(error, ProviderUnavailable)
    assert error.provider_status == 503
    fake.fail_next("reset")
    error = await placed()
    assert isinstance(error, ProviderUnavailable)
    assert error.provider_status is None
    assert not fake.calls  # none of them placed a call


async def test_the_fake_checks_the_jwt_as_vonage_does(fake: FakeVonage, hub: HubServer) -> None:
    request = call_request(hub, stream_action(hub))
    other_key = PlainSecret(private_key=pkcs8_pem(rsa_key(1)), signature_secret=fake.signature_secret)
    with pytest.raises(AuthenticationFailed) as caught:
        await telephony().place_call(other_key, fake.options, request, timeout=5)
    assert caught.value.provider_status == 401
    other_app = {**fake.options, "application_id": "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(AuthenticationFailed):
        await telephony().place_call(secret_of(fake), other_app, request, timeout=5)
    unusable = PlainSecret(
        private_key="-----BEGIN PRIVATE KEY-----\nQUJDRA==\n-----END PRIVATE KEY-----\n",
        signature_secret=fake.signature_secret,
    )
    before = len(fake.requests)
    with pytest.raises(AuthenticationFailed, match="could not sign") as unsigned:
        await telephony().place_call(unusable, fake.options, request, timeout=5)
    assert unsigned.value.__context__ is None
    assert unsigned.value.__cause__ is None
    assert len(fake.requests) == before
    assert not fake.calls


async def test_timeout_and_refused_connections(fake: FakeVonage, hub: HubServer) -> None:
    secret = secret_of(fake)
    fake.delay = 2.0
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"did not answer within 0\.3 s"):
        await telephony().get_call(secret, fake.options, "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", timeout=0.3)
    assert time.monotonic() - started < 1.5
    nowhere = {**fake.options, "api_base_url": NOWHERE}
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1") as refused:
        await telephony().place_call(secret, nowhere, call_request(hub, stream_action(hub)), timeout=5)
    assert_no_secret(fake, refused.value)
    assert refused.value.__context__ is None


# --- verify ---------------------------------------------------------------------------


async def test_verify_lists_calls_with_the_jwt(fake: FakeVonage, hub: HubServer) -> None:
    await place(fake, hub)
    result = await verifier().verify(secret_of(fake), fake.options, timeout=5)
    assert result.valid, result.reason
    assert result.detail == {"signed_webhooks": "ready", "calls": "1"}
    listed = fake.requests[-1]
    assert (listed["method"], listed["path"], listed["query"]) == ("GET", "/v1/calls", {"page_size": "1"})
    no_signing = await verifier().verify(PlainSecret(private_key=fake.private_key), fake.options, timeout=5)
    assert no_signing.valid
    assert no_signing.detail["signed_webhooks"] == "secret.signature_secret missing"
    bad = await verifier().verify(PlainSecret(private_key=pkcs8_pem(rsa_key(1))), fake.options, timeout=5)
    assert not bad.valid
    assert "You did not provide correct credentials." in bad.reason
    unusable = await verifier().verify(
        PlainSecret(private_key="-----BEGIN RSA PRIVATE KEY-----\nQUJD\n-----END RSA PRIVATE KEY-----"),
        fake.options,
        timeout=5,
    )
    assert not unusable.valid
    assert "could not sign" in unusable.reason
    fake.fail_next("down")
    with pytest.raises(ProviderUnavailable):
        await verifier().verify(secret_of(fake), fake.options, timeout=5)


# --- webhooks -------------------------------------------------------------------------


async def received(hub: HubServer, count: int) -> list[WebhookRequest]:
    for _ in range(200):
        if len(hub.events) >= count:
            break
        await asyncio.sleep(0.01)
    return [r.request for r in hub.events]


STATUS_CASES = [
    (CallStatus.QUEUED, None, "started"),
    (CallStatus.RINGING, None, "ringing"),
    (CallStatus.IN_PROGRESS, None, "answered"),
    (CallStatus.COMPLETED, None, "completed"),
    (CallStatus.BUSY, None, "busy"),
    (CallStatus.NO_ANSWER, None, "unanswered"),
    (CallStatus.NO_ANSWER, "timeout", "timeout"),
    (CallStatus.FAILED, None, "failed"),
    (CallStatus.FAILED, "rejected", "rejected"),
    (CallStatus.CANCELED, None, "cancelled"),
]


@pytest.mark.parametrize(("status", "word", "raw"), STATUS_CASES)
async def test_signed_callbacks_authenticate_and_parse(
    fake: FakeVonage, hub: HubServer, status: CallStatus, word: str | None, raw: str
) -> None:
    call_id = await place(fake, hub)
    if status is CallStatus.COMPLETED:
        fake.calls[call_id].start_time = "2020-01-01T12:00:00.000Z"
    assert await fake.send_status(call_id, status, vonage_status=word) == 204
    (hook,) = await received(hub, 1)
    assert hook.headers["content-type"] == "application/json"
    assert hook.headers["authorization"].startswith("Bearer ")
    webhooks().authenticate(secret_of(fake), fake.options, hook)
    (event,) = webhooks().parse_events(fake.options, hook)
    body = json.loads(hook.body)
    assert (event.provider_call_id, event.status, event.raw_status) == (call_id, status, raw)
    assert event.event_id == f"{call_id}:{raw}:{body['timestamp']}"
    assert event.occurred_at is not None
    assert event.occurred_at.isoformat().startswith(body["timestamp"][:19])
    assert event.raw["conversation_uuid"] == fake.calls[call_id].conversation_uuid
    assert "authorization" not in {k.lower() for k in event.raw}
    if status is CallStatus.COMPLETED:
        assert event.duration_seconds == float(body["duration"])
        assert event.duration_seconds > 0
    else:
        assert event.duration_seconds is None
    if status.terminal and status is not CallStatus.COMPLETED:
        assert event.error == body["detail"]
    else:
        assert event.error == ""


async def test_machine_detection_events_say_who_answered(fake: FakeVonage, hub: HubServer) -> None:
    call_id = await place(fake, hub, machine_detection=MachineDetection.DETECT)
    await fake.send_status(call_id, CallStatus.IN_PROGRESS)
    await fake.send_status(call_id, CallStatus.IN_PROGRESS, vonage_status="machine", sub_state="beep_start")
    hooks = await received(hub, 2)
    webhooks().authenticate(secret_of(fake), fake.options, hooks[1])
    (event,) = webhooks().parse_events(fake.options, hooks[1])
    assert (event.provider_call_id, event.status, event.raw_status) == (call_id, None, "machine")
    assert event.answered_by == "machine"
    assert event.raw["sub_state"] == "beep_start"


async def test_forged_unsigned_tampered_stale_and_foreign_callbacks_are_rejected(
    fake: FakeVonage, hub: HubServer
) -> None:
    call_id = await place(fake, hub)
    secret = secret_of(fake)
    await fake.send_status(call_id, CallStatus.RINGING, forged=True)
    await fake.send_status(call_id, CallStatus.RINGING, unsigned=True)
    await fake.send_status(call_id, CallStatus.RINGING)
    await fake.send_status(call_id, CallStatus.RINGING, signed_at=time.time() - 600)
    forged, unsigned, genuine, stale = await received(hub, 4)
    handler = webhooks()
    cases: list[tuple[PlainSecret, WebhookRequest, str]] = [
        (secret, forged, "does not match"),
        (secret, unsigned, "no Authorization header"),
        (secret, replace(genuine, body=genuine.body.replace(b"ringing", b"answered")), "payload_hash"),
        (secret, stale, "stale"),
        (
            secret_of(fake, signature_secret="another-credentials-signature-secret-0123"),
            genuine,
            "does not match",
        ),
        (PlainSecret(private_key=fake.private_key), genuine, r"secret\.signature_secret is not set"),
        (
            secret,
            replace(genuine, headers={**genuine.headers, "authorization": "Basic YTpi"}),
            "not a Bearer",
        ),
        (
            secret,
            replace(genuine, headers={**genuine.headers, "authorization": "Bearer not.a.jwt"}),
            "malformed",
        ),
    ]
    for key, hook, reason in cases:
        with pytest.raises(WebhookRejected, match=reason) as rejected:
            handler.authenticate(key, fake.options, hook)
        assert_no_secret(fake, rejected.value)
        assert rejected.value.__context__ is None
    handler.authenticate(secret, fake.options, genuine)
    other_app = {**fake.options, "application_id": "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(WebhookRejected, match="another Vonage application"):
        handler.authenticate(secret, other_app, genuine)
    with pytest.raises(WebhookRejected, match="another Vonage api_key"):
        handler.authenticate(secret, {**fake.options, "api_key": "ffffffff"}, genuine)


async def test_a_replayed_callback_has_the_same_event_id(fake: FakeVonage, hub: HubServer) -> None:
    call_id = await place(fake, hub)
    await fake.send_status(call_id, CallStatus.IN_PROGRESS)
    await fake.send_status(call_id, CallStatus.COMPLETED)
    assert await fake.send_status(call_id, CallStatus.COMPLETED, replay_of=1) == 204
    first, second, replayed = await received(hub, 3)
    assert replayed.body == second.body
    assert replayed.headers["authorization"] == second.headers["authorization"]
    handler = webhooks()
    ids = []
    for hook in (first, second, replayed):
        handler.authenticate(secret_of(fake), fake.options, hook)  # within the freshness window
        ids.extend(event.event_id for event in handler.parse_events(fake.options, hook))
    assert ids[1] == ids[2]  # the hub applies it once
    assert ids[0] != ids[1]


def test_parse_events_of_legs_errors_and_malformed_bodies() -> None:
    handler = webhooks()

    def hook(body: object) -> WebhookRequest:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return WebhookRequest("POST", "https://hub.example/e", {"content-type": "application/json"}, raw, {})

    leg = {
        "from": "442079460000",
        "to": f"wss://hub.example/telephony/v1/calls/{HUB_CALL}/{TOKEN}/media",
        "uuid": "bbbbbbbb-aaaa-cccc-dddd-0123456789ab",
        "conversation_uuid": "CON-1",
        "status": "answered",
        "timestamp": "2020-03-31T12:00:00.000Z",
        "headers": {"hub_call_id": HUB_CALL},
    }
    (event,) = handler.parse_events({}, hook(leg))
    assert (event.status, event.raw_status) == (None, "answered")  # the websocket leg, not the call
    assert TOKEN not in json.dumps(event.raw)
    assert event.raw["to"] == "wss://hub.example/…"
    assert json.loads(event.raw["headers"]) == {"hub_call_id": HUB_CALL}
    error = {
        "reason": "Syntax error in NCCO.",
        "conversation_uuid": "CON-1",
        "timestamp": "2020-01-01T12:00:00.000Z",
    }
    (event,) = handler.parse_events({}, hook(error))
    assert (event.status, event.raw_status, event.error) == (None, "error", "Syntax error in NCCO.")
    record = {"recording_url": "https://api.nexmo.com/v1/files/x", "uuid": "u1", "conversation_uuid": "CON-1"}
    (event,) = handler.parse_events({}, hook(record))
    assert (event.status, event.raw_status) == (None, "record")
    assert event.event_id.startswith("u1:record:sha256-")
    assert handler.parse_events({}, hook(record))[0].event_id == event.event_id
    for wrong in (b"not json", b"[1, 2]", b""):
        with pytest.raises(InvalidRequest, match="Vonage event"):
            handler.parse_events({}, hook(wrong))


# --- answer_url -----------------------------------------------------------------------


async def test_answer_serves_the_calls_ncco_to_a_signed_answer_request(
    fake: FakeVonage, hub: HubServer, speech: Speech
) -> None:
    """A call placed with answer_url (as an application configured to ask the hub): the
    fake fetches it (a signed GET), the hub answers with webhooks.answer's NCCO, and the
    websocket of that NCCO carries the call's audio."""
    action = stream_action(hub, lang="en")
    hub.answer_action = action
    body = {
        "to": [{"type": "phone", "number": "14155550100"}],
        "from": {"type": "phone", "number": "14155550199"},
        "answer_url": [hub.url("answer")],
        "answer_method": "GET",
        "event_url": [hub.url("events")],
    }
    token = vonage_auth.application_jwt(secret_of(fake), fake.options)
    created = await vonage_wire.send(
        vonage_wire.endpoint(fake.options, "v1/calls"), token, method="POST", json=body, timeout=5
    )
    result = await fake.answer_media(
        created["uuid"],
        speech.file("wav_16k")[: 44 + 16000],
        audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
        realtime=False,
        receive_seconds=0.3,
    )
    (fetched,) = fake.answer_fetches
    assert fetched["status"] == 200
    ncco = json.loads(fetched["body"])
    answered = webhooks().answer(fake.options, WebhookRequest("GET", hub.url("answer"), {}, b"", {}), action)
    assert answered.content_type == "application/json"
    assert json.loads(answered.body) == ncco
    assert ncco == [
        {
            "action": "connect",
            "endpoint": [
                {
                    "type": "websocket",
                    "uri": hub.media_url,
                    "content-type": "audio/l16;rate=16000",
                    "headers": {"hub_call_id": HUB_CALL, "lang": "en"},
                }
            ],
        }
    ]
    assert result.content_type == "audio/l16;rate=16000"
    (start,) = hub.kinds(MediaEventKind.START)
    assert start.start is not None
    assert start.start.custom_parameters == {"hub_call_id": HUB_CALL, "lang": "en"}
    # An unsigned answer request is refused by the hub (authenticate over the GET query).
    unsigned_answer = fake._client.get(hub.url("answer"), params={"uuid": created["uuid"]})
    async with unsigned_answer as response:
        assert response.status == 403


# --- media ----------------------------------------------------------------------------


def pcm_floats(data: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def speech_pcm(speech: Speech, rate: int) -> bytes:
    samples = speech.reference_at(rate)
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def heard(hub: HubServer) -> bytes:
    return b"".join(event.audio for event in hub.kinds(MediaEventKind.AUDIO))


async def test_media_start_and_the_callers_speech_reach_the_hub(
    fake: FakeVonage, hub: HubServer, speech: Speech
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
    assert (start.start.provider_call_id, start.start.stream_id) == ("", "")  # Vonage names neither
    assert start.start.custom_parameters == {"campaign": "spring", "hub_call_id": HUB_CALL, "lang": "en-GB"}
    (session,) = hub.media_sessions
    assert session.native_format == PCM16K
    assert session.frame_bytes == 640
    frames = hub.kinds(MediaEventKind.AUDIO)
    assert {len(event.audio) for event in frames} == {640}
    assert len(frames) == result.sent_frames
    reference = speech.reference_at(16000)
    got = pcm_floats(heard(hub))
    assert len(reference) <= len(got) < len(reference) + 320  # the last frame padded
    assert rms(got) > 0.02  # speech, not silence
    assert aligned_correlation(got[: len(reference)], reference) > 0.95
    assert [event.digit for event in hub.kinds(MediaEventKind.DTMF)] == ["5", "#"]
    assert result.frames == []  # the hub sent nothing back


async def test_audio_sent_back_arrives_as_vonage_frames_and_marks_echo_after_playback(
    fake: FakeVonage, hub: HubServer, speech: Speech
) -> None:
    reply = speech_pcm(speech, 16000)[: 16000 * 2 - 100]  # about a second, not a whole frame

    async def answer(ws: web.WebSocketResponse, session: Any, events: list[tuple[MediaEvent, float]]) -> None:
        size = session.frame_bytes
        for at in range(0, len(reply), size):
            await ws.send_bytes(session.audio_frame(reply[at : at + size]).data)
        mark = session.mark("reply-1")
        assert mark is not None
        await ws.send_str(mark.data)

    hub.media_script = answer
    call_id = await place(fake, hub)
    result: MediaResult = await fake.answer_media(
        call_id,
        speech.file("wav_16k")[: 44 + 3200],
        audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
        receive_seconds=1.6,
    )
    assert {len(frame.data) for frame in result.frames} == {640}
    assert len(result.frames) == -(-len(reply) // 640)
    assert result.audio[: len(reply)] == reply
    assert result.audio[len(reply) :] == bytes(len(result.audio) - len(reply))  # padded with silence
    assert result.messages == [{"action": "notify", "payload": {"name": "reply-1"}}]
    assert result.errors == []
    ((name, sent_at),) = result.marks
    assert sent_at >= result.frames[-1].at
    ((played, echoed_at),) = result.marks_played
    assert (name, played) == ("reply-1", "reply-1")
    assert echoed_at - result.frames[0].at >= len(result.frames) * 0.02 * 0.9  # after the audio played
    marks = [(event, at) for event, at in hub.media_events if event.kind is MediaEventKind.MARK]
    assert [event.mark for event, _ in marks] == ["reply-1"]
    assert marks[0][1] >= echoed_at


async def test_realtime_audio_is_paced_and_clear_drops_what_was_queued(
    fake: FakeVonage, hub: HubServer, speech: Speech
) -> None:
    long_reply = speech_pcm(speech, 16000)[: 16000 * 2 * 3]  # three seconds

    async def barge_in(
        ws: web.WebSocketResponse, session: Any, events: list[tuple[MediaEvent, float]]
    ) -> None:
        for at in range(0, len(long_reply), session.frame_bytes):
            await ws.send_bytes(session.audio_frame(long_reply[at : at + session.frame_bytes]).data)
        await ws.send_str(session.mark("never-played").data)
        await asyncio.sleep(0.3)
        await ws.send_str(session.clear().data)
        await ws.send_bytes(session.audio_frame(long_reply[:640]).data)
        await ws.send_str(session.mark("after-clear").data)

    hub.media_script = barge_in
    call_id = await place(fake, hub)
    one_second = speech.file("wav_16k")[: 44 + 32000]
    result = await fake.answer_media(
        call_id, one_second, audio_format=AudioFormat(E.PCM_S16LE, C.WAV), realtime=True, receive_seconds=1.5
    )
    arrivals = [at for event, at in hub.media_events if event.kind is MediaEventKind.AUDIO]
    assert len(arrivals) == 50
    assert arrivals[-1] - arrivals[0] > 0.8  # 50 frames of 20 ms, paced as a call plays them
    assert len(result.clears) == 1
    assert result.errors == []
    assert [name for name, _ in result.marks] == ["never-played", "after-clear"]
    assert [name for name, _ in result.marks_played] == ["after-clear"]
    assert len(hub.kinds(MediaEventKind.CLEARED)) == 1
    assert [event.mark for event in hub.kinds(MediaEventKind.MARK)] == ["after-clear"]
    cleared_at = next(at for event, at in hub.media_events if event.kind is MediaEventKind.CLEARED)
    assert cleared_at - result.connected_at < 1.0  # well before three seconds had played


async def test_media_at_8_khz_uses_320_byte_frames(fake: FakeVonage, hub: HubServer, speech: Speech) -> None:
    options = {**fake.options, "media_sample_rate": "8000"}
    hub.options = options
    request = call_request(hub, stream_action(hub))
    answer = await telephony().place_call(secret_of(fake), options, request, timeout=5)
    endpoint = fake.calls[answer.provider_call_id].websocket()
    assert endpoint is not None
    assert endpoint["content-type"] == "audio/l16;rate=8000"

    async def answer_back(
        ws: web.WebSocketResponse, session: Any, events: list[tuple[MediaEvent, float]]
    ) -> None:
        await ws.send_bytes(session.audio_frame(bytes(100)).data)  # padded to a whole frame
        await ws.send_bytes(bytes(100))  # what the session never sends: Vonage refuses it

    hub.media_script = answer_back
    result = await fake.answer_media(
        answer.provider_call_id,
        speech.file("wav_8k"),
        audio_format=AudioFormat(E.PCM_S16LE, C.WAV),
        realtime=False,
        receive_seconds=0.3,
    )
    (session,) = hub.media_sessions
    assert session.native_format == AudioFormat(E.PCM_S16LE, C.RAW, 8000, 1)
    assert session.frame_bytes == 320
    assert {len(event.audio) for event in hub.kinds(MediaEventKind.AUDIO)} == {320}
    reference = speech.reference_at(8000)
    got = pcm_floats(heard(hub))
    assert len(reference) <= len(got) < len(reference) + 160
    assert aligned_correlation(got[: len(reference)], reference) > 0.95
    assert [len(frame.data) for frame in result.frames] == [320, 100]
    assert result.errors == ["a 100-byte audio message (Vonage takes 320)"]


def test_media_session_framing_and_malformed_messages() -> None:
    session = vonage_media.VonageMediaSession(16000)
    assert session.native_format is None
    assert session.frame_bytes == 640
    with pytest.raises(InvalidRequest, match="before websocket:connected"):
        session.decode(bytes(640))
    for wrong, reason in (
        ("not json", "not JSON"),
        ('{"no": "event"}', "no event name"),
        ('{"event": "websocket:connected", "content-type": "audio/pcmu"}', "not audio/l16"),
        ('{"event": "websocket:connected"}', "no content-type"),
    ):
        with pytest.raises(InvalidRequest, match=reason):
            session.decode(wrong)
    (start,) = session.decode('{"event":"websocket:connected","content-type":"audio/l16;rate=24000","n":40}')
    assert start.start is not None
    assert start.start.custom_parameters == {"n": "40"}
    assert session.native_format == AudioFormat(E.PCM_S16LE, C.RAW, 24000, 1)
    assert session.frame_bytes == 960
    with pytest.raises(InvalidRequest, match="second websocket:connected"):
        session.decode('{"event":"websocket:connected","content-type":"audio/l16;rate=16000"}')
    with pytest.raises(InvalidRequest, match="whole 16-bit samples"):
        session.decode(bytes(641))
    with pytest.raises(InvalidRequest, match="single digit"):
        session.decode('{"event":"websocket:dtmf","digit":"12"}')
    assert session.decode('{"event":"websocket:notify","payload":{"other":1}}') == []
    assert session.decode('{"event":"websocket:something-new"}') == []
    assert session.decode(b"") == []
    with pytest.raises(InvalidRequest, match="longer than Vonage's 960"):
        session.audio_frame(bytes(962))
    with pytest.raises(InvalidRequest, match="whole 16-bit samples"):
        session.audio_frame(bytes(3))
    assert session.audio_frame(b"\x01\x02").data == b"\x01\x02" + bytes(958)
    mark = session.mark("m7")
    clear = session.clear()
    assert mark is not None
    assert clear is not None
    assert json.loads(mark.data) == {"action": "notify", "payload": {"name": "m7"}}
    assert json.loads(clear.data) == {"action": "clear"}
