"""A caller that goes away takes its upstream call with it, within 100 ms.

Each test starts a call that the fake OpenAI upstream holds open (it never answers, or it
keeps a stream open), gives the call up the way a real client does (a gRPC cancel, a gRPC
deadline, an HTTP client closing its socket) and measures the time from that moment to
the moment the fake saw its connection from the hub end. The fake records that from the
server side of the socket (FakeOpenAI.wait_for_close), so what is measured is what a
provider would see: the hub stopped asking, and stopped being billed.

Every test then makes one ordinary call: the hub keeps serving after a cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from aiohttp import web

from integration_hub.v1 import chat_pb2 as pb
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_server import ChatReply, FakeOpenAI, RecordedRequest, sse
from tests.harness import HubUnderTest, running_hub, settings_for

KEY = "sk-test-Cancel0123456789abcdefgh"
LIMIT = 0.100  # seconds from the client giving up to the upstream connection closing
MESSAGES = [{"role": "ROLE_USER", "content": [{"text": "Hi"}]}]
OPENAI_MESSAGES = [{"role": "user", "content": "Hi"}]

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}) as server:
        yield server


@pytest.fixture
async def hub(tmp_path: Path, fake: FakeOpenAI) -> AsyncIterator[HubUnderTest]:
    # Cancellation does not depend on the store: SQLite only.
    async with running_hub(settings_for(tmp_path, database_url=None)) as hut:
        await hut.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": fake.base_url}
            ),
            metadata=hut.auth(hut.tokens.admin),
        )
        yield hut


def chat_request() -> pb.ChatRequest:
    return pb.ChatRequest(
        credential="main",
        model="gpt-4o",
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content=[pb.ContentPart(text="Hi")])],
    )


async def upstream_request(fake: FakeOpenAI) -> RecordedRequest:
    """The next chat request the fake receives (the one the test is about to give up)."""
    return await fake.wait_for_request(len(fake.requests) + 1, timeout=5.0)


async def closed_within_limit(fake: FakeOpenAI, request: RecordedRequest, gave_up_at: float) -> float:
    closed_at = await fake.wait_for_close(request.peer, timeout=2.0)
    latency = closed_at - gave_up_at
    print(f"upstream closed {latency * 1000:.1f} ms after the client gave up")
    assert latency < LIMIT
    return latency


async def still_serving(hut: HubUnderTest, fake: FakeOpenAI) -> None:
    fake.script(ChatReply(text="still here"))
    response = await chat_pb2_grpc.ChatServiceStub(hut.channel).Chat(
        chat_request(), metadata=hut.auth(hut.tokens.invoke_only), timeout=10
    )
    assert response.message.content[0].text == "still here"


async def raw_post(
    hut: HubUnderTest, path: str, body: object
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An HTTP/1.1 POST on a socket of our own, so the test decides when the connection closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hut.servers.http_port)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {hut.tokens.invoke_only}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    return reader, writer


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    """The response so far, once it contains `marker` (the stream has started flowing)."""
    seen = b""
    async with asyncio.timeout(5.0):
        while marker not in seen:
            chunk = await reader.read(65536)
            assert chunk, f"the hub closed the connection; got {seen!r}"
            seen += chunk
    return seen


def hang_up(writer: asyncio.StreamWriter) -> float:
    gave_up_at = time.monotonic()
    writer.close()  # FIN: the client is gone
    return gave_up_at


# --- gRPC ---------------------------------------------------------------------------


async def test_cancelled_grpc_chat_cancels_the_upstream_request(hub: HubUnderTest, fake: FakeOpenAI) -> None:
    fake.script(ChatReply(hang=True))
    call = chat_pb2_grpc.ChatServiceStub(hub.channel).Chat(
        chat_request(), metadata=hub.auth(hub.tokens.invoke_only)
    )
    request = await upstream_request(fake)
    gave_up_at = time.monotonic()
    call.cancel()
    await closed_within_limit(fake, request, gave_up_at)
    with pytest.raises(asyncio.CancelledError):
        await call
    await still_serving(hub, fake)


async def test_an_expired_grpc_deadline_cancels_the_upstream_request(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(hang=True))
    deadline = 0.5
    started = time.monotonic()
    call = chat_pb2_grpc.ChatServiceStub(hub.channel).Chat(
        chat_request(), metadata=hub.auth(hub.tokens.invoke_only), timeout=deadline
    )
    request = await upstream_request(fake)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Measured from the deadline itself (the hub's own copy of it may fire a little earlier).
    await closed_within_limit(fake, request, started + deadline)
    await still_serving(hub, fake)


async def test_cancelled_grpc_stream_cancels_the_upstream_request_mid_stream(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(text="never ending", hold_open=True))
    call = chat_pb2_grpc.ChatServiceStub(hub.channel).StreamChat(
        chat_request(), metadata=hub.auth(hub.tokens.invoke_only)
    )
    request = await upstream_request(fake)
    first = await call.read()
    assert isinstance(first, pb.StreamChatResponse)
    assert first.HasField("text_delta")
    gave_up_at = time.monotonic()
    call.cancel()
    await closed_within_limit(fake, request, gave_up_at)
    await still_serving(hub, fake)


async def test_an_expired_grpc_deadline_mid_stream_cancels_the_upstream_request(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(text="one two three four", stall_after=3))  # never ends
    deadline = 0.5
    started = time.monotonic()
    call = chat_pb2_grpc.ChatServiceStub(hub.channel).StreamChat(
        chat_request(), metadata=hub.auth(hub.tokens.invoke_only), timeout=deadline
    )
    request = await upstream_request(fake)
    received: list[pb.StreamChatResponse] = []

    async def consume() -> None:
        async for event in call:
            received.append(event)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consume()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert received  # it was flowing when the deadline passed
    assert not any(e.HasField("end") for e in received)
    await closed_within_limit(fake, request, started + deadline)
    await still_serving(hub, fake)


async def test_cancelled_grpc_stream_before_its_first_event_cancels_the_upstream_request(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(hang=True))
    call = chat_pb2_grpc.ChatServiceStub(hub.channel).StreamChat(
        chat_request(), metadata=hub.auth(hub.tokens.invoke_only)
    )
    request = await upstream_request(fake)
    gave_up_at = time.monotonic()
    call.cancel()
    await closed_within_limit(fake, request, gave_up_at)
    await still_serving(hub, fake)


# --- REST ---------------------------------------------------------------------------


async def test_rest_client_hanging_up_cancels_the_upstream_request(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(hang=True))
    _, writer = await raw_post(
        hub, "/v1/chat", {"credential": "main", "model": "gpt-4o", "messages": MESSAGES}
    )
    request = await upstream_request(fake)
    await closed_within_limit(fake, request, hang_up(writer))
    await still_serving(hub, fake)


async def test_rest_stream_client_hanging_up_cancels_the_upstream_request(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(text="never ending", hold_open=True))
    reader, writer = await raw_post(
        hub, "/v1/chat:stream", {"credential": "main", "model": "gpt-4o", "messages": MESSAGES}
    )
    request = await upstream_request(fake)
    seen = await read_until(reader, b'"text_delta"')
    assert seen.startswith(b"HTTP/1.1 200")
    await closed_within_limit(fake, request, hang_up(writer))
    await still_serving(hub, fake)


# --- the OpenAI-compatible endpoint ---------------------------------------------------


async def test_openai_client_hanging_up_cancels_the_upstream_request(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(hang=True))
    _, writer = await raw_post(
        hub, "/openai/v1/chat/completions", {"model": "main/gpt-4o", "messages": OPENAI_MESSAGES}
    )
    request = await upstream_request(fake)
    await closed_within_limit(fake, request, hang_up(writer))
    await still_serving(hub, fake)


async def test_openai_stream_client_hanging_up_cancels_the_upstream_request(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(text="never ending", hold_open=True))
    reader, writer = await raw_post(
        hub,
        "/openai/v1/chat/completions",
        {"model": "main/gpt-4o", "stream": True, "messages": OPENAI_MESSAGES},
    )
    request = await upstream_request(fake)
    seen = await read_until(reader, b'"content":"never')
    assert seen.startswith(b"HTTP/1.1 200")
    await closed_within_limit(fake, request, hang_up(writer))
    await still_serving(hub, fake)


async def test_openai_stream_client_hanging_up_before_the_first_event_cancels_the_upstream_request(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    fake.script(ChatReply(hang=True))
    _, writer = await raw_post(
        hub,
        "/openai/v1/chat/completions",
        {"model": "main/gpt-4o", "stream": True, "messages": OPENAI_MESSAGES},
    )
    request = await upstream_request(fake)
    await closed_within_limit(fake, request, hang_up(writer))
    await still_serving(hub, fake)


# --- a client gone at the moment the hub writes to it ------------------------------------


@dataclass
class _Race:
    """The pieces of the race below, shared by the test and the fake's handler."""

    client: socket.socket | None = None
    first_read: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up_at: float = 0.0


def _sse_chunk(text: str) -> bytes:
    chunk = {
        "id": "chatcmpl-race",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return sse(chunk)


@pytest.fixture
async def racing_fake() -> AsyncIterator[tuple[FakeOpenAI, _Race]]:
    race = _Race()
    server = FakeOpenAI(valid_keys={KEY})

    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_sse_chunk("first "))
        await race.first_read.wait()
        # In one step of the event loop, without yielding: the next event reaches the hub's
        # socket, then the client hangs up. The hub's next poll sees both, the event first, so
        # it writes that event to a connection already closing before aiohttp has cancelled
        # the handler: the write fails instead of the handler being cancelled.
        await response.write(_sse_chunk("second "))
        assert race.client is not None
        race.hung_up_at = time.monotonic()
        race.client.close()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with contextlib.suppress(TimeoutError):
            await server.wait_for_close((str(peer[0]), int(peer[1])) if peer else None, timeout=5.0)
        return response

    server.add_route("POST", "/v1/chat/completions", stream)
    async with server:
        yield server, race


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat:stream", {"credential": "main", "model": "gpt-4o", "messages": MESSAGES}),
        (
            "/openai/v1/chat/completions",
            {"model": "main/gpt-4o", "stream": True, "messages": OPENAI_MESSAGES},
        ),
    ],
    ids=["rest", "openai"],
)
async def test_a_client_gone_when_its_next_event_is_written_still_cancels_the_upstream(
    tmp_path: Path, racing_fake: tuple[FakeOpenAI, _Race], path: str, body: dict[str, object]
) -> None:
    fake, race = racing_fake
    async with running_hub(settings_for(tmp_path, database_url=None)) as hut:
        await hut.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": fake.base_url}
            ),
            metadata=hut.auth(hut.tokens.admin),
        )
        loop = asyncio.get_running_loop()
        client = socket.create_connection(("127.0.0.1", hut.servers.http_port))
        client.setblocking(False)
        race.client = client
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {hut.tokens.invoke_only}\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        await loop.sock_sendall(client, head.encode() + payload)
        request = await upstream_request(fake)
        seen = b""
        async with asyncio.timeout(5.0):
            while b"first" not in seen:
                seen += await loop.sock_recv(client, 65536)
        race.first_read.set()
        closed_at = await fake.wait_for_close(request.peer, timeout=2.0)
        latency = closed_at - race.hung_up_at
        print(f"upstream closed {latency * 1000:.1f} ms after the client hung up mid-write")
        assert latency < LIMIT
        logs = hut.logs.getvalue()
        assert "the client went away mid-stream" in logs  # the race was run: the write failed
        assert "unexpected error" not in logs


async def test_cancelling_a_grpc_stream_blocked_on_a_slow_reader_cancels_the_upstream(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    # The upstream streams far more than gRPC's flow-control window while the client reads
    # nothing: the hub ends up waiting to send, not waiting on the upstream, when the cancel
    # lands. The upstream request must be given up all the same.
    fake.script(ChatReply(text_chunks=["x" * 1024] * 8192, hold_open=True))
    call = chat_pb2_grpc.ChatServiceStub(hub.channel).StreamChat(
        chat_request(), metadata=hub.auth(hub.tokens.invoke_only)
    )
    request = await upstream_request(fake)
    await call.read()
    await asyncio.sleep(0.3)  # the window fills; the hub blocks sending
    gave_up_at = time.monotonic()
    call.cancel()
    await closed_within_limit(fake, request, gave_up_at)
    await still_serving(hub, fake)
