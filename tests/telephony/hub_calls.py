"""Helpers of the end-to-end telephony tests through the hub (test_hub_calls_*.py,
test_hub_telephony_rest.py, test_hub_media_workers.py): a CallMedia agent, the parts of a
call's public URL, the ErrorInfo of a gRPC error, and audio to send and to check."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import grpc
import numpy as np
import numpy.typing as npt
from google.rpc import error_details_pb2, status_pb2

from integration_hub.v1 import telephony_pb2 as pb
from integration_hub.v1 import telephony_pb2_grpc

# Retries as in production, fast: a place whose answer says the provider did not take the
# call (429, 502, 503) is retried, one whose outcome is unknown never is. The breaker is
# kept shut so that one test's failures do not open it for the next call.
RETRYING_POLICY = (
    "[defaults]\nmax_attempts = 3\nbackoff_base = 0.01\nbackoff_max = 0.05\nbreaker_failures = 1000\n"
)


def stub(channel: grpc.aio.Channel) -> telephony_pb2_grpc.TelephonyServiceStub:
    return telephony_pb2_grpc.TelephonyServiceStub(channel)


def url_parts(url: str) -> tuple[str, str, str]:
    """(call id, token, leaf) of a call's public URL: /telephony/v1/calls/<id>/<token>/<leaf>."""
    segments = urlsplit(url).path.split("/")
    assert segments[:4] == ["", "telephony", "v1", "calls"], url
    call_id, token, leaf = segments[4:]
    return call_id, token, leaf


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            assert status.details[0].Unpack(info)
            return info
    raise AssertionError("no google.rpc.Status details in the trailers")


def pcm16(samples: npt.NDArray[np.floating]) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def tone(hz: float, seconds: float, rate: int, amplitude: float = 0.3) -> bytes:
    return pcm16(amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate))


def samples(pcm: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = samples(pcm)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


def speech_like(pcm: bytes, rate: int) -> bool:
    """Loud enough, and with the ups and downs of speech (a tone or noise is flat, silence is 0)."""
    x = samples(pcm)
    hop = rate // 50
    usable = len(x) // hop * hop
    if usable < 10 * hop:
        return False
    levels = np.sqrt(np.mean(np.square(x[:usable].reshape(-1, hop)), axis=1))
    loud = levels > 0.01
    return bool(np.mean(np.abs(x)) > 100 / 32768 and 0.2 < loud.mean() < 0.98 and levels.std() > 0.005)


class Agent:
    """One CallMedia stream, played like a voice agent: the config first, then whatever is
    sent; what the hub answers is collected until its stop (or `finish`)."""

    def __init__(
        self,
        telephony: telephony_pb2_grpc.TelephonyServiceStub,
        metadata: Sequence[tuple[str, str]],
        call_id: str,
        rate: int,
        on_start: Callable[[Agent], Awaitable[None]] | None = None,
    ) -> None:
        self.call_id = call_id
        self.rate = rate
        self.started: list[pb.MediaStarted] = []
        self.audio = bytearray()
        self.chunks: list[tuple[int, float]] = []  # (bytes, time.monotonic()) of each audio message
        self.started_at = 0.0
        self.dtmf: list[str] = []
        self.marks: list[tuple[str, float]] = []
        self.stops: list[str] = []
        self._on_start = on_start
        self._outgoing: asyncio.Queue[pb.CallMediaRequest | None] = asyncio.Queue()
        self.send(config=pb.CallMediaConfig(call_id=call_id, sample_rate_hz=rate))
        self._call = telephony.CallMedia(self._requests(), metadata=metadata)
        self.task = asyncio.create_task(self._run(), name=f"agent-{call_id}")

    def send(self, **message: object) -> None:
        self._outgoing.put_nowait(pb.CallMediaRequest(**message))  # type: ignore[arg-type]

    async def _requests(self) -> AsyncIterator[pb.CallMediaRequest]:
        while (item := await self._outgoing.get()) is not None:
            yield item

    async def _run(self) -> None:
        async for message in self._call:
            which = message.WhichOneof("message")
            if which == "start":
                self.started.append(message.start)
                self.started_at = time.monotonic()
                if self._on_start is not None:
                    await self._on_start(self)
            elif which == "audio":
                self.audio.extend(message.audio)
                self.chunks.append((len(message.audio), time.monotonic()))
            elif which == "dtmf":
                self.dtmf.append(message.dtmf)
            elif which == "mark":
                self.marks.append((message.mark, time.monotonic()))
            elif which == "stop":
                self.stops.append(message.stop.reason)
                return

    async def finish(self, timeout: float = 5.0) -> None:
        """Wait for the hub's stop (at most `timeout` s), then end the stream."""
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        finally:
            self._outgoing.put_nowait(None)
            self._call.cancel()
            if not self.task.done():
                self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def check_paced(times: Sequence[float], frame_seconds: float) -> None:
    """Frames sent one per frame time, not in a burst: the span from the first to the last is
    at least that of real time, and the typical gap is one frame. Stalls of a loaded machine
    only make it longer (the hub's pacer restarts its clock after one), so the upper bound
    is loose."""
    assert len(times) >= 3, times
    span, expected = times[-1] - times[0], (len(times) - 1) * frame_seconds
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    median = gaps[len(gaps) // 2]
    assert expected * 0.9 <= span <= expected + 0.5, (span, expected)
    assert 0.7 * frame_seconds <= median <= 1.3 * frame_seconds, (median, frame_seconds)


def dominant_per_window(pcm: bytes, rate: int, window_seconds: float = 0.02) -> list[float]:
    step = int(rate * window_seconds) * 2
    return [dominant_hz(pcm[at : at + step], rate) for at in range(0, len(pcm) - step + 1, step)]


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
