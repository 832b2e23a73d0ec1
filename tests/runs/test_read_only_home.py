"""A home the command cannot write (a read-only mount, a directory another user owns): one line naming the
registry and why, never a traceback. The home is made read-only by a bind mount in a private mount namespace
of the command (`unshare`, as root or through a user namespace), so nothing outside the test sees it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_a_read_only_home_is_one_line_not_a_traceback(tldrlab_home: Path) -> None:
    # before: `sqlite3.OperationalError: unable to open database file` with its traceback, exit 1, even for
    # `runs list` (SQLite in WAL mode writes -wal and -shm files beside the database to read it)
    listing = f"{sys.executable} -m tldrlab runs list"
    read_only = f"mount --bind {tldrlab_home} {tldrlab_home} && mount -o remount,ro,bind {tldrlab_home}"
    script = f"{listing} > /dev/null && {read_only} && {listing}"  # the registry made first, then read-only
    unshare = (
        ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    )
    env = {**os.environ, "TLDRLAB_HOME": str(tldrlab_home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    done = subprocess.run(
        [*unshare, "sh", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"error [service_unavailable] cannot open the run registry {tldrlab_home}/tldrlab.db"
    )
    assert f"{tldrlab_home} is not writable" in line
