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

from cliutil import run_captured
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


def test_a_real_runs_files_take_the_umask_like_a_plain_open(
    tldrlab_home: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # atomically written files (manifest, evaluation files, PNG curves) came from mkstemp and safetensors
    # weights from safetensors' own writer: 0600 whatever the umask, while logs / metrics were 0644 and
    # directories 0755, so in a home shared by an API and workers running as different users the API could
    # read a run's log but not its manifest or model
    lines = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()[:200]
    text = tldrlab_home.parent / "text.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "model": "char_lstm",
        "model_settings": {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1},
        "data": {"path": str(text), "block_size": 32, "val_fraction": 0.1, "max_val_examples": 4},
        "tokenizer": {"method": "char", "vocab_size": 100},
        "train": {"max_steps": 2, "batch_size": 2, "eval_every": 1, "checkpoint_every": 1, "progress": False},
        "final_eval": {"max_samples": 2, "bertscore": False, "max_new_tokens": 4},
        "wandb": "disabled",
    }
    (tldrlab_home.parent / "train.json").write_text(json.dumps(config))
    # a group-shared home: group may read, others nothing (not the usual 022, so that no default passes); the
    # real command in this process, the umask being the process's (nothing of the home exists before it)
    previous = os.umask(0o027)
    try:
        code, _, err = run_captured(
            ["train", "--config", str(tldrlab_home.parent / "train.json"), "-q"], capsys
        )
    finally:
        os.umask(previous)
    assert code == 0, err[-3000:]
    (run_dir,) = (tldrlab_home / "runs").glob("train-*")  # beside its tokenizer and evaluation runs
    names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")}
    for wanted in ("manifest.json", "model/model.safetensors", "metrics.jsonl", "checkpoints/best"):
        assert wanted in names, sorted(names)
    assert any(name.endswith(".png") for name in names), sorted(names)
    # every file and directory of the home (all three runs, the registry) as open() / mkdir would make it
    everything = [tldrlab_home, *tldrlab_home.rglob("*")]
    wrong = {
        p.relative_to(tldrlab_home).as_posix(): oct(p.stat().st_mode & 0o777)
        for p in everything
        if p.stat().st_mode & 0o777 != (0o750 if p.is_dir() else 0o640)
    }
    assert wrong == {}, wrong


def test_atomic_writes_and_honour_umask_follow_the_current_umask(tmp_path: Path) -> None:
    from tldrlab.runs.atomic import current_umask, honour_umask

    previous = os.umask(0o002)
    try:
        assert current_umask() == 0o002 and os.umask(0o002) == 0o002  # read without changing it
        atomic_write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o664
        os.umask(0o077)
        atomic_write_text(tmp_path / "a.txt", "y")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o600
        os.umask(0o022)
        folder = tmp_path / "d"
        (folder / "sub").mkdir(parents=True)
        os.chmod(folder / "sub", 0o700)
        (folder / "sub" / "w.bin").write_bytes(b"")
        os.chmod(folder / "sub" / "w.bin", 0o600)
        honour_umask(folder)
        assert (folder / "sub").stat().st_mode & 0o777 == 0o755
        assert (folder / "sub" / "w.bin").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(previous)
