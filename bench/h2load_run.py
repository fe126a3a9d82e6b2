"""h2load, bounded in time, with p50/p99 from its per-request log.

h2load prints min/mean/max only; its --log-file has one line per request
(start µs, HTTP status, µs to the end of the response), from which the
percentiles are taken. HTTP status only: a gRPC failure is HTTP 200 too, so the
caller checks grpc-status separately (bench/run.py compares the hub's own
hub_requests_total{code} with the count h2load reports).
"""

# A benchmark tool: runs fixed local programs (wrk, h2load, py-spy, integration-hub) and
# opens only loopback http:// URLs it builds itself.

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def run(
    url: str,
    body_file: str,
    headers: list[str],
    conns: int,
    seconds: float,
    *,
    streams: int = 1,
    h1: bool = False,
    keep_log: bool = True,
) -> dict:
    """One h2load run of `seconds` at `conns` connections x `streams` streams each."""
    with tempfile.NamedTemporaryFile(suffix=".h2load.log", delete=False) as f:
        log_path = Path(f.name)
    cmd = ["h2load", f"-c{conns}", f"-m{streams}", "-t1", f"-D{seconds:g}", "-d", body_file]
    if keep_log:
        cmd.append(f"--log-file={log_path}")
    if h1:
        cmd.append("--h1")
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)  # noqa: S603
    text = out.stdout
    result: dict = {
        "rps": 0.0,
        "requests": 0,
        "succeeded": 0,
        "failed": 0,
        "errored": 0,
        "timeout": 0,
        "non_2xx": 0,
        "p50_ms": float("nan"),
        "p99_ms": float("nan"),
        "mean_ms": float("nan"),
    }
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    if m is None:
        result["note"] = (out.stderr or text).strip()[-300:]
        result["errored"] = -1
        log_path.unlink(missing_ok=True)
        return result
    result["rps"] = float(m.group(2))
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    if m:
        _, _, done, ok, failed, errored, timeout = (int(x) for x in m.groups())
        result.update(requests=done, succeeded=ok, failed=failed, errored=errored, timeout=timeout)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        result["non_2xx"] = sum(int(x) for x in m.groups()[1:])
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        result["mean_ms"] = _ms(m.group(3))
    if keep_log and log_path.exists():
        latencies = []
        for line in log_path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1].startswith("2"):
                latencies.append(int(parts[2]) / 1000)
        latencies.sort()
        result["p50_ms"] = percentile(latencies, 50)
        result["p99_ms"] = percentile(latencies, 99)
    log_path.unlink(missing_ok=True)
    return result


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    number, unit = float(m.group(1)), m.group(2)
    return number / 1000 if unit == "us" else number * 1000 if unit == "s" else number
