"""The link between a call's two media ends when both are in this worker: frames handed
over in memory.

With SO_REUSEPORT about half of a hub's calls have their provider websocket and their
CallMedia stream in the same worker. For those, the Unix socket (a write and a read
system call and the stream machinery, every frame, each way) is needed only to meet: the
provider end registers here as it listens (media_link.listen), and an agent end of the
same worker that connects (media_link.connect) gets a pair of in-memory queues instead,
with the socket link's interface (media_link.LinkIn / LinkOut): the same frames in the
same order, in batches, with back-pressure and end of stream, so that the code above the
link has one path. A call whose ends are in two workers still goes through the socket.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from integration_hub.telephony.media_link import Frame, Kind, LinkClosed, LinkIn, LinkOut

# A writer waits (drain) while this much is queued unread: a Unix socket's buffer's worth.
HIGH_WATER = 256 * 1024

OnAgent = Callable[[LinkIn, LinkOut], Coroutine[Any, Any, None]]
_PROVIDER_ENDS: dict[str, OnAgent] = {}  # call id -> the provider end listening in this worker
_RUNNING: set[asyncio.Task[None]] = set()  # provider-end handlers of local agents


class _Queue:
    """One direction: frames queued unread, and who waits on them."""

    __slots__ = ("closed", "frames", "reader", "size", "writer")

    def __init__(self) -> None:
        self.frames: deque[Frame] = deque()
        self.size = 0  # payload bytes queued
        self.closed = False  # no more frames: the reader gets what is queued, then the end
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None

    def wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)

    def wake_writer(self) -> None:
        if self.writer is not None and not self.writer.done():
            self.writer.set_result(None)

    def close(self) -> None:
        self.closed = True
        self.wake_reader()
        self.wake_writer()


class LocalIn:
    """The reading side of one end: every frame queued, at one await."""

    def __init__(self, queue: _Queue) -> None:
        self._queue = queue

    async def frames(self) -> list[Frame]:
        queue = self._queue
        while not queue.frames:
            if queue.closed:
                raise LinkClosed("the other end closed")
            queue.reader = asyncio.get_running_loop().create_future()
            try:
                await queue.reader
            finally:
                queue.reader = None
        batch = list(queue.frames)
        queue.frames.clear()
        queue.size = 0
        queue.wake_writer()
        return batch

    def abort(self) -> None:
        """End the reading here: what is queued is still read, then LinkClosed."""
        self._queue.close()


class LocalOut:
    """The writing side of one end. Closing it closes the end: the other side reads what
    was sent, then the end, and what it sends from then on is dropped (as on a socket)."""

    def __init__(self, out: _Queue, back: _Queue) -> None:
        self._out = out
        self._back = back

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        queue = self._out
        if queue.closed:
            return
        queue.frames.append(Frame(kind, payload))
        queue.size += len(payload)
        queue.wake_reader()

    def flush(self) -> None:
        """Nothing is held: a frame is the other side's as soon as it is sent."""

    def backlog(self) -> int:
        # What a socket's buffer would hold is not counted: on the socket link, `backlog`
        # sees only what overflows the kernel's buffer, and a call whose two ends share a
        # worker is not to be held to a stricter bound (media_provider's `behind`).
        return max(0, self._out.size - HIGH_WATER)

    async def drain(self) -> None:
        queue = self._out
        while queue.size > HIGH_WATER and not queue.closed:
            queue.writer = asyncio.get_running_loop().create_future()
            try:
                await queue.writer
            finally:
                queue.writer = None

    def close(self) -> None:
        self._out.close()
        self._back.close()

    async def finish(self) -> None:
        self.close()


def register(call_id: str, on_agent: OnAgent) -> None:
    _PROVIDER_ENDS[call_id] = on_agent


def unregister(call_id: str, on_agent: OnAgent) -> None:
    if _PROVIDER_ENDS.get(call_id) is on_agent:
        del _PROVIDER_ENDS[call_id]


def connect(call_id: str) -> tuple[LocalIn, LocalOut] | None:
    """The agent end's side of an in-memory link to the call's provider end in this worker
    (its handler started on the other side), or None when it is not in this worker."""
    on_agent = _PROVIDER_ENDS.get(call_id)
    if on_agent is None:
        return None
    to_provider, to_agent = _Queue(), _Queue()
    provider_side = (LocalIn(to_provider), LocalOut(to_agent, to_provider))
    task = asyncio.get_running_loop().create_task(on_agent(*provider_side), name=f"media-local-{call_id}")
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return LocalIn(to_agent), LocalOut(to_provider, to_agent)
