"""A home the command cannot write (a read-only mount, a directory another user owns): one line naming the
registry and why, never a traceback. Both for real: a read-only bind mount in a private mount namespace of
the command (`mountutil.in_mount_namespace`, as root or through a user namespace: nothing outside the test
sees it), and a home whose modes refuse writes, which needs no privilege at all (root runs the command
without the capability that overrides modes), so a machine without mount rights still checks this."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mountutil import in_mount_namespace, unprivileged

SRC = Path(__file__).resolve().parents[2] / "src"
LISTING = [sys.executable, "-m", "tldrlab", "runs", "list"]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "TLDRLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}


def _assert_one_line_naming_the_home(done: subprocess.CompletedProcess[str], home: Path) -> None:
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    registry = home / "tldrlab.db"
    assert line.startswith(f"error [service_unavailable] cannot open the run registry {registry}"), line
    assert f"{home} is not writable" in line, line


def test_a_read_only_home_is_one_line_not_a_traceback(tldrlab_home: Path) -> None:
    # before: `sqlite3.OperationalError: unable to open database file` with its traceback, exit 1, even for
    # `runs list` (SQLite in WAL mode writes -wal and -shm files beside the database to read it)
    listing = " ".join(LISTING)
    read_only = f"mount --bind {tldrlab_home} {tldrlab_home} && mount -o remount,ro,bind {tldrlab_home}"
    script = f"{listing} > /dev/null && {read_only} && {listing}"  # the registry made first, then read-only
    done = in_mount_namespace(script, _env(tldrlab_home), timeout=120)
    _assert_one_line_naming_the_home(done, tldrlab_home)


def test_a_home_whose_modes_refuse_writes_is_one_line_not_a_traceback(tldrlab_home: Path) -> None:
    # the same registry open failing on EACCES (a home another user owns) where the mount gave EROFS
    made = subprocess.run(LISTING, env=_env(tldrlab_home), capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr  # the registry made first
    mode = tldrlab_home.stat().st_mode
    tldrlab_home.chmod(0o555)
    try:
        done = subprocess.run(
            unprivileged(LISTING), env=_env(tldrlab_home), capture_output=True, text=True, timeout=120
        )
    finally:
        tldrlab_home.chmod(mode)
    _assert_one_line_naming_the_home(done, tldrlab_home)
