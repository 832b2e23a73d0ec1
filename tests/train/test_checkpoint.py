"""Checkpoints: exact resume after kill -9 (bitwise on CPU), corrupt / truncated checkpoints and fallback."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from toy import ToyLM, ToyTask
from toy import main as run_toy

from syncutil import record_fsyncs
from tldrlab.errors import CheckpointError
from tldrlab.runs.registry import RunStatus, open_registry
from tldrlab.runs.run import create_run, execute_run, start_run
from tldrlab.train import TrainConfig, train
from tldrlab.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    load_latest,
    save_checkpoint,
    verify_checkpoint,
)

TOY = Path(__file__).with_name("toy.py")


def _losses(run_dir: Path) -> dict[int, tuple[float | None, float | None]]:
    from tldrlab.runs.atomic import read_jsonl

    out: dict[int, tuple[float | None, float | None]] = {}
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        train_loss, eval_loss = out.get(row["step"], (None, None))
        out[row["step"]] = (row.get("train_loss", train_loss), row.get("eval_loss", eval_loss))
    return out


def _toy(run_id: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(TOY), run_id, *args], stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_losses() -> None:
    steps = "24"
    straight = create_run("train", {"toy": True})
    run_toy([straight.id, steps, "6"])  # the reference, in this process (the same script, one torch thread)

    killed = create_run("train", {"toy": True})
    proc = _toy(killed.id, steps, "6", "0.25")
    ckpt_dir = Path(killed.run_dir) / "checkpoints"
    deadline = time.monotonic() + 120
    # killed a few steps past its 2nd checkpoint (step 12), so they have to be redone
    while (
        not (ckpt_dir / "step-00000012" / "index.json").exists()
        or max(_losses(Path(killed.run_dir)), default=0) < 14
    ):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its 2nd checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partial = _losses(Path(killed.run_dir))
    assert 12 < max(partial) < 24

    # the resume, here (only the killed run needs a process of its own): it reads its state from the
    # checkpoint alone, as a new process would, and the reference above already showed this process's
    # losses to be the subprocess's bit for bit (steps 1-12 below are the killed process's)
    run_toy([killed.id, steps, "6"])
    expected, resumed = _losses(Path(straight.run_dir)), _losses(Path(killed.run_dir))
    assert sorted(resumed) == list(range(1, 25))
    assert resumed == expected  # bitwise: floats compared exactly
    assert open_registry().get(killed.id).status == RunStatus.COMPLETED
    log = (Path(killed.run_dir) / "log.jsonl").read_text()
    assert "resumed from checkpoint" in log


def _train_toy(run_id: str | None, max_steps: int) -> tuple[str, object]:
    config = TrainConfig(
        max_steps=max_steps,
        batch_size=8,
        lr=2e-2,
        eval_every=5,
        checkpoint_every=5,
        keep_checkpoints=3,
        log_every=1,
        device="cpu",
        progress=False,
        plot=False,
    )
    torch.manual_seed(0)
    if run_id is None:
        with start_run("train", {}) as run:
            return run.id, train(ToyLM(), ToyTask(), config, run)
    with execute_run(run_id) as run:
        return run.id, train(ToyLM(), ToyTask(), config, run)


def test_corrupt_checkpoints_are_refused_and_resume_falls_back() -> None:
    run_id, _ = _train_toy(None, 20)
    run_dir = Path(open_registry().get(run_id).run_dir)
    original = _losses(run_dir)
    ckpts = list_checkpoints(run_dir / "checkpoints")
    assert [p.name for p in ckpts] == ["step-00000010", "step-00000015", "step-00000020"]
    for path in ckpts:
        verify_checkpoint(path)

    # truncate the newest checkpoint's weights
    weights = ckpts[2] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated"):
        verify_checkpoint(ckpts[2])
    loaded = load_latest(run_dir / "checkpoints", ToyLM())
    assert loaded is not None and loaded.step == 15

    # resuming the run falls back to step 15 and reproduces steps 16..20 exactly (same max_steps, so the
    # same LR schedule)
    _, result = _train_toy(run_id, 20)
    assert result.resumed_from == 15  # type: ignore[attr-defined]
    resumed = _losses(run_dir)
    assert {s: resumed[s] for s in range(16, 21)} == {s: original[s] for s in range(16, 21)}
    assert max(resumed) == 20

    # flip one byte of an optimizer file: sha256 mismatch; a missing index: incomplete
    ckpts = list_checkpoints(run_dir / "checkpoints")
    opt = ckpts[-1] / "optimizer.pt"
    data = bytearray(opt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    opt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"optimizer\.pt is corrupt"):
        verify_checkpoint(ckpts[-1])
    (ckpts[-2] / "index.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        verify_checkpoint(ckpts[-2])
    (ckpts[-3] / "state.json").write_text("{")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_latest(run_dir / "checkpoints", ToyLM())


def test_checkpoint_of_another_model_is_a_clear_error() -> None:
    run_id, _ = _train_toy(None, 5)
    run_dir = Path(open_registry().get(run_id).run_dir)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_latest(run_dir / "checkpoints", ToyLM(dim=8))


def test_every_checkpoint_file_is_synced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ToyLM()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    folder = tmp_path.resolve() / "checkpoints"
    calls = record_fsyncs(monkeypatch)
    path = save_checkpoint(folder, step=3, model=model, optimizer=optimizer, state={"epoch": 0})
    renamed = calls.index(("replace", path))
    synced = {p.name for kind, p in calls[:renamed] if kind == "fsync"}
    assert {"model.safetensors", "optimizer.pt", "state.json", "index.json"} <= synced
    assert ("fsync", folder) in calls[renamed + 1 :]
    verify_checkpoint(path)


def test_interrupted_writes_leave_no_checkpoint_and_their_leftovers_are_removed(tmp_path: Path) -> None:
    from tldrlab.train.checkpoint import prune_checkpoints

    model = ToyLM()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, step=1, model=model, optimizer=optimizer, state={})
    # a write that fails midway (state.json cannot be written) cleans up after itself
    with pytest.raises(TypeError):
        save_checkpoint(folder, step=2, model=model, optimizer=optimizer, state={"bad": object()})
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000001"]
    # a writer killed midway leaves a .tmp-* directory: never loaded, removed at the next prune
    leftover = folder / ".tmp-step-00000003-999-1"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    assert list_checkpoints(folder) == [folder / "step-00000001"]
    loaded = load_latest(folder, ToyLM())
    assert loaded is not None and loaded.step == 1
    prune_checkpoints(folder, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000001"]


def test_loading_a_checkpoint_restores_python_numpy_and_torch_random_states(tmp_path: Path) -> None:
    """Whatever a task draws from Python's, NumPy's or torch's global generator after a resume is what it
    drew after the checkpoint in the run that wrote it."""
    model = ToyLM()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = save_checkpoint(tmp_path / "checkpoints", step=1, model=model, optimizer=optimizer, state={})
    drawn = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    load_checkpoint(path, ToyLM())
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == drawn
