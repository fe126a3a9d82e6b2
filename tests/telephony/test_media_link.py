"""The media link between a call's two ends (integration_hub.telephony.media_link), on real
Unix sockets and in memory (media_local, both ends in one worker): frames read in batches
and written in batches keep their order and their bytes, and an agent waiting for the
provider end is let in by its doorbell, at once, with no polling while it waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration_hub.telephony import media_link as link
from integration_hub.telephony import media_local
from integration_hub.telephony.media_link import Frame, Kind

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def connected(
    tmp_path: Path,
) -> AsyncIterator[tuple[link.LinkWriter, link.FrameReader, asyncio.StreamWriter]]:
    """A link over a real Unix socket: (writer at one end, reader at the other, the raw
    writer under the first)."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    path = str(tmp_path / "link.sock")
    server = await asyncio.start_unix_server(on_connect, path=path)
    _, writer = await asyncio.open_unix_connection(path)
    far_reader, far_writer = await asyncio.wait_for(accepted.get(), 5)
    try:
        yield link.LinkWriter(writer), link.FrameReader(far_reader), writer
    finally:
        writer.close()
        far_writer.close()
        server.close()
        await server.wait_closed()


async def read_all(frames: link.LinkIn, count: int) -> list[list[Frame]]:
    """Batches until `count` frames have come."""
    batches: list[list[Frame]] = []
    while sum(map(len, batches)) < count:
        batches.append(await asyncio.wait_for(frames.frames(), 5))
    return batches


async def test_frames_written_together_are_read_as_one_batch_in_order(tmp_path: Path) -> None:
    async with connected(tmp_path) as (_, frames, raw):
        sent = [Frame(Kind.AUDIO, bytes([i]) * (320 + i)) for i in range(20)]
        sent.insert(7, Frame(Kind.MARK, b"m1"))
        sent.append(Frame(Kind.STOP, b'{"reason":"hangup"}'))
        raw.write(b"".join(link.encode(f.kind, f.payload) for f in sent))
        await raw.drain()
        batches = await read_all(frames, len(sent))
        assert [f for batch in batches for f in batch] == sent
        assert len(batches) < len(sent), "several frames a read"


async def test_frames_cut_anywhere_in_transit_come_whole(tmp_path: Path) -> None:
    async with connected(tmp_path) as (_, frames, raw):
        sent = [Frame(Kind.PLAY, os.urandom(n)) for n in (1, 640, 0, 4096, 3)] + [Frame(Kind.CLEAR)]
        data = b"".join(link.encode(f.kind, f.payload) for f in sent)
        for start in range(0, len(data), 7):  # 7 bytes at a time: headers split too
            raw.write(data[start : start + 7])
            await raw.drain()
            await asyncio.sleep(0)
        assert [f for batch in await read_all(frames, len(sent)) for f in batch] == sent


async def test_a_payload_over_the_frame_limit_goes_in_frames_of_the_same_kind(tmp_path: Path) -> None:
    async with connected(tmp_path) as (out, frames, _):
        payload = os.urandom(2 * link.MAX_PAYLOAD + 10)
        out.send(Kind.PLAY, payload)
        got = [f for batch in await read_all(frames, 3) for f in batch]
        assert [f.kind for f in got] == [Kind.PLAY] * 3
        assert b"".join(f.payload for f in got) == payload


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (link.HEADER.pack(99, 0), "unknown media link frame type 99"),
        (link.HEADER.pack(Kind.AUDIO, link.MAX_PAYLOAD + 1), "at most"),
        (link.HEADER.pack(Kind.AUDIO, 10) + b"abc", "end of stream in the middle of a frame"),
    ],
)
async def test_a_broken_or_ended_link_is_link_closed(tmp_path: Path, data: bytes, words: str) -> None:
    async with connected(tmp_path) as (_, frames, raw):
        raw.write(data)
        await raw.drain()
        raw.close()
        with pytest.raises(link.LinkClosed, match=words):
            await asyncio.wait_for(frames.frames(), 5)


async def test_the_first_frame_of_a_turn_goes_at_once_the_rest_together_at_its_end(tmp_path: Path) -> None:
    async with connected(tmp_path) as (out, frames, raw):
        transport = raw.transport
        writes: list[int] = []
        real_write = transport.write

        def counting(data: bytes | bytearray | memoryview) -> None:
            writes.append(len(data))
            real_write(data)

        transport.write = counting  # type: ignore[method-assign]
        out.send(Kind.AUDIO, b"a" * 640)
        assert writes == [5 + 640], "the first frame is written before the turn ends"
        for i in range(5):
            out.send(Kind.AUDIO, bytes([i]) * 640)
        out.send(Kind.MARK, b"done")
        assert writes == [5 + 640], "the others wait for the turn's end"
        await asyncio.sleep(0)
        assert writes == [5 + 640, 5 * (5 + 640) + 5 + 4], "then go in one write"
        got = [f for batch in await read_all(frames, 7) for f in batch]
        assert [f.payload for f in got] == [b"a" * 640, *(bytes([i]) * 640 for i in range(5)), b"done"]
        # A later turn starts again with a frame at once.
        out.send(Kind.DTMF, b"5")
        assert writes[-1] == 5 + 1


async def test_close_writes_what_is_held_first(tmp_path: Path) -> None:
    async with connected(tmp_path) as (out, frames, _):
        out.send(Kind.AUDIO, b"x" * 320)
        out.send(Kind.AUDIO, b"y" * 320)  # held for the turn's end
        out.send(Kind.STOP, b'{"reason":"provider"}')
        await out.finish()
        got = [f for batch in await read_all(frames, 3) for f in batch]
        assert [f.kind for f in got] == [Kind.AUDIO, Kind.AUDIO, Kind.STOP]
        with pytest.raises(link.LinkClosed):
            await asyncio.wait_for(frames.frames(), 5)


# --- waiting for the provider end ---------------------------------------------------------


async def test_a_doorbell_lets_the_agent_in_as_soon_as_the_provider_end_listens(tmp_path: Path) -> None:
    media_dir = str(tmp_path)
    bell = await link.Doorbell.open(media_dir, "call1")
    other = await link.Doorbell.open(media_dir, "call2")  # another call's: not rung
    try:
        assert await link.connect(media_dir, "call1") is None
        waiting = asyncio.create_task(bell.wait(10))
        await asyncio.sleep(0.05)
        assert not waiting.done()

        async def on_agent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await link.listen(media_dir, "call1", on_agent)
        assert server is not None
        rung_at = time.monotonic()
        assert await link.ring_doorbells(media_dir, "call1") == 1
        assert await asyncio.wait_for(waiting, 5) is True
        assert time.monotonic() - rung_at < 0.5
        connection = await link.connect(media_dir, "call1")
        assert connection is not None
        connection[1].close()
        assert await other.wait(0.05) is False
        server.close()
        await server.wait_closed()
    finally:
        bell.close()
        other.close()
    assert not [name for name in os.listdir(media_dir) if ".wait-" in name], "doorbells removed"


async def test_a_ring_before_the_wait_is_not_lost(tmp_path: Path) -> None:
    bell = await link.Doorbell.open(str(tmp_path), "call1")
    try:
        assert await link.ring_doorbells(str(tmp_path), "call1") == 1
        assert await bell.wait(5) is True
        assert await bell.wait(0.05) is False  # one ring, one wake-up
    finally:
        bell.close()
    assert os.listdir(tmp_path) == []


async def test_a_dead_doorbell_is_skipped(tmp_path: Path) -> None:
    """A doorbell file whose listener is gone (its worker died): ringing it fails, quietly."""
    path = tmp_path / "call1.wait-deadbeef"
    dead = await asyncio.start_unix_server(lambda r, w: None, path=str(path))
    dead.close()
    await dead.wait_closed()
    assert path.exists()
    assert await link.ring_doorbells(str(tmp_path), "call1") == 0


async def test_waiting_agents_cost_no_cpu(tmp_path: Path) -> None:
    """A hundred agents waiting for their calls: the process stays idle (the 20 ms polling
    this replaced cost a hundred connection attempts every 20 ms, ~10-30 % of a CPU)."""
    bells = [await link.Doorbell.open(str(tmp_path), f"call{i}") for i in range(100)]
    try:
        # This thread's CPU (the event loop's): other tests' threads may still be winding down.
        started = time.thread_time()
        results = await asyncio.gather(*(bell.wait(1.0) for bell in bells))
        spent = time.thread_time() - started
        assert results == [False] * 100
        assert spent < 0.05, f"{spent * 1000:.1f} ms of CPU for 100 agents waiting 1 s"
    finally:
        for bell in bells:
            bell.close()


# --- both ends in one worker ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def provider_end(
    tmp_path: Path, call_id: str = "call1"
) -> AsyncIterator[asyncio.Queue[tuple[link.LinkIn, link.LinkOut]]]:
    """A listening provider end; yields the queue of the agent links it was given."""
    agents: asyncio.Queue[tuple[link.LinkIn, link.LinkOut]] = asyncio.Queue()
    done = asyncio.Event()

    async def on_agent(frames: link.LinkIn, out: link.LinkOut) -> None:
        await agents.put((frames, out))
        await done.wait()

    server = await link.listen(str(tmp_path), call_id, on_agent)
    assert server is not None
    try:
        yield agents
    finally:
        done.set()
        server.close()
        link.remove(str(tmp_path), call_id, on_agent)
        await server.wait_closed()


async def test_an_agent_of_the_same_worker_talks_in_memory(tmp_path: Path) -> None:
    async with provider_end(tmp_path) as agents:
        connection = await link.connect(str(tmp_path), "call1")
        assert connection is not None
        agent_in, agent_out = connection
        assert isinstance(agent_in, media_local.LocalIn), "no socket for a same-worker agent"
        provider_in, provider_out = await asyncio.wait_for(agents.get(), 5)
        agent_out.send(Kind.HELLO, b'{"sample_rate_hz":8000}')
        for i in range(5):
            agent_out.send(Kind.PLAY, bytes([i]) * 320)
        batch = await asyncio.wait_for(provider_in.frames(), 5)
        assert [f.kind for f in batch] == [Kind.HELLO] + [Kind.PLAY] * 5, "one batch, in order"
        assert [f.payload for f in batch[1:]] == [bytes([i]) * 320 for i in range(5)]
        provider_out.send(Kind.AUDIO, b"a" * 320)
        assert provider_out.backlog() == 0  # a socket's buffer's worth is not counted (`behind`)
        big = b"b" * (media_local.HIGH_WATER + 100)
        provider_out.send(Kind.AUDIO, big)
        assert provider_out.backlog() == 420
        provider_out.send(Kind.STOP, b'{"reason":"hangup"}')
        await provider_out.finish()
        got = [f for batch in await read_all(agent_in, 3) for f in batch]
        assert [f.kind for f in got] == [Kind.AUDIO, Kind.AUDIO, Kind.STOP]
        assert got[1].payload == big
        with pytest.raises(link.LinkClosed):
            await asyncio.wait_for(agent_in.frames(), 5)
        agent_out.send(Kind.PLAY, b"late")  # the end is closed: dropped, as on a socket
        with pytest.raises(link.LinkClosed):
            await asyncio.wait_for(provider_in.frames(), 5)
    assert await link.connect(str(tmp_path), "call1") is None, "gone with its provider end"


async def test_an_in_memory_writer_waits_while_the_reader_is_behind(tmp_path: Path) -> None:
    async with provider_end(tmp_path) as agents:
        connection = await link.connect(str(tmp_path), "call1")
        assert connection is not None
        _, agent_out = connection
        provider_in, _ = await asyncio.wait_for(agents.get(), 5)
        chunk = b"x" * 64 * 1024
        for _ in range(media_local.HIGH_WATER // len(chunk) + 1):
            agent_out.send(Kind.PLAY, chunk)
        draining = asyncio.create_task(agent_out.drain())
        await asyncio.sleep(0.05)
        assert not draining.done(), "over the high-water mark: the writer waits"
        await provider_in.frames()
        await asyncio.wait_for(draining, 5)


async def test_an_aborted_reader_reads_what_came_then_ends(tmp_path: Path) -> None:
    async with provider_end(tmp_path) as agents:
        connection = await link.connect(str(tmp_path), "call1")
        assert connection is not None
        agent_in, _ = connection
        _, provider_out = await asyncio.wait_for(agents.get(), 5)
        provider_out.send(Kind.DTMF, b"1")
        agent_in.abort()
        assert [f.payload for f in await agent_in.frames()] == [b"1"]
        with pytest.raises(link.LinkClosed):
            await agent_in.frames()
