"""Loopback helpers shared by fixtures, tests and bench/ scripts (importable as `netutil`: tests/ is on
sys.path; the bench scripts put it there)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

REDIS_SERVER = "/usr/bin/redis-server"  # Debian's package (`make install-system`)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Block until something listens on 127.0.0.1:port, or raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start_serve(
    port: int, log: IO[bytes], workers: int, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """`tldrlab serve` on 127.0.0.1:`port` with `workers` local workers, stdout and stderr into `log`; returns
    at once (`wait_for_port` for it to listen). `new_session`: its own process group (to signal it whole)."""
    command = [sys.executable, "-m", "tldrlab", "serve", "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(
        command, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session
    )


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Debian's redis-server on 127.0.0.1:`port`, no persistence, `--dir workdir`; returns once it listens.

    The caller stops it (`terminate()`, then `wait()`); call again with the same port to restart it there.
    """
    binary = shutil.which("redis-server") or REDIS_SERVER
    assert Path(binary).exists(), "redis-server is not installed: run `make install-system`"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=10)
        raise
    return proc


def uvicorn_server(app: Any, port: int) -> Any:
    """A uvicorn server for `app` on 127.0.0.1:`port`, to run in a thread of this (the test's) process.

    `log_config=None`: uvicorn's default logging config goes through `logging.config.dictConfig`, which
    closes every handler the process ever made. absl's handler (created when rouge_score imports absl)
    closes its stream unless it is the current sys.stderr, and that stream is whatever sys.stderr was when
    absl was imported: pytest's capture file, so a server started after any ROUGE evaluation in the same
    worker closed pytest's stderr and the worker died ("lost sys.stderr")."""
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None)
    )


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app with a real uvicorn server on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn_server(app, port)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
