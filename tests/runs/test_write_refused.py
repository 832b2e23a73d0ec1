"""A write the system refuses for a cause other than a full disk: a file that outgrows the file-size limit
(`ulimit -f`, RLIMIT_FSIZE; a file system's largest file, FAT32's 4 GB, gives the same EFBIG), a read-only
file system. One line saying so (`error [file_too_large]`, exit 9), never a traceback, and the run recorded
failed with that code.

The limit is a real one, set in the command's process before it starts (`preexec_fn`), which needs no
privilege. SIGXFSZ is left at its default there, as a shell's `ulimit -f` leaves it, which would kill the
process at the write ("File size limit exceeded"): the Python interpreter ignores SIGXFSZ when it starts,
so the write fails with EFBIG instead (tldrlab need not ignore it itself), and these tests check that a user
under `ulimit -f` gets the clear error.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cliutil import run_captured
from mountutil import in_mount_namespace
from tldrlab.runs import RunStatus, open_registry, start_run

SRC = Path(__file__).resolve().parents[2] / "src"
# hidden_dim 256: model.safetensors is 1.2 MB and optimizer.pt 2.5 MB, well over the registry's SQLite files
# (its write-ahead log is some 150 KB at the first checkpoint), so a checkpoint is the write that is refused
TRAIN = [
    "train",
    "--model",
    "char_lstm",
    "--model-config",
    '{"embedding_dim": 32, "hidden_dim": 256, "num_layers": 1}',
    "--block-size",
    "32",
    "--max-steps",
    "20",
    "--batch-size",
    "4",
    "--eval-every",
    "10",
    "--checkpoint-every",
    "10",
    "--wandb",
    "disabled",
]


def _limited(max_bytes: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # as a shell's `ulimit -f` leaves it

    return limit


def _tldrlab(
    args: list[str], home: Path, max_bytes: int | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TLDRLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "tldrlab", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limited(max_bytes) if max_bytes is not None else None,
    )


def test_exporting_a_run_over_the_file_size_limit_is_one_line(tldrlab_home: Path, tmp_path: Path) -> None:
    # before: the gzip stream's "OSError: [Errno 27] File too large", which names no file: a traceback, exit 1
    with start_run("toy", {}) as run:
        (run.artifacts_dir / "weights.bin").write_bytes(os.urandom(256 * 1024))  # incompressible
    out = tmp_path / "out"
    out.mkdir()
    done = _tldrlab(["runs", "export", run.id, "--out", f"{out}/"], tldrlab_home, 64 * 1024, timeout=120)
    assert done.returncode == 9 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        "error [file_too_large] file too large for this process's file-size limit (65536 bytes, `ulimit -f`) "
        f"writing {out}/{run.id}.tar.gz: raise the limit"
    ), line
    assert list(out.iterdir()) == []  # the partly written archive is removed
    assert (run.artifacts_dir / "weights.bin").stat().st_size == 256 * 1024  # the run is as it was


# 600k: the first checkpoint's model.safetensors (safetensors' "I/O error: File too large (os error 27)") is
# the write refused; 1800k: its optimizer.pt (torch.save's file)
@pytest.mark.parametrize("limit", [600 * 1024, 1800 * 1024])
def test_a_training_over_the_file_size_limit_fails_with_one_line_and_resumes(
    tldrlab_home: Path, tmp_path: Path, limit: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: "SafetensorError: Error while serializing: I/O error: File too large (os error 27)" as an
    # internal_error, its traceback printed twice
    data = tmp_path / "corpus.txt"
    data.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
    done = _tldrlab(["-q", *TRAIN, "--data", str(data)], tldrlab_home, limit, timeout=300)
    assert done.returncode == 9, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    (record,) = open_registry().list()
    run_dir = Path(record.run_dir)
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(
        f"error [file_too_large] file too large for this process's file-size limit ({limit} bytes, "
        f"`ulimit -f`) ({run_dir}): raise the limit (`ulimit -f unlimited`), then resume the run "
        f"({record.id})"
    ), errors[0]
    assert record.status is RunStatus.FAILED and record.error_code == "file_too_large"
    assert list((run_dir / "checkpoints").glob(".tmp-*")) == []  # the refused checkpoint is removed
    # what the message says to do does it: without the limit the run resumes and completes (`tldrlab train
    # --resume` in this process, through the command's entry point: only the limited run needs a process of
    # its own, and a second interpreter importing torch and training cost ~40% of each case)
    code, _, err = run_captured(["-q", "train", "--resume", record.id], capsys)
    assert code == 0, err
    assert open_registry().get(record.id).status is RunStatus.COMPLETED


def test_exporting_a_run_onto_a_read_only_file_system_is_one_line(tldrlab_home: Path, tmp_path: Path) -> None:
    # a read-only bind mount of --out in a private mount namespace of the command; before: "[os_error]
    # Read-only file system: {out}/.{id}.tar.gz.1a2b3c4d.part", naming a file the user never asked for
    with start_run("toy", {}) as run:
        pass
    out = tmp_path / "out"
    out.mkdir()
    command = f"{sys.executable} -m tldrlab runs export {run.id} --out {out}/"
    script = f"mount --bind {out} {out} && mount -o remount,ro,bind {out} && exec {command}"
    env = {**os.environ, "TLDRLAB_HOME": str(tldrlab_home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    done = in_mount_namespace(script, env, timeout=120)
    assert done.returncode == 9 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        f"error [read_only_file_system] read-only file system writing {out}/{run.id}.tar.gz: make it "
        "writable (remount it read-write), or give --out a place on another disk"
    ), line


WRITE_ELSEWHERE = """
import sys
from pathlib import Path

from tldrlab.errors import WriteRefusedError
from tldrlab.runs import start_run

try:
    with start_run("toy", {}) as run:
        (Path(sys.argv[1]) / "result.json").write_text("{}")  # a place outside the run, mounted read-only
except WriteRefusedError as exc:
    print(f"[{exc.code}] {exc.message}")
"""


def test_a_run_refused_a_write_outside_its_directory_names_that_file(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    # before: "read-only file system ({the run's directory}): make it writable", sending the user to a disk
    # that was writable
    script, elsewhere = tmp_path / "elsewhere.py", tmp_path / "elsewhere"
    script.write_text(WRITE_ELSEWHERE)
    elsewhere.mkdir()
    read_only = f"mount --bind {elsewhere} {elsewhere} && mount -o remount,ro,bind {elsewhere}"
    env = {**os.environ, "TLDRLAB_HOME": str(tldrlab_home), "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    done = in_mount_namespace(f"{read_only} && exec {sys.executable} {script} {elsewhere}", env, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    (record,) = open_registry().list()
    assert done.stdout.strip() == (
        f"[read_only_file_system] read-only file system writing {elsewhere}/result.json: make it writable "
        f"(remount it read-write), then resume the run ({record.id}) or start it again"
    ), done.stdout
    assert record.status is RunStatus.FAILED and record.error_code == "read_only_file_system"
