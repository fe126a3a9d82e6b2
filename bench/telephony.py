"""Call media through the hub (TelephonyService.CallMedia) against the fake Twilio, beside a
plain websocket relay between the same two ends; and campaigns' calling rate.

    .venv/bin/python bench/telephony.py [--rounds 3] [--frames 150] [--skip 10] [--calls 100]
        [--seconds 20] [--load-rate 16000] [--connections 8] [--drain 30]
        [--campaign RATE ROWS ...] [--profile] [--out bench/RESULTS.md]

A hub of 2 workers (bench/hub.py; HUB_PUBLIC_URL set to its HTTP port) holds a twilio
credential pointed at the fake Twilio: tests/fakes/twilio_server.py for REST, and the
Twilio side of the Media Streams websocket (MediaSide below, Twilio's messages as
tests/fakes/twilio_server.py plays them), in a process of its own, driven over a control
websocket. Calls are placed with a media_stream action; the bench process is the agent
(CallMedia over gRPC). Times are CLOCK_MONOTONIC, one clock for every process of the host.

(a) Per-frame added latency at concurrency 1, each direction, p50 over `--rounds`
    interleaved rounds (a new call per round and target) of `--frames` 20 ms frames:
      direct   the fake's media websocket to a minimal aiohttp relay (its own process) and
               the agent on the relay's other side: two loopback websocket hops, Twilio's
               JSON passed through as it is;
      hub      the fake's media websocket to the hub: JSON + base64, mulaw 8 kHz <-> linear16
               at the agent's rate, the Unix-socket link between the workers, gRPC; the
               agent at 16 kHz (resampled) and at 8 kHz (decoded only).
    A frame has arrived when all of its audio has: the bytes received reach the end of it,
    less 1 ms (a resampler's filter may hold a few samples back), which holds whatever cuts a
    converter hands the audio on in. Inbound: the fake sends in real time (the hub does not
    pace inbound audio: no queue). Outbound: lockstep (one frame, wait until the fake has
    it, then LOCKSTEP_GAP, past the pacer's catch-up window: its queue is empty, the frame
    leaves at once); where the hub does not answer each frame by itself (more than
    MAX_MISSES frames unanswered within RESPONSE_WAIT: its converter holds audio back), the
    round is run again with the frames sent in real time, and the table says so. The first
    `--skip` frames of a round are left out (a converter's start-up), and TAIL more frames
    follow the measured ones (so that audio a converter holds back comes out).
(b) `--calls` concurrent calls: placed, a CallMedia stream attached to each (spread over
    `--connections` gRPC connections), left waiting a few seconds (what waiting costs the
    workers is measured), then answered by the fake, which streams 20 ms frames in real time for
    `--seconds` (the calls' phases spread over one frame) while the agents send their own
    20 ms frames in real time at `--load-rate`. The audio is then given `--drain` seconds to
    arrive. Counted each way: frames sent and received; frames in place (each received
    frame's audio correlates with the reference's frame at the same place: the input
    converted whole by soxr HQ; a lost, repeated or reordered frame shifts all after it out
    of place), whatever resampler the hub uses; frames over LATE_MS late (no use to a live
    call, counted as dropped); frames never delivered (a converter's tail at the end); per-
    frame latency, inter-arrival times, outbound frames a second per call; errors; the
    workers' RSS before and after; every process's CPU while streaming, and the hub's CPU
    per frame; the connections each worker got.
(c) Campaigns, once they are built (GetCampaign of an unknown id answers NOT_FOUND, not
    UNIMPLEMENTED): for each `--campaign RATE ROWS`, a campaign of ROWS say calls at RATE
    calls a second; the rate is that of the fake's call creations, first to last.

Everything is on loopback and bounded in time (every wait has a timeout). Every figure goes
to bench/out/telephony-<time>/results.json (with `--profile`: py-spy's raw stacks of both
workers under (b), and their summaries by bench/pyspy.py); the table to the telephony
section of bench/RESULTS.md (bench/results.py).
"""

# A benchmark tool: runs fixed local programs and opens only loopback URLs it builds itself.
# Its set-up and tear-down block the loop briefly (files, a subprocess), outside what it times.
# ruff: noqa: ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import results  # noqa: E402
from hub import BenchHub  # noqa: E402  (bench/hub.py)

FRAME_SECONDS = 0.02
MULAW_FRAME = 160  # 20 ms of mulaw at 8 kHz, what Twilio sends
TO, FROM = "+14155552671", "+14155550100"  # FROM: FakeTwilio's owned number
TAIL = 10  # frames sent after a round's measured ones, so that a converter holding audio back hands theirs on
RESPONSE_WAIT = 0.3  # lockstep: a frame unanswered this long is held back by the hub
MAX_MISSES = 3  # lockstep: unanswered frames tolerated (a converter's first), more: real time
SLACK_MULAW = 8  # 1 ms of mulaw: a resampler may hold this much of a frame back
END_FRAMES = 6  # frames a converter may hold at the end of a call (soxr HQ: ~100 ms)
LOCKSTEP_GAP = 0.06  # > 2 frames: the hub's pacer restarts its clock, the frame leaves at once
LATE_MS = 500.0  # a frame this late is of no use to a live call: counted with the dropped ones
WAIT = 10.0  # the longest any single step waits
JsonDict = dict[str, Any]


def now() -> float:
    """CLOCK_MONOTONIC: the same clock in every process of the host, so a time taken in the
    fake and one taken in the agent can be subtracted."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connections_per_worker(pids: list[int], port: int) -> dict[str, int]:
    """Established TCP connections to `port` each process holds (the kernel's SO_REUSEPORT
    choice), from /proc/net/tcp* and the processes' socket descriptors."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    counts: dict[str, int] = {}
    for pid in pids:
        n = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    n += link.startswith("socket:[") and link[8:-1] in inodes
        counts[str(pid)] = n
    return counts


def cpu_pressure_us() -> float:
    """The kernel's "some" CPU stall total (µs some runnable task waited for a CPU), or NaN."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return float("nan")
    return float(dict(item.split("=") for item in line.split()[1:])["total"])


# --- audio: deterministic signals, the same in every process -------------------------------


def _signal(rate: int, frames: int, seed: int) -> Any:
    """int16 noise below 3 kHz (telephone band) under a slow, speech-like envelope: no two
    20 ms stretches alike, so a lost, repeated or reordered frame shows."""
    import numpy as np

    n = frames * rate // 50
    if n == 0:
        return np.zeros(0, "<i2")
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) > 3000] = 0
    noise = np.fft.irfft(spectrum, n)
    noise /= max(float(np.sqrt(np.mean(noise**2))), 1e-9)
    envelope = 0.12 + 0.08 * np.sin(2 * np.pi * 3.1 * np.arange(n) / rate)
    return (np.clip(envelope * noise, -1, 1) * 32767).astype("<i2")


def mulaw_audio(frames: int, seed: int) -> bytes:
    from callers.audio import g711
    from callers.types import AudioEncoding

    return g711.encode(_signal(8000, frames, seed), AudioEncoding.MULAW)


def pcm_audio(rate: int, frames: int, seed: int) -> bytes:
    return bytes(_signal(rate, frames, seed).tobytes())


def _format(encoding: str, rate: int) -> Any:
    from callers.types import AudioContainer, AudioEncoding, AudioFormat

    return AudioFormat(AudioEncoding(encoding), AudioContainer.RAW, rate, 1)


def _linear(data: bytes, encoding: str) -> Any:
    import numpy as np

    from callers.audio import g711
    from callers.types import AudioEncoding

    if encoding == "mulaw":
        return g711.decode(data, AudioEncoding.MULAW).astype(np.float64)
    return np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float64)


def reference(data: bytes, source: Any, target: Any) -> Any:
    """`data` converted whole (soxr HQ, flushed): what the far end should hear, as samples."""
    from callers.audio.stream import StreamConverter

    converter = StreamConverter(source, target)
    return _linear(converter.feed(data) + converter.flush(), target.encoding.value)


def reference_inbound(frames: int, seed: int, rate: int) -> Any:
    return reference(mulaw_audio(frames, seed), _format("mulaw", 8000), _format("pcm_s16le", rate))


def reference_outbound(frames: int, seed: int, rate: int) -> Any:
    return reference(pcm_audio(rate, frames, seed), _format("pcm_s16le", rate), _format("mulaw", 8000))


MATCH = 0.9  # correlation of a received frame with the reference's frame at the same place


def frames_matching(received: Any, expected: Any, samples_per_frame: int) -> tuple[int, int]:
    """(frames received, frames whose audio matches the reference's at the same place).

    Frame by frame, by correlation, so that it holds whichever resampler the hub uses (its
    error is far below MATCH's), while a frame lost, repeated or out of order shifts all
    that follows it out of place (noise, uncorrelated with itself shifted)."""
    import numpy as np

    whole = min(len(received), len(expected)) // samples_per_frame
    got = len(received) // samples_per_frame
    if whole == 0:
        return got, 0
    a = received[: whole * samples_per_frame].reshape(whole, samples_per_frame)
    b = expected[: whole * samples_per_frame].reshape(whole, samples_per_frame)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    corr = (a * b).sum(axis=1) / np.maximum(np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)), 1e-9)
    return got, int((corr >= MATCH).sum())


def frame_latencies(
    sent: list[float], times: list[float], totals: list[int], frame_bytes: int, slack: int
) -> list[float]:
    """Per frame k sent at sent[k]: ms until the receiver had its audio, i.e. until the bytes
    received (totals, cumulative, at times) reached (k + 1) x frame_bytes - slack; NaN if never.
    The slack (1 ms of audio) lets a resampler's filter hold a few samples back without
    counting a frame as arriving with the next one."""
    out: list[float] = []
    j = 0
    for k, at in enumerate(sent):
        need = (k + 1) * frame_bytes - slack
        while j < len(totals) and totals[j] < need:
            j += 1
        out.append((times[j] - at) * 1000 if j < len(totals) else float("nan"))
    return out


def finite(values: list[float]) -> list[float]:
    return [v for v in values if v == v]


# --- the fake Twilio process: REST (FakeTwilio) and the Media Streams side, driven by a control websocket


class MediaSide:
    """Twilio's side of one call's Media Stream: connected, start, 20 ms mulaw media messages
    when told, stop; records when each frame left and when each media message arrived."""

    def __init__(self, key: str, notify: Callable[[JsonDict], None] | None) -> None:
        self.key = key
        self.notify = notify
        self.sent: list[float] = []
        self.rx_times: list[float] = []
        self.rx_totals: list[int] = []
        self.rx_bytes = 0
        self.received = bytearray()
        self.errors: list[str] = []
        self.marks = 0
        self.audio = b""
        self.next_frame = 0
        self.stream_sid = ""
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.sequence = 0

    async def open(
        self, session: Any, url: str, headers: dict[str, str], start: JsonDict, audio: bytes
    ) -> None:
        self.audio = audio
        self.stream_sid = start["streamSid"]
        self.ws = await session.ws_connect(url, headers=headers, autoping=True, max_msg_size=4 * 1024 * 1024)
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self._send({"event": "start", "start": start})
        self.reader = asyncio.create_task(self._read())

    async def _send(self, message: JsonDict) -> None:
        self.sequence += 1
        await self.ws.send_str(
            json.dumps({**message, "sequenceNumber": str(self.sequence), "streamSid": self.stream_sid})
        )

    async def send_frames(self, count: int, start_at: float, interval: float) -> list[float]:
        times: list[float] = []
        for k in range(count):
            i = self.next_frame
            chunk = self.audio[i * MULAW_FRAME : (i + 1) * MULAW_FRAME]
            self.sequence += 1
            media = {
                "track": "inbound",
                "chunk": str(i + 1),
                "timestamp": str(i * 20),
                "payload": base64.b64encode(chunk).decode(),
            }
            text = json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(self.sequence),
                    "media": media,
                    "streamSid": self.stream_sid,
                }
            )
            delay = start_at + k * interval - now()
            if delay > 0:
                await asyncio.sleep(delay)
            at = now()
            await self.ws.send_str(text)
            times.append(at)
            self.next_frame += 1
        self.sent += times
        return times

    async def _read(self) -> None:
        from aiohttp import WSMsgType

        async for message in self.ws:
            at = now()
            if message.type is not WSMsgType.TEXT:
                self.errors.append(f"a {message.type.name} frame: Media Streams take JSON text only")
                continue
            try:
                data = json.loads(message.data)
            except ValueError:
                self.errors.append("a message that is not JSON")
                continue
            if data.get("streamSid") != self.stream_sid:
                self.errors.append(f"a {data.get('event')} message for stream {data.get('streamSid')!r}")
                continue
            event = data.get("event")
            if event == "media":
                try:
                    chunk = base64.b64decode(data["media"]["payload"], validate=True)
                except (KeyError, TypeError, ValueError):
                    self.errors.append("a media message without a base64 media.payload")
                    continue
                self.rx_bytes += len(chunk)
                self.received += chunk
                self.rx_times.append(at)
                self.rx_totals.append(self.rx_bytes)
                if self.notify is not None:
                    self.notify({"op": "rx", "key": self.key, "t": at, "n": self.rx_bytes})
            elif event == "mark":  # played at once: nothing is queued on this side
                self.marks += 1
                await self._send({"event": "mark", "mark": data.get("mark", {})})
            elif event != "clear":
                self.errors.append(f"an unknown event {event!r}")

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self._send({"event": "stop", "stop": {"callSid": self.key}})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), WAIT)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader

    def report(self) -> JsonDict:
        return {
            "sent": self.sent,
            "rx_times": self.rx_times,
            "rx_totals": self.rx_totals,
            "rx_bytes": self.rx_bytes,
            "audio": base64.b64encode(self.received).decode(),
            "errors": self.errors,
            "marks": self.marks,
        }


async def serve_twilio() -> None:
    import aiohttp
    from aiohttp import WSMsgType, web

    from tests.fakes.twilio_server import FakeTwilio, hex_sid, twilio_signature

    fake = FakeTwilio()
    sides: dict[str, MediaSide] = {}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def control(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=WAIT))
        outbox: asyncio.Queue[JsonDict] = asyncio.Queue()

        async def writer() -> None:
            while True:
                message = await outbox.get()
                await ws.send_str(json.dumps(message))

        async def handle(message: JsonDict) -> None:
            reply: JsonDict = {"rid": message.get("rid")}
            try:
                reply.update(await run_op(message))
            except Exception as exc:  # reported to the bench, which fails the step
                reply["error"] = f"{type(exc).__name__}: {exc}"
            outbox.put_nowait(reply)

        async def run_op(m: JsonDict) -> JsonDict:
            op, key = m["op"], m.get("key", "")
            if op == "open":
                side = MediaSide(key, outbox.put_nowait if m.get("notify") else None)
                sides[key] = side
                if m.get("sid"):  # a call the hub placed: its <Stream url> and <Parameter>s
                    call = fake.calls[m["sid"]]
                    url, parameters, call_sid = call.stream_url, call.stream_parameters, call.sid
                else:
                    url, parameters, call_sid = m["url"], {}, hex_sid("CA")
                start = {
                    "accountSid": fake.account_sid,
                    "streamSid": hex_sid("MZ"),
                    "callSid": call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": dict(parameters),
                }
                headers = {"X-Twilio-Signature": twilio_signature(fake.auth_token, url, [])}
                await side.open(session, url, headers, start, mulaw_audio(m["frames"], m["seed"]))
                return {}
            if op == "send":
                return {"sent": await sides[key].send_frames(m["count"], m["start_at"], m["interval"])}
            if op == "totals":
                return {"totals": {key: side.rx_bytes for key, side in sides.items()}}
            if op == "report":
                return sides[key].report()
            if op == "created":  # the calls created with a To of this prefix: (to, wall-clock time)
                return {
                    "calls": [
                        [c.to, c.date_created.timestamp()]
                        for c in fake.calls.values()
                        if c.to.startswith(m["prefix"])
                    ]
                }
            if op == "close":
                side = sides.pop(key)
                await side.close()
                return {"errors": side.errors}
            raise ValueError(f"unknown op {op!r}")

        sending = asyncio.create_task(writer())
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    task = asyncio.create_task(handle(json.loads(message.data)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            for side in list(sides.values()):
                await side.close()
            sides.clear()
            sending.cancel()
            await session.close()
        return ws

    app = web.Application()
    app.router.add_get("/control", control)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with fake:
        where = {
            "control": f"ws://127.0.0.1:{runner.addresses[0][1]}/control",
            "secret": fake.secret,
            "options": fake.options,
        }
        Path(os.environ["FAKE_PORT_FILE"]).write_text(json.dumps(where))
        await stop.wait()
    await runner.cleanup()


async def serve_relay() -> None:
    """The baseline's middle hop: /agent/{key} and /provider/{key} websockets, each message of
    one passed as it is to the other (dropped while the other is not there)."""
    from aiohttp import WSMsgType, web

    pairs: dict[str, dict[str, web.WebSocketResponse]] = {}

    async def relay(request: web.Request) -> web.WebSocketResponse:
        side, key = request.match_info["side"], request.match_info["key"]
        other = "agent" if side == "provider" else "provider"
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024, autoping=True)
        await ws.prepare(request)
        pair = pairs.setdefault(key, {})
        pair[side] = ws
        try:
            async for message in ws:
                peer = pair.get(other)
                if peer is None or peer.closed:
                    continue
                if message.type is WSMsgType.TEXT:
                    await peer.send_str(message.data)
                elif message.type is WSMsgType.BINARY:
                    await peer.send_bytes(message.data)
        finally:
            pair.pop(side, None)
            peer = pair.get(other)
            if peer is not None:
                await peer.close()
            elif not pair:
                pairs.pop(key, None)
        return ws

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    app = web.Application()
    app.router.add_get("/{side:agent|provider}/{key}", relay)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    Path(os.environ["FAKE_PORT_FILE"]).write_text(
        json.dumps({"url": f"ws://127.0.0.1:{runner.addresses[0][1]}"})
    )
    await stop.wait()
    await runner.cleanup()


# --- the bench side ------------------------------------------------------------------------


class Control:
    """The bench's end of the fake's control websocket: requests answered by rid, and the
    fake's per-frame notices (op rx) queued per media side."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[JsonDict]] = {}
        self.notices: dict[str, asyncio.Queue[JsonDict]] = {}

    async def connect(self, url: str) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if data.get("op") == "rx":
                self.notices.setdefault(data["key"], asyncio.Queue()).put_nowait(data)
            else:
                future = self._waiting.pop(data["rid"], None)
                if future is not None and not future.done():
                    future.set_result(data)

    async def request(self, op: str, timeout: float = WAIT, **fields: Any) -> JsonDict:
        rid = next(self._ids)
        future: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        await self._ws.send_str(json.dumps({"rid": rid, "op": op, **fields}))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise RuntimeError(f"fake Twilio, {op}: {reply['error']}")
        return reply

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self._session.close()


@dataclass
class Arrivals:
    """Audio received by one end: when, and how many bytes so far; the audio."""

    times: list[float] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    bytes: int = 0
    audio: bytearray = field(default_factory=bytearray)

    def add(self, at: float, chunk: bytes) -> None:
        self.bytes += len(chunk)
        self.audio += chunk
        self.times.append(at)
        self.totals.append(self.bytes)


class HubAgent:
    """An agent on CallMedia: the config, then audio both ways; records what arrives."""

    def __init__(self, stub: Any, metadata: Any, call_id: str, rate: int) -> None:
        self.stub, self.metadata, self.call_id, self.rate = stub, metadata, call_id, rate
        self.frame_bytes = rate * 2 // 50
        self.inbound = Arrivals()
        self.started = asyncio.Event()
        self.stopped: str | None = None
        self.error: str | None = None
        self.marks: list[str] = []

    async def attach(self) -> None:
        from integration_hub.v1 import telephony_pb2 as pb

        self.call = self.stub.CallMedia(metadata=self.metadata)
        await self.call.write(
            pb.CallMediaRequest(config=pb.CallMediaConfig(call_id=self.call_id, sample_rate_hz=self.rate))
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import grpc

        try:
            while True:
                message = await self.call.read()
                at = now()
                if message is grpc.aio.EOF:
                    return
                which = message.WhichOneof("message")
                if which == "audio":
                    self.inbound.add(at, message.audio)
                elif which == "start":
                    self.started.set()
                elif which == "mark":
                    self.marks.append(message.mark)
                elif which == "stop":
                    self.stopped = message.stop.reason
                    return
        except grpc.aio.AioRpcError as exc:
            self.error = exc.code().name

    async def send(self, pcm: bytes) -> float:
        from integration_hub.v1 import telephony_pb2 as pb

        request = pb.CallMediaRequest(audio=pcm)
        at = now()
        await self.call.write(request)
        return at

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.reader), WAIT)
        with contextlib.suppress(Exception):
            await self.call.done_writing()
        self.call.cancel()
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


class DirectAgent:
    """The baseline's agent: the relay's other side, Twilio's JSON as it is."""

    frame_bytes = MULAW_FRAME

    def __init__(self, session: Any, url: str) -> None:
        self.session, self.url = session, url
        self.inbound = Arrivals()
        self.started = asyncio.Event()
        self.stream_sid = ""
        self.error: str | None = None

    async def attach(self) -> None:
        self.ws = await self.session.ws_connect(self.url, max_msg_size=4 * 1024 * 1024)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            at = now()
            data = json.loads(message.data)
            event = data.get("event")
            if event == "media":
                self.inbound.add(at, base64.b64decode(data["media"]["payload"]))
            elif event == "start":
                self.stream_sid = data["streamSid"]
                self.started.set()
            elif event == "stop":
                return

    async def send(self, mulaw: bytes) -> float:
        text = json.dumps(
            {
                "event": "media",
                "streamSid": self.stream_sid,
                "media": {"payload": base64.b64encode(mulaw).decode()},
            },
            separators=(",", ":"),
        )
        at = now()
        await self.ws.send_str(text)
        return at

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.reader), WAIT)
        await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


class TelephonyHub(BenchHub):
    """bench/hub.py's hub with HUB_PUBLIC_URL: the providers' callbacks and media websockets
    come to its HTTP port (BenchHub passes no HUB_* variable of its caller's on)."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "HUB_PUBLIC_URL": self.http}


@dataclass
class Bench:
    hub: TelephonyHub
    control: Control
    relay_url: str
    stub: Any = None
    channel: Any = None
    keys: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def metadata(self) -> Any:
        return (("authorization", f"Bearer {self.hub.token}"),)

    async def place(self, stub: Any = None) -> Any:
        from integration_hub.v1 import telephony_pb2 as pb

        request = pb.PlaceCallRequest(
            credential="phone",
            to=TO,
            action=pb.CallAction(media_stream=pb.MediaStreamAction(parameters={"bench": "1"})),
        )
        setattr(request, "from", FROM)
        response = await (stub or self.stub).PlaceCall(request, metadata=self.metadata, timeout=WAIT)
        return response.call

    async def session(self, target: str, frames: int, seed: int, *, notify: bool = False) -> tuple[str, Any]:
        """A media session of one call, up to the agent holding the start: (key, agent)."""
        key = f"s{next(self.keys)}"
        agent: Any
        if target == "direct":
            import aiohttp

            if not hasattr(self, "_http"):
                self._http = aiohttp.ClientSession()
            agent = DirectAgent(self._http, f"{self.relay_url}/agent/{key}")
            await agent.attach()
            await self.control.request(
                "open",
                key=key,
                url=f"{self.relay_url}/provider/{key}",
                frames=frames,
                seed=seed,
                notify=notify,
            )
        else:
            call = await self.place()
            agent = HubAgent(self.stub, self.metadata, call.id, int(target.removeprefix("hub")))
            await agent.attach()
            await self.control.request(
                "open", key=key, sid=call.provider_call_id, frames=frames, seed=seed, notify=notify
            )
        await asyncio.wait_for(agent.started.wait(), WAIT)
        return key, agent

    async def end(self, key: str, agent: Any) -> None:
        await self.control.request("close", key=key)
        await agent.close()
        self.control.notices.pop(key, None)

    async def inbound(self, target: str, frames: int, skip: int, seed: int) -> list[float]:
        """The fake sends `frames` 20 ms frames in real time; ms per frame until the agent had it."""
        count = frames + TAIL
        key, agent = await self.session(target, count, seed)
        try:
            reply = await self.control.request(
                "send",
                timeout=count * FRAME_SECONDS + WAIT,
                key=key,
                count=count,
                start_at=now() + 0.05,
                interval=FRAME_SECONDS,
            )
            await asyncio.sleep(0.3)  # the last frames' audio
            arrived = agent.inbound
            slack = agent.frame_bytes // 20  # 1 ms
            latencies = frame_latencies(
                reply["sent"], arrived.times, arrived.totals, agent.frame_bytes, slack
            )
        finally:
            await self.end(key, agent)
        return latencies[skip:frames]

    async def outbound(self, target: str, frames: int, skip: int, seed: int) -> tuple[list[float], str]:
        """The agent sends `frames` 20 ms frames, in lockstep; where the hub holds audio back
        (frames go unanswered), the round again with the frames 20 ms apart. ms per frame until
        the fake had it, and how they were sent."""
        for lockstep in (True, False):
            key, agent = await self.session(target, 0, seed, notify=lockstep)
            rate = 8000 if target == "direct" else agent.rate
            count = frames if lockstep else frames + TAIL
            audio = mulaw_audio(count, seed) if target == "direct" else pcm_audio(rate, count, seed)
            size = MULAW_FRAME if target == "direct" else rate * 2 // 50
            notices = self.control.notices.setdefault(key, asyncio.Queue())
            sent: list[float] = []
            misses = 0
            try:
                if lockstep:
                    have = 0
                    for k in range(frames):
                        sent.append(await agent.send(audio[k * size : (k + 1) * size]))
                        try:
                            while have < (k + 1) * MULAW_FRAME - SLACK_MULAW:
                                have = (await asyncio.wait_for(notices.get(), RESPONSE_WAIT))["n"]
                        except TimeoutError:
                            misses += 1
                            if misses > MAX_MISSES:
                                break  # the hub holds this audio back: not a lockstep case
                        await asyncio.sleep(LOCKSTEP_GAP)
                else:
                    start = now() + 0.05
                    for k in range(count):
                        await asyncio.sleep(max(0.0, start + k * FRAME_SECONDS - now()))
                        sent.append(await agent.send(audio[k * size : (k + 1) * size]))
                    await asyncio.sleep(0.5)  # the last frames, paced out
                report = await self.control.request("report", key=key)
                latencies = frame_latencies(
                    sent, report["rx_times"], report["rx_totals"], MULAW_FRAME, SLACK_MULAW
                )
            finally:
                await self.end(key, agent)
            if misses <= MAX_MISSES:
                return latencies[skip:frames], "lockstep" if lockstep else "20 ms apart"
        raise AssertionError("unreachable: the real-time round has no misses")


def summary(values: list[float]) -> JsonDict:
    ok = finite(values)
    return {
        "p50": percentile(ok, 50),
        "p99": percentile(ok, 99),
        "n": len(ok),
        "missing": len(values) - len(ok),
    }


async def latency_rounds(bench: Bench, a: argparse.Namespace) -> JsonDict:
    targets = ["direct", "hub16000", "hub8000"]
    seed = itertools.count(100)
    for target in targets:  # warm-up: both workers' converters, pools, the relay
        for _ in range(2):
            await bench.inbound(target, 20, 0, next(seed))
            await bench.outbound(target, 12, 0, next(seed))
    samples: dict[str, list[float]] = {f"{d}:{t}": [] for d in ("in", "out") for t in targets}
    rounds: list[JsonDict] = []
    methods: dict[str, set[str]] = {}
    for _ in range(a.rounds):
        row: JsonDict = {}
        for target in targets:
            values = await bench.inbound(target, a.frames, a.skip, next(seed))
            samples[f"in:{target}"] += values
            row[f"in:{target}"] = round(percentile(finite(values), 50), 3)
        for target in targets:
            values, how = await bench.outbound(target, a.frames, a.skip, next(seed))
            samples[f"out:{target}"] += values
            row[f"out:{target}"] = round(percentile(finite(values), 50), 3)
            methods.setdefault(f"out:{target}", set()).add(how)
        rounds.append(row)
    return {
        "summary": {name: summary(values) for name, values in samples.items()},
        "rounds": rounds,
        "how": {name: " / ".join(sorted(how)) for name, how in methods.items()},
    }


async def campaigns_answer(bench: Bench) -> str:
    """UNIMPLEMENTED while campaigns are not built; NOT_FOUND (of an unknown id) once they are."""
    import grpc

    from integration_hub.v1 import telephony_pb2 as pb

    try:
        await bench.stub.GetCampaign(
            pb.GetCampaignRequest(campaign_id="bench-probe"), metadata=bench.metadata, timeout=WAIT
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


def campaign_numbers(index: int, rows: int) -> list[str]:
    """`rows` valid, distinct US numbers of a prefix of their own (the fake tells them apart)."""
    import phonenumbers

    prefix = f"+1415{230 + index}"
    numbers = [f"{prefix}{i:04d}" for i in range(rows)]
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(n)) for n in numbers), prefix
    return numbers


async def campaign_rate(bench: Bench, index: int, rate: float, rows: int) -> JsonDict:
    """A campaign of `rows` say calls at `rate` calls a second (concurrency no limit here: the
    fake's calls never end); the rate the fake Twilio saw the calls created at."""
    from integration_hub.v1 import telephony_pb2 as pb

    numbers = campaign_numbers(index, rows)
    request = pb.CreateCampaignRequest(
        name=f"bench-rate-{index}",
        credential="phone",
        action=pb.CallAction(say=pb.SayAction(text="This is a test call.")),
        rows=[pb.CampaignRow(to=n) for n in numbers],
        calls_per_second=rate,
        max_concurrent_calls=1000,  # the most: a credential's live campaign calls count, and these never end
    )
    setattr(request, "from", FROM)
    created_at = time.time()
    response = await bench.stub.CreateCampaign(request, metadata=bench.metadata, timeout=WAIT)
    campaign_id = response.campaign.id
    prefix = numbers[0][:-4]
    deadline = time.monotonic() + rows / rate + WAIT
    seen: list[list[Any]] = []
    while time.monotonic() < deadline:
        seen = (await bench.control.request("created", prefix=prefix))["calls"]
        if len(seen) >= rows:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(0.5)  # any call placed twice would come now
    seen = (await bench.control.request("created", prefix=prefix))["calls"]
    got = await bench.stub.GetCampaign(
        pb.GetCampaignRequest(campaign_id=campaign_id), metadata=bench.metadata, timeout=WAIT
    )
    await bench.stub.CancelCampaign(
        pb.CancelCampaignRequest(campaign_id=campaign_id), metadata=bench.metadata, timeout=WAIT
    )
    times = sorted(at for _, at in seen)
    measured = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    gaps = [(b - a_) * 1000 for a_, b in itertools.pairwise(times)]
    return {
        "configured": rate,
        "rows": rows,
        "placed": len(seen),
        "distinct": len({to for to, _ in seen}),
        "measured": measured,
        "error_pct": (measured / rate - 1) * 100,
        "first_after_s": times[0] - created_at if times else float("nan"),
        "gap_ms": {
            "p50": percentile(gaps, 50),
            "p99": percentile(gaps, 99),
            "max": max(gaps, default=float("nan")),
        },
        "counts": {
            "calling": got.campaign.counts.calling,
            "pending": got.campaign.counts.pending,
            "failed": got.campaign.counts.failed,
        },
    }


async def load(bench: Bench, a: argparse.Namespace, fake_pid: int, profile: Path | None) -> JsonDict:
    """`--calls` calls at once, `--seconds` of 20 ms frames each way in real time."""
    import grpc

    from integration_hub.v1 import telephony_pb2_grpc

    frames = int(a.seconds / FRAME_SECONDS)
    rate = a.load_rate
    channels = [
        grpc.aio.insecure_channel(bench.hub.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(a.connections)
    ]
    stubs = [telephony_pb2_grpc.TelephonyServiceStub(channel) for channel in channels]
    errors: dict[str, int] = {}
    try:
        placing = asyncio.Semaphore(10)

        async def place(i: int) -> Any:
            async with placing:
                return await bench.place(stubs[i % len(stubs)])

        calls = await asyncio.gather(*(place(i) for i in range(a.calls)))
        agents = [
            HubAgent(stubs[i % len(stubs)], bench.metadata, call.id, rate) for i, call in enumerate(calls)
        ]
        await asyncio.gather(*(agent.attach() for agent in agents))
        # The agents wait for their calls to be answered (polling for the provider end).
        await asyncio.sleep(1.0)
        pids = bench.hub.worker_pids()
        waiting_cpu = {pid: cpu_seconds(pid) for pid in pids}
        await asyncio.sleep(3.0)
        waiting_cpu = {pid: (cpu_seconds(pid) - waiting_cpu[pid]) / 3.0 * 100 for pid in pids}
        keys = [f"load{i}" for i in range(a.calls)]
        opening = asyncio.Semaphore(20)

        async def answer(i: int) -> None:
            async with opening:
                await bench.control.request(
                    "open",
                    timeout=WAIT * 3,
                    key=keys[i],
                    sid=calls[i].provider_call_id,
                    frames=frames,
                    seed=1000 + i,
                )

        await asyncio.gather(*(answer(i) for i in range(a.calls)))
        await asyncio.wait_for(asyncio.gather(*(agent.started.wait() for agent in agents)), WAIT * 3)
        rss_before = bench.hub.rss()
        spread = {
            "grpc": connections_per_worker(pids, bench.hub.grpc_port),
            "media websockets": connections_per_worker(pids, bench.hub.http_port),
        }
        outgoing = [pcm_audio(rate, frames, 5000 + i) for i in range(a.calls)]
        size = rate * 2 // 50
        start = now() + 1.0
        phases = [start + i * FRAME_SECONDS / a.calls for i in range(a.calls)]
        agent_sent: list[list[float]] = [[] for _ in agents]

        async def speak(i: int) -> None:
            agent, audio = agents[i], outgoing[i]
            for k in range(frames):
                await asyncio.sleep(max(0.0, phases[i] + k * FRAME_SECONDS - now()))
                try:
                    agent_sent[i].append(await agent.send(audio[k * size : (k + 1) * size]))
                except grpc.aio.AioRpcError as exc:
                    errors[f"agent send {exc.code().name}"] = (
                        errors.get(f"agent send {exc.code().name}", 0) + 1
                    )
                    return

        procs = {"hub worker " + str(pid): pid for pid in pids} | {
            "fake Twilio": fake_pid,
            "bench (agents)": os.getpid(),
        }
        cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        sending = [
            bench.control.request(
                "send",
                timeout=a.seconds + WAIT * 3,
                key=keys[i],
                count=frames,
                start_at=phases[i],
                interval=FRAME_SECONDS,
            )
            for i in range(a.calls)
        ]
        speaking = [speak(i) for i in range(a.calls)]
        profiler = None
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            py_spy = ROOT / ".venv" / "bin" / "py-spy"
            seconds = max(2, int(a.seconds) - 4)
            profiler = [
                subprocess.Popen(  # noqa: S603
                    [
                        str(py_spy),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(seconds),
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        "--nonblocking",
                        "--output",
                        str(profile / f"worker-{pid}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid in pids
            ]

        async def cpu_at(when: float) -> dict[str, float]:
            await asyncio.sleep(max(0.0, when - now()))
            return {name: cpu_seconds(pid) for name, pid in procs.items()}

        nominal_end = start + frames * FRAME_SECONDS
        pressure0 = cpu_pressure_us()
        streaming_cpu = asyncio.create_task(cpu_at(nominal_end))
        both = await asyncio.gather(*sending, *speaking)
        fake_sent = both[: a.calls]
        cpu1 = await streaming_cpu
        pressure = (cpu_pressure_us() - pressure0) / 1e6 / max(now() - start, 1e-9) * 100
        cpu = {name: (cpu1[name] - cpu0[name]) / (nominal_end - start) * 100 for name in procs}
        # Everything sent has arrived, or --drain seconds have passed: what is missing then is lost.
        # Drained: every call has all but END_FRAMES of its frames (a converter's tail at most).
        in_len = (frames - END_FRAMES) * (rate * 2 // 50)
        out_len = (frames - END_FRAMES) * MULAW_FRAME
        drain_deadline = now() + a.drain
        drained_after: float | None = None
        while now() < drain_deadline:
            totals = (await bench.control.request("totals"))["totals"]
            if all(agent.inbound.bytes >= in_len for agent in agents) and all(
                totals.get(key, 0) >= out_len for key in keys
            ):
                drained_after = now() - nominal_end
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the tail, and anything more than sent
        cpu2 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        rss_after = bench.hub.rss()
        reports = await asyncio.gather(
            *(bench.control.request("report", timeout=WAIT * 3, key=key) for key in keys)
        )
        for report in reports:
            for error in report["errors"]:
                errors[f"fake: {error}"] = errors.get(f"fake: {error}", 0) + 1
        await asyncio.gather(*(bench.control.request("close", timeout=WAIT * 3, key=key) for key in keys))
        await asyncio.gather(*(agent.close() for agent in agents))
        for agent in agents:
            if agent.error:
                errors[f"agent {agent.error}"] = errors.get(f"agent {agent.error}", 0) + 1
            if agent.stopped != "hangup":
                errors[f"stop reason {agent.stopped}"] = errors.get(f"stop reason {agent.stopped}", 0) + 1
        if profiler:
            for process in profiler:
                process.wait(timeout=60)
    finally:
        for channel in channels:
            await channel.close()

    # inbound: the fake's frames -> the agents
    in_latency: list[float] = []
    in_gaps: list[float] = []
    send_jitter: list[float] = []
    tally = {
        d: {"frames_sent": 0, "frames_received": 0, "in_place": 0, "calls_whole": 0} for d in ("in", "out")
    }

    def count(direction: str, sent: int, received: Any, expected: Any, spf: int) -> None:
        got, in_place = frames_matching(received, expected, spf)
        t = tally[direction]
        t["frames_sent"] += sent
        t["frames_received"] += got
        t["in_place"] += in_place
        t["calls_whole"] += in_place == got and got >= sent - 1

    for i, agent in enumerate(agents):
        sent = fake_sent[i]["sent"]
        send_jitter += [abs(b - a_ - FRAME_SECONDS) * 1000 for a_, b in itertools.pairwise(sent)]
        got = agent.inbound
        count(
            "in",
            len(sent),
            _linear(bytes(got.audio), "pcm_s16le"),
            reference_inbound(frames, 1000 + i, rate),
            rate // 50,
        )
        in_latency += frame_latencies(
            sent, got.times, got.totals, agent.frame_bytes, agent.frame_bytes // 20
        )[a.skip :]
        in_gaps += [(b - a_) * 1000 for a_, b in itertools.pairwise(got.times)]
    # outbound: the agents' frames -> the fake
    out_latency: list[float] = []
    out_gaps: list[float] = []
    fps: list[float] = []
    for i, report in enumerate(reports):
        received = _linear(base64.b64decode(report["audio"]), "mulaw")
        count("out", len(agent_sent[i]), received, reference_outbound(frames, 5000 + i, rate), MULAW_FRAME)
        times = report["rx_times"]
        out_latency += frame_latencies(agent_sent[i], times, report["rx_totals"], MULAW_FRAME, SLACK_MULAW)[
            a.skip :
        ]
        out_gaps += [(b - a_) * 1000 for a_, b in itertools.pairwise(times)]
        if len(times) > 1:
            fps.append((len(times) - 1) / (times[-1] - times[0]))
    worker_cpu = sum(cpu2[name] - cpu0[name] for name in procs if name.startswith("hub worker"))
    delivered = tally["in"]["frames_received"] + tally["out"]["frames_received"]
    return {
        "calls": a.calls,
        "rate": rate,
        "frames_per_call": frames,
        "connections": a.connections,
        "waiting_cpu_pct": waiting_cpu,
        "connections_per_worker": spread,
        "in": {
            **tally["in"],
            "latency": summary(in_latency),
            "late": sum(1 for v in in_latency if v > LATE_MS),
            "interarrival_ms": {
                "p50": percentile(in_gaps, 50),
                "p99": percentile(in_gaps, 99),
                "max": max(in_gaps, default=float("nan")),
            },
            "fake_send_jitter_ms": {"p50": percentile(send_jitter, 50), "p99": percentile(send_jitter, 99)},
        },
        "out": {
            **tally["out"],
            "latency": summary(out_latency),
            "late": sum(1 for v in out_latency if v > LATE_MS),
            "interarrival_ms": {
                "p50": percentile(out_gaps, 50),
                "p99": percentile(out_gaps, 99),
                "max": max(out_gaps, default=float("nan")),
            },
            "fps_per_call": {
                "min": min(fps, default=float("nan")),
                "p50": percentile(fps, 50),
                "max": max(fps, default=float("nan")),
            },
        },
        "errors": errors,
        "rss_kib_before": {str(k): v for k, v in rss_before.items()},
        "rss_kib_after": {str(k): v for k, v in rss_after.items()},
        "cpu_pct": cpu,
        "cpu_pressure_pct": pressure,
        "cpu_seconds_to_drained": {name: cpu2[name] - cpu0[name] for name in procs},
        "hub_cpu_us_per_frame": worker_cpu / delivered * 1e6 if delivered else float("nan"),
        "drained_after_s": drained_after,
        "drain_limit_s": a.drain,
    }


async def run(a: argparse.Namespace) -> JsonDict:
    fake_file = Path(f"/tmp/hub-telephony-fake-{os.getpid()}.json")  # noqa: S108 - bench scratch
    relay_file = Path(f"/tmp/hub-telephony-relay-{os.getpid()}.json")  # noqa: S108 - bench scratch
    fake = subprocess.Popen(  # noqa: S603
        [sys.executable, __file__, "--serve-twilio"], env={**os.environ, "FAKE_PORT_FILE": str(fake_file)}
    )
    relay = subprocess.Popen(  # noqa: S603
        [sys.executable, __file__, "--serve-relay"], env={**os.environ, "FAKE_PORT_FILE": str(relay_file)}
    )
    hub = TelephonyHub(workers=2, grpc_port=free_port(), http_port=free_port())
    control = Control()
    load_avg = {"start": os.getloadavg()}
    try:
        for _ in range(150):
            if all(p.exists() and p.read_text() for p in (fake_file, relay_file)):
                break
            await asyncio.sleep(0.1)
        where = json.loads(fake_file.read_text())
        relay_url = json.loads(relay_file.read_text())["url"]
        hub.start()
        client_env = {**hub.env, "HUB_TOKEN": hub.token, "HUB_TARGET": hub.grpc_target}
        options = [x for name, value in where["options"].items() for x in ("--option", f"{name}={value}")]
        hub._cli(
            "credentials", "create", "--provider", "twilio", "--name", "phone", "--secret-json", "-",
            *options, stdin=json.dumps(where["secret"]), env=client_env,
        )  # fmt: skip
        await control.connect(where["control"])
        import grpc

        from integration_hub.v1 import telephony_pb2_grpc

        channel = grpc.aio.insecure_channel(hub.grpc_target)
        bench = Bench(hub=hub, control=control, relay_url=relay_url, channel=channel)
        bench.stub = telephony_pb2_grpc.TelephonyServiceStub(channel)
        campaign = await campaigns_answer(bench)
        latency = await latency_rounds(bench, a)
        load_avg["before load"] = os.getloadavg()
        profile = a.run_dir if a.profile else None
        loaded = await load(bench, a, fake.pid, profile)
        rates = []
        if campaign == "NOT_FOUND":  # built: measure them last, their runner polls while any is active
            for index, (rate, rows) in enumerate(a.campaign):
                rates.append(await campaign_rate(bench, index, rate, rows))
        load_avg["end"] = os.getloadavg()
        await channel.close()
        if hasattr(bench, "_http"):
            await bench._http.close()
    finally:
        with contextlib.suppress(Exception):
            await control.close()
        hub.stop()
        for process in (fake, relay):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for scratch in (fake_file, relay_file):
            scratch.unlink(missing_ok=True)
        log_warnings = hub_log_warnings(hub, a.run_dir)
    return {
        "hub_log_warnings": log_warnings,
        "latency": latency,
        "load": loaded,
        "campaigns_answer": campaign,
        "campaigns": rates,
        "load_average": load_avg,
        "profile": str(profile) if profile else None,
    }


def hub_log_warnings(hub: BenchHub, run_dir: Path) -> dict[str, int]:
    """The hub's WARNING and ERROR log lines by message (its log is kept in the run's directory,
    the hub's temporary directory removed)."""
    import shutil

    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        text = hub.log_file.read_text(errors="replace")
        (run_dir / "hub.log").write_text(text)
        for line in text.splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                record = json.loads(line)
                if record.get("level") in ("WARNING", "ERROR", "CRITICAL") and not str(
                    record.get("msg", "")
                ).startswith("several workers without HUB_REDIS_URL"):  # two workers, no Redis: known
                    key = f"{record['level']}: {str(record.get('msg', ''))[:100]}"
                    counts[key] = counts.get(key, 0) + 1
    shutil.rmtree(hub.dir, ignore_errors=True)
    return counts


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(ROOT)]
        out = subprocess.run(  # noqa: S603
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(  # noqa: S603
            [*git, "status", "--porcelain"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    return "unknown"


def _ms(x: float) -> str:
    return f"{x:.2f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


NAMES = {"direct": "direct (relay)", "hub16000": "hub, agent at 16 kHz", "hub8000": "hub, agent at 8 kHz"}
HOW = {"in": "20 ms apart"}


def _latency_rows(s: JsonDict, how_used: dict[str, str]) -> list[str]:
    rows = []
    for direction, label in (("in", "inbound (call -> agent)"), ("out", "outbound (agent -> call)")):
        d = s[f"{direction}:direct"]
        for target in ("hub16000", "hub8000"):
            h = s[f"{direction}:{target}"]
            added = h["p50"] - d["p50"]
            how = how_used.get(f"{direction}:{target}", HOW["in"])
            missing = f"; {h['missing']} frames never arrived" if h["missing"] else ""
            rows.append(
                f"| {label}: added per 20 ms frame, p50, {NAMES[target].removeprefix('hub, ')} | <= 5 ms | "
                f"**{_ms(added)} ms** (hub {_ms(h['p50'])} - direct {_ms(d['p50'])}; p99 hub {_ms(h['p99'])} "
                f"/ direct {_ms(d['p99'])}; n {h['n']} / {d['n']}{missing}; {how}) | "
                f"{_verdict(added <= 5 and not h['missing'])} |"
            )
    return rows


def _load_rows(load_: JsonDict, a: argparse.Namespace) -> list[str]:
    i, o, calls = load_["in"], load_["out"], load_["calls"]
    want = calls * load_["frames_per_call"]
    drained = load_["drained_after_s"]
    drain = (
        f"all audio arrived {drained:.1f} s after the last frame was due"
        if drained is not None
        else f"**not all audio had arrived {load_['drain_limit_s']:g} s after the last frame was due**"
    )

    def way(x: JsonDict, name: str) -> str:
        short = x["frames_sent"] - x["frames_received"]
        return (
            f"{name}: {x['frames_sent']} frames sent, {x['frames_received']} received, {x['in_place']} of "
            f"them in place (the reference's audio at the same place), {x['calls_whole']}/{calls} calls "
            f"whole, {x['late']} frames over {LATE_MS:g} ms late, {short} never arrived "
            f"({short / calls:.1f} a call)"
        )

    ok = not load_["errors"] and all(
        x["frames_sent"] == want
        and x["in_place"] == x["frames_received"]
        and x["calls_whole"] == calls
        and not x["late"]
        for x in (i, o)
    )
    fps = o["fps_per_call"]
    pacing_ok = fps["min"] >= 49.0 and fps["max"] <= 51.0
    gaps_in, gaps_out = i["interarrival_ms"], o["interarrival_ms"]

    def rss(which: str) -> str:
        return " / ".join(f"{(v or 0) / 1024:.1f}" for v in load_[which].values())

    cpu = ", ".join(f"{name} {pct:.0f} %" for name, pct in load_["cpu_pct"].items())
    waiting = " / ".join(f"{pct:.1f}" for pct in load_["waiting_cpu_pct"].values())
    spread = load_["connections_per_worker"]
    what = (
        f"{calls} concurrent calls on 2 workers, {a.seconds:g} s of 20 ms frames each way in real time "
        f"(agents at {load_['rate'] // 1000} kHz, {load_['connections']} gRPC connections)"
    )
    return [
        f"| {what}: dropped frames (never arrived, or over {LATE_MS:g} ms late) | none | "
        f"{way(i, 'inbound')}; "
        f"{way(o, 'outbound')}; {drain}; errors {load_['errors'] or 0} | {_verdict(ok)} |",
        f"| the same: outbound pacing, frames a second per call | ~50 | min {fps['min']:.2f}, median "
        f"{fps['p50']:.2f}, max {fps['max']:.2f}; inter-arrival at the fake p50 {_ms(gaps_out['p50'])} ms, "
        f"p99 {_ms(gaps_out['p99'])} ms | {_verdict(pacing_ok)} |",
        f"| the same: inbound inter-arrival at the agents (jitter) | (20 ms frames) | p50 "
        f"{_ms(gaps_in['p50'])} ms, p99 {_ms(gaps_in['p99'])} ms, max {_ms(gaps_in['max'])} ms (the fake's "
        "own send jitter p99 "
        f"{_ms(i['fake_send_jitter_ms']['p99'])} ms) | — |",
        f"| the same: per-frame latency under load | — | inbound p50 {_ms(i['latency']['p50'])} ms, p99 "
        f"{_ms(i['latency']['p99'])} ms; outbound p50 {_ms(o['latency']['p50'])} ms, p99 "
        f"{_ms(o['latency']['p99'])} ms | — |",
        f"| the same: the hub's CPU per media frame (both workers, until all had arrived) | — | "
        f"{load_['hub_cpu_us_per_frame']:.0f} µs (a call-second is 100 frames: 50 each way) | — |",
        f"| the same: workers' RSS (MiB), and CPU while streaming | — | before {rss('rss_kib_before')}, "
        f"after {rss('rss_kib_after')}; CPU over the {a.seconds:g} s: {cpu}; some task waiting for a CPU "
        f"{load_['cpu_pressure_pct']:.0f} % of the time (/proc/pressure/cpu) | — |",
        "| the same: connections per worker (the kernel's SO_REUSEPORT choice) | — | "
        + "; ".join(f"{name} {' / '.join(map(str, per.values()))}" for name, per in spread.items())
        + " | — |",
        f"| {calls} CallMedia streams waiting for their calls to be answered | — | hub workers' CPU "
        f"{waiting} % (each stream waits on a doorbell the provider end rings; its call re-read each 1 s) "
        "| — |",
    ]


def _campaign_rows(result: JsonDict) -> list[str]:
    if not result["campaigns"]:
        return [
            f"| a campaign places calls at the configured rate | within 5 % | not measured yet: GetCampaign "
            f"answers {result['campaigns_answer']} (campaigns are not built) | — |"
        ]
    rows = []
    for c in result["campaigns"]:
        ok = abs(c["error_pct"]) <= 5 and c["placed"] == c["distinct"] == c["rows"]
        gaps = c["gap_ms"]
        rows.append(
            f"| a campaign places calls at the configured rate: {c['rows']} rows at {c['configured']:g} "
            f"calls/s (say calls; when the fake Twilio created them) | within 5 % | "
            f"{c['measured']:.3f} calls/s ({c['error_pct']:+.2f} %); {c['placed']} calls to "
            f"{c['distinct']} numbers; gaps p50 "
            f"{_ms(gaps['p50'])} ms, p99 {_ms(gaps['p99'])} ms, max {_ms(gaps['max'])} ms; first call "
            f"{c['first_after_s'] * 1000:.0f} ms after CreateCampaign | {_verdict(ok)} |"
        )
    return rows


def markdown(result: JsonDict, a: argparse.Namespace) -> str:
    s = result["latency"]["summary"]
    la = result["load_average"]
    rounds = result["latency"]["rounds"]
    command = (
        f".venv/bin/python bench/telephony.py --rounds {a.rounds} --frames {a.frames} --skip {a.skip} "
        f"--calls {a.calls} --seconds {a.seconds:g} --load-rate {a.load_rate} --connections {a.connections} "
        f"--drain {a.drain:g}" + "".join(f" --campaign {rate:g} {rows}" for rate, rows in a.campaign)
    )
    lines = [
        "## Telephony (bench/telephony.py)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs, {_cpu_model()}, "
        f"`{platform.platform()}`; commit {_commit()}",
        f"- load average (1 min) at start {la['start'][0]:.2f}, before the concurrent calls "
        f"{la['before load'][0]:.2f}, at end {la['end'][0]:.2f} (other work shares these CPUs)",
        f"- command: `{command}`; every figure in `{a.run_dir.relative_to(ROOT)}/results.json` (git-ignored)",
        "- hub: `integration-hub serve --workers 2` (bench/hub.py; HUB_PUBLIC_URL = its HTTP port), a twilio "
        "credential pointed at the fake Twilio (tests/fakes/twilio_server.py for REST, the Media Streams "
        "side in bench/telephony.py; its own process), calls placed with a media_stream action, the agent on "
        "CallMedia (gRPC) in the bench process. Direct: the same fake and agent through a plain aiohttp "
        "websocket relay (its own process). Times: CLOCK_MONOTONIC, one clock for every process",
        "",
        "| check | target | measured | verdict |",
        "| --- | --- | --- | --- |",
        *_latency_rows(s, result["latency"]["how"]),
        *_load_rows(result["load"], a),
        *_campaign_rows(result),
        "",
        f"Per-frame latency at concurrency 1 (ms; a new call per round and target; the first {a.skip} "
        "frames of each round left out). A frame has arrived when all of its audio has (the bytes received "
        "reach the end of it, less 1 ms). Outbound is lockstep where the hub answers each frame at once; "
        "where frames go unanswered (a converter that holds audio back, e.g. soxr HQ's ~100 ms blocks) the "
        "round is sent 20 ms apart instead (how):",
        "",
        "| direction | target | how | p50 | p99 | n | p50 per round |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for direction in ("in", "out"):
        for target in ("direct", "hub16000", "hub8000"):
            x = s[f"{direction}:{target}"]
            per_round = ", ".join(_ms(r[f"{direction}:{target}"]) for r in rounds)
            how = result["latency"]["how"].get(f"{direction}:{target}", HOW["in"])
            lines.append(
                f"| {direction}bound | {NAMES[target]} | {how} | {_ms(x['p50'])} | {_ms(x['p99'])} "
                f"| {x['n']} | {per_round} |"
            )
    i, o, calls = result["load"]["in"], result["load"]["out"], result["load"]["calls"]
    held_in = (i["frames_sent"] - i["frames_received"]) / calls
    held_out = (o["frames_sent"] - o["frames_received"]) / calls
    lines += [
        "",
        "Never delivered at the end of a call (what a converter still held when the call stopped; a "
        f"call counts as whole with at most one): inbound {held_in:.1f}, outbound {held_out:.1f} frames "
        "a call.",
        "",
        f"The hub's log (in the run's directory): warnings and errors {result['hub_log_warnings'] or 'none'} "
        "(besides the note that two workers run without HUB_REDIS_URL).",
        "",
    ]
    return "\n".join(lines)


def _run(main: Any) -> Any:
    """On uvloop, as the hub's workers run: the fake and the agents cost less of the CPUs they share."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds")
    ap.add_argument("--frames", type=int, default=150, help="20 ms frames per latency round and direction")
    ap.add_argument("--skip", type=int, default=10, help="frames left out at the start of each round")
    ap.add_argument("--calls", type=int, default=100, help="concurrent calls")
    ap.add_argument(
        "--seconds", type=float, default=20.0, help="seconds of audio each way per concurrent call"
    )
    ap.add_argument(
        "--load-rate",
        type=int,
        default=16000,
        choices=(8000, 16000, 24000, 48000),
        help="agents' rate under load",
    )
    ap.add_argument(
        "--campaign",
        nargs=2,
        action="append",
        type=float,
        metavar=("RATE", "ROWS"),
        help="a campaign to time (calls a second, rows); repeatable; default 10 50 and 50 250",
    )
    ap.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="seconds the concurrent calls' last audio may take to arrive",
    )
    ap.add_argument("--connections", type=int, default=8, help="gRPC connections the concurrent agents share")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on both workers during the concurrent calls (raw stacks and a summary in the run's "
        "directory, bench/out/telephony-<time>/)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="its telephony section")
    ap.add_argument("--serve-twilio", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-relay", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.campaign = [(rate, int(rows)) for rate, rows in (a.campaign or [(10.0, 50), (50.0, 250)])]
    if a.serve_twilio:
        _run(serve_twilio())
        return 0
    if a.serve_relay:
        _run(serve_relay())
        return 0
    a.run_dir = ROOT / "bench" / "out" / f"telephony-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    a.run_dir.mkdir(parents=True, exist_ok=True)
    result = _run(run(a))
    (a.run_dir / "results.json").write_text(json.dumps(result, indent=2))
    if a.profile:
        for raw in sorted(a.run_dir.glob("worker-*.txt")):
            summary_md = subprocess.run(  # noqa: S603
                [sys.executable, str(ROOT / "bench" / "pyspy.py"), "analyze", str(raw), "--top", "30"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            raw.with_suffix(".md").write_text(summary_md.stdout)
    section = markdown(result, a)
    results.write_section(Path(a.out), "telephony", section)
    print(section)
    print(f"every figure: {a.run_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
