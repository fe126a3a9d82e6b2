"""py-spy on the hub's workers under load, and a summary of where the CPU goes.

    python bench/pyspy.py analyze RAW [--top 25]      # a Markdown summary of a py-spy raw (collapsed) file

bench/run.py --profile records each scenario twice at once: one worker to an SVG flame
graph (bench/profile-<scenario>.svg) and the other to collapsed stacks
(bench/out/<run>/profile-<scenario>.txt) that `analyze` turns into tables:

  self       samples whose innermost frame is the function (where the CPU is spent);
  inclusive  samples with the function anywhere on the stack (what it costs with its callees),
             only for frames of the hub itself (integration_hub/, callers/);
  areas      every sample put in one bucket by the first matching rule over its stack
             (innermost first), e.g. the aiohttp client, protobuf, the gRPC core, logging.

Shares are of the samples py-spy took (on-CPU samples; idle is left out), so they are
shares of the worker's CPU time. With the worker's CPU seconds and the requests it served
in the same window, bench/run.py turns them into microseconds per request.
"""

# A benchmark tool: runs fixed local programs (wrk, h2load, py-spy, integration-hub) and
# opens only loopback http:// URLs it builds itself.

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (area, test on one frame's "file:function"); the innermost frame that matches names the area.
AREAS: list[tuple[str, re.Pattern[str]]] = [
    ("logging", re.compile(r"(^|/)logging/|integration_hub/logs\.py|vault/redaction\.py")),
    ("metrics (prometheus_client)", re.compile(r"prometheus_client/|integration_hub/metrics\.py")),
    ("audit + usage queues", re.compile(r"integration_hub/(audit|usage)\.py")),
    ("store calls on the event loop (aiosqlite)", re.compile(r"aiosqlite|sqlite3|integration_hub/store/")),
    ("vault (AES-GCM open, Secret)", re.compile(r"integration_hub/vault/|cryptography/|_rust\.abi3")),
    ("auth (token check)", re.compile(r"integration_hub/auth\.py")),
    ("policy engine", re.compile(r"integration_hub/policy/")),
    ("credential lookup + cache", re.compile(r"integration_hub/(credentials|cache)\.py")),
    (
        "protobuf (convert, serialize)",
        re.compile(r"google/protobuf/|_message\.|integration_hub/llm_convert\.py|upb"),
    ),
    (
        "JSON (orjson) + OpenAI wire",
        re.compile(r"orjson|integration_hub/http/openai_wire\.py|callers/openai/wire\.py"),
    ),
    (
        "aiohttp client (upstream call)",
        re.compile(r"aiohttp/(client|connector|streams|client_reqrep|client_proto|helpers)|callers/"),
    ),
    (
        "aiohttp server (HTTP in)",
        re.compile(r"aiohttp/(web|http_|_http_|base_protocol)|_http_parser|_http_writer|multidict|yarl"),
    ),
    ("gRPC (grpc.aio + core)", re.compile(r"grpc/|cygrpc|libgrpc")),
    ("hub request path (llm, dispatch, adapters)", re.compile(r"integration_hub/")),
    (
        "event loop + native code under it (uvloop, grpc cython, C callbacks)",
        re.compile(r"asyncio/|uvloop|loop\.c|libuv|_asynciomodule|core\.c"),
    ),
]
# Helper threads are one area each, whatever they run (with --gil: their Python time only).
THREAD_AREAS = {
    "aiosqlite connection thread": "store: aiosqlite thread (SQLite queries, commits)",
    "gRPC poller thread": "gRPC poller thread (grpc.aio completion queue)",
}
HUB_CODE = re.compile(r"^(integration_hub|callers)/")
# The frames every sample of the event loop sits under: not a cost of their own.
OUTER = re.compile(r"^integration_hub/(cli\.py|serve\.py:(run|serve|_run_on_fastest_loop))")


def record(
    pid: int, seconds: float, out: Path, *, fmt: str, native: bool = False, rate: int = 200, gil: bool = True
) -> str:
    cmd = [
        str(PY_SPY),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(rate),
        "--format",
        fmt,
        "-o",
        str(out),
    ]
    if native:
        cmd.append("--native")
    if gil:
        # Only the thread holding the GIL: Python's own CPU time, never a thread parked in a
        # C call (py-spy cannot tell the aiosqlite or gRPC poller threads waiting from working).
        cmd.append("--gil")
    if fmt == "raw":
        cmd.append("--threads")  # the first frame names the thread: the event loop vs helper threads
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)  # noqa: S603
    return (done.stdout + done.stderr).strip().splitlines()[-1] if (done.stdout + done.stderr).strip() else ""


def _frames(stack: str) -> list[tuple[str, str]]:
    """(file, function) for each frame, outermost first."""
    frames = []
    for raw in stack.split(";"):
        if raw.startswith(("thread (", "process ")):
            frames.append((raw.strip(), ""))
            continue
        m = _FRAME.match(raw.strip())
        if m:
            frames.append((_short(m.group("file")), m.group("func")))
        else:
            frames.append((raw.strip(), ""))
    return frames


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def load(raw: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((_frames(stack), int(count)))
    return stacks


def _thread_name(frame: str) -> str:
    # "thread (12345): Thread-1 (_connection_worker_thread)" -> what the thread does
    name = frame.split("):", 1)[-1].strip()
    known = {
        "_connection_worker_thread": "aiosqlite connection thread",
        "_poll_wrapper": "gRPC poller thread",
    }
    for marker, label in known.items():
        if marker in name:
            return label
    return "event loop (MainThread)" if name == "MainThread" else name


def area_of(frames: list[tuple[str, str]]) -> str:
    for file, func in reversed(frames):
        key = f"{file}:{func}"
        for area, pattern in AREAS:
            if pattern.search(key):
                return area
    return "other (interpreter, native)"


def summarize(raw: Path, top: int = 25) -> dict:
    stacks = load(raw)
    total = sum(n for _, n in stacks) or 1
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, n in stacks:
        thread = ""
        if frames and frames[0][0].startswith("thread ("):
            thread = _thread_name(frames[0][0])
            threads[thread] += n
            frames = frames[1:]
        if frames:
            file, func = frames[-1]
            self_counts[f"{file}:{func}"] += n
        seen = set()
        for file, func in frames:
            if HUB_CODE.match(file):
                key = f"{file}:{func}"
                if key not in seen and not OUTER.match(key):
                    seen.add(key)
                    incl[key] += n
        areas[THREAD_AREAS.get(thread) or area_of(frames)] += n
    return {
        "samples": total,
        "areas": [(k, v / total) for k, v in areas.most_common()],
        "threads": [(k, v / total) for k, v in threads.most_common()],
        "self": [(k, v / total) for k, v in self_counts.most_common(top)],
        "inclusive": [(k, v / total) for k, v in incl.most_common(top)],
    }


def markdown(
    summary: dict,
    title: str,
    us_per_request: float | None = None,
    threads: list[tuple[str, float]] | None = None,
    gil_us_per_request: float | None = None,
) -> str:
    """`us_per_request`: the worker's CPU per request (/proc); `threads`: (thread, µs per request)
    from /proc; `gil_us_per_request`: GIL-held time per request, which the sample shares divide."""
    scale = gil_us_per_request

    def cost(share: float) -> str:
        return f" | {share * scale:.0f}" if scale else ""

    head = " | µs/request" if scale else ""
    sep = " | ---" if scale else ""
    lines = [f"#### {title}", ""]
    facts = [f"{summary['samples']} py-spy samples (`--gil`: the thread holding the GIL)"]
    if us_per_request:
        facts.append(f"worker CPU per request {us_per_request:.0f} µs (/proc, all threads)")
    if gil_us_per_request:
        facts.append(f"GIL held per request ≈ {gil_us_per_request:.0f} µs (samples / rate / requests)")
    lines += ["; ".join(facts) + ".", ""]
    if threads:
        lines += [
            "| thread (/proc CPU time) | µs/request | share of the worker's CPU |",
            "| --- | --- | --- |",
        ]
        total = sum(us for _, us in threads) or 1.0
        lines += [f"| {name} | {us:.0f} | {us / total:.1%} |" for name, us in threads if us >= 0.5]
        lines.append("")
    lines += [f"| area, GIL-held time (innermost matching frame) | share{head} |", f"| --- | ---{sep} |"]
    lines += [f"| {k} | {v:.1%}{cost(v)} |" for k, v in summary["areas"]]
    lines += [
        "",
        f"| hub function (inclusive: with its callees) | share{head} |",
        f"| --- | ---{sep} |",
    ]
    lines += [f"| `{k}` | {v:.1%}{cost(v)} |" for k, v in summary["inclusive"]]
    lines += ["", f"| innermost frame (self) | share{head} |", f"| --- | ---{sep} |"]
    lines += [f"| `{k}` | {v:.1%}{cost(v)} |" for k, v in summary["self"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a1 = sub.add_parser("analyze")
    a1.add_argument("raw")
    a1.add_argument("--top", type=int, default=25)
    a1.add_argument("--gil-us-per-request", type=float, help="turns shares into µs per request")
    a = ap.parse_args()
    summary = summarize(Path(a.raw), a.top)
    print(markdown(summary, Path(a.raw).name, gil_us_per_request=a.gil_us_per_request))
    return 0


if __name__ == "__main__":
    sys.exit(main())
