"""`serve(...)`: the API and web pages with local worker processes taking jobs from the queue, and the
periodic cleanup when `retention.enabled` is set; stopping it stops the workers (their runs checkpoint and
go back on the queue)."""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, TextIO

from pydantic import ConfigDict, Field, field_validator

from tldrlab.config import get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import ConflictError, InvalidInputError
from tldrlab.service.app import check_api_key_setting, create_app
from tldrlab.service.periodic import PeriodicCleanup
from tldrlab.service.queue import queue_kind
from tldrlab.threads import child_env


def _parent_death_signal() -> Callable[[], None] | None:
    """What a local worker runs between fork and exec (Linux): get SIGTERM when `serve` dies, even by
    SIGKILL, instead of lingering. prctl is looked up here, in `serve`: a worker started again later forks
    while other threads (uvicorn's, a model loading) may hold the dynamic loader's lock, which a lookup in
    the child would wait for forever."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def die_with_parent() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return die_with_parent


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal has no name
        return f"signal {number}"


GRACEFUL_SHUTDOWN_S = 10
"""How long a stopping `serve` waits for open responses (a digest still streaming, an upload) before it
cancels them: it waited for every one, however long, and stopped its workers only after that."""
WORKER_ARGV = (sys.executable, "-m", "tldrlab", "worker")
QUICK_EXIT_S = 30.0
"""A local worker that exits sooner than this after its start twice in a row (a setup that cannot work) is
started again only after a delay, 1 s doubling with each more such exit, up to `MAX_RESTART_DELAY_S`."""
MAX_RESTART_DELAY_S = 60.0


class LocalWorkers:
    """`serve`'s local worker processes, each started again when it exits while `serve` runs.

    A worker killed by the kernel's OOM killer, or by anyone, was not: its slot stayed empty for the life of
    `serve`, its run read `running` for good when it was the only worker (no other worker's reconcile
    requeues it), and the queue filled up behind nothing. The worker started in its place requeues that run
    once its heartbeat is stale and resumes it from its last checkpoint."""

    def __init__(
        self,
        count: int,
        *,
        serving: Callable[[], bool] = lambda: True,
        argv: Sequence[str] = WORKER_ARGV,
        poll_s: float = 0.5,
        stderr: TextIO | None = None,
    ) -> None:
        self.count = count
        # false once `serve` is stopping: Ctrl-C reaches the workers too (one process group), and a worker
        # started in the place of one that stopped on it would be one more process to stop
        self.serving = serving
        self.argv = list(argv)
        self.poll_s = poll_s
        self.stderr = stderr
        self.procs: list[subprocess.Popen[bytes]] = []
        self._started_at: list[float] = []
        self._quick_exits: list[int] = []
        self._restart_at: list[float | None] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._preexec = _parent_death_signal()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # each worker takes its share of the CPUs for its threads
        return subprocess.Popen(self.argv, env=child_env(self.count), preexec_fn=self._preexec)

    def start(self) -> LocalWorkers:
        with self._lock:
            for _ in range(self.count):
                self.procs.append(self._spawn())
                self._started_at.append(time.monotonic())
                self._quick_exits.append(0)
                self._restart_at.append(None)
        if self.count:
            self._thread = threading.Thread(target=self._watch, name="tldrlab-local-workers", daemon=True)
            self._thread.start()
        return self

    def _say(self, line: str) -> None:
        print(line, file=self.stderr or sys.stderr, flush=True)

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_s):
            with self._lock:
                if self._stopping.is_set() or not self.serving():
                    return
                for slot, proc in enumerate(self.procs):
                    self._check(slot, proc)

    def _check(self, slot: int, proc: subprocess.Popen[bytes]) -> None:
        now = time.monotonic()
        restart_at = self._restart_at[slot]
        if restart_at is None:
            code = proc.poll()
            if code is None:
                return
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            lived = now - self._started_at[slot]
            self._quick_exits[slot] = self._quick_exits[slot] + 1 if lived < QUICK_EXIT_S else 0
            delay = 0.0
            if self._quick_exits[slot] > 1:  # the first one may be bad luck (killed while it loaded)
                delay = min(MAX_RESTART_DELAY_S, 2.0 ** (self._quick_exits[slot] - 2))
            when = "now" if not delay else f"in {delay:g} s"
            self._say(f"local worker (pid {proc.pid}) {how} after {lived:.0f} s; starting another {when}")
            restart_at = self._restart_at[slot] = now + delay
        if now >= restart_at:
            try:
                self.procs[slot] = self._spawn()
            except OSError as exc:  # no memory or process left to fork: the next try is a while later
                self._say(f"could not start a local worker: {exc}; trying again in {MAX_RESTART_DELAY_S:g} s")
                self._restart_at[slot] = now + MAX_RESTART_DELAY_S
                return
            self._started_at[slot] = now
            self._restart_at[slot] = None

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM every worker (running jobs checkpoint and go back on the queue), then wait for them."""
        with self._lock:
            self._stopping.set()
            procs = list(self.procs)
        if self._thread is not None:
            self._thread.join(timeout=10)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class ServeConfig(ConfigModel):
    """Where `tldrlab serve` listens, and how many local workers it starts."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 for every interface)."""

    @field_validator("host")
    @classmethod
    def _named_host(cls, value: str) -> str:
        # bind(("", port)) listens on every interface: `--host ""` must not quietly mean 0.0.0.0
        if not value.strip():
            raise ValueError("is empty: give an address to listen on (127.0.0.1, or 0.0.0.0 for every one)")
        return value

    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port."""
    workers: int = Field(default=1, ge=0, le=64)
    """Local worker processes to start (0: API only)."""
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "warning"
    """uvicorn log level."""


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """The socket `serve` listens on, bound before anything starts: a port in use (or an address this
    machine does not have) is one clear error naming it, instead of the "tldrlab API on ..." line, local
    workers started for nothing, and then uvicorn's bind error. Handed to uvicorn, so no other process can
    take the port between this check and the server starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # as uvicorn does: a port still in TIME_WAIT after a restart is free to bind; one with a listener is not
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} on {host} is already in use: stop what listens there or choose --port"
            raise ConflictError(message) from None
        raise InvalidInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(host: str, port: int, workers: int, log_level: str = "warning") -> None:
    """Serve until stopped (SIGTERM or Ctrl-C), then SIGTERM the workers and wait for them."""
    import uvicorn

    settings = get_settings()
    check_api_key_setting(settings)  # refuse a placeholder key before starting anything
    kind = queue_kind(settings)
    app = create_app(settings, local_workers=workers)
    listening = bind_listening_socket(host, port)
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S
    )
    server = uvicorn.Server(config)
    app.state.stopping = lambda: server.should_exit  # a run's event stream ends (service.state)
    local = LocalWorkers(workers, serving=lambda: not server.should_exit).start()
    cleanup = PeriodicCleanup(settings).start() if settings.retention.enabled else None
    print(f"tldrlab API on http://{host}:{port} ({kind} queue, {workers} local worker(s))", file=sys.stderr)
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.digest.local_model import warm_default_model

    warm_default_model()  # in the background: the first digest need not wait for the model to load

    def graceful_exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    # uvicorn shuts down on SIGTERM and then re-raises it to the previous handler: make that handler exit
    # through `finally`, so the workers get their SIGTERM instead of being orphaned.
    signal.signal(signal.SIGTERM, graceful_exit)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a normal stop
            server.run(sockets=[listening])
        if not server.started:  # the app's startup failed; uvicorn has said why
            raise SystemExit(3)
    finally:
        listening.close()
        if cleanup is not None:
            cleanup.stop()
        local.stop()
