"""A call's media through `integration-hub serve` as a real process.

The first test: a call's two media ends in different worker processes: `integration-hub serve --workers 2`
as a real process, the fake Twilio in this one, eight calls placed and each one's CallMedia
attached (each on its own connection) and answered at once. The kernel hands each provider
websocket and each CallMedia stream to either worker (SO_REUSEPORT); the ends meet through
the Unix sockets of the media directory the supervisor shares with its workers
(HUB_MEDIA_DIR). Every agent must get its own call's start and audio, and every call its
own agent's audio back, whichever worker took which end: with eight calls, the chance that
every call had both ends in one worker (so that a broken rendezvous would go unseen) is
1 in 256. The second: a worker has its audio converters loaded before it serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from callers import audio as hub_audio
from callers.types import AudioContainer, AudioEncoding, AudioFormat
from integration_hub.config import Settings
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import credentials_pb2_grpc
from integration_hub.v1 import telephony_pb2 as pb
from tests.fakes.twilio_server import FakeTwilio
from tests.harness import REPO, HubProcess, free_port, hub_env, run_cli, settings_for, wait_until_ready
from tests.telephony.hub_calls import Agent, dominant_hz, stub, tone

pytestmark = pytest.mark.timeout(60)

CALLS = 8
TO, FROM = "+14155552671", "+14155550100"
L16_8K = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 8000, 1)
MULAW_8K = AudioFormat(AudioEncoding.MULAW, AudioContainer.RAW, 8000, 1)


@contextlib.contextmanager
def serving(settings: Settings, log_path: Path, workers: int) -> Iterator[HubProcess]:
    """`serve --workers N` on fixed ports, HUB_PUBLIC_URL its own HTTP base (the provider
    reaches the hub's per-call URLs there); stopped with SIGTERM, so that the supervisor
    removes its media directory."""
    grpc_port, http_port = free_port(), free_port()
    public = replace(settings, public_url=f"http://127.0.0.1:{http_port}")
    env = hub_env(public, HUB_GRPC_PORT=str(grpc_port), HUB_HTTP_PORT=str(http_port))
    argv = [sys.executable, "-m", "integration_hub.cli", "serve", "--migrate", "--workers", str(workers)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    running = HubProcess(process, grpc_port, http_port, log_path)
    try:
        wait_until_ready(running)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def media_ends(logs: str) -> dict[str, int]:
    """Call id -> the worker that served its provider websocket (the hub's own log line)."""
    found: dict[str, int] = {}
    for line in logs.splitlines():
        if "media stream of call" not in line:
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            found[entry["msg"].split()[4]] = int(entry["worker"])
    return found


async def test_call_media_meets_across_workers(tmp_path: Path, redis_url: str) -> None:
    settings = settings_for(tmp_path, database_url=None, redis_url=redis_url)
    async with FakeTwilio() as twilio:
        with serving(settings, tmp_path / "hub.log", workers=2) as hub:
            minted = run_cli(
                settings, "tokens", "create", "--tenant", "acme", "--scope", "admin", "--scope", "invoke"
            )
            assert minted.returncode == 0, minted.stderr
            auth = [("authorization", f"Bearer {minted.stdout.strip().splitlines()[-1]}")]
            async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
                await credentials_pb2_grpc.CredentialServiceStub(channel).CreateCredential(
                    cpb.CreateCredentialRequest(
                        provider="twilio", name="phone", secret=twilio.secret, options=twilio.options
                    ),
                    metadata=auth,
                    timeout=10,
                )
                calls = []
                for index in range(CALLS):
                    request = pb.PlaceCallRequest(
                        credential="phone",
                        to=TO,
                        action=pb.CallAction(
                            media_stream=pb.MediaStreamAction(parameters={"index": str(index)})
                        ),
                    )
                    setattr(request, "from", FROM)
                    calls.append((await stub(channel).PlaceCall(request, metadata=auth, timeout=10)).call)
            # Each call has its own tones both ways: what arrives shows whose it is.
            caller_hz = [300 + 100 * i for i in range(CALLS)]  # the call's, to its agent
            agent_hz = [1500 + 100 * i for i in range(CALLS)]  # the agent's, to its call

            def answer_with(index: int) -> Callable[[Agent], Awaitable[None]]:
                async def answer(agent: Agent) -> None:
                    agent.send(audio=tone(agent_hz[index], 0.6, 16000))
                    agent.send(mark=f"reply-{index}")

                return answer

            # Each agent on a connection of its own: the kernel picks a worker per connection.
            channels = [
                grpc.aio.insecure_channel(hub.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in calls
            ]
            try:
                agents = [
                    Agent(stub(ch), auth, call.id, 16000, on_start=answer_with(i))
                    for i, (ch, call) in enumerate(zip(channels, calls, strict=True))
                ]
                await asyncio.sleep(0.5)  # every agent attached and waiting for its call
                results = await asyncio.wait_for(
                    asyncio.gather(
                        *(
                            twilio.answer_media(
                                call.provider_call_id,
                                tone(caller_hz[i], 1.5, 8000),
                                audio_format=L16_8K,
                                receive_seconds=2.0,
                            )
                            for i, call in enumerate(calls)
                        )
                    ),
                    20,
                )
                await asyncio.gather(*(agent.finish(timeout=10) for agent in agents))
            finally:
                for ch in channels:
                    await ch.close()
            logs = hub.logs()
    ends = media_ends(logs)
    assert set(ends) == {call.id for call in calls}, logs[-3000:]
    where = f"provider websockets by worker: {sorted(ends.values())}"
    for index, (call, agent, result) in enumerate(zip(calls, agents, results, strict=True)):
        # The agent got its own call's start and audio ...
        assert len(agent.started) == 1, (index, where)
        assert (agent.started[0].call_id, dict(agent.started[0].parameters)) == (
            call.id,
            {"index": str(index)},
        )
        # (Less what arrives before the agent's end has attached: a worker's first media
        # stream stalls it while it imports numpy and soxr, see
        # test_the_first_media_stream_of_a_worker_loses_no_audio.)
        assert len(agent.audio) >= 0.5 * 32000, (index, len(agent.audio), where)
        assert abs(dominant_hz(bytes(agent.audio), 16000) - caller_hz[index]) < 20, (index, where)
        assert agent.stops == ["hangup"], (index, where)
        # ... and the call its own agent's, paced out as Twilio's 20 ms frames, then the mark.
        assert result.errors == []
        assert len(result.frames) >= 25, (index, len(result.frames), where)
        played = hub_audio.convert(result.audio, MULAW_8K, L16_8K)
        assert abs(dominant_hz(played, 8000) - agent_hz[index]) < 20, (index, where)
        assert [name for name, _ in agent.marks] == [f"reply-{index}"], (index, where)
    assert '"level":"ERROR"' not in logs, [line for line in logs.splitlines() if '"level":"ERROR"' in line]


def test_a_worker_loads_its_audio_converters_before_it_serves(tmp_path: Path) -> None:
    """numpy and soxr (callers.audio.stream, the media's converters) are loaded when the
    worker starts, not on its event loop in the middle of its first calls.

    Fails today: ProviderLeg._converters (integration_hub/telephony/media_provider.py)
    imports callers.audio.stream when a worker's first agent meets its call. The import
    (0.1-0.3 s here) stalls every stream of the worker: the audio of the calls whose agent
    has not been let in yet piles up on their websockets and is read, and dropped, before
    their agents are (the agents of test_call_media_meets_across_workers miss 0.1-0.7 s).
    Checked in the worker's memory map (Linux), which a stall in a race cannot hide."""
    settings = settings_for(tmp_path, database_url=None)
    with serving(settings, tmp_path / "hub.log", workers=1) as hub:
        maps = Path(f"/proc/{hub.process.pid}/maps").read_text()
    assert "soxr_ext" in maps, "soxr is not loaded in the serving worker"
