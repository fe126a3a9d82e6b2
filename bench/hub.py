"""A throw-away hub for benchmarks: temporary SQLite store, generated keyring, a token,
`serve --workers N`, and the two bench credentials (openai `main` on the JSON fake
upstream, `stream` on the SSE one). Everything lives in one temporary directory.

The real request path stays on: token check (hash lookup, 1 s token cache), credential
lookup (row cache) and AES-GCM decrypt with its audit event, the policy engine with
its defaults, usage rows written to the store, Prometheus metrics (multiprocess mode,
as the supervisor sets it up), INFO logging to a file.

    python bench/hub.py start [--workers 2] [--grpc-port 19004] [--http-port 19005]
        # prints JSON (dir, token, pids); the hub keeps running
    python bench/hub.py stop  --dir DIR

Used as a module by bench/run.py (`BenchHub`).
"""

# A benchmark tool: runs fixed local programs (wrk, h2load, py-spy, integration-hub) and
# opens only loopback http:// URLs it builds itself.

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
HUB_CMD = [str(VENV_BIN / "integration-hub")]
JSON_UPSTREAM = "http://127.0.0.1:18080/v1"
SSE_UPSTREAM = "http://127.0.0.1:18081/v1"
FAKE_KEY = "sk-bench-fake-upstream-key-0000"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """A plain bind (no SO_REUSEPORT) fails if anything listens there, even a reuse-port hub,
    which our workers would otherwise silently share the port with."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class BenchHub:
    workers: int = 2
    grpc_port: int = 19004
    http_port: int = 19005
    redis_url: str | None = None
    log_level: str = "INFO"
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hub-bench-")))
    token: str = ""
    credential_ids: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _log: object = None

    # --- paths and environment

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("HUB_") and k.lower() != "prometheus_multiproc_dir"
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            HUB_DATABASE_URL=f"sqlite:///{self.dir / 'hub.db'}",
            HUB_KEYRING_FILE=str(self.dir / "keyring.json"),
            HUB_HOST="127.0.0.1",
            HUB_GRPC_PORT=str(self.grpc_port),
            HUB_HTTP_PORT=str(self.http_port),
            HUB_LOG_LEVEL=self.log_level,
            HUB_DRAIN_SECONDS="5",
        )
        if self.redis_url:
            env["HUB_REDIS_URL"] = self.redis_url
        return env

    @property
    def log_file(self) -> Path:
        return self.dir / "hub.log"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _cli(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(  # noqa: S603
            [*HUB_CMD, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env or self.env,
            cwd=self.dir,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"integration-hub {' '.join(args[:2])} failed: {out.stderr.strip()[-500:]}")
        return out.stdout

    # --- lifecycle

    def start(self) -> None:
        for port in (self.grpc_port, self.http_port):
            if not port_is_free(port):
                raise RuntimeError(f"port {port} is in use: pick others with --grpc-port/--http-port")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._cli("keys", "init", "--file", str(self.dir / "keyring.json"))
        self._cli("migrate")
        self.token = (
            self._cli(
                "tokens",
                "create",
                "--tenant",
                "bench",
                "--scope",
                "admin",
                "--scope",
                "invoke",
                "--name",
                "bench",
            )
            .strip()
            .splitlines()[-1]
        )
        (self.dir / "token").write_text(self.token)
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - open as long as the hub runs
        self.process = subprocess.Popen(  # noqa: S603
            [*HUB_CMD, "serve", "--workers", str(self.workers)],
            env=self.env,
            cwd=self.dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (self.dir / "supervisor.pid").write_text(str(self.process.pid))
        self._wait_ready(60)
        client_env = {**self.env, "HUB_TOKEN": self.token, "HUB_TARGET": self.grpc_target}
        secret = json.dumps({"api_key": FAKE_KEY})
        for name, base_url in (("main", JSON_UPSTREAM), ("stream", SSE_UPSTREAM)):
            created = self._cli(
                "credentials", "create", "--provider", "openai", "--name", name,
                "--secret-json", "-", "--option", f"base_url={base_url}",
                stdin=secret, env=client_env,
            )  # fmt: skip
            self.credential_ids[name] = json.loads(created)["id"]

    def _wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"the hub exited with {self.process.returncode}; log: {self.log_file}\n"
                    + self.log_file.read_text()[-2000:]
                )
            if len(self.worker_pids()) == self.workers and self._supervisor_says_serving():
                try:
                    with urllib.request.urlopen(self.http + "/readiness/", timeout=2) as r:  # noqa: S310
                        if r.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"the hub was not ready within {seconds:g} s; log: {self.log_file}")

    def _supervisor_says_serving(self) -> bool:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return False
        return any('"serving"' in line and '"workers"' in line for line in text.splitlines())

    def worker_pids(self) -> list[int]:
        return _children(self.process.pid) if self.process else []

    def rss(self) -> dict[int, int | None]:
        return {pid: rss_kib(pid) for pid in self.worker_pids()}

    def metrics(self) -> dict[str, float]:
        """The /metrics samples as {'name{labels}': value} (any worker answers for all)."""
        with urllib.request.urlopen(self.http + "/metrics", timeout=5) as r:  # noqa: S310
            text = r.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                samples[key] = float(value)
        return samples

    def metrics_dir(self) -> Path | None:
        """The supervisor's private PROMETHEUS_MULTIPROC_DIR (it logs the path)."""
        for line in self.log_file.read_text(errors="replace").splitlines():
            if '"metrics directory for the workers"' in line:
                with contextlib.suppress(ValueError, KeyError):
                    return Path(json.loads(line)["path"])
        return None

    def worker_calls(self, pid: int, operation: str = "chat") -> float:
        """Provider calls that one worker finished OK: its own file in the metrics directory."""
        from prometheus_client.mmap_dict import MmapedDict

        directory = self.metrics_dir()
        path = directory / f"counter_{pid}.db" if directory else None
        if path is None or not path.exists():
            return 0.0
        total = 0.0
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            with contextlib.suppress(ValueError, IndexError):
                _, sample, labels, _ = json.loads(key)
                if (
                    sample == "hub_provider_calls_total"
                    and labels.get("operation") == operation
                    and labels.get("status") == "OK"
                ):
                    total += value
        return total

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None


def _main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--grpc-port", type=int, default=19004)
    ap.add_argument("--http-port", type=int, default=19005)
    ap.add_argument("--dir", help="stop: the directory `start` printed")
    a = ap.parse_args()
    if a.action == "stop":
        pid = int(Path(a.dir, "supervisor.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        return 0
    hub = BenchHub(workers=a.workers, grpc_port=a.grpc_port, http_port=a.http_port)
    hub.start()
    assert hub.process is not None
    print(
        json.dumps(
            {
                "dir": str(hub.dir),
                "token": hub.token,
                "supervisor": hub.process.pid,
                "workers": hub.worker_pids(),
                "http": hub.http,
                "grpc": hub.grpc_target,
            }
        )
    )
    # Detach: the supervisor keeps running in its own session; stop it with `stop --dir`.
    return 0


if __name__ == "__main__":
    sys.exit(_main())
