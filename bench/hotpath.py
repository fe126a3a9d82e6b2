"""The hub's own cost per call, in one process, without any server in front.

Builds a real Hub (temporary SQLite store, generated keyring, a token, an openai
credential) and calls ChatService.Chat the way the gRPC and HTTP front ends do
(Dispatcher.begin_operation, then ChatApi.Chat) many times, sequentially and 32 at a
time, reporting CPU microseconds per call (time.process_time: all threads).

Two modes:
  --upstream URL   the real OpenAI caller against a loopback server (e.g. the shared
                   fake upstream, http://127.0.0.1:18080/v1): the whole call path
  (default)        the caller is replaced by one that answers at once, in-process: what
                   is left is the hub's own logic (token check, credential lookup,
                   decrypt + audit, policies, usage, metrics, proto conversion)

    .venv/bin/python bench/hotpath.py [--calls 20000] [--repeat 3] [--upstream URL] [--profile FILE]

--profile writes cProfile stats of the concurrent run (sorted by own time) to FILE.
This measures, it does not test: the replaced caller is a benchmark's instrument.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from callers import registry  # noqa: E402
from callers.base import Capability  # noqa: E402
from callers.types import llm as t  # noqa: E402
from integration_hub.auth import mint_token  # noqa: E402
from integration_hub.config import Settings  # noqa: E402
from integration_hub.hub import Hub  # noqa: E402
from integration_hub.key_admin import init_keyring  # noqa: E402
from integration_hub.llm import ChatApi  # noqa: E402
from integration_hub.v1 import chat_pb2 as chat  # noqa: E402
from integration_hub.v1 import credentials_pb2 as cpb  # noqa: E402

KEY = "sk-bench-hotpath-0000000000000000"


class InstantChat:
    """An OpenAI-shaped answer at once: no I/O, so only the hub's own work is timed."""

    async def chat(self, secret: Any, options: Any, request: t.ChatRequest, *, timeout: float) -> Any:
        secret.reveal("api_key")
        return t.ChatResponse(
            message=t.AssistantMessage(text="Hello from the hub bench"),
            finish_reason=t.FinishReason.STOP,
            usage=t.Usage(input_tokens=9, output_tokens=5, total_tokens=14),
            model=request.model,
        )


async def build(tmp: Path, upstream: str | None) -> tuple[Hub, str, Callable[[], Awaitable[Any]]]:
    (tmp / "policy.toml").write_text("[defaults]\n")
    init_keyring(str(tmp / "keyring.json"))
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'hub.db'}",
        keyring_file=str(tmp / "keyring.json"),
        policy_file=str(tmp / "policy.toml"),
    )
    hub = await Hub.open(settings, migrate=True)
    _, token = await mint_token(hub.store, tenant_id="bench", scopes=["admin", "invoke"])
    authorization = f"Bearer {token}"
    method = hub.dispatcher.methods["/integration_hub.v1.CredentialService/CreateCredential"]
    call = await hub.dispatcher.begin(
        method, authorization=authorization, request_id="setup", time_remaining=None
    )
    await hub.credentials.CreateCredential(
        cpb.CreateCredentialRequest(
            provider="openai",
            name="main",
            secret={"api_key": KEY},
            options={"base_url": upstream or "http://127.0.0.1:9/v1"},
        ),
        call,
    )
    api = ChatApi(hub.llm)
    chat_method = hub.dispatcher.methods["/integration_hub.v1.ChatService/Chat"]
    request = chat.ChatRequest(
        credential="main",
        model="gpt-4o-mini",
        messages=[chat.ChatMessage(role=chat.ROLE_USER, content=[chat.ContentPart(text="Hi")])],
    )
    counter = iter(range(10**12))

    async def one() -> Any:
        call = await hub.dispatcher.begin(
            chat_method, authorization=authorization, request_id=f"r{next(counter)}", time_remaining=None
        )
        response = await api.Chat(request, call)
        response.SerializeToString()
        return response

    return hub, token, one


async def run(calls: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(CPU µs per call, wall µs per call)."""
    per_worker = calls // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await one()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = per_worker * concurrency
    return (time.process_time() - cpu) / done * 1e6, (time.perf_counter() - wall) / done * 1e6


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hub-hotpath-") as tmp:
        hub, _, one = await build(Path(tmp), args.upstream)
        if not args.upstream:
            original = registry.capability
            instant = InstantChat()

            def capability(provider: str, wanted: Capability) -> Any:
                return instant if wanted is Capability.CHAT else original(provider, wanted)

            registry.capability = capability  # type: ignore[assignment]
        try:
            answer = await one()
            assert answer.message.content[0].text, answer
            await run(min(2000, args.calls), 8, one)  # warm caches, pools, branch predictors
            mode = f"upstream {args.upstream}" if args.upstream else "instant in-process caller"
            print(f"mode: {mode}; {args.calls} calls each")
            for concurrency in (1, 32):
                # The lowest of a few runs: on a shared VM the noise only ever adds time.
                runs = [await run(args.calls, concurrency, one) for _ in range(args.repeat)]
                cpu, wall = min(runs)
                print(
                    f"  concurrency {concurrency:2}: {cpu:7.1f} µs CPU/call, {wall:7.1f} µs wall/call"
                    f" (lowest of {args.repeat}; CPU of each: {', '.join(f'{r[0]:.0f}' for r in runs)})"
                )
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await run(args.calls, 32, one)
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(45)
                Path(args.profile).write_text(out.getvalue())  # noqa: ASYNC240 - after the timed run
                print(f"  cProfile (concurrency 32, by own time): {args.profile}")
        finally:
            await hub.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per concurrency; the lowest is shown")
    parser.add_argument("--upstream", help="the real OpenAI caller against this base URL")
    parser.add_argument("--profile", help="write cProfile stats of the concurrent run here")
    parsed = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(parsed))
    else:
        uvloop.run(main(parsed))
