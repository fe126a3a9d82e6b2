"""`integration-hub serve --workers N`: a supervisor process and N worker processes.

Each worker is the ordinary single-process server (`integration-hub serve --workers 1`,
started as a new interpreter, never forked from this one) and binds the same gRPC
and HTTP ports with SO_REUSEPORT, so the kernel spreads new connections over them.

The supervisor imports neither grpc nor the servers and runs no event loop while
workers live. It applies migrations once before the workers start, hands each
worker its environment (HUB_WORKER_INDEX, a private PROMETHEUS_MULTIPROC_DIR),
restarts a worker that dies (with a growing delay, giving up when restarts
crash-loop), forwards SIGTERM/SIGINT once to every worker, waits for them to drain
and kills stragglers after HUB_DRAIN_SECONDS plus a margin.

Each worker holds one end of a socket pair whose other end the supervisor keeps:
the worker writes "ready" once it serves, or "failed <reason>" when it cannot
start, and it stops by itself (draining as on SIGTERM) when it reads end-of-file,
that is when the supervisor is gone, so that a killed supervisor leaves no
orphan serving the ports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from integration_hub.config import Settings

log = logging.getLogger("integration_hub.workers")

WORKER_INDEX_ENV = "HUB_WORKER_INDEX"
# The worker's end of its socket pair to the supervisor; internal, not a setting.
LINK_FD_ENV = "HUB_SUPERVISOR_LINK_FD"
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The workers' shared media rendezvous directory (read by integration_hub/hub.py).
MEDIA_DIR_ENV = "HUB_MEDIA_DIR"

MAX_RESTARTS = 5  # more restarts than this ...
RESTART_WINDOW_SECONDS = 30.0  # ... within this many seconds is a crash loop: give up
FIRST_RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 2.0
# A worker drains within HUB_DRAIN_SECONDS, then flushes its audit trail and closes
# the store: this much longer and it is killed.
STOP_MARGIN_SECONDS = 5.0
TICK_SECONDS = 0.05  # longest the supervisor sleeps before looking at its workers again

_READY = b"ready"
_FAILED = b"failed"


class SupervisorError(RuntimeError):
    """The supervisor gave up (a worker could not start, or workers crash-loop); says why."""


def default_worker_count() -> int:
    """The cores this process may run on (its CPU affinity), else every core."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1


# --- the worker's side ------------------------------------------------------------


class SupervisorLink:
    """A worker's end of its socket pair to the supervisor (None outside a supervisor)."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self._sock = sock
        self.index = index
        self._reported = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SupervisorLink | None:
        env = os.environ if env is None else env
        raw_fd = env.get(LINK_FD_ENV)
        if not raw_fd:
            return None
        sock = socket.socket(fileno=int(raw_fd))
        sock.set_inheritable(False)  # for this process only, not for anything it starts
        os.environ.pop(LINK_FD_ENV, None)
        return cls(sock, int(env.get(WORKER_INDEX_ENV, "0")))

    def fileno(self) -> int:
        return self._sock.fileno()

    def report_ready(self) -> None:
        self._report(_READY)

    def report_failed(self, reason: str) -> None:
        """Why this worker cannot start; ignored once it has reported ready."""
        self._report(_FAILED + b" " + " ".join(reason.split()).encode(errors="replace"))

    def supervisor_gone(self) -> bool:
        """Call when fileno() is readable: end-of-file means the supervisor has exited."""
        self._sock.setblocking(False)
        try:
            return self._sock.recv(64) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _report(self, message: bytes) -> None:
        if self._reported:
            return
        self._reported = True
        with contextlib.suppress(OSError):  # a supervisor that is gone cannot be told
            self._sock.sendall(message + b"\n")


# --- the supervisor's side --------------------------------------------------------


class RestartBudget:
    """At most `limit` restarts within `window` seconds; each one waits twice as long as the last."""

    def __init__(
        self,
        limit: int = MAX_RESTARTS,
        window: float = RESTART_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._recent: deque[float] = deque()

    def spend(self) -> float | None:
        """The delay before the next restart, or None when the budget is exhausted."""
        now = self._clock()
        while self._recent and now - self._recent[0] > self.window:
            self._recent.popleft()
        if len(self._recent) >= self.limit:
            return None
        self._recent.append(now)
        doubled: float = FIRST_RESTART_DELAY * 2 ** (len(self._recent) - 1)
        return min(doubled, MAX_RESTART_DELAY)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    link: socket.socket
    restarted: bool  # False for the first process of this index
    ready: bool = False
    failure: str = ""  # the reason it reported for not starting
    _unread: bytes = field(default=b"", repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_messages(self) -> None:
        """Take in whatever the worker has written (non-blocking); at exit all of it is here."""
        while True:
            try:
                chunk = self.link.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                break
            self._unread += chunk
        *lines, self._unread = self._unread.split(b"\n")
        for line in lines:
            self._take(line)

    def _take(self, line: bytes) -> None:
        if line == _READY:
            self.ready = True
            log.info("worker ready", extra={"worker": self.index, "pid": self.pid})
        elif line.startswith(_FAILED):
            self.failure = line[len(_FAILED) :].strip().decode(errors="replace")

    def describe_exit(self) -> str:
        code = self.process.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"worker {self.index} (pid {self.pid}) {how}" + (f": {self.failure}" if self.failure else "")


class Supervisor:
    def __init__(self, settings: Settings, count: int, base_env: Mapping[str, str]) -> None:
        self._settings = settings
        self._count = count
        self._base_env = dict(base_env)
        self._workers: dict[int, _Worker] = {}
        self._restarts_due: dict[int, float] = {}  # worker index -> when to start it again
        self._budget = RestartBudget()
        self._stop_signal: int | None = None
        self._announced_ready = False

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 when every worker then exited cleanly.

        Raises SupervisorError (after stopping every worker) when it gives up.
        """
        with self._stop_signals_caught():
            for index in range(self._count):
                self._start(index, restarted=False)
            try:
                self._supervise()
            except SupervisorError as failure:
                log.error("giving up: %s", failure)
                self._stop_all(signal.SIGTERM)
                raise
            assert self._stop_signal is not None  # _supervise returns only once a signal came
            return 0 if self._stop_all(self._stop_signal) else 1

    # --- while serving

    def _supervise(self) -> None:
        while self._stop_signal is None:
            self._wait_a_tick()
            for worker in self._exited():
                self._after_unexpected_exit(worker)
            self._start_due_restarts()
            self._announce_when_all_ready()

    def _after_unexpected_exit(self, worker: _Worker) -> None:
        log.warning(
            "worker exited unexpectedly",
            extra={"worker": worker.index, "pid": worker.pid, "exit_code": worker.process.returncode},
        )
        if not worker.ready and not worker.restarted:
            raise SupervisorError(f"{worker.describe_exit()} before it started serving")
        delay = self._budget.spend()
        if delay is None:
            raise SupervisorError(
                f"workers are crash-looping: more than {self._budget.limit} restarts within "
                f"{self._budget.window:g} s; the last: {worker.describe_exit()}"
            )
        log.warning(
            "restarting worker",
            extra={"worker": worker.index, "exited_pid": worker.pid, "delay_seconds": delay},
        )
        self._restarts_due[worker.index] = time.monotonic() + delay

    def _start_due_restarts(self) -> None:
        now = time.monotonic()
        for index, due in list(self._restarts_due.items()):
            if due <= now:
                del self._restarts_due[index]
                self._start(index, restarted=True)

    def _announce_when_all_ready(self) -> None:
        if self._announced_ready or len(self._workers) < self._count:
            return
        if all(w.ready for w in self._workers.values()):
            self._announced_ready = True
            log.info(
                "serving",
                extra={
                    "workers": self._count,
                    "pids": [w.pid for w in self._workers.values()],
                    "grpc_port": self._settings.grpc_port,
                    "http_port": self._settings.http_port,
                    "host": self._settings.host,
                },
            )

    # --- starting and reaping

    def _start(self, index: int, *, restarted: bool) -> None:
        ours, theirs = socket.socketpair()
        env = {**self._base_env, WORKER_INDEX_ENV: str(index), LINK_FD_ENV: str(theirs.fileno())}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "integration_hub.cli", "serve", "--workers", "1"],
                env=env,
                pass_fds=(theirs.fileno(),),
                # Its own session: a terminal's Ctrl-C reaches the supervisor only, which
                # forwards it once (a second signal would cut a worker's drain short).
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._workers[index] = _Worker(index, process, ours, restarted)
        log.info("worker started", extra={"worker": index, "pid": process.pid, "restarted": restarted})

    def _wait_a_tick(self) -> None:
        links = [w.link for w in self._workers.values()]
        with contextlib.suppress(InterruptedError):
            # Wakes early when a worker writes or exits (its end closes).
            select.select(links, [], [], TICK_SECONDS)
        for worker in self._workers.values():
            worker.read_messages()

    def _exited(self) -> list[_Worker]:
        gone = [w for w in self._workers.values() if w.process.poll() is not None]
        for worker in gone:
            worker.read_messages()  # a "failed" line written just before exiting
            worker.link.close()
            del self._workers[worker.index]
        return gone

    # --- stopping

    @contextlib.contextmanager
    def _stop_signals_caught(self) -> Iterator[None]:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self._stop_signal is None:
                self._stop_signal = signum
            # No logging here: the handler may interrupt a log call holding the handler's lock.

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_all(self, signum: int) -> bool:
        """Forward `signum` to every worker once, wait for them to drain; True when all exited 0."""
        self._restarts_due.clear()
        drain = self._settings.drain_seconds
        log.info(
            "stopping workers",
            extra={
                "signal": signal.Signals(signum).name,
                "workers": len(self._workers),
                "drain_seconds": drain,
            },
        )
        for worker in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signum)
        deadline = time.monotonic() + drain + STOP_MARGIN_SECONDS
        clean = True
        while self._workers and time.monotonic() < deadline:
            self._wait_a_tick()
            for worker in self._exited():
                clean = self._log_exit_on_stop(worker) and clean
        for worker in list(self._workers.values()):
            self._kill_straggler(worker)
            clean = False
        return clean

    def _log_exit_on_stop(self, worker: _Worker) -> bool:
        code = worker.process.returncode
        # One still starting had nothing to drain, and no signal handler yet: however the
        # forwarded signal ended it is fine.
        clean = code == 0 or not worker.ready
        log.log(
            logging.INFO if clean else logging.ERROR,
            "worker exited",
            extra={"worker": worker.index, "pid": worker.pid, "exit_code": code},
        )
        return clean

    def _kill_straggler(self, worker: _Worker) -> None:
        log.error(
            "worker did not stop within the drain time: killing it",
            extra={"worker": worker.index, "pid": worker.pid},
        )
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()
        worker.process.wait()
        worker.link.close()
        del self._workers[worker.index]


# --- entry point ------------------------------------------------------------------


def supervise(settings: Settings, *, workers: int, migrate: bool) -> int:
    """Run `workers` server processes on the shared ports until SIGTERM/SIGINT."""
    if workers < 2:
        raise ValueError("a supervisor runs 2 or more workers; --workers 1 serves in-process")
    if settings.grpc_port == 0 or settings.http_port == 0:
        raise SupervisorError(
            "HUB_GRPC_PORT and HUB_HTTP_PORT must be fixed ports with several workers "
            "(port 0 would give each worker a different one); or use --workers 1"
        )
    if not settings.redis_url:
        log.warning(
            "several workers without HUB_REDIS_URL: each worker caches credential rows on its own, so "
            "a change made through one worker reaches the others within HUB_CACHE_TTL_SECONDS",
            extra={"cache_ttl_seconds": settings.cache_ttl_seconds},
        )
    if migrate:
        _apply_migrations(settings)
    with _metrics_directory() as metrics_dir, _media_directory() as media_dir:
        env = dict(os.environ)
        env[METRICS_DIR_ENV] = metrics_dir
        env[MEDIA_DIR_ENV] = media_dir
        if settings.keyring_file:  # it may come from --dev-keyring rather than the environment
            env["HUB_KEYRING_FILE"] = str(Path(settings.keyring_file).resolve())
        return Supervisor(settings, workers, env).run()


def _apply_migrations(settings: Settings) -> None:
    """Once, here, before any worker starts (workers never migrate)."""
    import asyncio

    from integration_hub.store import open_store

    async def migrate() -> list[str]:
        store = open_store(settings.database_url)
        await store.connect()
        try:
            return await store.migrate()
        finally:
            await store.close()

    applied = asyncio.run(migrate())
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))


@contextlib.contextmanager
def _media_directory() -> Iterator[str]:
    """Where the workers' two ends of a call's media meet (telephony/media_link.py)."""
    path = tempfile.mkdtemp(prefix="integration-hub-media-")  # mode 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _metrics_directory() -> Iterator[str]:
    """The operator's PROMETHEUS_MULTIPROC_DIR, else a fresh private one removed at exit."""
    configured = os.environ.get(METRICS_DIR_ENV)
    if configured:
        yield configured
        return
    path = tempfile.mkdtemp(prefix="integration-hub-metrics-")  # mode 0700
    log.info("metrics directory for the workers", extra={"path": path})
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
