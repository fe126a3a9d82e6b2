"""The hub's benchmark, end to end: see bench/README.md. Run it through bench/run.sh.

Sets up a throw-away hub (bench/hub.py), then measures against the shared fake upstream
(../shared/bench), beside the upstream itself (direct) and the peer gateways:
  (a) OpenAI-compatible chat, non-streaming   wrk via ../shared/bench/compare.py
  (b) streaming                               compare.py --stream (whole answers) and bench/ttft.py
  (c) gRPC Chat                               h2load with a framed ChatRequest (bench/grpc_body.py)
  (d) soak (--soak SECONDS)                   constant load; errors, worker RSS at start and end
  profile (--profile)                         py-spy on both workers under load (bench/pyspy.py)
and writes bench/RESULTS.md (and raw figures in bench/out/<run>/).
"""

# A benchmark tool: runs fixed local programs (wrk, h2load, py-spy, integration-hub) and
# opens only loopback http:// URLs it builds itself.

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import grpc_body  # noqa: E402
import h2load_run  # noqa: E402
import pyspy as hub_profile  # noqa: E402
import results  # noqa: E402
from hub import BenchHub, rss_kib  # noqa: E402

SHARED = Path(os.environ.get("HUB_BENCH_SHARED", REPO.parent / "shared" / "bench"))
COMPARE = SHARED / "compare.py"
PYTHON = sys.executable
CACHE = Path(os.environ.get("HUB_BENCH_CACHE", Path.home() / ".cache" / "hub-bench"))

DIRECT_JSON = "http://127.0.0.1:18080/v1/chat/completions"
DIRECT_SSE = "http://127.0.0.1:18081/v1/chat/completions"
LITELLM = (
    "http://127.0.0.1:4000/v1/chat/completions",
    ["Authorization: Bearer sk-bench-master-key-0123456789abcdef"],
)
PORTKEY = "http://127.0.0.1:8787/v1/chat/completions"
EXPECTED = "Hello! How can I help you today?"

TARGETS = {  # the numbers the lead asked for (hub with 2 workers)
    "openai_added_p50_ms": 0.5,
    "grpc_added_p50_ms": 1.0,
    "openai_rps_c32": 4000,
    "grpc_rps_c32": 2000,
    "x_portkey": 10,
    "x_litellm": 50,
    "ttft_added_ms": 0.5,
    "soak_rss_growth_pct": 5.0,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kw)  # noqa: S603


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


# --- the machine -----------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)  # noqa: S603
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    try:
        head = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
        commit = head + (" (with uncommitted changes)" if dirty else "")
    except (subprocess.CalledProcessError, OSError):
        commit = "?"
    litellm = CACHE / "litellm" / "bin" / "pip"
    return {
        "nproc": sh(["nproc"]).stdout.strip(),
        "uname": sh(["uname", "-a"]).stdout.strip(),
        "cpu": cpu,
        "memory_gib": f"{int(mem) / 1024 / 1024:.1f}",
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "commit": commit,
        "wrk": " ".join(version(["wrk", "--version"]).split()[:2]),
        "h2load": version(["h2load", "--version"]),
        "nginx": version(["nginx", "-v"]),
        "litellm": next(
            (
                line.split(":", 1)[1].strip()
                for line in (sh([str(litellm), "show", "litellm"], check=False).stdout.splitlines())
                if line.startswith("Version:")
            ),
            "?",
        )
        if litellm.exists()
        else "?",
        "portkey": next(
            (
                p.name.removeprefix("portkey-ai-gateway-").removesuffix(".tgz")
                for p in (CACHE / "portkey").glob("portkey-ai-gateway-*.tgz")
            ),
            "?",
        ),
    }


# --- preflight: every target answers what the fake upstream says ------------------------------


def post(url: str, body: dict, headers: list[str], timeout: float = 30) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310
    req.add_header("Content-Type", "application/json")
    for h in headers:
        name, _, value = h.partition(":")
        req.add_header(name.strip(), value.strip())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)


def chat_targets(hub: BenchHub, peers: bool, stream: bool) -> list[tuple[str, str, str, list[str]]]:
    auth = [f"Authorization: Bearer {hub.token}"]
    hub_url = f"{hub.http}/openai/v1/chat/completions"
    host = "18081" if stream else "18080"
    out = [
        ("direct", DIRECT_SSE if stream else DIRECT_JSON, "gpt-4o-mini", []),
        ("hub", hub_url, "stream/gpt-4o-mini" if stream else "main/gpt-4o-mini", auth),
    ]
    if peers:
        out.append(("litellm", LITELLM[0], "bench-model-stream" if stream else "bench-model", LITELLM[1]))
        out.append(
            (
                "portkey",
                PORTKEY,
                "gpt-4o-mini",
                [
                    "x-portkey-provider: openai",
                    f"x-portkey-custom-host: http://127.0.0.1:{host}/v1",
                    "Authorization: Bearer sk-fake",
                ],
            )
        )
    return out


def preflight(hub: BenchHub, peers: bool) -> list[str]:
    notes = []
    for stream in (False, True):
        for name, url, model, headers in chat_targets(hub, peers, stream):
            body: dict = {"model": model, "messages": [{"role": "user", "content": "Say hello."}]}
            if stream:
                body.update(stream=True, stream_options={"include_usage": True})
            status, text = post(url, body, headers)
            ok = status == 200 and (("Hello" in text and "[DONE]" in text) if stream else EXPECTED in text)
            kind = "stream" if stream else "json"
            notes.append(
                f"{name} ({kind}): HTTP {status}, {'answer OK' if ok else 'UNEXPECTED: ' + text[:160]!r}"
            )
            if not ok and name in ("hub", "direct"):
                raise RuntimeError(
                    f"preflight: {name} ({kind}) did not answer as expected: {status} {text[:300]}"
                )
    notes.append(grpc_body.check(hub.grpc_target, hub.token))
    return notes


# --- metrics deltas: the hub's own count of what it answered ---------------------------------


def delta(before: dict[str, float], after: dict[str, float], prefix: str, **labels: str) -> dict[str, float]:
    """Per-series increase of `prefix{...}` samples whose labels include `labels`."""
    out = {}
    for key, value in after.items():
        if not key.startswith(prefix + "{"):
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            d = value - before.get(key, 0.0)
            if d:
                out[key] = d
    return out


def code_of(series: str, label: str = "code") -> str:
    marker = f'{label}="'
    return series.split(marker, 1)[1].split('"', 1)[0] if marker in series else "?"


# --- (a)/(b): compare.py ----------------------------------------------------------------------


def compare(hub: BenchHub, a: argparse.Namespace, out: Path, stream: bool) -> dict:
    targets = [t for t in chat_targets(hub, a.peers, stream) if t[0] == "hub"]
    cmd = [
        PYTHON,
        str(COMPARE),
        "--seconds",
        str(a.seconds),
        "--rounds",
        str(a.rounds),
        "--conns",
        a.conns,
        "--json",
        str(out),
    ]
    if a.peers:
        cmd.append("--peers")
    else:
        cmd += ["--target", "direct", DIRECT_JSON, "gpt-4o-mini"]
    if stream:
        cmd.append("--stream")
    for name, url, model, headers in targets:
        cmd += ["--target", name, url, model, *headers]
    n_targets = 4 if a.peers else 2
    timeout = a.rounds * len(a.conns.split(",")) * n_targets * (a.seconds + 70) + 60
    log(
        f"compare.py{' --stream' if stream else ''}: {a.rounds} round(s) x {a.conns} conns x "
        f"{n_targets} targets"
    )
    before = hub.metrics()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, check=True)  # noqa: S603
    after = hub.metrics()
    table = json.loads(out.read_text())
    op = "stream_chat" if stream else "chat"
    calls = delta(before, after, "hub_provider_calls_total", operation=op)
    rows = {}
    for key, value in table.items():
        name, c = key.rsplit("@", 1)
        rounds = value["rounds"]
        rows[key] = {
            "target": name,
            "conns": int(c),
            "rps": value["rps"],
            "p50_ms": median([r["p50_ms"] for r in rounds]),
            "p99_ms": value["p99_ms"],
            "errors": value["errors"],
            "rps_rounds": [round(r["rps"]) for r in rounds],
        }
    return {
        "markdown": done.stdout,
        "rows": rows,
        "hub_provider_calls": {code_of(k, "status"): v for k, v in calls.items()},
    }


# --- (b): time to first token -----------------------------------------------------------------


def ttft(hub: BenchHub, a: argparse.Namespace) -> dict:
    targets = chat_targets(hub, a.peers, stream=True)
    runs: dict[str, list[dict]] = {}
    log(f"ttft.py: {a.rounds} round(s) x {a.conns} conns x {len(targets)} targets")
    for _ in range(a.rounds):
        for c in [int(x) for x in a.conns.split(",")]:
            for name, url, model, headers in targets:
                cmd = [
                    PYTHON,
                    str(BENCH / "ttft.py"),
                    url,
                    model,
                    "--conns",
                    str(c),
                    "--seconds",
                    str(a.seconds),
                ]
                for h in headers:
                    cmd += ["--header", h]
                res = json.loads(sh(cmd, timeout=a.seconds + 60).stdout)
                runs.setdefault(f"{name}@{c}", []).append(res)
                log(
                    f"  ttft {name} c={c}: {res['rps']:.0f} rps, ttft p50 {res['ttft_p50_ms']:.2f} ms, "
                    f"errors {res['errors']}"
                )
    rows = {}
    for key, rs in runs.items():
        name, c = key.rsplit("@", 1)
        rows[key] = {
            "target": name,
            "conns": int(c),
            "rps": median([r["rps"] for r in rs]),
            "ttfb_p50_ms": median([r["ttfb_p50_ms"] for r in rs]),
            "ttft_p50_ms": median([r["ttft_p50_ms"] for r in rs]),
            "ttft_p99_ms": median([r["ttft_p99_ms"] for r in rs]),
            "total_p50_ms": median([r["total_p50_ms"] for r in rs]),
            "errors": sum(r["errors"] for r in rs),
        }
    return {"rows": rows}


# --- (c): gRPC Chat with h2load ---------------------------------------------------------------


def grpc_bench(hub: BenchHub, a: argparse.Namespace, out_dir: Path) -> dict:
    by_name = out_dir / "chat-by-name.grpc"
    by_id = out_dir / "chat-by-id.grpc"
    by_name.write_bytes(grpc_body.framed(grpc_body.chat_request("main")))
    by_id.write_bytes(grpc_body.framed(grpc_body.chat_request(hub.credential_ids["main"])))
    direct_body = out_dir / "chat.json"
    direct_body.write_text(
        json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]})
    )
    grpc_url = f"http://{hub.grpc_target}{grpc_body.CHAT_PATH}"
    auth = f"authorization: Bearer {hub.token}"
    targets = [
        ("direct (h2load --h1)", DIRECT_JSON, str(direct_body), ["content-type: application/json"], True),
        ("hub gRPC Chat", grpc_url, str(by_name), [*h2load_run.GRPC_HEADERS, auth], False),
    ]
    if a.grpc_by_id:
        targets.append(
            (
                "hub gRPC Chat (credential by id)",
                grpc_url,
                str(by_id),
                [*h2load_run.GRPC_HEADERS, auth],
                False,
            )
        )
    runs: dict[str, list[dict]] = {}
    log(
        f"h2load: {a.rounds} round(s) x {a.conns} conns x {len(targets)} targets, {a.grpc_streams} "
        f"stream(s)/conn"
    )
    before = hub.metrics()
    sent_to_hub = 0
    for _ in range(a.rounds):
        for c in [int(x) for x in a.conns.split(",")]:
            for name, url, body, headers, h1 in targets:
                res = h2load_run.run(
                    url, body, headers, c, a.seconds, streams=1 if h1 else a.grpc_streams, h1=h1
                )
                runs.setdefault(f"{name}@{c}", []).append(res)
                if not h1:
                    sent_to_hub += res["requests"]
                log(
                    f"  h2load {name} c={c}: {res['rps']:.0f} rps p50 {res['p50_ms']:.2f} ms "
                    f"succeeded {res['succeeded']}/{res['requests']}"
                )
    after = hub.metrics()
    codes = {
        code_of(k): v
        for k, v in delta(before, after, "hub_requests_total", transport="grpc", method="Chat").items()
    }
    rows = {}
    for key, rs in runs.items():
        name, c = key.rsplit("@", 1)
        med = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
        rows[key] = {
            "target": name,
            "conns": int(c),
            "rps": med["rps"],
            "p50_ms": median([r["p50_ms"] for r in rs]),
            "p99_ms": med["p99_ms"],
            "requests": sum(r["requests"] for r in rs),
            "errors": sum(r["failed"] + r["errored"] + r["timeout"] + r["non_2xx"] for r in rs),
            "rps_rounds": [round(r["rps"]) for r in rs],
        }
    ok = codes.get("OK", 0)
    # A timed run ends with up to `conns` calls in flight: the client hangs up on them and the
    # hub counts them CANCELLED. More than that, or any other code, is a failure.
    in_flight_at_ends = (
        a.rounds * sum(int(c) * a.grpc_streams for c in a.conns.split(",")) * (len(targets) - 1)
    )
    cancelled = codes.get("CANCELLED", 0)
    not_ok = {k: v for k, v in codes.items() if k not in ("OK", "CANCELLED")}
    check = (
        f"grpc-status: the hub counted {ok:.0f} Chat calls OK, {sum(not_ok.values()):.0f} failed "
        f"{not_ok or ''}"
        f" and {cancelled:.0f} CANCELLED (at most {in_flight_at_ends} expected: calls in flight "
        f"when a timed run "
        f"stops); h2load completed {sent_to_hub} requests"
    )
    consistent = (
        not not_ok and cancelled <= in_flight_at_ends and abs(ok - sent_to_hub) <= max(5, in_flight_at_ends)
    )
    return {"rows": rows, "grpc_codes": codes, "grpc_check": check, "grpc_ok": consistent}


# --- profile ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (comm, CPU seconds) for every thread of a process."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return out


def python_thread_names(pid: int) -> dict[int, str]:
    """tid -> what the thread is, from `py-spy dump` (Python threads all have comm "python")."""
    names = {}
    done = sh([str(hub_profile.PY_SPY), "dump", "--pid", str(pid)], check=False, timeout=60)
    for line in done.stdout.splitlines():
        if line.startswith("Thread "):
            tid = int(line.split()[1])
            label = line.split('"', 1)[1].rstrip('"') if '"' in line else "?"
            names[tid] = hub_profile._thread_name(f"thread ({tid}): {label}")
    return names


def thread_table(pid: int, before: dict, after: dict, names: dict[int, str], requests: float) -> list:
    """(thread group, CPU µs per request), largest first; native threads grouped by name."""
    groups: dict[str, float] = {}
    for tid, (comm, seconds) in after.items():
        spent = seconds - before.get(tid, (comm, 0.0))[1]
        label = names.get(tid) or {"event_engine": "gRPC event_engine threads"}.get(comm, f"native: {comm}")
        groups[label] = groups.get(label, 0.0) + spent
    return sorted(((k, v / requests * 1e6) for k, v in groups.items()), key=lambda kv: -kv[1])


def profile(hub: BenchHub, a: argparse.Namespace, out_dir: Path) -> dict:
    results = {}
    pids = hub.worker_pids()
    wrk_body = {"model": "main/gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
    for scenario in ("openai", "grpc"):
        load_seconds = a.profile_seconds + 6
        if scenario == "openai":
            lua = out_dir / "profile-openai.lua"
            lua.write_text(
                f"wrk.method='POST'\nwrk.body='{json.dumps(wrk_body)}'\n"
                f"wrk.headers['Content-Type']='application/json'\n"
                f"wrk.headers['Authorization']='Bearer {hub.token}'\n"
            )
            load = subprocess.Popen(  # noqa: S603
                [  # noqa: S607
                    "wrk",
                    "-t1",
                    "-c32",
                    f"-d{load_seconds}s",
                    "-s",
                    str(lua),
                    f"{hub.http}/openai/v1/chat/completions",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        else:
            body = out_dir / "profile.grpc"
            body.write_bytes(grpc_body.framed(grpc_body.chat_request("main")))
            load = subprocess.Popen(  # noqa: S603
                [  # noqa: S607
                    "h2load",
                    "-c32",
                    "-m1",
                    "-t1",
                    f"-D{load_seconds}",
                    "-d",
                    str(body),
                    *[
                        arg
                        for h in [*h2load_run.GRPC_HEADERS, f"authorization: Bearer {hub.token}"]
                        for arg in ("-H", h)
                    ],
                    f"http://{hub.grpc_target}{grpc_body.CHAT_PATH}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        time.sleep(2)
        svg = BENCH / f"profile-{scenario}.svg"
        raw = out_dir / f"profile-{scenario}.txt"
        log(
            f"py-spy {scenario}: worker {pids[0]} -> {svg.name}, worker {pids[1]} -> {raw.name} "
            f"({a.profile_seconds} s)"
        )
        names = python_thread_names(pids[1])
        m0 = hub.metrics()
        cpu0 = {p: cpu_seconds(p) for p in pids}
        threads0 = thread_cpu(pids[1])
        calls0 = hub.worker_calls(pids[1])
        t0 = time.monotonic()
        msgs: dict[str, str] = {}

        def spy(pid: int, path: Path, kind: str, msgs: dict[str, str] = msgs) -> None:
            msgs[kind] = hub_profile.record(pid, a.profile_seconds, path, fmt=kind, rate=a.profile_rate)

        spies = [
            threading.Thread(target=spy, args=(pid, path, kind))
            for pid, path, kind in ((pids[0], svg, "flamegraph"), (pids[1], raw, "raw"))
        ]
        for th in spies:
            th.start()
        for th in spies:
            th.join()
        elapsed = time.monotonic() - t0
        cpu1 = {p: cpu_seconds(p) for p in pids}
        threads1 = thread_cpu(pids[1])
        calls1 = hub.worker_calls(pids[1])
        m1 = hub.metrics()
        load.wait(timeout=load_seconds + 30)
        served = sum(v for k, v in delta(m0, m1, "hub_provider_calls_total", operation="chat").items())
        cpu = sum(cpu1[p] - cpu0[p] for p in pids)
        us = cpu / served * 1e6 if served else None
        mine = calls1 - calls0
        summary = hub_profile.summarize(raw) if raw.exists() else None
        if summary and mine:
            threads = thread_table(pids[1], threads0, threads1, names, mine)
            worker_us = sum(v for _, v in threads)
            gil_us = summary["samples"] / a.profile_rate / mine * 1e6
            md = hub_profile.markdown(
                summary,
                f"{scenario}: worker {pids[1]}, {a.profile_seconds} s under c=32, {mine:.0f} requests",
                worker_us,
                threads,
                gil_us,
            )
        else:
            md = f"(py-spy failed or no requests: {msgs})\n"
        (BENCH / f"profile-{scenario}.md").write_text(md)
        results[scenario] = {
            "markdown": md,
            "requests": served,
            "worker_requests": mine,
            "rps": served / elapsed,
            "cpu_seconds": cpu,
            "us_per_request": us,
            "py_spy": msgs,
            "svg": str(svg.relative_to(REPO)),
            "raw": str(raw.relative_to(REPO)),
        }
        log(f"  {scenario}: {served / elapsed:.0f} rps while profiled, {us or 0:.0f} µs CPU per request")
    return results


# --- (d): soak ------------------------------------------------------------------------------------


def soak(hub: BenchHub, a: argparse.Namespace, out_dir: Path) -> dict:
    seconds = a.soak
    log(f"soak: {seconds} s at c=32 ({a.soak_target})")
    pids = hub.worker_pids()
    samples: list[tuple[float, dict[int, int | None]]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            samples.append((time.monotonic() - t0, {p: rss_kib(p) for p in pids}))
            stop.wait(a.soak_sample_seconds)
        samples.append((time.monotonic() - t0, {p: rss_kib(p) for p in pids}))

    before = hub.metrics()
    db_before = sum(p.stat().st_size for p in hub.dir.glob("hub.db*"))
    sampler = threading.Thread(target=sample)
    sampler.start()
    procs = {}
    http_conns = 32 if a.soak_target == "openai" else 0 if a.soak_target == "grpc" else 16
    grpc_conns = 32 - http_conns
    if http_conns:
        procs["openai"] = subprocess.Popen(  # noqa: S603
            [
                PYTHON,
                str(COMPARE),
                "--seconds",
                str(seconds),
                "--rounds",
                "1",
                "--conns",
                str(http_conns),
                "--json",
                str(out_dir / "soak-openai.json"),
                "--target",
                "hub",
                f"{hub.http}/openai/v1/chat/completions",
                "main/gpt-4o-mini",
                f"Authorization: Bearer {hub.token}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
    grpc_result: dict = {}
    if grpc_conns:
        body = out_dir / "soak.grpc"
        body.write_bytes(grpc_body.framed(grpc_body.chat_request("main")))

        def run_h2load() -> None:
            grpc_result.update(
                h2load_run.run(
                    f"http://{hub.grpc_target}{grpc_body.CHAT_PATH}",
                    str(body),
                    [*h2load_run.GRPC_HEADERS, f"authorization: Bearer {hub.token}"],
                    grpc_conns,
                    seconds,
                )
            )

        th = threading.Thread(target=run_h2load)
        th.start()
        th.join(seconds + 120)
    if "openai" in procs:
        procs["openai"].wait(timeout=seconds + 120)
    stop.set()
    sampler.join()
    after = hub.metrics()
    db_after = sum(p.stat().st_size for p in hub.dir.glob("hub.db*"))
    result: dict = {
        "seconds": seconds,
        "target": a.soak_target,
        "http_conns": http_conns,
        "grpc_conns": grpc_conns,
    }
    errors = 0
    if http_conns:
        row = json.loads((out_dir / "soak-openai.json").read_text())[f"hub@{http_conns}"]
        result["openai"] = {k: row[k] for k in ("rps", "p50_ms", "p99_ms", "errors")}
        errors += max(0, row["errors"]) + (1 if row["errors"] < 0 else 0)
    if grpc_conns:
        result["grpc"] = {
            k: grpc_result.get(k)
            for k in (
                "rps",
                "p50_ms",
                "p99_ms",
                "requests",
                "succeeded",
                "failed",
                "errored",
                "timeout",
                "non_2xx",
            )
        }
        errors += sum(grpc_result.get(k, 0) or 0 for k in ("failed", "errored", "timeout", "non_2xx"))
    calls = delta(before, after, "hub_provider_calls_total", operation="chat")
    provider_not_ok = {code_of(k, "status"): v for k, v in calls.items() if 'status="OK"' not in k}
    grpc_codes = {
        code_of(k): v
        for k, v in delta(before, after, "hub_requests_total", transport="grpc", method="Chat").items()
    }
    # HTTP failures reach wrk as non-2xx (counted above); gRPC failures are HTTP 200 with a
    # grpc-status, seen only by the hub's own count. CANCELLED up to the connections open
    # when the timed run stops is the end of the run, not a failure.
    grpc_failed = {k: v for k, v in grpc_codes.items() if k not in ("OK", "CANCELLED")}
    cancelled = provider_not_ok.get("CANCELLED", 0) + grpc_codes.get("CANCELLED", 0)
    result["hub_provider_calls_not_ok"] = provider_not_ok
    result["hub_grpc_not_ok"] = {k: v for k, v in grpc_codes.items() if k != "OK"}
    result["hub_ok_calls"] = sum(v for k, v in calls.items() if 'status="OK"' in k)
    result["cancelled_at_end"] = cancelled
    errors += int(sum(grpc_failed.values()))
    if cancelled > 2 * 32:
        errors += int(cancelled - 2 * 32)
    restarted = [p for p in pids if rss_kib(p) is None]
    if restarted or sorted(hub.worker_pids()) != sorted(pids):
        result["worker_restarts"] = f"workers changed: {pids} -> {hub.worker_pids()}"
        errors += 1
    result["errors"] = errors
    with open(out_dir / "soak-rss.csv", "w") as f:
        f.write("seconds," + ",".join(f"rss_kib_{p}" for p in pids) + "\n")
        for t, rss in samples:
            f.write(f"{t:.1f}," + ",".join(str(rss.get(p) or "") for p in pids) + "\n")
    per_worker = {}
    for p in pids:
        series = [(t, r[p]) for t, r in samples if r.get(p)]
        if len(series) < 2:
            continue
        start, end = series[0][1], series[-1][1]
        after_60 = next((v for t, v in series if t >= 60), start)
        per_worker[p] = {
            "start_mib": start / 1024,
            "end_mib": end / 1024,
            "max_mib": max(v for _, v in series) / 1024,
            "growth_pct": (end - start) / start * 100,
            "growth_after_60s_pct": (end - after_60) / after_60 * 100,
        }
    result["rss"] = per_worker
    total_start = sum(w["start_mib"] for w in per_worker.values())
    total_end = sum(w["end_mib"] for w in per_worker.values())
    result["rss_growth_pct"] = (total_end - total_start) / total_start * 100 if total_start else float("nan")
    result["db_growth_mib"] = (db_after - db_before) / 2**20
    log(
        f"  soak: errors {errors}, RSS {total_start:.1f} -> {total_end:.1f} MiB "
        f"({result['rss_growth_pct']:+.2f} %)"
    )
    return result


# --- the report -----------------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:,.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "**FAIL**")


def report(res: dict, a: argparse.Namespace) -> str:
    m = res["machine"]
    lines = [
        "# integration-hub benchmark results",
        "",
        "Generated by `bench/run.sh` (bench/run.py); every figure below is from this one run. "
        + ("**Preliminary**: " + a.note if a.note else ""),
        "",
        f"- date: {res['date']}",
        f"- command: `{res['command']}`",
        f"- machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['memory_gib']} GiB; load average at start "
        f"{' '.join(m['loadavg_at_start'])}",
        f"- `uname -a`: {m['uname']}",
        f"- hub: commit {m['commit']}, `integration-hub serve --workers {a.workers}`, SQLite store, "
        f"in-process cache, "
        f"INFO logs, metrics multiprocess, default policies; Python {m['python']}",
        f"- load: {m['wrk']}; {m['h2load']}; fake upstream {m['nginx']} (1 worker); LiteLLM "
        f"{m['litellm']} (2 workers); Portkey gateway {m['portkey']}",
        f"- {a.rounds} round(s) of {a.seconds} s per target and concurrency, interleaved; median round shown",
        "",
        "All load generators, the fake upstream, the peers and the hub share the same "
        f"{m['nproc']} CPUs: a client's CPU is taken from the server it measures.",
        "",
    ]
    s = res["summary"]
    lines += [
        "## Against the targets",
        "",
        "| check | target | measured | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for row in s:
        lines.append(f"| {row[0]} | {row[1]} | {row[2]} | {verdict(row[3])} |")
    lines.append("")
    if "openai" in res:
        r = res["openai"]
        lines += [
            "## (a) OpenAI-compatible chat, non-streaming (wrk, ../shared/bench/compare.py)",
            "",
            "| target | conns | RPS | p50 ms | p99 ms | errors | RPS per round |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {v['target']} | {v['conns']} | {fmt(v['rps'], 0)} | {fmt(v['p50_ms'])} | "
            f"{fmt(v['p99_ms'])} | "
            f"{v['errors']} | {v['rps_rounds']} |"
            for v in r["rows"].values()
        ]
        lines += [
            "",
            f"The hub's own count of its provider calls in this part: {r['hub_provider_calls']}.",
            "",
        ]
    if "stream" in res:
        r = res["stream"]
        lines += [
            "## (b) Streaming",
            "",
            "Whole streamed answers (wrk via compare.py --stream):",
            "",
            "| target | conns | RPS | p50 ms | p99 ms | errors |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {v['target']} | {v['conns']} | {fmt(v['rps'], 0)} | {fmt(v['p50_ms'])} | "
            f"{fmt(v['p99_ms'])} | "
            f"{v['errors']} |"
            for v in r["rows"].values()
        ]
        lines += ["", f"Hub provider calls: {r['hub_provider_calls']}.", ""]
    if "ttft" in res:
        lines += [
            "Time to first token (bench/ttft.py: first SSE event with non-empty delta.content; "
            "ttfb = first byte of the answer):",
            "",
            "| target | conns | RPS | ttfb p50 ms | ttft p50 ms | ttft p99 ms | total p50 ms | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {v['target']} | {v['conns']} | {fmt(v['rps'], 0)} | {fmt(v['ttfb_p50_ms'])} | "
            f"{fmt(v['ttft_p50_ms'])} | "
            f"{fmt(v['ttft_p99_ms'])} | {fmt(v['total_p50_ms'])} | {v['errors']} |"
            for v in res["ttft"]["rows"].values()
        ]
        lines += [
            "",
            "Portkey 1.15 cannot stream here (../shared/bench/README.md): its streaming rows are errors.",
            "",
        ]
    if "grpc" in res:
        r = res["grpc"]
        lines += [
            f"## (c) gRPC Chat (h2load, {a.grpc_streams} stream(s) per connection)",
            "",
            "| target | conns | RPS | p50 ms | p99 ms | errors | RPS per round |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {v['target']} | {v['conns']} | {fmt(v['rps'], 0)} | {fmt(v['p50_ms'])} | "
            f"{fmt(v['p99_ms'])} | "
            f"{v['errors']} | {v['rps_rounds']} |"
            for v in r["rows"].values()
        ]
        lines += [
            "",
            r["grpc_check"] + (" (consistent)" if r["grpc_ok"] else " (**INCONSISTENT**)"),
            "",
            "`direct (h2load --h1)` is the fake upstream's JSON chat over HTTP/1.1 with the same client, the "
            "baseline for the gRPC added latency.",
            "",
        ]
    if "profile" in res:
        lines += ["## Profile (py-spy, both workers under c=32)", ""]
        for p in res["profile"].values():
            lines += [
                f"Flame graph: `{p['svg']}`; collapsed stacks: `{p['raw']}`; "
                f"{fmt(p['rps'], 0)} req/s while profiled (py-spy slows what it samples).",
                "",
                p["markdown"],
            ]
    if "soak" in res:
        r = res["soak"]
        lines += [
            f"## (d) Soak: {r['seconds']} s at c=32 ({r['target']}: {r['http_conns']} HTTP + "
            f"{r['grpc_conns']} gRPC)",
            "",
        ]
        if "openai" in r:
            o = r["openai"]
            lines.append(
                f"- OpenAI endpoint: {fmt(o['rps'], 0)} req/s, p50 {fmt(o['p50_ms'])} ms, p99 "
                f"{fmt(o['p99_ms'])} ms, wrk errors {o['errors']}"
            )
        if "grpc" in r:
            g = r["grpc"]
            lines.append(
                f"- gRPC Chat: {fmt(g['rps'], 0)} req/s, p50 {fmt(g['p50_ms'])} ms, p99 "
                f"{fmt(g['p99_ms'])} ms, "
                f"{g['succeeded']}/{g['requests']} HTTP-succeeded, failed {g['failed']}, errored "
                f"{g['errored']}"
            )
        lines.append(
            f"- hub-side: {r['hub_ok_calls']:.0f} provider calls OK; provider calls not OK: "
            f"{r['hub_provider_calls_not_ok'] or 'none'}; gRPC Chat not OK: {r['hub_grpc_not_ok'] or 'none'} "
            f"(CANCELLED at the end of the run: in flight when the clients stopped)"
            + (f"; {r['worker_restarts']}" if "worker_restarts" in r else "")
        )
        lines.append(
            f"- errors in all: {r['errors']}; SQLite store grew {r['db_growth_mib']:.1f} MiB (usage "
            f"+ audit rows)"
        )
        lines += [
            "",
            "| worker pid | RSS start MiB | RSS end MiB | max MiB | growth | growth after the first 60 s |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {p} | {w['start_mib']:.1f} | {w['end_mib']:.1f} | {w['max_mib']:.1f} | "
            f"{w['growth_pct']:+.2f} % | "
            f"{w['growth_after_60s_pct']:+.2f} % |"
            for p, w in r["rss"].items()
        ]
        lines += [
            "",
            f"Samples every {a.soak_sample_seconds:g} s: `bench/out/{res['run_id']}/soak-rss.csv`.",
            "",
        ]
    lines += ["## Preflight", ""] + [f"- {n}" for n in res.get("preflight", [])] + [""]
    return "\n".join(lines)


def summary(res: dict) -> list[tuple[str, str, str, bool | None]]:
    out: list[tuple[str, str, str, bool | None]] = []
    T = TARGETS
    o = res.get("openai", {}).get("rows", {})
    if "hub@1" in o and "direct@1" in o:
        added = o["hub@1"]["p50_ms"] - o["direct@1"]["p50_ms"]
        out.append(
            (
                "OpenAI endpoint: added p50 at c=1 (hub - direct)",
                f"<= {T['openai_added_p50_ms']} ms",
                f"{fmt(added)} ms ({fmt(o['hub@1']['p50_ms'])} - {fmt(o['direct@1']['p50_ms'])})",
                added <= T["openai_added_p50_ms"],
            )
        )
    if "hub@32" in o:
        rps = o["hub@32"]["rps"]
        out.append(
            (
                "OpenAI endpoint: RPS at c=32",
                f">= {T['openai_rps_c32']:,}",
                fmt(rps, 0),
                rps >= T["openai_rps_c32"],
            )
        )
        for peer, key in (("portkey", "x_portkey"), ("litellm", "x_litellm")):
            if f"{peer}@32" in o and o[f"{peer}@32"]["rps"] > 0:
                x = rps / o[f"{peer}@32"]["rps"]
                out.append(
                    (
                        f"OpenAI endpoint: RPS at c=32 vs {peer}",
                        f">= {T[key]}x",
                        f"{x:.1f}x ({fmt(rps, 0)} / {fmt(o[f'{peer}@32']['rps'], 0)})",
                        x >= T[key],
                    )
                )
    g = res.get("grpc", {}).get("rows", {})
    if "hub gRPC Chat@1" in g and "direct (h2load --h1)@1" in g:
        added = g["hub gRPC Chat@1"]["p50_ms"] - g["direct (h2load --h1)@1"]["p50_ms"]
        out.append(
            (
                "gRPC Chat: added p50 at c=1 (hub - direct, both h2load)",
                f"<= {T['grpc_added_p50_ms']} ms",
                f"{fmt(added)} ms ({fmt(g['hub gRPC Chat@1']['p50_ms'])} - "
                f"{fmt(g['direct (h2load --h1)@1']['p50_ms'])})",
                added <= T["grpc_added_p50_ms"],
            )
        )
    if "hub gRPC Chat@32" in g:
        rps = g["hub gRPC Chat@32"]["rps"]
        out.append(
            ("gRPC Chat: RPS at c=32", f">= {T['grpc_rps_c32']:,}", fmt(rps, 0), rps >= T["grpc_rps_c32"])
        )
        for peer, key in (("portkey", "x_portkey"), ("litellm", "x_litellm")):
            if f"{peer}@32" in o and o[f"{peer}@32"]["rps"] > 0:
                x = rps / o[f"{peer}@32"]["rps"]
                out.append(
                    (
                        f"gRPC Chat: RPS at c=32 vs {peer} (its OpenAI endpoint)",
                        f">= {T[key]}x",
                        f"{x:.1f}x",
                        x >= T[key],
                    )
                )
    if "grpc" in res:
        out.append(
            (
                "gRPC Chat: every call grpc-status 0 (hub metrics vs h2load count)",
                "all OK",
                res["grpc"]["grpc_check"].split(";")[0].replace("grpc-status: ", ""),
                res["grpc"]["grpc_ok"],
            )
        )
    t = res.get("ttft", {}).get("rows", {})
    if "hub@1" in t and "direct@1" in t:
        added = t["hub@1"]["ttft_p50_ms"] - t["direct@1"]["ttft_p50_ms"]
        out.append(
            (
                "Streaming: added TTFT p50 at c=1 (hub - direct)",
                f"<= {T['ttft_added_ms']} ms",
                f"{fmt(added)} ms ({fmt(t['hub@1']['ttft_p50_ms'])} - {fmt(t['direct@1']['ttft_p50_ms'])})",
                added <= T["ttft_added_ms"],
            )
        )
    if "soak" in res:
        r = res["soak"]
        out.append((f"Soak {r['seconds']} s at c=32: errors", "0", str(r["errors"]), r["errors"] == 0))
        out.append(
            (
                f"Soak {r['seconds']} s at c=32: worker RSS growth (sum, start to end)",
                f"< {T['soak_rss_growth_pct']} %",
                f"{r['rss_growth_pct']:+.2f} %",
                r["rss_growth_pct"] < T["soak_rss_growth_pct"],
            )
        )
    return out


# --- main -------------------------------------------------------------------------------------------


def start_support(peers: bool) -> list[str]:
    """The fake upstream and (optionally) the peers; returns what we started, to stop it at the end."""
    started = []
    if not pid_alive(Path("/tmp/hub-bench-upstream/nginx.pid")):  # noqa: S108
        started.append("upstream")
    sh(["bash", str(SHARED / "fake-upstream.sh"), "start"], timeout=300)
    if peers:
        if not (pid_alive(CACHE / "litellm.pid") and pid_alive(CACHE / "portkey.pid")):
            started.append("peers")
        log("peers: starting LiteLLM and Portkey (../shared/bench/peers.sh start; up to 3 minutes)")
        sh(["bash", str(SHARED / "peers.sh"), "start"], timeout=900)
    return started


def stop_support(started: list[str]) -> None:
    if "peers" in started:
        sh(["bash", str(SHARED / "peers.sh"), "stop"], check=False)
    if "upstream" in started:
        sh(["bash", str(SHARED / "fake-upstream.sh"), "stop"], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5, help="per target, concurrency and round")
    ap.add_argument("--conns", default="1,32")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-peers", dest="peers", action="store_false")
    ap.add_argument("--no-openai", dest="openai", action="store_false")
    ap.add_argument("--no-stream", dest="stream", action="store_false")
    ap.add_argument("--no-grpc", dest="grpc", action="store_false")
    ap.add_argument(
        "--no-grpc-by-id",
        dest="grpc_by_id",
        action="store_false",
        help="skip the extra gRPC row naming the credential by id instead of by name",
    )
    ap.add_argument(
        "--grpc-streams", type=int, default=1, help="h2load -m: concurrent streams per connection"
    )
    ap.add_argument(
        "--soak",
        type=int,
        nargs="?",
        const=600,
        default=0,
        metavar="SECONDS",
        help="soak at c=32 for SECONDS (600 when given alone)",
    )
    ap.add_argument("--soak-target", choices=["openai", "grpc", "both"], default="both")
    ap.add_argument("--soak-sample-seconds", type=float, default=5.0)
    ap.add_argument(
        "--soak-only", action="store_true", help="only the soak (implies --no-openai --no-stream --no-grpc)"
    )
    ap.add_argument("--profile", action="store_true", help="py-spy both workers under load (needs py-spy)")
    ap.add_argument("--profile-seconds", type=int, default=20)
    ap.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--grpc-port", type=int, default=19004)
    ap.add_argument("--http-port", type=int, default=19005)
    ap.add_argument("--results", default=str(BENCH / "RESULTS.md"))
    ap.add_argument("--note", default="", help="a line for the top of RESULTS.md (e.g. 'busy machine')")
    a = ap.parse_args()
    if a.soak_only:
        a.openai = a.stream = a.grpc = False
        a.soak = a.soak or 600
    if a.workers < 2 and a.profile:
        ap.error("--profile needs 2 workers (one SVG, one collapsed-stack file)")

    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = BENCH / "out" / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict = {
        "run_id": run_id,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": os.environ.get("HUB_BENCH_COMMAND") or " ".join(shlex.quote(x) for x in sys.argv),
        "machine": machine(),
    }
    started = start_support(a.peers and (a.openai or a.stream))
    hub = BenchHub(workers=a.workers, grpc_port=a.grpc_port, http_port=a.http_port)
    try:
        log(f"hub: starting {a.workers} workers in {hub.dir}")
        hub.start()
        log(f"hub: workers {hub.worker_pids()}, HTTP {hub.http}, gRPC {hub.grpc_target}")
        res["preflight"] = preflight(hub, a.peers and (a.openai or a.stream))
        for note in res["preflight"]:
            log(f"  preflight: {note}")
        warm(hub, out_dir)
        if a.openai:
            res["openai"] = compare(hub, a, out_dir / "openai.json", stream=False)
        if a.stream:
            res["stream"] = compare(hub, a, out_dir / "stream.json", stream=True)
            res["ttft"] = ttft(hub, a)
        if a.grpc:
            res["grpc"] = grpc_bench(hub, a, out_dir)
        if a.profile:
            res["profile"] = profile(hub, a, out_dir)
        if a.soak:
            res["soak"] = soak(hub, a, out_dir)
    finally:
        hub.stop()
        (out_dir / "hub.log.tail").write_text(
            "\n".join(hub.log_file.read_text(errors="replace").splitlines()[-200:])
        )
        stop_support(started)
    res["summary"] = summary(res)
    (out_dir / "results.json").write_text(json.dumps(res, indent=2, default=str))
    text = report(res, a)
    (out_dir / "RESULTS.md").write_text(text)
    results.write_section(Path(a.results), "call-path", text, first=True)
    print(text)
    log(f"wrote {a.results} and {out_dir.relative_to(REPO)}/")
    return 0


def warm(hub: BenchHub, out_dir: Path) -> None:
    """Connection pools, caches and the interpreter's own warm-up, before anything is timed."""
    lua = out_dir / "warm.lua"
    for model in ("main/gpt-4o-mini", "stream/gpt-4o-mini"):
        body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}]}
        if model.startswith("stream"):
            body["stream"] = True
        lua.write_text(
            f"wrk.method='POST'\nwrk.body='{json.dumps(body)}'\nwrk.headers['Content-Type']='application/json'\n"
            f"wrk.headers['Authorization']='Bearer {hub.token}'\n"
        )
        sh(
            ["wrk", "-t1", "-c32", "-d3s", "-s", str(lua), f"{hub.http}/openai/v1/chat/completions"],
            timeout=60,
        )
    body_file = out_dir / "warm.grpc"
    body_file.write_bytes(grpc_body.framed(grpc_body.chat_request("main")))
    h2load_run.run(
        f"http://{hub.grpc_target}{grpc_body.CHAT_PATH}",
        str(body_file),
        [*h2load_run.GRPC_HEADERS, f"authorization: Bearer {hub.token}"],
        32,
        3,
        keep_log=False,
    )


if __name__ == "__main__":
    sys.exit(main())
