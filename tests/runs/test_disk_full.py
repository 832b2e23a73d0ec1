"""A run on a full disk: one line saying so (`error [disk_full]`, exit 9), never a traceback, and the run
recorded failed with that code wherever the registry can still be written.

The disk is a real one that fills up: a small tmpfs mounted in a private mount namespace of the command
(`mountutil.in_mount_namespace`: as root or through a user namespace), so nothing outside the test sees it.
A machine that gives neither fails these tests saying so: a real ENOSPC needs a real full file system, and
what an unprivileged process can make instead (RLIMIT_FSIZE) fails writes with another error (EFBIG, "File
too large"), which is not a full disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mountutil import in_mount_namespace
from tldrlab.runs import RunStatus, open_registry, start_run

SRC = Path(__file__).resolve().parents[2] / "src"
TRAIN = (
    "train --model char_lstm --data {data} --model-config "
    '\'{{"embedding_dim": 32, "hidden_dim": 64, "num_layers": 1}}\' --block-size 32 --max-steps 40 '
    "--batch-size 4 --eval-every 10 --checkpoint-every 10 --wandb disabled"
)


def _train_on_a_full_disk(
    home: Path, tmp_path: Path, mount: Path, size: str
) -> subprocess.CompletedProcess[str]:
    """`tldrlab -q train ...` with `mount` (the home or its runs/) a tmpfs of `size`, in its own namespace."""
    data = tmp_path / "corpus.txt"
    data.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
    mount.mkdir(parents=True, exist_ok=True)
    command = f"{sys.executable} -m tldrlab -q {TRAIN.format(data=data)}"
    script = f"mount -t tmpfs -o size={size} tmpfs {mount} && exec {command}"
    env = {**os.environ, "TLDRLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    return in_mount_namespace(script, env, timeout=300)


# the first checkpoint's optimizer.pt (torch's writer) or its model.safetensors is the write that fails
@pytest.mark.parametrize("size", ["200k", "400k"])
def test_a_training_whose_run_directory_fills_up_fails_with_one_line(
    tldrlab_home: Path, tmp_path: Path, size: str
) -> None:
    # Before: torch's "unexpected pos 150336 vs 150224" or safetensors' "I/O error: No space left on
    # device" as an internal_error, its traceback printed twice.
    done = _train_on_a_full_disk(tldrlab_home, tmp_path, tldrlab_home / "runs", size)
    assert done.returncode == 9, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error [disk_full] no space left on device"), done.stderr
    (record,) = open_registry().list()  # the registry lives outside the full disk: it says what happened
    assert record.status is RunStatus.FAILED and record.error_code == "disk_full"
    assert record.message is not None and "free some space" in record.message


def test_a_full_home_keeps_the_run_s_own_error(tldrlab_home: Path, tmp_path: Path) -> None:
    # The registry's SQLite file is on the full disk too: recording the failure fails as well. Before, that
    # second error ("sqlite3.OperationalError: database or disk is full") replaced the first, with both
    # tracebacks on the console.
    done = _train_on_a_full_disk(tldrlab_home, tmp_path, tldrlab_home, "600k")
    assert done.returncode == 9, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    assert "error [disk_full] no space left on device" in done.stderr


def test_exporting_a_run_onto_a_full_disk_is_one_line(tldrlab_home: Path, tmp_path: Path) -> None:
    # before: the gzip stream's "OSError: [Errno 28] No space left on device", which names no file: a
    # traceback, exit 1
    with start_run("toy", {}) as run:
        (run.artifacts_dir / "weights.bin").write_bytes(os.urandom(256 * 1024))  # incompressible
    out = tmp_path / "out"
    out.mkdir()
    command = f"{sys.executable} -m tldrlab runs export {run.id} --out {out}/"
    script = f"mount -t tmpfs -o size=64k tmpfs {out} && exec {command}"
    env = {**os.environ, "TLDRLAB_HOME": str(tldrlab_home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    done = in_mount_namespace(script, env, timeout=120)
    assert done.returncode == 9 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error [disk_full] no space left on device writing {out}/{run.id}.tar.gz"), line


PREEMPT_ON_A_FULL_DISK = """
import logging

from tldrlab.errors import RunPreemptedError
from tldrlab.runs import start_run

logging.basicConfig(level=logging.WARNING, format="%(message)s")  # the warnings to stderr
try:
    with start_run("toy", {}) as run:
        with open(run.dir / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(bytes(64 * 1024))
            except OSError:
                pass  # the disk is full now
        raise RunPreemptedError("the worker is stopping")
except RunPreemptedError as exc:
    print("preempted:", exc.message)
"""


def test_a_run_preempted_on_a_full_disk_stays_preempted(tldrlab_home: Path, tmp_path: Path) -> None:
    # Recording the preemption (the manifest, the registry's SQLite file on the same disk) met the full disk
    # and its OSError replaced the RunPreemptedError: the worker took the run for failed, not for one to put
    # back in the queue.
    script = tmp_path / "preempt.py"
    script.write_text(PREEMPT_ON_A_FULL_DISK)
    tldrlab_home.mkdir(parents=True, exist_ok=True)
    shell = f"mount -t tmpfs -o size=400k tmpfs {tldrlab_home} && exec {sys.executable} {script}"
    env = {**os.environ, "TLDRLAB_HOME": str(tldrlab_home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    done = in_mount_namespace(shell, env, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip() == "preempted: the worker is stopping", done.stdout
    assert "could not record the run's preemption in its manifest" in done.stderr, done.stderr
