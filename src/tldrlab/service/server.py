"""`serve(...)`: the API and web pages with local worker processes taking jobs from the queue, and the
periodic cleanup when `retention.enabled` is set; stopping it stops the workers (their runs checkpoint and
go back on the queue)."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tldrlab.config import get_settings
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
    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port."""
    workers: int = Field(default=1, ge=0, le=64)
    """Local worker processes to start (0: API only)."""
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "warning"
    """uvicorn log level."""


def serve(host: str, port: int, workers: int, log_level: str = "warning") -> None:
    """Serve until stopped (SIGTERM or Ctrl-C), then SIGTERM the workers and wait for them."""
    import uvicorn

    settings = get_settings()
    check_api_key_setting(settings)  # refuse a placeholder key before starting anything
    kind = queue_kind(settings)
    app = create_app(settings)
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
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
        if cleanup is not None:
            cleanup.stop()
        for proc in procs:  # SIGTERM: running jobs checkpoint and go back on the queue
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
