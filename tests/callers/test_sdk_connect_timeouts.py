"""The call's connect timeout (callers.timeouts) reaches the SDK-based callers too.

Anthropic, Cohere, Gemini and Mistral send through pooled httpx/httpx2 clients whose
request hook lowers the connect part of the SDK's per-request timeout; Bedrock's own
transport takes it when the call starts. Each provider is pointed at a listener whose
accept queue is full (a connection neither succeeds nor fails: only a connect timeout
ends it), and at its fake answering more slowly than the connect timeout, which must
not matter: only connecting is bounded, not waiting for the answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from callers import pools, registry
from callers.base import Capability, ChatCaller, ProviderTimeout, SecretFields, StreamChatCaller
from callers.timeouts import connect_timeout_of
from callers.types import ChatEvent, ChatRequest, ChatStreamEnd, TextPart, UserMessage
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.bedrock_server import FakeBedrock, text_stream
from tests.fakes.cohere_server import FakeCohere
from tests.fakes.gemini_server import FakeGoogle
from tests.fakes.mistral_server import FakeMistral
from tests.fakes.secret_fields import PlainSecret

pytestmark = pytest.mark.timeout(30)

CONNECT = 0.3
TOTAL = 8.0  # far more than CONNECT: what ends a blackholed call must be the connect bound
SLOW = 0.8  # the fakes answer after this: slower than CONNECT, well within TOTAL

AWS_KEY_ID = "AKIAFAKEKEY000000001"
AWS_SECRET = "fakeSecretKey/0123456789abcdefghijklmnop"


@dataclass(frozen=True)
class Provider:
    name: str
    model: str
    secret: SecretFields
    fake: Callable[[], Any]  # an async context manager serving the provider's wire
    options: Callable[[str], dict[str, str]]  # from the server's root URL
    root: Callable[[Any], str]  # the running fake's root URL
    slow: Callable[[Any], None]  # make the fake answer after SLOW seconds


def _slow_answer(fake: Any) -> None:
    fake.delay = SLOW


def _slow_bedrock(fake: Any) -> None:
    # Bedrock's fake delays stream events (its chat answers at once): a short stream, each
    # event later than CONNECT, all of them after SLOW.
    fake.stream_events = text_stream("Hello")
    fake.event_delay = SLOW / 2


PROVIDERS = [
    Provider(
        "anthropic",
        "claude-sonnet-4-6",
        PlainSecret(api_key="sk-ant-api03-good-0123456789abcdef"),
        lambda: FakeAnthropic(valid_keys={"sk-ant-api03-good-0123456789abcdef"}),
        lambda url: {"base_url": url},
        lambda fake: fake.url,
        _slow_answer,
    ),
    Provider(
        "cohere",
        "command-a-03-2025",
        PlainSecret(api_key="co-good-0123456789"),
        lambda: FakeCohere(valid_keys={"co-good-0123456789"}),
        lambda url: {"base_url": url},
        lambda fake: fake.base_url,
        _slow_answer,
    ),
    Provider(
        "mistral",
        "mistral-small-latest",
        PlainSecret(api_key="m-good-0123456789"),
        lambda: FakeMistral(valid_keys={"m-good-0123456789"}),
        lambda url: {"base_url": url},
        lambda fake: fake.base_url,
        _slow_answer,
    ),
    Provider(
        "gemini",
        "gemini-2.5-flash",
        PlainSecret(api_key="AIzaSyGood-0123456789abcdefghijklmnopq"),
        lambda: FakeGoogle(api_keys={"AIzaSyGood-0123456789abcdefghijklmnopq"}),
        lambda url: {"base_url": url},
        lambda fake: fake.url,
        _slow_answer,
    ),
    Provider(
        "bedrock",
        "anthropic.claude-3-haiku-20240307-v1:0",
        PlainSecret(access_key_id=AWS_KEY_ID, secret_access_key=AWS_SECRET),
        lambda: FakeBedrock({AWS_KEY_ID: AWS_SECRET}),
        lambda url: {"region": "us-east-1", "endpoint_url": url, "control_endpoint_url": url},
        lambda fake: fake.url,
        _slow_bedrock,
    ),
]
IDS = [provider.name for provider in PROVIDERS]


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


@contextlib.contextmanager
def unaccepting_listener() -> Iterator[str]:
    """http://127.0.0.1:<port> of a socket whose backlog is full: connections hang in SYN_SENT."""
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
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in (*fillers, server):
            sock.close()


def chat_caller(provider: Provider) -> ChatCaller:
    caller = registry.capability(provider.name, Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def stream_caller(provider: Provider) -> StreamChatCaller:
    caller = registry.capability(provider.name, Capability.STREAM_CHAT)
    assert isinstance(caller, StreamChatCaller)
    return caller


def ask(provider: Provider) -> ChatRequest:
    return ChatRequest(model=provider.model, messages=[UserMessage([TextPart("Hello?")])])


async def collect(events: AsyncIterator[ChatEvent]) -> list[ChatEvent]:
    return [event async for event in events]


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
async def test_a_chat_gives_up_connecting_after_the_calls_connect_timeout(provider: Provider) -> None:
    caller = chat_caller(provider)  # imports the SDK, outside of the measure
    with unaccepting_listener() as url:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout), connect_timeout_of(CONNECT):
            await caller.chat(provider.secret, provider.options(url), ask(provider), timeout=TOTAL)
        assert CONNECT <= time.monotonic() - started < CONNECT + 1.0


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
async def test_a_stream_gives_up_connecting_after_the_calls_connect_timeout(provider: Provider) -> None:
    caller = stream_caller(provider)
    with unaccepting_listener() as url:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout), connect_timeout_of(CONNECT):
            await collect(
                caller.stream_chat(provider.secret, provider.options(url), ask(provider), timeout=TOTAL)
            )
        assert CONNECT <= time.monotonic() - started < CONNECT + 1.0


@pytest.mark.parametrize("provider", PROVIDERS, ids=IDS)
async def test_only_connecting_is_bounded_not_the_wait_for_the_answer(provider: Provider) -> None:
    async with provider.fake() as fake:
        provider.slow(fake)
        options = provider.options(provider.root(fake))
        started = time.monotonic()
        with connect_timeout_of(CONNECT):
            if provider.name == "bedrock":
                events = await collect(
                    stream_caller(provider).stream_chat(
                        provider.secret, options, ask(provider), timeout=TOTAL
                    )
                )
                assert isinstance(events[-1], ChatStreamEnd)
            else:
                response = await chat_caller(provider).chat(
                    provider.secret, options, ask(provider), timeout=TOTAL
                )
                assert response.message.text
        assert time.monotonic() - started >= SLOW


# --- Vertex AI: a token exchange (aiohttp), then the API (the gemini client) -----------

VERTEX_EMAIL = "integration-hub@fake-project.iam.gserviceaccount.com"


def vertex_key_file(private_key: rsa.RSAPrivateKey, token_uri: str) -> PlainSecret:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    document = {
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": VERTEX_EMAIL,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    return PlainSecret(service_account_json=json.dumps(document))


@pytest.mark.parametrize("blackholed", ["token endpoint", "API"])
async def test_vertex_gives_up_connecting_after_the_calls_connect_timeout(blackholed: str) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    caller = registry.capability("vertex_ai", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    request = ChatRequest(model="gemini-2.5-flash", messages=[UserMessage([TextPart("Hello?")])])
    fake = FakeGoogle(
        service_accounts={VERTEX_EMAIL: private_key.public_key()},
        project="fake-project",
        location="us-central1",
    )
    async with fake:
        with unaccepting_listener() as url:
            token_uri = f"{url}/token" if blackholed == "token endpoint" else fake.token_uri
            options = {
                "project": "fake-project",
                "location": "us-central1",
                "base_url": url if blackholed == "API" else fake.url,
            }
            started = time.monotonic()
            with pytest.raises(ProviderTimeout), connect_timeout_of(CONNECT):
                await caller.chat(vertex_key_file(private_key, token_uri), options, request, timeout=TOTAL)
            assert CONNECT <= time.monotonic() - started < CONNECT + 1.0
