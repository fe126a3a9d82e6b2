"""The provider end of a call's media: the provider's websocket, framed by the caller's
MediaSession, converted to and from the agent's linear16, and paced out in real time.

Outgoing audio (the agent's) is cut into the provider's frames and sent one frame per
frame time from a queue, so that the provider plays it at once and a clear (barge-in)
drops what is queued: the frame being waited on is skipped too, so audio stops within
one frame. A mark is queued behind the audio before it: the provider reports it played
(Twilio, Exotel, Vonage's notify), or, where it cannot, the hub reports it when the
audio before it has been sent. A clear reports the marks it dropped at once.

Audio from the provider before an agent has attached is not kept (a voice agent wants
the call live, not replayed); the start is, and is handed to the agent on attach.
The agent's queued audio is bounded (MAX_QUEUED_SECONDS): beyond it, the link is not
read, which pushes back to the agent's gRPC stream.

Per frame, the leg does as little as it can: the converters are callers.audio.live's
(table lookups, a decimator that needs no look-ahead, soxr on int16 only to go up in
rate, nothing when the formats match), the link is read in batches and written in
batches when several frames are ready in one turn of the loop (media_link), and the
frame counts go to the metrics every FLUSH_FRAMES frames rather than one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from callers import types as t
from callers.audio import formats
from callers.base import MediaSession
from integration_hub import metrics
from integration_hub.telephony import media_link as link
from integration_hub.telephony.media_link import Kind

log = logging.getLogger("integration_hub.telephony.media")
MAX_QUEUED_SECONDS = 60.0
MAX_PROVIDER_MESSAGE = 1024 * 1024
# How far behind the pacer may catch up in a burst after the loop stalled.
MAX_CATCH_UP_SECONDS = 0.2
# Inbound audio queued to an agent that does not keep up: beyond this much, frames are
# dropped (and counted) rather than delivered ever later.
MAX_AGENT_BACKLOG_SECONDS = 0.2
# The encoding's silence, to align a fresh resampler's output on whole frames.
_SILENCE = {t.AudioEncoding.PCM_S16LE: b"\x00", t.AudioEncoding.MULAW: b"\xff", t.AudioEncoding.ALAW: b"\xd5"}
# A leg's frame counts reach the metrics this often (1 s of a call's frames one way) and
# when it ends: an update per frame (a lock, and with several workers an mmap write) cost
# more than the rest of the frame's bookkeeping.
FLUSH_FRAMES = 50
# Looked up once; indexed by the _Tally's slots.
_COUNTERS = (
    metrics.MEDIA_FRAMES.labels("in", "forwarded"),
    metrics.MEDIA_FRAMES.labels("in", "dropped"),  # no agent attached
    metrics.MEDIA_FRAMES.labels("in", "late"),  # the agent too far behind
    metrics.MEDIA_FRAMES.labels("out", "sent"),
    metrics.MEDIA_FRAMES.labels("out", "cleared"),
)
FORWARDED, NOT_ATTACHED, BEHIND, SENT, CLEARED = range(len(_COUNTERS))


def _linear16(rate: int) -> t.AudioFormat:
    return t.AudioFormat(t.AudioEncoding.PCM_S16LE, t.AudioContainer.RAW, rate, 1)


def bytes_per_second(audio_format: t.AudioFormat) -> int:
    rate = audio_format.sample_rate_hz or 8000
    return formats.BYTES_PER_SAMPLE[audio_format.encoding] * audio_format.channels * rate


@dataclass(slots=True)
class _Mark:
    name: str


class _Tally:
    """A leg's frame counts (FORWARDED ... CLEARED), added to the metrics in batches."""

    __slots__ = ("counts", "since")

    def __init__(self) -> None:
        self.counts = [0] * len(_COUNTERS)
        self.since = 0  # frames counted since the last flush

    def add(self, which: int, frames: int = 1) -> None:
        self.counts[which] += frames
        self.since += frames
        if self.since >= FLUSH_FRAMES:
            self.flush()

    def flush(self) -> None:
        for index, count in enumerate(self.counts):
            if count:
                _COUNTERS[index].inc(count)
                self.counts[index] = 0
        self.since = 0


class _Agent:
    """One attached agent: its link and its converters."""

    def __init__(self, frames: link.LinkIn, out: link.LinkOut, rate: int) -> None:
        self.frames = frames
        self.out = out
        self.rate = rate
        self.inbound: Any = None  # provider native -> linear16 at rate
        self.outbound: Any = None  # linear16 at rate -> provider native
        self.align = True  # the outbound converter's first output is still to be aligned
        self.padded = 0  # bytes of silence it was given, taken back from its flushed tail
        self._backlog_limit = MAX_AGENT_BACKLOG_SECONDS * rate * 2

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        self.out.send(kind, payload)

    def behind(self) -> bool:
        """More inbound audio waits in the link than a conversation can be late by."""
        return self.out.backlog() > self._backlog_limit


class ProviderLeg:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        session: MediaSession,
        *,
        call_id: str,
        media_dir: str,
    ) -> None:
        self._ws = ws
        self._session = session
        self._call_id = call_id
        self._media_dir = media_dir
        self._agent: _Agent | None = None
        self._start: dict[str, Any] | None = None
        self._queue: deque[bytes | _Mark] = deque()
        self._queued_bytes = 0
        self._pending = bytearray()  # outgoing native audio short of a frame
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._generation = 0  # bumped by every clear
        # Marks sent to the provider and not yet reported played.
        self._marks_out: deque[str] = deque()
        self._tally = _Tally()
        self._loop = asyncio.get_running_loop()

    # --- running -------------------------------------------------------------------

    async def run(self) -> str:
        """Serve until the provider's stream ends; answers why it ended."""
        on_agent = self._on_agent  # one bound method: the same one is unregistered at the end
        server = await link.listen(self._media_dir, self._call_id, on_agent)
        if server is None:
            await self._ws.close(code=1008, message=b"a media stream of this call is already connected")
            return "duplicate"
        pacer = asyncio.create_task(self._pace(), name=f"media-pacer-{self._call_id}")
        reason = "provider"
        try:
            # Listening now: agents already waiting for this call are let know (media_link).
            await link.ring_doorbells(self._media_dir, self._call_id)
            reason = await self._read_provider()
        finally:
            pacer.cancel()
            server.close()
            link.remove(self._media_dir, self._call_id, on_agent)
            agent, self._agent = self._agent, None
            if agent is not None:
                if agent.inbound is not None:  # the call's last audio, held by the resampler
                    tail = agent.inbound.flush()
                    if tail:
                        agent.send(Kind.AUDIO, tail)
                agent.send(Kind.STOP, orjson.dumps({"reason": reason}))
                await agent.out.finish()
            with contextlib.suppress(asyncio.CancelledError):
                await pacer
            self._tally.flush()
            await server.wait_closed()
        return reason

    async def _read_provider(self) -> str:
        async for message in self._ws:
            if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
                try:
                    events = self._session.decode(message.data)
                except Exception as exc:  # a caller's InvalidRequest: the provider's bug, log and go on
                    log.warning("media %s: undecodable provider message: %s", self._call_id, exc)
                    continue
                for event in events:
                    if self._on_provider_event(event):
                        return "hangup"
            elif message.type is WSMsgType.ERROR:
                return "provider"
        return "provider"

    def _on_provider_event(self, event: t.MediaEvent) -> bool:
        """Forward one provider event to the agent; True when the stream stops."""
        kind = event.kind
        if kind is t.MediaEventKind.START and event.start is not None:
            self._start = {
                "call_id": self._call_id,
                "provider_call_id": event.start.provider_call_id,
                "from": event.start.from_,
                "to": event.start.to,
                "parameters": event.start.custom_parameters,
            }
            if self._agent is not None:
                self._converters(self._agent)
                self._agent.send(Kind.START, orjson.dumps(self._start))
        elif kind is t.MediaEventKind.AUDIO:
            agent = self._agent
            if agent is not None and self._converters(agent):
                pcm = agent.inbound.feed(event.audio)
                if pcm and agent.behind():
                    self._tally.add(BEHIND)  # late audio is no use to a live conversation
                elif pcm:
                    agent.send(Kind.AUDIO, pcm)
                    self._tally.add(FORWARDED)
            else:
                self._tally.add(NOT_ATTACHED)
        elif kind is t.MediaEventKind.DTMF:
            if self._agent is not None:
                self._agent.send(Kind.DTMF, event.digit.encode())
        elif kind is t.MediaEventKind.MARK:
            if event.mark in self._marks_out:
                self._marks_out.remove(event.mark)
                if self._agent is not None:
                    self._agent.send(Kind.MARK, event.mark.encode())
        elif kind is t.MediaEventKind.STOP:
            return True
        return False

    def _converters(self, agent: _Agent) -> bool:
        """Make the agent's converters once the provider's format is known."""
        if agent.inbound is not None:
            return True
        native = self._session.native_format
        if native is None:
            return False
        from callers.audio.live import live_converter  # numpy/soxr: the speech extra

        agent.inbound = live_converter(native, _linear16(agent.rate))
        agent.outbound = self._outbound_converter(agent)
        return True

    def _outbound_converter(self, agent: _Agent) -> Any:
        from callers.audio.live import live_converter

        native = self._session.native_format
        if native is None:  # pragma: no cover - made only once the provider's format is known
            raise RuntimeError("the provider's audio format is not known yet")
        agent.align, agent.padded = True, 0
        return live_converter(_linear16(agent.rate), native)

    # --- the agent -----------------------------------------------------------------

    async def _on_agent(self, frames: link.LinkIn, out: link.LinkOut) -> None:
        try:
            hello, *rest = await frames.frames()
        except link.LinkClosed:
            out.close()  # a liveness probe (media_link.listen), or an agent gone at once
            return
        if self._agent is not None or hello.kind is not Kind.HELLO:
            why = "another CallMedia stream is attached to this call" if self._agent else "expected HELLO"
            out.send(Kind.REFUSED, why.encode())
            await out.finish()
            return
        agent = _Agent(frames, out, int(orjson.loads(hello.payload)["sample_rate_hz"]))
        self._agent = agent
        if self._start is not None:
            self._converters(agent)
            agent.send(Kind.START, orjson.dumps(self._start))
        try:
            await self._read_agent(agent, rest)
        except link.LinkClosed:
            pass
        finally:
            if self._agent is agent:
                self._agent = None
                self._drop_queue(report=False)
            out.close()

    async def _read_agent(self, agent: _Agent, frames: list[link.Frame]) -> None:
        """The agent's frames, a batch at a time (those that came with its HELLO first)."""
        while True:
            for frame in frames:
                self._on_agent_frame(agent, frame)
            await self._room.wait()
            frames = await agent.frames.frames()

    def _on_agent_frame(self, agent: _Agent, frame: link.Frame) -> None:
        if frame.kind is Kind.PLAY:
            if self._converters(agent):
                self._enqueue_audio(self._aligned(agent, agent.outbound.feed(frame.payload), frame.payload))
        elif frame.kind is Kind.PLAY_MARK:
            # The utterance before the mark plays whole: the converter's held tail too.
            if agent.outbound is not None:
                tail = agent.outbound.flush()
                # The tail is what the first output was short of: the padding's worth of
                # it is dropped, so an utterance plays exactly as long as it was sent.
                self._enqueue_audio(tail[: max(0, len(tail) - agent.padded)])
                agent.outbound = self._outbound_converter(agent)
            self._flush_pending()
            self._queue.append(_Mark(frame.payload.decode()))
            self._wake.set()
        elif frame.kind is Kind.CLEAR:
            if agent.outbound is not None:  # what it holds is the dropped utterance's
                agent.outbound = self._outbound_converter(agent)
            self._clear()

    def _aligned(self, agent: _Agent, native: bytes, source: bytes) -> bytes:
        """A fresh resampler's first output is a sample or so short of its input's length:
        left so, every frame after it would wait for the next chunk (a frame time late).
        Silence in front makes up the shortfall, once per converter. Only soxr (going up
        in rate, or by no whole factor) holds samples back: it costs that stream a sample's
        shift. Going down by a whole factor, callers.audio.live's decimator holds nothing
        back and this finds nothing to make up (the usual agent at 16 kHz to 8 kHz calls)."""
        if not agent.align or not native:
            return native
        agent.align = False
        fmt = self._session.native_format
        if fmt is None:
            return native
        expected = len(source) // 2 * bytes_per_second(fmt) // agent.rate  # the agent's is mono linear16
        short = expected - len(native)
        if 0 < short < self._session.frame_bytes:
            width = formats.BYTES_PER_SAMPLE[fmt.encoding]
            agent.padded = short - short % width
            return _SILENCE[fmt.encoding] * agent.padded + native
        return native

    def _enqueue_audio(self, native: bytes) -> None:
        size = self._session.frame_bytes
        if not self._pending and len(native) == size:  # the usual 20 ms in, 20 ms out
            self._push(native)
            return
        self._pending += native
        while len(self._pending) >= size:
            self._push(bytes(self._pending[:size]))
            del self._pending[:size]

    def _flush_pending(self) -> None:
        if self._pending:
            self._push(bytes(self._pending))
            self._pending.clear()

    def _push(self, frame: bytes) -> None:
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        native = self._session.native_format
        if native is not None and self._queued_bytes > MAX_QUEUED_SECONDS * bytes_per_second(native):
            self._room.clear()
        self._wake.set()

    def _clear(self) -> None:
        self._drop_queue(report=True)
        frame = self._session.clear()
        if frame is not None:
            self._send_later(frame.data)
        # Marks the provider holds are dropped with its buffer: report them now.
        while self._marks_out:
            self._report_mark(self._marks_out.popleft())

    def _drop_queue(self, *, report: bool) -> None:
        self._generation += 1
        self._pending.clear()
        cleared = 0
        for item in self._queue:
            if isinstance(item, bytes):
                cleared += 1
            elif report:
                self._report_mark(item.name)
        if cleared:
            self._tally.add(CLEARED, cleared)
        self._queue.clear()
        self._queued_bytes = 0
        self._room.set()

    def _report_mark(self, name: str) -> None:
        if self._agent is not None:
            self._agent.send(Kind.MARK, name.encode())

    def _send_later(self, data: str | bytes) -> None:
        self._loop.create_task(self._send(data))

    async def _send(self, data: str | bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            if isinstance(data, str):
                await self._ws.send_str(data)
            else:
                await self._ws.send_bytes(data)

    # --- pacing --------------------------------------------------------------------

    async def _pace(self) -> None:
        """One frame per frame time. The clock restarts only when the queue ran empty (a new
        utterance); a late wake-up (the loop stalled) catches up, in a burst of at most
        MAX_CATCH_UP_SECONDS, so that a stall never delays the rest of the call for good."""
        next_at: float | None = None
        while True:
            if not self._queue:
                next_at = None
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue[0]
            if isinstance(item, _Mark):
                self._queue.popleft()
                self._play_mark(item.name)
                continue
            native = self._session.native_format
            frame_seconds = len(item) / bytes_per_second(native) if native else 0.02
            now = self._loop.time()
            if next_at is None:
                next_at = now
            elif next_at < now - MAX_CATCH_UP_SECONDS:
                next_at = now - MAX_CATCH_UP_SECONDS  # further behind: that audio is late for good
            generation = self._generation
            if next_at > now:
                await asyncio.sleep(next_at - now)
            if generation != self._generation or not self._queue or self._queue[0] is not item:
                continue  # cleared while waiting: this frame is not sent
            self._queue.popleft()
            self._queued_bytes -= len(item)
            if self._room_again(native):
                self._room.set()
            await self._send(self._session.audio_frame(item).data)
            self._tally.add(SENT)
            next_at += frame_seconds

    def _room_again(self, native: t.AudioFormat | None) -> bool:
        # Hysteresis: reading the agent resumes once half the bound has played out.
        if self._room.is_set() or native is None:
            return False
        return self._queued_bytes <= MAX_QUEUED_SECONDS * bytes_per_second(native) / 2

    def _play_mark(self, name: str) -> None:
        frame = self._session.mark(name)
        if frame is None:  # the provider cannot report it: the audio before it has been sent
            self._report_mark(name)
            return
        self._marks_out.append(name)
        self._loop.create_task(self._send(frame.data))
