"""Helpers of the trainer-service tests: real worker subprocesses, waiting, reference runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tldrlab.config import get_settings
from tldrlab.runs import RunRecord, open_registry
from tldrlab.runs.atomic import read_jsonl

FAST_WORKER = [
    "--heartbeat-s",
    "0.3",
    "--stale-after-s",
    "2",
    "--reconcile-every-s",
    "0.5",
    "--poll-s",
    "0.1",
]


def start_worker(
    *extra: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A real `tldrlab worker` process with the test's environment (home, queue URL)."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [sys.executable, "-m", "tldrlab", "worker", *FAST_WORKER, *extra],
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, every: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def record(run_id: str) -> RunRecord:
    return open_registry(get_settings()).get(run_id)


def metrics(run_id: str) -> list[dict[str, Any]]:
    """A run's training-step metric lines (evaluation lines left out)."""
    return [row for row in read_jsonl(Path(record(run_id).run_dir) / "metrics.jsonl") if "train_loss" in row]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def flaky_job(run: Any, config: Any) -> Any:
    """Fails like a Redis hiccup on its first attempt, then trains for real (the smoke job)."""
    from tldrlab.errors import ServiceUnavailableError
    from tldrlab.train.smoke import smoke_job

    if run.record.attempts == 1:
        raise ServiceUnavailableError("the feature store did not answer")
    return smoke_job(run, config)


def cancelled_then_flaky_job(run: Any, config: Any) -> Any:
    """Asked to cancel (through the API, say) while it runs, then fails like a Redis hiccup."""
    from tldrlab.errors import ServiceUnavailableError

    run.registry.request_cancel(run.id)
    raise ServiceUnavailableError("the feature store did not answer")


def broken_job(run: Any, config: Any) -> Any:
    """A bug: fatal, never retried."""
    raise ZeroDivisionError("division by zero in a job")


class ServerThread:
    """A real uvicorn server for an app on a free loopback port, in a thread of this process."""

    def __init__(self, app: Any) -> None:
        import threading

        from netutil import free_port, uvicorn_server

        self.port = free_port()
        self.server = uvicorn_server(app, self.port)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, 30, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def raw_get(port: int, raw_path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send `GET <raw_path>` exactly as written (no client-side normalisation or encoding)."""
    import socket

    lines = [f"GET {raw_path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body
