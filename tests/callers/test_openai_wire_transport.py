"""The OpenAI-wire transport's contract, below the wire format: what goes over HTTP and what does not.

Cancellation and timeouts as the upstream sees them (its side of the socket), redirects
never followed (the key stays with the configured address), no cookies carried from one
call to the next, gzip, TLS verification, the hub's proxy environment ignored, and one
pool per upstream, closed at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callers import pools, registry
from callers.base import Capability, ChatCaller, ProviderTimeout, ProviderUnavailable, StreamChatCaller
from callers.openai import transport
from callers.timeouts import connect_timeout_of
from callers.types import ChatEvent, ChatRequest, ChatStreamEnd, TextDelta, TextPart, UserMessage
from tests.fakes.openai_server import ChatReply, FakeOpenAI, sse
from tests.fakes.secret_fields import PlainSecret

pytestmark = pytest.mark.timeout(30)

KEY = "sk-transport-0123456789abcdefgh"
SECRET = PlainSecret(api_key=KEY)
OTHER_KEY = "sk-other-tenant-0123456789abcdef"
AZURE_KEY = "azure0123456789abcdef0123456789ab"
LIMIT = 0.100  # seconds from giving up to the upstream seeing its connection closed


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def chat_caller(provider: str = "openai") -> ChatCaller:
    caller = registry.capability(provider, Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def stream_caller(provider: str = "openai") -> StreamChatCaller:
    caller = registry.capability(provider, Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    return caller


def ask(model: str = "gpt-4o-mini") -> ChatRequest:
    return ChatRequest(model=model, messages=[UserMessage([TextPart("Hi")])])


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


async def closed_within_limit(fake: FakeOpenAI, gave_up_at: float) -> None:
    closed_at = await fake.wait_for_close(fake.requests[-1].peer, timeout=2.0)
    assert closed_at - gave_up_at < LIMIT


def completion(text: str = "ok") -> dict[str, object]:
    return {
        "id": "chatcmpl-t",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


# --- cancellation, as the upstream sees it ---------------------------------------------


async def test_cancelling_a_chat_waiting_for_its_answer_closes_the_upstream_connection() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(hang=True))  # not even the response headers
        task = asyncio.create_task(chat_caller().chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=30))
        await fake.wait_for_request(1)
        gave_up_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await closed_within_limit(fake, gave_up_at)


async def test_cancelling_a_stream_before_its_headers_closes_the_upstream_connection() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(hang=True))
        task = asyncio.create_task(
            collect(stream_caller().stream_chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=30))
        )
        await fake.wait_for_request(1)
        gave_up_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await closed_within_limit(fake, gave_up_at)


async def test_cancelling_a_stream_mid_way_closes_the_upstream_connection_promptly() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(text="never ending", hold_open=True, send_done=False))
        flowing = asyncio.Event()

        async def consume() -> None:
            async for _ in stream_caller().stream_chat(
                SECRET, {"base_url": fake.base_url}, ask(), timeout=30
            ):
                flowing.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(flowing.wait(), 5)
        gave_up_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await closed_within_limit(fake, gave_up_at)


async def test_a_deadline_around_the_call_closes_the_upstream_connection() -> None:
    # The hub's own deadlines (asyncio.timeout around an attempt) cancel the same way.
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(hang=True))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await chat_caller().chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=30)
        await closed_within_limit(fake, time.monotonic())


# --- timeouts ---------------------------------------------------------------------------


async def test_the_total_timeout_bounds_a_chat_that_never_answers() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        fake.script(ChatReply(hang=True))
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="did not answer within the timeout"):
            await chat_caller().chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=0.3)
        assert 0.25 < time.monotonic() - started < 1.3
        await closed_within_limit(fake, time.monotonic())


@contextlib.contextmanager
def unaccepting_listener() -> Iterator[str]:
    """A listener with a full accept queue: new connections hang until a connect timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for sock in (*fillers, server):
            sock.close()


async def test_the_connect_timeout_of_the_call_bounds_a_stream_and_a_chat() -> None:
    with unaccepting_listener() as base_url:
        for call in (
            lambda: chat_caller().chat(SECRET, {"base_url": base_url}, ask(), timeout=8),
            lambda: collect(stream_caller().stream_chat(SECRET, {"base_url": base_url}, ask(), timeout=8)),
        ):
            started = time.monotonic()
            with pytest.raises(ProviderTimeout), connect_timeout_of(0.3):
                await call()
            assert 0.3 <= time.monotonic() - started < 1.3


# --- errors -----------------------------------------------------------------------------


async def test_a_reset_connection_is_provider_unavailable_on_both_paths() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        options = {"base_url": fake.base_url}
        fake.script(ChatReply(reset=True), ChatReply(reset=True))
        with pytest.raises(ProviderUnavailable) as plain:
            await chat_caller().chat(SECRET, options, ask(), timeout=5)
        with pytest.raises(ProviderUnavailable) as streamed:
            await collect(stream_caller().stream_chat(SECRET, options, ask(), timeout=5))
    for caught in (plain, streamed):
        assert KEY not in str(caught.value)
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__


# --- redirects: never followed ------------------------------------------------------------


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeOpenAI]:
    """Another server, where a redirect would send the request (and its key)."""
    async with FakeOpenAI(valid_keys=None) as server:
        yield server


def redirecting(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_an_error_and_is_not_followed(status: int, elsewhere: FakeOpenAI) -> None:
    target = f"{elsewhere.base_url}/chat/completions"
    fake = FakeOpenAI(valid_keys={KEY})

    async def redirect(request: web.Request) -> web.Response:
        return redirecting(status, target)

    fake.add_route("POST", "/v1/chat/completions", redirect)
    async with fake:
        options = {"base_url": fake.base_url}
        with pytest.raises(ProviderUnavailable, match="redirect") as plain:
            await chat_caller().chat(SECRET, options, ask(), timeout=5)
        with pytest.raises(ProviderUnavailable, match="redirect"):
            await collect(stream_caller().stream_chat(SECRET, options, ask(), timeout=5))
    assert plain.value.provider_status == status
    assert elsewhere.requests == []


async def test_azure_api_key_never_reaches_a_redirect_target(elsewhere: FakeOpenAI) -> None:
    # aiohttp's own redirect handling drops Authorization across origins, not `api-key`.
    fake = FakeOpenAI(valid_keys={AZURE_KEY})

    async def redirect(request: web.Request) -> web.Response:
        return redirecting(307, f"{elsewhere.url}{request.path_qs}")

    fake.add_route("POST", "/openai/deployments/{deployment}/chat/completions", redirect)
    async with fake:
        options = {"endpoint": fake.azure_endpoint, "deployment": "gpt4o"}
        with pytest.raises(ProviderUnavailable, match="redirect") as caught:
            await chat_caller("azure_openai").chat(PlainSecret(api_key=AZURE_KEY), options, ask(), timeout=5)
        with pytest.raises(ProviderUnavailable, match="redirect"):
            await collect(
                stream_caller("azure_openai").stream_chat(
                    PlainSecret(api_key=AZURE_KEY), options, ask(), timeout=5
                )
            )
    assert fake.requests[0].headers["api-key"] == AZURE_KEY  # it was sent where configured
    assert elsewhere.requests == []
    assert AZURE_KEY not in str(caught.value)


# --- cookies: never kept ------------------------------------------------------------------


async def test_cookies_set_by_one_answer_are_not_sent_with_the_next_request() -> None:
    fake = FakeOpenAI(valid_keys={KEY, OTHER_KEY})

    async def with_cookie(request: web.Request) -> web.Response:
        response = web.json_response(completion())
        response.set_cookie("__cf_bm", "tenant-a-bot-score", path="/")
        response.set_cookie("affinity", "node-7", path="/")
        return response

    fake.add_route("POST", "/v1/chat/completions", with_cookie)
    async with fake:
        # By name: aiohttp's cookie jar ignores cookies from IP-address hosts anyway.
        options = {"base_url": fake.base_url.replace("127.0.0.1", "localhost")}
        await chat_caller().chat(SECRET, options, ask(), timeout=5)
        await chat_caller().chat(PlainSecret(api_key=OTHER_KEY), options, ask(), timeout=5)
        await collect(stream_caller().stream_chat(SECRET, options, ask(), timeout=5))
    assert len(fake.requests) == 3
    assert all("Cookie" not in request.headers for request in fake.requests)


# --- compression ---------------------------------------------------------------------------


async def test_gzip_answers_are_decoded_on_both_paths() -> None:
    fake = FakeOpenAI(valid_keys={KEY})
    events = [
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}},
    ]
    stream_body = b"".join(sse(event) for event in events) + b"data: [DONE]\n\n"

    async def gzipped(request: web.Request) -> web.Response:
        streamed = (await request.json()).get("stream")
        body, kind = (
            (stream_body, "text/event-stream")
            if streamed
            else (json.dumps(completion("zipped")).encode(), "application/json")
        )
        return web.Response(
            body=gzip.compress(body),
            headers={"Content-Encoding": "gzip", "Content-Type": kind, "x-request-id": "req_gz"},
        )

    fake.add_route("POST", "/v1/chat/completions", gzipped)
    async with fake:
        options = {"base_url": fake.base_url}
        response = await chat_caller().chat(SECRET, options, ask(), timeout=5)
        streamed = await collect(stream_caller().stream_chat(SECRET, options, ask(), timeout=5))
    assert "gzip" in fake.requests[0].headers.get("Accept-Encoding", "")
    assert response.message.text == "zipped"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 1)
    assert response.request_id == "req_gz"
    assert [e.text for e in streamed if isinstance(e, TextDelta)] == ["Hello"]
    end = streamed[-1]
    assert isinstance(end, ChatStreamEnd)
    assert (end.usage.input_tokens, end.usage.output_tokens, end.usage.total_tokens) == (5, 2, 7)
    assert end.request_id == "req_gz"


# --- TLS and the environment ---------------------------------------------------------------


def self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "upstream.crt", tmp / "upstream.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


async def test_an_untrusted_upstream_certificate_is_refused_before_the_key_is_sent(tmp_path: Path) -> None:
    received: list[web.Request] = []

    async def chat(request: web.Request) -> web.Response:
        received.append(request)
        return web.json_response(completion())

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed(tmp_path))
    await site.start()
    port = runner.addresses[0][1]
    try:
        options = {"base_url": f"https://127.0.0.1:{port}/v1"}
        with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1") as plain:
            await chat_caller().chat(SECRET, options, ask(), timeout=5)
        with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1"):
            await collect(stream_caller().stream_chat(SECRET, options, ask(), timeout=5))
    finally:
        await runner.cleanup()
    assert "certificate" in str(plain.value).lower()
    assert received == []
    assert KEY not in str(plain.value)


async def test_proxy_settings_in_the_hub_environment_are_not_used(
    monkeypatch: pytest.MonkeyPatch, refused_base_url: str
) -> None:
    # A proxy that refuses everything: had the request gone through it, it would have failed.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, refused_base_url.removesuffix("/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        options = {"base_url": fake.base_url}
        await chat_caller().chat(SECRET, options, ask(), timeout=5)
        await collect(stream_caller().stream_chat(SECRET, options, ask(), timeout=5))
    assert len(fake.requests) == 2
    assert all("Proxy-Authorization" not in request.headers for request in fake.requests)


# --- pools -----------------------------------------------------------------------------------


async def test_one_pool_per_upstream_and_all_of_them_closed_at_shutdown() -> None:
    async with FakeOpenAI(valid_keys={KEY}) as first, FakeOpenAI(valid_keys={KEY}) as second:
        for fake in (first, second, first):
            await chat_caller().chat(SECRET, {"base_url": fake.base_url}, ask(), timeout=5)
        sessions = {pools.aiohttp_session(fake.url) for fake in (first, second)}
        assert len(sessions) == 2
        assert pools.aiohttp_session(first.url) is pools.aiohttp_session(first.url)
        assert first.requests[0].peer == first.requests[1].peer  # kept alive in between
        await pools.close_all()
        assert all(session.closed for session in sessions)
        # Both upstreams saw their connections end with the shutdown.
        await first.wait_for_close(first.requests[-1].peer, timeout=2.0)
        await second.wait_for_close(second.requests[-1].peer, timeout=2.0)
        # A call after close_all gets a fresh pool.
        await chat_caller().chat(SECRET, {"base_url": first.base_url}, ask(), timeout=5)
        assert pools.aiohttp_session(first.url) not in sessions


def test_endpoints_name_their_pool_by_origin() -> None:
    found = transport.endpoint(
        "https://example.openai.azure.com/openai/deployments/x/chat/completions?a=1", {}
    )
    assert found.upstream == "https://example.openai.azure.com"
    assert transport.endpoint("http://127.0.0.1:8000/v1/embeddings", {}).upstream == "http://127.0.0.1:8000"
