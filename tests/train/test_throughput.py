"""The loop reports its throughput: tokens/s in every metrics line and a closing log line; MFU where the
device's peak is known (CUDA at fp16/bf16), never on a CPU."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from toy import SEQ, ToyLM, ToyTask

from tldrlab.errors import RunPreemptedError
from tldrlab.runs import preempt
from tldrlab.runs.run import execute_run, start_run
from tldrlab.train import TrainConfig, TrainHooks, TrainState, train
from tldrlab.train.loop import PEAK_TFLOPS, model_flops_per_token, peak_flops
from tldrlab.train.recipe import Recipe, RecipeExport, RecipeSetup, run_recipe


def test_throughput_lines_and_no_mfu_on_a_cpu() -> None:
    torch.manual_seed(0)
    config = TrainConfig(
        max_steps=6, batch_size=8, eval_every=3, checkpoint_every=0, log_every=2, device="cpu",
        progress=False, plot=False,
    )  # fmt: skip
    with start_run("toy", {}) as run:
        train(ToyLM(), ToyTask(), config, run)
    lines = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if "train_loss" in line]
    assert [line["step"] for line in train_lines] == [2, 4, 6]
    assert all(line["tokens_per_s"] > 0 and "mfu" not in line for line in train_lines)
    logs = [json.loads(line) for line in (run.dir / "log.jsonl").read_text().splitlines()]
    closing = [line for line in logs if line["message"].startswith("trained to step 6")]
    assert closing and "tokens/s" in closing[0]["message"] and "MFU" not in closing[0]["message"]
    assert peak_flops(torch.device("cpu"), "bf16") is None
    model = ToyLM()
    assert model_flops_per_token(model) == 6 * sum(p.numel() for p in model.parameters())
    # frozen weights (a LoRA base) get no weight gradients: 4 FLOPs per parameter, not 6
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    total = sum(p.numel() for p in model.parameters())
    assert model_flops_per_token(model) == 6 * total - 2 * frozen.numel()
    assert PEAK_TFLOPS["H100"] > PEAK_TFLOPS["A100"] > 0


def test_the_driver_seeds_tracks_restores_the_best_weights_and_records_the_export(tmp_path: object) -> None:
    """A recipe written in a few lines: the driver seeds before setup, runs the loop, puts the best
    evaluation's weights back (not the last step's) and records what export saved, with sha256."""
    seen: dict[str, object] = {}

    class WorseEachTime(ToyTask):
        """An evaluation that only gets worse: the best weights are the first evaluation's (step 2)."""

        evaluations = 0

        def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
            self.evaluations += 1
            return {"eval_loss": float(self.evaluations)}

    def setup(run: object, config: TrainConfig) -> RecipeSetup:
        seen["first_draw"] = torch.rand(1).item()  # the driver seeded: the same draw every time
        return RecipeSetup(model=ToyLM(), task=WorseEachTime(), loop=config)

    def export(run: object, config: TrainConfig, setup: RecipeSetup, result: object) -> RecipeExport:
        path = run.dir / "weights.pt"  # type: ignore[attr-defined]
        torch.save(result.model.state_dict(), path)  # type: ignore[attr-defined]
        seen["exported"] = {k: v.clone() for k, v in result.model.state_dict().items()}  # type: ignore[attr-defined]
        return RecipeExport(model_dir=None, summary={"exported": 1}, artifacts=[(path, "model")])

    recipe: Recipe[TrainConfig] = Recipe("toy", lambda config: config.seed, setup, export)
    config = TrainConfig(
        max_steps=8, batch_size=8, eval_every=2, checkpoint_every=2, device="cpu", progress=False,
        plot=False, seed=3, lr=0.05,
    )  # fmt: skip
    with start_run("toy", {}) as run:
        outcome = run_recipe(run, recipe, config)
    torch.manual_seed(3)
    assert seen["first_draw"] == torch.rand(1).item()
    from safetensors.torch import load_file

    best = load_file(str(run.dir / "checkpoints" / "best" / "model.safetensors"))
    final = load_file(str(run.dir / "checkpoints" / "step-00000008" / "model.safetensors"))
    exported = seen["exported"]
    assert isinstance(exported, dict) and all(torch.equal(best[k], exported[k]) for k in best)
    assert not all(torch.equal(final[k], exported[k]) for k in final)  # not the last step's weights
    assert outcome.train.best_step == 2 and outcome.model_step == 2
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert (
        manifest["metrics"]["exported"] == 1 and manifest["metrics"]["model_step"] == outcome.train.best_step
    )
    (weights,) = [a for a in manifest["artifacts"] if a["path"] == "weights.pt"]
    assert weights["kind"] == "model" and len(weights["sha256"]) == 64


def _train_lines(run_dir: Path) -> list[dict[str, float]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if "train_loss" in line]


def test_a_resumed_run_s_first_rates_count_only_the_steps_it_timed() -> None:
    """The first metrics line after a resume averages its loss over the steps before the checkpoint too (as
    the uninterrupted run does), but its rates are this process's: steps_per_s counted the steps of the
    process that stopped over this one's time (10 steps in the time of 5, twice the real rate)."""
    config = TrainConfig(
        max_steps=10, batch_size=8, eval_every=0, checkpoint_every=5, log_every=10, device="cpu",
        progress=False, plot=False,
    )  # fmt: skip

    class PreemptAt(TrainHooks):
        def on_step_end(self, state: TrainState, loss: float) -> None:
            if state.step == 5:
                preempt.request_stop()

    torch.manual_seed(0)
    try:
        with pytest.raises(RunPreemptedError), start_run("toy", {}) as run:
            train(ToyLM(), ToyTask(), config, run, hooks=PreemptAt())
    finally:
        preempt.reset()
    with execute_run(run.id) as resumed_run:
        assert train(ToyLM(), ToyTask(), config, resumed_run).resumed_from == 5
    (line,) = _train_lines(run.dir)
    tokens_per_step = config.batch_size * (SEQ - 1)  # every toy sequence trains on SEQ - 1 tokens
    assert line["step"] == 10
    assert line["tokens_per_s"] / line["steps_per_s"] == pytest.approx(tokens_per_step)


EVALUATION_S = 1.0


class SlowEvaluation(ToyTask):
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        time.sleep(EVALUATION_S)  # an evaluation that costs time, as generating summaries does
        return super().evaluate(model)


def test_the_rates_of_a_metrics_line_leave_out_the_evaluations_and_checkpoints_before_it() -> None:
    """A metrics line's tokens_per_s and steps_per_s (and MFU) are the training's: the evaluation and the
    checkpoint written at the step of the line before (here an evaluation of 1 s) were in its window and
    cut its rates several-fold, every window after an evaluation when log_every == eval_every."""
    config = TrainConfig(
        max_steps=4, batch_size=8, eval_every=2, checkpoint_every=2, log_every=2, device="cpu",
        progress=False, plot=False,
    )  # fmt: skip
    torch.manual_seed(0)
    with start_run("toy", {}) as run:
        train(ToyLM(), SlowEvaluation(), config, run)
    after_evaluation = _train_lines(run.dir)[1]
    assert after_evaluation["step"] == 4
    # two toy steps take milliseconds; with the evaluation at step 2 counted they took over a second
    assert 2 / after_evaluation["steps_per_s"] < EVALUATION_S / 2


def test_the_closing_throughput_line_leaves_out_the_evaluations_and_checkpoints() -> None:
    """The closing log line's tokens/s (and MFU, and the result's tokens_per_s) divided the tokens by the
    call's wall time, evaluations and checkpoints included, where the metrics lines leave them out: here a
    1 s evaluation made 4 toy steps read as a second of training."""
    config = TrainConfig(
        max_steps=4, batch_size=8, eval_every=4, checkpoint_every=4, log_every=4, device="cpu",
        progress=False, plot=False,
    )  # fmt: skip
    torch.manual_seed(0)
    with start_run("toy", {}) as run:
        result = train(ToyLM(), SlowEvaluation(), config, run)
    tokens = config.max_steps * config.batch_size * (SEQ - 1)  # every toy sequence trains on SEQ - 1 tokens
    logs = [json.loads(line) for line in (run.dir / "log.jsonl").read_text().splitlines()]
    (closing,) = [line for line in logs if line["message"].startswith("trained to step 4")]
    assert result.seconds > EVALUATION_S  # the wall time of the call, evaluation included
    # four toy steps take milliseconds; with the evaluation counted they took over a second
    assert tokens / closing["tokens_per_s"] < EVALUATION_S / 2, closing
    assert result.tokens_per_s == closing["tokens_per_s"]


def test_the_progress_bar_s_tokens_per_second_leaves_out_the_evaluations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The bar's running tok_s divided the tokens by the time since the start, evaluations and checkpoints
    included, where the metrics lines and the closing line leave them out: here the 1 s evaluation at step
    2 made the last two of four toy steps read as a second of training."""
    config = TrainConfig(
        max_steps=4, batch_size=8, eval_every=2, checkpoint_every=2, log_every=2, device="cpu",
        progress=True, plot=False,
    )  # fmt: skip
    torch.manual_seed(0)
    capsys.readouterr()
    with start_run("toy", {}) as run:
        train(ToyLM(), SlowEvaluation(), config, run)
    bar_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train:")]
    # off a terminal the bar writes its last state as a line of its own when it closes
    last = re.search(r"tok_s=([\d,]+)", bar_lines[-1])
    assert last is not None and "4/4" in bar_lines[-1], bar_lines
    tokens = config.max_steps * config.batch_size * (SEQ - 1)  # every toy sequence trains on SEQ - 1 tokens
    # four toy steps take milliseconds; with the evaluation counted they took over a second
    assert tokens / float(last.group(1).replace(",", "")) < EVALUATION_S / 2, bar_lines
