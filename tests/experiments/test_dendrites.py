"""PerforatedAI dendrites through the training loop's hooks, and its traps (sys.exit, pdb) made harmless."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from tldrlab.experiments.dendrites import (
    GRADIENT_DESCENT_NOTE,
    DendriteConfig,
    DendriteHooks,
    PerforatedAIError,
    pai_parameter_count,
    perforated_modules,
)
from tldrlab.runs import RunStatus, open_registry, start_run
from tldrlab.train.config import TrainConfig
from tldrlab.train.loop import train


def tiny_t5() -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=40, d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    return T5ForConditionalGeneration(config)


class CopyTask:
    """Learn to copy the first tokens: a real seq2seq signal in a few steps."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randint(2, 40, (32, 8), generator=generator)
        self.y = self.x[:, :4].clone()

    def train_dataset(self) -> list[int]:
        return list(range(32))

    def collate(self, items: list[int]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[items], "labels": self.y[items]}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return model(**batch).loss, batch["labels"].numel()

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return {"eval_loss": float(model(input_ids=self.x[:8], labels=self.y[:8]).loss)}


@pytest.mark.slow
def test_hooks_add_dendrites_and_save_pai_state() -> None:
    config = DendriteConfig(switch_every=1, max_dendrites=1)
    umask = os.umask(0o002)  # a home shared by a group
    try:
        with start_run("test", {}) as run:
            hooks = DendriteHooks(config, save_dir=run.dir / "pai", log=run.log)
            model = hooks.perforate(tiny_t5())
            assert perforated_modules(model) == [
                "encoder.block.0.layer.1.DenseReluDense",
                "decoder.block.0.layer.2.DenseReluDense",
            ]
            before = pai_parameter_count(model)
            train_config = TrainConfig(
                max_steps=12, batch_size=8, eval_every=2, lr=3e-3, progress=False, plot=False
            )
            result = train(model, CopyTask(), train_config, run, hooks=hooks)
    finally:
        os.umask(umask)
    assert hooks.events[-1]["dendrites"] == 1
    assert any(e["restructured"] for e in hooks.events)
    assert pai_parameter_count(result.model) > before
    assert hooks.completed and result.stopped_early  # the tracker said it was done
    # its graphs and settings live in this run's own save directory
    assert (run.dir / "pai" / "pai_tracker_state.json").exists()
    snapshot = (run.dir / "pai" / "pai_globals_snapshot.json").read_text()
    assert '"max_dendrites": 1' in snapshot
    assert list((run.dir / "pai" / "pai").glob("*.png"))
    assert GRADIENT_DESCENT_NOTE in (run.dir / "pai" / "pai_events.json").read_text()
    assert Path.cwd() != run.dir / "pai"
    # PAI's mid-run models (best / latest, through safetensors' writer) were 0600 whatever the umask, where
    # every other file of the run takes it: another user of the group could not read them
    snapshots = list((run.dir / "pai" / "pai").glob("*.pt"))
    assert snapshots and {oct(path.stat().st_mode & 0o777) for path in snapshots} == {oct(0o664)}, snapshots


def test_sys_exit_on_misconfiguration_becomes_a_failed_run() -> None:
    bad = DendriteConfig(output_dimensions=[-1, -1, -1])  # no neuron axis: PAI calls sys.exit(-1)
    with pytest.raises(PerforatedAIError, match=r"sys\.exit") as caught, start_run("test", {}) as run:
        DendriteHooks(bad, save_dir=run.dir / "pai").perforate(tiny_t5())
    assert "output_dimensions" in caught.value.message
    record = open_registry().get(run.id)
    assert record.status == RunStatus.FAILED
    assert record.error_code == "perforatedai_failed"
    assert "sys.exit" in (record.message or "")


def test_no_module_matched_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PerforatedAIError, match="no module matched"):
        DendriteHooks(DendriteConfig(module_names=["NoSuchBlock"]), save_dir=tmp_path).perforate(tiny_t5())


def test_a_module_id_naming_no_module_is_a_clear_error(tmp_path: Path) -> None:
    # PerforatedAI skips such an id: the class names' modules got dendrites, the one named got none, unsaid
    config = DendriteConfig(module_ids=[".encoder.block.0.layer.1.DenseReluDense", ".encoder.block.9.mlp"])
    missing = r"module_ids \.encoder\.block\.9\.mlp: the model has no module of that path"
    with pytest.raises(PerforatedAIError, match=missing):
        DendriteHooks(config, save_dir=tmp_path).perforate(tiny_t5())


@pytest.mark.slow
def test_debugger_trap_never_hangs(tmp_path: Path) -> None:
    # A wrong output_dimensions makes PAI call pdb.set_trace() when it adds dendrites; with stdin closed and a
    # time limit the process must end promptly with our error, not wait at a debugger prompt.
    script = textwrap.dedent(
        f"""
        import torch
        from tests.experiments.test_dendrites import tiny_t5
        from tldrlab.experiments.dendrites import DendriteConfig, DendriteHooks, PerforatedAIError
        from tldrlab.train.loop import TrainState
        # graphs_every_eval=False: PAI's matplotlib graphs at every evaluation are not what is tested here
        config = DendriteConfig(output_dimensions=[-1, 0, -1], switch_every=1, graphs_every_eval=False)
        hooks = DendriteHooks(config, save_dir={str(tmp_path)!r})
        hooks.perforate(tiny_t5())
        try:
            for step in range(1, 4):
                hooks.on_eval(TrainState(step=step), {{"eval_loss": 4.0 - step / 10}})
        except PerforatedAIError as exc:
            print("REFUSED", exc.message)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REFUSED" in done.stdout and "debugger" in done.stdout
    assert "(Pdb)" not in done.stdout
