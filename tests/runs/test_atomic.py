"""Atomic writes: a writer killed mid-write leaves the old file valid; torn JSON lines are skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from syncutil import record_fsyncs
from tldrlab.runs.atomic import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
    sha256_file,
)

# The child starts an atomic write of ~32 MB and is SIGKILLed by the parent while the write is under way:
# the bytes are in the temp file but fsync and rename have not happened yet.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from tldrlab.runs import atomic

    def stall(fd):  # called by the writer after writing, before fsync + rename
        sys.stdout.write("writing\\n"); sys.stdout.flush()
        time.sleep(60)

    atomic.os.fsync = stall
    atomic.atomic_write_bytes(sys.argv[1], b'{"version": 2, "data": "' + b"x" * (32 << 20) + b'"}')
    """
)


def test_killed_writer_leaves_old_file_valid(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    atomic_write_json(target, {"version": 1})
    before = sha256_file(target)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "writing\n"
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".manifest.json.")]
        assert len(temps) == 1 and temps[0].stat().st_size > 1 << 20  # the new content was being written
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert json.loads(target.read_text(encoding="utf-8")) == {"version": 1}
    assert sha256_file(target) == before
    atomic_write_text(target, '{"version": 3}')  # a later write still works and replaces it whole
    assert json.loads(target.read_text(encoding="utf-8")) == {"version": 3}


def test_failed_write_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"ok": True})
    with pytest.raises(TypeError):  # fails inside the temp file's write, after it was created
        atomic_write_bytes(target, "text is not bytes")  # type: ignore[arg-type]
    assert json.loads(target.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_torn_metrics_line_is_skipped_and_appends_stay_whole(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    append_jsonl(metrics, {"step": 1, "loss": 2.0})
    with metrics.open("a", encoding="utf-8") as handle:  # a writer killed mid-line
        handle.write('{"step": 2, "lo')
    assert read_jsonl(metrics) == [{"step": 1, "loss": 2.0}]
    append_jsonl(metrics, {"step": 3, "loss": 1.0})  # e.g. the resumed run
    assert read_jsonl(metrics) == [{"step": 1, "loss": 2.0}, {"step": 3, "loss": 1.0}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "blob.bin"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert sha256_file(path, chunk_size=1 << 16) == hashlib.sha256(data).hexdigest()


def test_the_data_is_synced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path.resolve() / "result.json"
    calls = record_fsyncs(monkeypatch)
    atomic_write_json(target, {"a": 1})
    renamed = calls.index(("replace", target))
    assert [kind for kind, _ in calls[:renamed]] == ["fsync"]  # the temp file's bytes, before the rename
    assert calls[renamed + 1 :] == [("fsync", tmp_path.resolve())]  # then the rename itself
