"""Data-parallel training with two CPU processes (torchrun, gloo): different data, identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netutil import free_port
from tldrlab.runs.atomic import read_jsonl
from tldrlab.runs.registry import RunStatus, open_registry
from tldrlab.runs.run import create_run

TOY = Path(__file__).with_name("toy.py")


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc_per_node 2 ARGS` on a free port (torchrun's --master_port 0 does not pick one), one
    torch thread per rank."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, "--master_port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.slow
def test_two_process_data_parallel_training(tmp_path: Path) -> None:
    record = create_run("train", {"toy": "ddp"})
    out = tmp_path / "out"
    out.mkdir()
    proc = _torchrun(str(TOY), "ddp", record.id, str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0["steps"] == r1["steps"] == 6
    assert len(r0["seen"]) == len(r1["seen"]) == 6 * 8
    assert not set(r0["seen"]) & set(r1["seen"])  # each rank trained on its own shard
    assert r0["weights"] == r1["weights"]  # gradients were all-reduced: the replicas stayed identical
    run_dir = Path(record.run_dir)
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train_loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # written once, by rank 0 only
    assert json.loads((run_dir / "manifest.json").read_text())["world_size"] == 2
    assert open_registry().get(record.id).status == RunStatus.COMPLETED


@pytest.mark.slow
def test_documented_torchrun_cli_command_exits_zero_on_every_rank(tmp_path: Path) -> None:
    """docs/scale-out.md's CPU command, `torchrun --nproc_per_node 2 -m tldrlab train ...`: rank 1 (a follower
    without a run) crashed after training, printing the report of a result it does not have."""
    corpus = tmp_path / "input.txt"
    corpus.write_text("\n".join(f"the cat sat on mat number {i} and the dog ran" for i in range(200)) + "\n")
    tokenizer = tmp_path / "tok"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "tldrlab"]
    made = subprocess.run(
        [*cli, "tokenizer", "train", "--method", "char", "--out", str(tokenizer), str(corpus)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    proc = _torchrun(
        *(
            "-m",
            "tldrlab",
            "train",
            "--model",
            "char_lstm",
            "--data",
            str(corpus),
            "--tokenizer",
            str(tokenizer),
        ),
        *("--device", "cpu", "--max-steps", "2", "--quiet"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.count("run train-") == 1, proc.stdout  # one report, from rank 0
    (record,) = [r for r in open_registry().list() if r.kind == "train"]
    assert record.status == RunStatus.COMPLETED
