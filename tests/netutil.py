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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

REDIS_SERVER = "/usr/bin/redis-server"  # Debian's package (`make install-system`)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def blackholed() -> Iterator[str]:
    """The URL of a Redis host that does not answer: a connect to it is neither accepted nor refused but waits
    out its timeout, as behind a firewall dropping packets or with the host gone from the network. Here a
    listening socket that never accepts, its accept queue filled, so the kernel drops every further SYN."""
    with ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        address = server.getsockname()
        for _ in range(4):  # the queue holds backlog + 1 connections; the rest wait in SYN-SENT
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(address)
        time.sleep(0.2)
        check = stack.enter_context(socket.socket())
        check.settimeout(0.5)
        try:  # the setup itself: not refused, not accepted
            check.connect(address)
        except TimeoutError:
            pass
        else:
            raise RuntimeError(f"{address} accepted a connection: not a blackhole")
        yield f"redis://{address[0]}:{address[1]}/0"


@contextmanager
def hung_redis(answers: frozenset[str] = frozenset()) -> Iterator[str]:
    """The URL of a Redis that accepts connections and then never answers, as a hung server does: each
    connection is read and left without a reply from its first command not in `answers` on (PING is answered
    `+PONG`, HELLO as Redis 7 does for RESP3, what redis-py's handshake checks; any other command `+OK`).
    `answers={"HELLO", "CLIENT", "PING"}` is a Redis that answers a new connection's handshake and a ping,
    then hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        buffer, hung = b"", False
        conn.settimeout(0.1)
        while not stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            while not hung and (command := _resp_command(buffer)) is not None:
                name, buffer = command
                if name not in answers:
                    hung = True  # this command and every later one: no answer
                else:
                    conn.sendall(_HUNG_REDIS_REPLIES.get(name, b"+OK\r\n"))

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        acceptor.join(timeout=5)
        server.close()
        for conn in accepted:
            conn.close()


_HUNG_REDIS_REPLIES = {"PING": b"+PONG\r\n", "HELLO": b"%1\r\n$5\r\nproto\r\n:3\r\n"}


def _resp_command(buffer: bytes) -> tuple[str, bytes] | None:
    """The name of the first whole RESP command in `buffer` (upper case) and what follows it, or None while it
    is not whole."""
    head, sep, rest = buffer.partition(b"\r\n")
    if not sep or not head.startswith(b"*"):
        return None
    words: list[bytes] = []
    for _ in range(int(head[1:])):
        length, sep, rest = rest.partition(b"\r\n")
        if not sep or len(rest) < int(length[1:]) + 2:
            return None
        words.append(rest[: int(length[1:])])
        rest = rest[int(length[1:]) + 2 :]
    return words[0].decode().upper(), rest


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
