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
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tldrlab.config import get_settings
from tldrlab.errors import ConflictError, InvalidInputError
from tldrlab.service.app import check_api_key_setting, create_app
from tldrlab.service.periodic import PeriodicCleanup
from tldrlab.service.queue import queue_kind
from tldrlab.threads import child_env


def _die_with_parent() -> None:
    """In a local worker (Linux): get SIGTERM when `serve` dies, even by SIGKILL, instead of lingering."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServeConfig(BaseModel):
    """Where `tldrlab serve` listens, and how many local workers it starts."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid", use_attribute_docstrings=True)

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
    procs = [
        subprocess.Popen(
            # each worker takes its share of the CPUs for its threads
            [sys.executable, "-m", "tldrlab", "worker"],
            env=child_env(workers),
            preexec_fn=_die_with_parent,
        )
        for _ in range(workers)
    ]
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
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False))
    try:
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a normal stop
            server.run(sockets=[listening])
        if not server.started:  # the app's startup failed; uvicorn has said why
            raise SystemExit(3)
    finally:
        listening.close()
        if cleanup is not None:
            cleanup.stop()
        for proc in procs:  # SIGTERM: running jobs checkpoint and go back on the queue
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
