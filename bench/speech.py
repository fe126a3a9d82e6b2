"""Speech through the hub against the fake OpenAI audio server, beside direct calls to it.

    .venv/bin/python bench/speech.py [--seconds 5] [--rounds 3] [--streams 200] [--chunks 200]
        [--warm-up 30] [--measure 120] [--connections 8] [--rss-every 1] [--out FILE]

Measures, in one run, with a hub of 2 workers (bench/hub.py: the real path, token,
credential decrypt, policies, usage rows, metrics):
  (a) time to first audio of a synthesis stream at concurrency 1: direct (POST
      /v1/audio/speech, pcm, first body chunk) vs the hub's gRPC StreamSynthesize
      (first audio message), p50 over interleaved rounds;
  (b) `--streams` concurrent StreamSynthesize streams (each several seconds of audio
      in chunks 10 ms apart) over `--connections` connections, repeated for `--warm-up`
      then `--measure` seconds: errors, and the workers' resident memory sampled every
      `--rss-every` s; flat means its trend over the measured part (after the
      warm-up) rises less than 5 % (see rss_trend).
  (c) StreamTranscribe's cost per streamed chunk, against the fake Google
      StreamingRecognize server (tests/fakes/google_speech_server.py: one interim result
      per 100 ms chunk): lockstep, one chunk in flight, time from sending a chunk to its
      result; direct (the google_speech caller in this process, the client a service
      would otherwise run) vs the hub's gRPC StreamTranscribe, p50 over interleaved rounds.
The fakes run in their own processes; everything is on loopback and bounded.
"""

# A benchmark tool: runs fixed local programs and opens only loopback URLs it builds itself.
# Its set-up and tear-down block the loop briefly (files, a subprocess), outside what it times.
# ruff: noqa: ASYNC220, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import results  # noqa: E402

if TYPE_CHECKING:
    from hub import BenchHub  # bench/hub.py

KEY = "sk-bench-fake-upstream-key-0000"
TEXT = "Your appointment is confirmed for Tuesday at ten in the morning."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_fake(port: int, chunk_delay: float) -> None:
    from tests.fakes.openai_audio import OpenAIAudio
    from tests.fakes.openai_server import FakeOpenAI

    sound = OpenAIAudio(chunk_bytes=4800, chunk_delay=chunk_delay)  # 100 ms of 24 kHz PCM per chunk
    fake = FakeOpenAI(valid_keys={KEY})
    sound.install(fake)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with fake:
        # FakeOpenAI binds port 0; tell the parent which one.
        Path(os.environ["FAKE_PORT_FILE"]).write_text(str(fake.url.rsplit(":", 1)[1]))
        del port
        await stop.wait()
        fake.requests.clear()


CHUNK = 3200  # 100 ms of 16 kHz linear16
EMAIL = "bench@fake-project.iam.gserviceaccount.com"


async def serve_google() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from tests.fakes.google_speech_server import FakeGoogleSpeech

    key = serialization.load_pem_private_key(Path(os.environ["GOOGLE_KEY_FILE"]).read_bytes(), None)
    assert isinstance(key, RSAPrivateKey)
    fake = FakeGoogleSpeech(service_accounts={EMAIL: key.public_key()}, interim_every=CHUNK, keep_audio=False)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with fake:
        where = {"endpoint": fake.endpoint, "token_uri": fake.token_uri}
        Path(os.environ["FAKE_PORT_FILE"]).write_text(json.dumps(where))
        await stop.wait()


def google_service_account(key_file: Path, token_uri: str) -> str:
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "00112233445566778899aabbccddeeff00112233",
            "private_key": key_file.read_text(),
            "client_email": EMAIL,
            "token_uri": token_uri,
        }
    )


class _Lockstep:
    """Audio chunks sent one at a time: the next leaves when the last one's result came."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.sent_at: list[float] = []
        self.latencies: list[float] = []
        self.answered = asyncio.Event()

    async def audio(self) -> object:
        for _ in range(self.chunks):
            self.answered.clear()
            self.sent_at.append(time.perf_counter())
            yield b"\x01\x02" * (CHUNK // 2)
            await self.answered.wait()

    def result(self) -> None:
        if len(self.latencies) < len(self.sent_at):
            self.latencies.append((time.perf_counter() - self.sent_at[len(self.latencies)]) * 1000)
        self.answered.set()


async def direct_chunks(service_account: str, endpoint: str, chunks: int) -> list[float]:
    from callers import registry
    from callers.base import Capability
    from callers.types import (
        AudioContainer,
        AudioEncoding,
        AudioFormat,
        StreamTranscribeRequest,
        TranscriptEvent,
    )
    from tests.fakes.secret_fields import PlainSecret

    caller = registry.capability("google_speech", Capability.STREAM_STT)
    request = StreamTranscribeRequest(
        audio_format=AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 16000), language="en-US"
    )
    step = _Lockstep(chunks)
    secret = PlainSecret(service_account_json=service_account)
    options = {"endpoint": endpoint, "location": "global"}
    async for event in caller.stream_transcribe(secret, options, request, step.audio(), timeout=10):  # type: ignore[attr-defined]
        if isinstance(event, TranscriptEvent) and not event.is_final:
            step.result()
    from callers import pools

    await pools.close_all()
    return step.latencies


async def hub_chunks(target: str, token: str, chunks: int) -> list[float]:
    import grpc

    from integration_hub.v1 import speech_pb2 as pb
    from integration_hub.v1 import speech_pb2_grpc

    step = _Lockstep(chunks)

    async def requests() -> object:
        yield pb.StreamTranscribeRequest(
            config=pb.StreamTranscribeConfig(
                credential="ears",
                audio_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000),
                options=pb.TranscriptionOptions(language="en-US"),
                interim_results=True,
            )
        )
        async for chunk in step.audio():  # type: ignore[attr-defined]
            yield pb.StreamTranscribeRequest(audio=chunk)

    async with grpc.aio.insecure_channel(target) as channel:
        stub = speech_pb2_grpc.SpeechServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        async for message in stub.StreamTranscribe(requests(), metadata=metadata):
            if message.WhichOneof("event") == "result" and not message.result.is_final:
                step.result()
    return step.latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def direct_ttfa(base: str, seconds: float) -> list[float]:
    import aiohttp

    body = {"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "pcm"}
    headers = {"Authorization": f"Bearer {KEY}"}
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            async with session.post(f"{base}/v1/audio/speech", json=body, headers=headers) as response:
                await response.content.readany()
                times.append((time.perf_counter() - start) * 1000)
                await response.read()
    return times


def synth_request(text: str = TEXT) -> object:
    from integration_hub.v1 import speech_pb2 as pb

    return pb.SynthesizeRequest(
        credential="voice",
        model="tts-1",
        text=text,
        voice="alloy",
        output_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hz=24000),
    )


async def hub_ttfa(target: str, token: str, seconds: float) -> list[float]:
    import grpc

    from integration_hub.v1 import speech_pb2_grpc

    times: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = speech_pb2_grpc.SpeechServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            first = True
            async for message in stub.StreamSynthesize(synth_request(), metadata=metadata):
                if first and message.WhichOneof("event") == "audio":
                    times.append((time.perf_counter() - start) * 1000)
                    first = False
    return times


async def concurrent_streams(hub: BenchHub, a: argparse.Namespace) -> dict[str, object]:
    """`a.streams` streams at once, each started again when it ends, for `a.warm_up` then
    `a.measure` seconds, over `a.connections` HTTP/2 connections kept for the whole time;
    the workers' RSS sampled every `a.rss_every` s from the first stream to the last.

    The same connections carry the warm-up and the measured part: the kernel
    (SO_REUSEPORT) hands each connection to one worker for good, so a new connection
    after the warm-up may land on a worker that had none of it, whose warm-up would be
    measured as growth. Several connections load both workers.
    """
    import grpc

    from integration_hub.v1 import speech_pb2_grpc

    errors: dict[str, dict[str, int]] = {"warm_up": {}, "measured": {}}
    completed = {"warm_up": 0, "measured": 0}
    samples: list[dict[str, object]] = []
    metadata = (("authorization", f"Bearer {hub.token}"),)
    # A channel of its own subchannel pool opens its own connection: grpc otherwise shares
    # one connection among channels to the same target with the same options.
    channels = [
        grpc.aio.insecure_channel(hub.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(a.connections)
    ]
    stubs = [speech_pb2_grpc.SpeechServiceStub(channel) for channel in channels]
    start = time.monotonic()
    warm_end, end = start + a.warm_up, start + a.warm_up + a.measure

    def sample() -> None:
        rss = hub.rss()
        samples.append(
            {
                "t": round(time.monotonic() - start, 2),
                "rss_kib": sum(v or 0 for v in rss.values()),
                "workers": {str(pid): v for pid, v in rss.items()},
            }
        )

    async def sampler() -> None:
        ticks = 0
        while True:
            sample()
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks * a.rss_every - time.monotonic()))

    async def one_stream(stub: speech_pb2_grpc.SpeechServiceStub) -> None:
        while time.monotonic() < end:
            phase = "warm_up" if time.monotonic() < warm_end else "measured"
            try:
                async for _ in stub.StreamSynthesize(synth_request(TEXT * 2), metadata=metadata):
                    pass
                completed[phase] += 1
            except grpc.aio.AioRpcError as exc:
                errors[phase][exc.code().name] = errors[phase].get(exc.code().name, 0) + 1

    sampling = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(one_stream(stubs[i % len(stubs)]) for i in range(a.streams)))
        sample()
    finally:
        sampling.cancel()
        for channel in channels:
            await channel.close()
    return {
        "completed": completed["measured"],
        "errors": errors["measured"],
        "warm_up_completed": completed["warm_up"],
        "warm_up_errors": errors["warm_up"],
        "rss_samples": samples,
        "rss": rss_trend(samples, a.warm_up, a.warm_up + a.measure),
    }


# The shortest measured part whose RSS trend is a verdict: over 120 s the trend of a hub
# that keeps nothing wanders within about +-3 %, over 60 s within +-5 % (bench/README.md).
MIN_MEASURE = 120.0


def rss_trend(samples: list[dict[str, object]], start: float, end: float) -> dict[str, float]:
    """The trend of the workers' summed RSS over the measured part (samples in [start, end]).

    One sample is no baseline: under these streams a worker's RSS moves by 10-30 MiB from
    one second to the next (the buffers of the streams in flight, the allocator giving
    pages back), so two single samples differ by several per cent either way. A leak is
    memory kept per stream, so it rises with the streams served, steadily, and shows in
    the slope of a line through every sample. The slope is Theil-Sen's (the median of the
    slopes between every pair of samples), which a few one-second spikes do not tilt;
    `growth_pct` is that line's rise over the measured part as a share of its level at
    the start. The medians of the first and last quarter are beside it as a check.
    """
    points = [(float(x["t"]), float(x["rss_kib"])) for x in samples if start <= float(x["t"]) <= end]  # type: ignore[arg-type]
    if len(points) < 4:
        return {"growth_pct": float("nan"), "samples": len(points)}
    slopes = [
        (r2 - r1) / (t2 - t1) for i, (t1, r1) in enumerate(points) for t2, r2 in points[i + 1 :] if t2 > t1
    ]
    slope = percentile(slopes, 50)
    first_t, last_t = points[0][0], points[-1][0]
    level = percentile([r - slope * (t - first_t) for t, r in points], 50)  # the line at first_t
    quarter = max(1, len(points) // 4)
    return {
        "samples": len(points),
        "seconds": last_t - first_t,
        "slope_kib_per_s": slope,
        "fitted_start_kib": level,
        "fitted_end_kib": level + slope * (last_t - first_t),
        "growth_pct": slope * (last_t - first_t) / level * 100,
        "first_quarter_median_kib": percentile([r for _, r in points[:quarter]], 50),
        "last_quarter_median_kib": percentile([r for _, r in points[-quarter:]], 50),
        "min_kib": min(r for _, r in points),
        "max_kib": max(r for _, r in points),
    }


async def run(a: argparse.Namespace) -> dict[str, object]:
    from hub import BenchHub  # bench/hub.py

    port_file = Path(f"/tmp/hub-speech-fake-{os.getpid()}.port")  # noqa: S108 - bench scratch
    fake = subprocess.Popen(  # noqa: S603
        [sys.executable, __file__, "--serve-fake", "0", "--chunk-delay", "0.01"],
        env={**os.environ, "FAKE_PORT_FILE": str(port_file)},
    )
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key_file = Path(f"/tmp/hub-speech-google-{os.getpid()}.pem")  # noqa: S108 - bench scratch
    key_file.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    google_file = Path(f"/tmp/hub-speech-google-{os.getpid()}.json")  # noqa: S108 - bench scratch
    google = subprocess.Popen(  # noqa: S603
        [sys.executable, __file__, "--serve-google"],
        env={**os.environ, "FAKE_PORT_FILE": str(google_file), "GOOGLE_KEY_FILE": str(key_file)},
    )
    hub = BenchHub(workers=2, grpc_port=free_port(), http_port=free_port())
    try:
        for _ in range(100):
            if (
                port_file.exists()
                and port_file.read_text()
                and google_file.exists()
                and google_file.read_text()
            ):
                break
            await asyncio.sleep(0.1)
        google_at = json.loads(google_file.read_text())
        service_account = google_service_account(key_file, google_at["token_uri"])
        base = f"http://127.0.0.1:{port_file.read_text()}"
        hub.start()
        client_env = {**hub.env, "HUB_TOKEN": hub.token, "HUB_TARGET": hub.grpc_target}
        hub._cli(
            "credentials", "create", "--provider", "openai", "--name", "voice", "--secret-json", "-",
            "--option", f"base_url={base}/v1", stdin=json.dumps({"api_key": KEY}), env=client_env,
        )  # fmt: skip
        hub._cli(
            "credentials", "create", "--provider", "google_speech", "--name", "ears", "--secret-json", "-",
            "--option", f"endpoint={google_at['endpoint']}", stdin=json.dumps(
                {"service_account_json": service_account}
            ), env=client_env,
        )  # fmt: skip
        await hub_ttfa(hub.grpc_target, hub.token, 1.0)  # warm both workers' pools
        for _ in range(4):  # and both workers' Google channels and tokens
            await hub_chunks(hub.grpc_target, hub.token, 5)
        await direct_chunks(service_account, google_at["endpoint"], 5)
        chunk_direct: list[float] = []
        chunk_hub: list[float] = []
        chunk_rounds = []
        for _ in range(a.rounds):
            d = await direct_chunks(service_account, google_at["endpoint"], a.chunks)
            h = await hub_chunks(hub.grpc_target, hub.token, a.chunks)
            chunk_direct += d
            chunk_hub += h
            chunk_rounds.append({"direct_p50": percentile(d, 50), "hub_p50": percentile(h, 50)})
        direct: list[float] = []
        through: list[float] = []
        rounds = []
        for _ in range(a.rounds):
            d = await direct_ttfa(base, a.seconds)
            h = await hub_ttfa(hub.grpc_target, hub.token, a.seconds)
            direct += d
            through += h
            rounds.append({"direct_p50": percentile(d, 50), "hub_p50": percentile(h, 50)})
        # Memory is judged after a warm-up under the same load (pools, buffers, caches and
        # the allocator grown to their working size), by its trend (rss_trend).
        load = await concurrent_streams(hub, a)
        load["streams_per_worker"] = {
            str(pid): hub.worker_calls(pid, "stream_synthesize") for pid in hub.worker_pids()
        }
    finally:
        hub.stop()
        for process in (fake, google):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
        for scratch in (port_file, google_file, key_file):
            scratch.unlink(missing_ok=True)
    return {
        "direct_ttfa_ms": {"p50": percentile(direct, 50), "p99": percentile(direct, 99), "n": len(direct)},
        "hub_ttfa_ms": {"p50": percentile(through, 50), "p99": percentile(through, 99), "n": len(through)},
        "rounds": rounds,
        "direct_chunk_ms": {
            "p50": percentile(chunk_direct, 50),
            "p99": percentile(chunk_direct, 99),
            "n": len(chunk_direct),
        },
        "hub_chunk_ms": {
            "p50": percentile(chunk_hub, 50),
            "p99": percentile(chunk_hub, 99),
            "n": len(chunk_hub),
        },
        "chunk_rounds": chunk_rounds,
        "streams": {**load, "concurrency": a.streams, "connections": a.connections},
    }


def markdown(result: dict[str, object], a: argparse.Namespace) -> str:
    d, h = result["direct_ttfa_ms"], result["hub_ttfa_ms"]
    cd, ch = result["direct_chunk_ms"], result["hub_chunk_ms"]
    assert isinstance(cd, dict)
    assert isinstance(ch, dict)
    chunk_added = ch["p50"] - cd["p50"]
    chunk_verdict = "PASS" if chunk_added <= 5 else "**FAIL**"
    s = result["streams"]
    assert isinstance(d, dict)
    assert isinstance(h, dict)
    assert isinstance(s, dict)
    added = h["p50"] - d["p50"]
    rss = s["rss"]
    assert isinstance(rss, dict)
    growth = rss["growth_pct"]
    ok = not s["errors"] and not s["warm_up_errors"]
    ttfa_verdict = "PASS" if added <= 5 else "**FAIL**"
    streams_verdict = "PASS" if ok else "**FAIL**"
    # Two workers, both loaded: a worker without streams would be measured idle.
    per_worker = s["streams_per_worker"]
    assert isinstance(per_worker, dict)
    both = len(per_worker) == 2 and all(v > 0 for v in per_worker.values())
    rss_verdict = "PASS" if growth < 5 and both else "**FAIL**"  # NaN (too few samples) fails
    if a.measure < MIN_MEASURE:
        rss_verdict = f"not judged (--measure under {MIN_MEASURE:g} s)"
    served = " / ".join(f"{v:.0f}" for v in per_worker.values())

    def mib(key: str) -> str:
        return f"{rss.get(key, float('nan')) / 1024:.1f}"

    return "\n".join(
        [
            "## Speech (bench/speech.py)",
            "",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs; "
            f"load average at end {os.getloadavg()[0]:.2f}",
            f"- command: `.venv/bin/python bench/speech.py --seconds {a.seconds:g} --rounds {a.rounds} "
            f"--streams {a.streams} --chunks {a.chunks} --warm-up {a.warm_up:g} --measure {a.measure:g} "
            f"--connections {a.connections} --rss-every {a.rss_every:g}`",
            "- hub: `integration-hub serve --workers 2` (bench/hub.py), openai credential pointed at the "
            "fake OpenAI audio server (tests/fakes/openai_audio.py, its own process; 100 ms PCM chunks "
            "10 ms apart), and a google_speech credential pointed at the fake Google StreamingRecognize "
            "server (tests/fakes/google_speech_server.py, its own process)",
            "",
            "| check | target | measured | verdict |",
            "| --- | --- | --- | --- |",
            f"| StreamSynthesize: added time to first audio, p50 at c=1 | <= 5 ms | {added:.2f} ms "
            f"({h['p50']:.2f} - {d['p50']:.2f}; n {h['n']} / {d['n']}) | {ttfa_verdict} |",
            f"| {s['concurrency']} concurrent StreamSynthesize streams over {s['connections']} connections, "
            f"{a.measure:g} s after a {a.warm_up:g} s warm-up | no errors | "
            f"{s['completed']} streams completed (warm-up {s['warm_up_completed']}), errors "
            f"{s['errors'] or 0} | {streams_verdict} |",
            f"| the same: worker RSS (sum), trend (Theil-Sen) over the {a.measure:g} s "
            f"({rss['samples']} samples, one per {a.rss_every:g} s; both workers serving) | flat (< 5 %) | "
            f"{mib('fitted_start_kib')} -> {mib('fitted_end_kib')} MiB ({growth:+.1f} %); medians of the "
            f"first / last quarter {mib('first_quarter_median_kib')} / {mib('last_quarter_median_kib')} MiB, "
            f"range {mib('min_kib')}-{mib('max_kib')}; streams per worker {served} | {rss_verdict} |",
            f"| StreamTranscribe: added time per streamed chunk (100 ms of audio -> its result), p50 | "
            f"<= 5 ms | {chunk_added:.2f} ms ({ch['p50']:.2f} - {cd['p50']:.2f}; n {ch['n']} / {cd['n']}) | "
            f"{chunk_verdict} |",
            "",
            f"Rounds, StreamSynthesize (p50 ms): {json.dumps(result['rounds'])}",
            "",
            f"Rounds, StreamTranscribe per chunk (p50 ms): {json.dumps(result['chunk_rounds'])}",
            "",
        ]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"), help="its speech section")
    ap.add_argument("--chunks", type=int, default=200, help="chunks per StreamTranscribe round")
    ap.add_argument("--warm-up", type=float, default=30.0, help="seconds of streams before memory is judged")
    ap.add_argument("--measure", type=float, default=120.0, help="seconds of streams, memory judged")
    ap.add_argument("--connections", type=int, default=8, help="gRPC connections the streams share")
    ap.add_argument("--rss-every", type=float, default=1.0, help="seconds between RSS samples")
    ap.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-google", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chunk-delay", type=float, default=0.01, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve_google:
        asyncio.run(serve_google())
        return 0
    if a.serve_fake is not None:
        asyncio.run(serve_fake(a.serve_fake, a.chunk_delay))
        return 0
    result = asyncio.run(run(a))
    print(json.dumps(result, indent=2))
    results.write_section(Path(a.out), "speech", markdown(result, a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
