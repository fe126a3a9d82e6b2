"""The link between a call's two media ends, which may live in different worker processes.

A call's audio arrives on the provider's websocket (the hub's HTTP port) and its agent
attaches with CallMedia (the gRPC port); with SO_REUSEPORT the kernel may hand the two
connections to different workers. They meet at a Unix socket named by the call id in
the hub's media directory, shared by the workers of one hub (0700, made by the
supervisor, or by the hub itself when it serves alone): the provider end listens, the
agent end connects. One code path whether the ends share a process or not; the hop is
a local socket write (tens of microseconds).

Frames: one type byte, a 4-byte big-endian length, the payload. Audio on the link is
always linear16 mono at the rate the agent chose; the provider end converts.
Only one host: a deployment of several hosts must route a call's provider websocket and
its CallMedia to the same host (e.g. by call id at the load balancer).

An agent that attaches before the call is answered waits without polling: it listens on a
doorbell socket of its own (`<call id>.wait-<random>`), and the provider end, once it
listens, rings every doorbell of its call (a connection, closed at once). The agent makes
its doorbell before it looks for the provider end, and the provider end listens before it
looks for doorbells, so one of the two always sees the other.

Both ends read a link in batches (every whole frame that has arrived, one read) and a
writer that has several frames in one turn of the event loop sends the second and later
ones together at its end (the first goes at once: no delay when there is one). When both
ends are in the same worker, they meet through the socket's name but talk in memory
(media_local): same interface (LinkIn, LinkOut), no system call per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

HEADER = struct.Struct(">BI")
MAX_PAYLOAD = 256 * 1024
READ_SIZE = 64 * 1024  # what one batched read takes at most
_DOORBELL = ".wait-"  # <call id>.wait-<random>: an agent end waiting for the call's provider end


class Kind(IntEnum):
    # provider end -> agent end
    START = 1  # JSON: call id, provider call id, from, to, parameters
    AUDIO = 2  # linear16 at the agent's rate
    DTMF = 3
    MARK = 4  # a mark the agent sent has been played
    STOP = 5  # JSON: reason
    REFUSED = 6  # UTF-8: why the agent cannot attach
    # agent end -> provider end
    HELLO = 10  # JSON: sample_rate_hz
    PLAY = 11  # linear16 at the agent's rate, queued and paced out
    PLAY_MARK = 12
    CLEAR = 13


_KINDS = {kind.value: kind for kind in Kind}  # a dict lookup: Kind(x) costs more per frame


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    payload: bytes = b""


class LinkClosed(Exception):
    """The other end went away."""


class LinkIn(Protocol):
    """The reading side of a link's end (FrameReader, or media_local's)."""

    async def frames(self) -> list[Frame]:
        """At least one frame, every one that has come; LinkClosed at the end."""
        ...

    def abort(self) -> None:
        """Stop reading: what has come is still read, then LinkClosed."""
        ...


class LinkOut(Protocol):
    """The writing side of a link's end (LinkWriter, or media_local's)."""

    def send(self, kind: Kind, payload: bytes = b"") -> None: ...

    def flush(self) -> None:
        """Write what is held for the end of this turn of the loop now."""
        ...

    def backlog(self) -> int:
        """Bytes sent and not yet taken by the other end."""
        ...

    async def drain(self) -> None:
        """Back-pressure: wait while the other end is not reading."""
        ...

    def close(self) -> None:
        """Close the end now (what is sent still reaches the other end)."""
        ...

    async def finish(self) -> None:
        """Close once what is sent has been written."""
        ...


def socket_path(media_dir: str, call_id: str) -> str:
    return str(Path(media_dir) / f"{call_id}.sock")


class FrameReader:
    """A link's frames, read in batches: every whole frame that has arrived, at one await."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._rest = b""  # the start of a frame still arriving

    def abort(self) -> None:
        self._reader.feed_eof()

    async def frames(self) -> list[Frame]:
        """At least one frame; LinkClosed when the other end has gone."""
        while True:
            try:
                chunk = await self._reader.read(READ_SIZE)
            except ConnectionError as exc:
                raise LinkClosed(str(exc) or type(exc).__name__) from None
            if not chunk:
                raise LinkClosed("end of stream" + (" in the middle of a frame" if self._rest else ""))
            frames = self._parse(self._rest + chunk if self._rest else chunk)
            if frames:
                return frames

    def _parse(self, data: bytes) -> list[Frame]:
        # Slices of one bytes object: a payload costs one copy (the usual read is one frame).
        start, frames, size, total = 0, [], HEADER.size, len(data)
        while total - start >= size:
            kind, length = HEADER.unpack_from(data, start)
            if length > MAX_PAYLOAD:
                raise LinkClosed(f"a media link frame of {length} bytes (at most {MAX_PAYLOAD})")
            end = start + size + length
            if end > total:
                break
            known = _KINDS.get(kind)
            if known is None:
                raise LinkClosed(f"unknown media link frame type {kind}")
            frames.append(Frame(known, data[start + size : end]))
            start = end
        self._rest = data[start:] if start < total else b""
        return frames


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    """One frame, or several of the same kind for a payload over MAX_PAYLOAD."""
    if len(payload) <= MAX_PAYLOAD:
        return HEADER.pack(kind, len(payload)) + payload
    return b"".join(
        HEADER.pack(kind, len(part)) + part
        for part in (payload[i : i + MAX_PAYLOAD] for i in range(0, len(payload), MAX_PAYLOAD))
    )


class LinkWriter:
    """Frames to the other end. The first frame of a turn of the event loop is written at
    once; frames after it in the same turn (a loop that fell behind hands several on in a
    row) are held and written together at the turn's end: one system call, not one each."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._held: list[bytes] = []
        self._in_turn = False
        self._loop = asyncio.get_running_loop()

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        if self.writer.is_closing():
            return
        if self._in_turn:
            self._held.append(encode(kind, payload))
            return
        self.writer.write(encode(kind, payload))
        self._in_turn = True
        self._loop.call_soon(self._end_turn)

    def _end_turn(self) -> None:
        self._in_turn = False
        self.flush()

    def flush(self) -> None:
        """Write what is held now."""
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self.writer.is_closing():
                self.writer.write(data)

    def backlog(self) -> int:
        transport = self.writer.transport
        held = sum(map(len, self._held))
        return held + (transport.get_write_buffer_size() if transport is not None else 0)

    async def drain(self) -> None:
        """Back-pressure: wait while the other end is not reading."""
        await self.writer.drain()

    def close(self) -> None:
        self.flush()
        self.writer.close()

    async def finish(self) -> None:
        """Everything sent so far written (as far as the other end reads it), then closed."""
        self.flush()
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        self.writer.close()


async def listen(
    media_dir: str, call_id: str, on_agent: Callable[[LinkIn, LinkOut], Coroutine[Any, Any, None]]
) -> asyncio.Server | None:
    """The provider end's listener for `call_id` (on its socket, and in this worker's
    memory for agents of this worker), or None when another live provider end of the same
    call listens already. A socket file left by a worker that died is removed."""
    from integration_hub.telephony import media_local

    path = socket_path(media_dir, call_id)
    if await _alive(path):
        return None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await on_agent(FrameReader(reader), LinkWriter(writer))

    server = await asyncio.start_unix_server(on_connection, path=path)
    media_local.register(call_id, on_agent)
    return server


async def _alive(path: str) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            return False
        raise
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return True


async def connect(media_dir: str, call_id: str) -> tuple[LinkIn, LinkOut] | None:
    """The agent end's link to the call's provider end (in memory when it is in this
    worker), or None when it is not there (yet)."""
    from integration_hub.telephony import media_local

    local = media_local.connect(call_id)
    if local is not None:
        return local
    try:
        reader, writer = await asyncio.open_unix_connection(socket_path(media_dir, call_id))
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            return None
        raise
    return FrameReader(reader), LinkWriter(writer)


def remove(
    media_dir: str,
    call_id: str,
    on_agent: Callable[[LinkIn, LinkOut], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """The provider end of `call_id` (whose handler is `on_agent`) no longer listens."""
    from integration_hub.telephony import media_local

    if on_agent is not None:
        media_local.unregister(call_id, on_agent)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path(media_dir, call_id))


class Doorbell:
    """An agent end's doorbell: rung (connected to) by the call's provider end once it listens."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._rung = asyncio.Event()
        self._server: asyncio.Server | None = None

    @classmethod
    async def open(cls, media_dir: str, call_id: str) -> Doorbell:
        bell = cls(str(Path(media_dir) / f"{call_id}{_DOORBELL}{secrets.token_hex(4)}"))
        bell._server = await asyncio.start_unix_server(bell._ring, path=bell.path)
        return bell

    async def _ring(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._rung.set()
        writer.close()

    async def wait(self, timeout: float) -> bool:
        """True when rung (since the last wait), False after `timeout` seconds without."""
        try:
            await asyncio.wait_for(self._rung.wait(), timeout)
        except TimeoutError:
            return False
        self._rung.clear()
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


async def ring_doorbells(media_dir: str, call_id: str) -> int:
    """Ring every doorbell of `call_id` (its provider end listens now); answers how many rang.
    A doorbell that does not answer (its agent gone, or not listening yet: it then looks for
    the provider end itself) is left to its owner."""
    prefix = f"{call_id}{_DOORBELL}"
    try:
        names = [entry.name for entry in os.scandir(media_dir) if entry.name.startswith(prefix)]
    except FileNotFoundError:
        return 0
    rang = 0
    for name in names:
        try:
            _, writer = await asyncio.open_unix_connection(str(Path(media_dir) / name))
        except OSError:
            continue
        writer.close()
        rang += 1
    return rang
