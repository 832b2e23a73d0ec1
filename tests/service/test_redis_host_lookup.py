"""The Redis host's name looked up within the connect timeout (`redis_lookup`), against a real resolver: a DNS
server that receives every query and answers none (a UDP socket on a loopback address, port 53), named by a
resolv.conf bind-mounted over /etc/resolv.conf in a private mount namespace of the command
(`mountutil.in_mount_namespace`), with an /etc/hosts of the test's own beside it. Before, redis-py's lookup
waited out the C resolver's timeouts (5 s a query, two attempts: 10 s) on every try of every call, and the
command said "ConnectionError" in the end."""

from __future__ import annotations

import json
import os
import random
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mountutil import in_mount_namespace
from tldrlab.service.redis_outage import RETRIES, RETRY_BACKOFF_S

SRC = Path(__file__).resolve().parents[2] / "src"
HOST = "redis.tldrlab.internal"
CONNECT_TIMEOUT_S = 0.3
GIVE_UP_S = (RETRIES + 1) * CONNECT_TIMEOUT_S + RETRIES * RETRY_BACKOFF_S[1]
"""How long a call may wait on a name its DNS server does not answer: each try waits a connect timeout."""
SLACK_S = 4.0
"""What a call, or a command's exit, may take beyond that: Python's own work, on a loaded machine (a worker's
exit took 2.3 s at load 6 in a clean-clone make test). Still well under one try of the resolver's own
timeout (10 s), which is what these tests tell apart."""
HANG_S = 15.0
"""How long a command is given before it counts as hung: the resolver's own give-up (10 s a try) and more."""


class SilentDns:
    """A DNS server on `address`:53 that receives queries and never answers; `first_query_at` is the monotonic
    time its first query came (None before)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.address = str(sock.getsockname()[0])
        self.first_query_at: float | None = None
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="silent-dns", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        self.sock.settimeout(0.05)  # to see the stop; the queries themselves are taken as they come
        while not self._stop.is_set():
            try:
                self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if self.first_query_at is None:
                self.first_query_at = time.monotonic()
            self.queries += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@contextmanager
def silent_dns() -> Iterator[SilentDns]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(20):  # a loopback address of its own: another test's server may hold 127.0.0.x:53
        try:
            sock.bind((f"127.0.0.{random.randint(2, 254)}", 53))
            break
        except PermissionError as exc:
            sock.close()
            pytest.fail(
                f"this check runs a DNS server on port 53, which takes root here: {exc}", pytrace=False
            )
        except OSError:
            continue
    else:
        sock.close()
        raise RuntimeError("no free 127.0.0.x:53 in 20 tries")
    server = SilentDns(sock)
    try:
        yield server
    finally:
        server.stop()


def _resolving_only(tmp_path: Path, dns: SilentDns, hosts: dict[str, str], command: list[str]) -> str:
    """`command` (exec'd, so a timeout kills it) where the only DNS server is `dns` and /etc/hosts holds
    localhost and `hosts` (name: address) alone, whatever this machine's files say."""
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text(f"nameserver {dns.address}\n")
    etc_hosts = tmp_path / "hosts"
    etc_hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in hosts.items()))
    return (
        f"mount --bind {resolv_conf} /etc/resolv.conf && mount --bind {etc_hosts} /etc/hosts && "
        f"exec {shlex.join(command)}"
    )


def _env(queue_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "TLDRLAB_QUEUE_URL": queue_url,
        "TLDRLAB_REDIS_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
        "COLUMNS": "400",
    }


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return in_mount_namespace(script, env, timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still waiting on the host name's lookup after {HANG_S:g}s", pytrace=False)


def test_a_worker_whose_redis_host_name_gets_no_dns_answer_stops_within_the_connect_timeouts_saying_so(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    """`tldrlab worker` pings the queue first: it waited 20 s (two tries of the resolver's 10 s), then said
    "the job queue (Redis) is unreachable: ConnectionError"."""
    with silent_dns() as dns:
        script = _resolving_only(tmp_path, dns, {}, [sys.executable, "-m", "tldrlab", "worker"])
        done = _run(script, _env(f"redis://{HOST}:6379/0"))
        ended_at = time.monotonic()
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        "error [service_unavailable] the job queue (Redis) is unreachable: the host name "
        f"{HOST} could not be resolved within {CONNECT_TIMEOUT_S:g}s"
    ), line
    assert dns.first_query_at is not None, "the resolver never asked the DNS server"
    waited = ended_at - dns.first_query_at
    assert waited < GIVE_UP_S + SLACK_S, f"the worker stopped {waited:.2f}s after its first lookup"


QUEUE_AND_BUS = """
import json, logging, sys, time
from tldrlab.service.events import RedisBus, RunEvent
from tldrlab.service.queue.rq import RqQueue

warnings = []
class Collect(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger().addHandler(Collect(logging.WARNING))
url = sys.argv[1]
queue, bus = RqQueue(url), RedisBus(url)
calls = {}
for name, call in {
    "enqueue": lambda: queue.enqueue("r"),
    "publish": lambda: bus.publish(RunEvent(type="progress", run_id="r", step=1)),
}.items():
    started = time.monotonic()
    try:
        call()
        said = None
    except Exception as exc:
        said = str(exc)
    calls[name] = {"s": time.monotonic() - started, "error": said}
print(json.dumps({"calls": calls, "warnings": warnings}))
"""


def test_the_queue_and_the_bus_give_up_on_a_redis_host_name_without_dns_answer_within_the_bound(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    """An enqueue (`POST /runs`) and an event (a worker's heartbeat thread) each waited 20 s, and the
    outage's warning said "ConnectionError: Error -3 connecting to ...:6379. Temporary failure in name
    resolution."."""
    url = f"redis://{HOST}:6379/0"
    with silent_dns() as dns:
        script = _resolving_only(tmp_path, dns, {}, [sys.executable, "-c", QUEUE_AND_BUS, url])
        done = _run(script, _env(url))
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    unresolved = f"the host name {HOST} could not be resolved within {CONNECT_TIMEOUT_S:g}s"
    enqueue, publish = said["calls"]["enqueue"], said["calls"]["publish"]
    assert enqueue["error"] == f"cannot enqueue: Redis is unreachable ({unresolved})", enqueue
    assert publish["error"] is None, publish  # an event is dropped, never raised
    slow = {
        call: f"{took['s']:.2f}s" for call, took in said["calls"].items() if took["s"] >= GIVE_UP_S + SLACK_S
    }
    assert not slow, f"over {GIVE_UP_S + SLACK_S:.2f}s: {slow}"
    # each part's one warning (the queue's, the bus's) names the lookup that got no answer
    outage_lines = [line for line in said["warnings"] if line.startswith("Redis is unreachable")]
    assert len(outage_lines) == 2, said["warnings"]
    assert all(f"(HostLookupTimeoutError: {unresolved}): " in line for line in outage_lines), outage_lines


LOOKUPS = """
import json, sys, threading
from tldrlab.service.redis_outage import redis_client

lookups, threads = [], []
def audit(event, args):
    if event == "socket.getaddrinfo":
        lookups.append([args[0], threading.current_thread() is threading.main_thread()])
sys.addaudithook(audit)
threading.settrace(lambda *args: threads.append(threading.current_thread().name))

named, literal = sys.argv[1], sys.argv[2]
redis_client(named).set("looked-up", "by name")
by_name = {"lookups": lookups[:], "threads": threads[:]}
lookups.clear(); threads.clear()
got = redis_client(literal).get("looked-up").decode()
print(json.dumps({"by_name": by_name, "literal": {"lookups": lookups, "threads": threads}, "got": got}))
"""


def test_a_redis_host_name_that_resolves_connects_as_before_and_an_address_is_not_looked_up_in_a_thread(
    tldrlab_home: Path, tmp_path: Path, redis_url: str
) -> None:
    """A name /etc/hosts resolves (the DNS server is never asked) reaches the session's redis-server; a
    literal address connects with no lookup thread, all its getaddrinfo calls in the caller's thread."""
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    named, literal = f"redis://{HOST}:{port}/0", f"redis://127.0.0.1:{port}/0"
    with silent_dns() as dns:
        script = _resolving_only(
            tmp_path, dns, {HOST: "127.0.0.1"}, [sys.executable, "-c", LOOKUPS, named, literal]
        )
        done = _run(script, _env(named))
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["got"] == "by name"  # written through the name, read back through the address
    assert [HOST, False] in said["by_name"]["lookups"], said  # looked up off the caller's thread
    assert dns.queries == 0  # /etc/hosts answered
    assert said["literal"]["threads"] == [], said
    assert said["literal"]["lookups"] and all(
        host == "127.0.0.1" and in_caller for host, in_caller in said["literal"]["lookups"]
    ), said
