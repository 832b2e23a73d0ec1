"""One run, one executor: the run directory's lock, the owner it records, and a heartbeat thread.

`execute_run` (every executor: the CLI, a worker, a sweep trial) takes an exclusive `flock` on
`<run_dir>/.run.lock` before it touches the run, records itself as the run's owner (`host:pid:token`) and
heartbeats the registry row from a background thread, so a main thread busy for minutes (loading data,
compiling) still looks alive. The kernel drops the lock when the process dies however it dies (kill -9
included), so:

- a second executor cannot start while the first is alive (`RunOwnedError`), whatever the registry says;
- `owner_alive(run_dir)` (a non-blocking probe of the same lock) tells a worker's reconcile whether a run
  whose heartbeat went stale is really orphaned (dead owner: requeue) or only paused (stopped, swapped out,
  blocked in a C call: leave it alone).

flock works across processes of one machine, and across machines on file systems that support it (NFS v4,
most cluster file systems); where it does not, a stale heartbeat still decides, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import threading
import time
import uuid
from pathlib import Path
from typing import IO

from tldrlab.errors import RunOwnedError
from tldrlab.runs.db import connect
from tldrlab.runs.registry import RunRegistry

log = logging.getLogger("tldrlab.runs")

LOCK_FILE = ".run.lock"
ACQUIRE_WAIT_S = 2.0
"""How long `RunLock.acquire` retries: covers another process's momentary liveness probe."""


def new_owner() -> str:
    return f"{platform.node()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RunLock:
    """An exclusive lock on a run directory, held by the process executing the run."""

    def __init__(self, run_dir: Path | str, handle: IO[str], owner: str) -> None:
        self.run_dir = Path(run_dir)
        self.owner = owner
        self._handle: IO[str] | None = handle

    @classmethod
    def acquire(cls, run_dir: Path | str, owner: str, *, wait_s: float = ACQUIRE_WAIT_S) -> RunLock:
        """Take the lock (RunOwnedError when another live process holds it) and note the owner in it."""
        path = Path(run_dir) / LOCK_FILE
        handle = path.open("a+", encoding="utf-8")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_owner(handle)
                    handle.close()
                    raise RunOwnedError(
                        f"run {Path(run_dir).name} is being executed by another process ({holder}); "
                        "it cannot run twice at once"
                    ) from None
                time.sleep(0.05)
            except OSError as exc:  # a file system without flock (some FUSE mounts): heartbeats decide
                log.warning(f"run {Path(run_dir).name}: no run lock on this file system ({exc.strerror})")
                break
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"owner": owner, "pid": os.getpid(), "since": time.time()}) + "\n")
        handle.flush()
        return cls(run_dir, handle, owner)

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _read_owner(handle: IO[str]) -> str:
    try:
        handle.seek(0)
        return str(json.loads(handle.readline() or "{}").get("owner") or "unknown owner")
    except (OSError, ValueError):
        return "unknown owner"


def owner_alive(run_dir: Path | str) -> bool:
    """Whether a live process holds the run directory's lock (probed without blocking)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError:
        return False  # never executed with a lock (or its directory is gone)
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:  # no flock on this file system: the heartbeat alone decides
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


class Heartbeat:
    """A daemon thread that sets the run's `heartbeat_at` every `interval_s` while this process owns it.

    It has its own database connection (the main thread may be inside a long query or transaction) and
    writes only while the registry still names this process as the owner.
    """

    def __init__(self, database_url: str, run_id: str, owner: str, interval_s: float) -> None:
        self.database_url = database_url
        self.run_id = run_id
        self.owner = owner
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _beat(self) -> None:
        try:
            registry = RunRegistry(connect(self.database_url))
        except Exception as exc:
            log.warning(f"run {self.run_id}: no heartbeat thread ({type(exc).__name__}: {exc})")
            return
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    registry.beat_owned(self.run_id, self.owner, time.time())
                except Exception as exc:  # a database hiccup: keep beating
                    log.warning(f"run {self.run_id}: heartbeat failed ({type(exc).__name__}: {exc})")
        finally:
            registry.db.close()
