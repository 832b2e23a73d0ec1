"""The training loop on a tiny real model: learning, accumulation, schedules, eval, early stopping, hooks."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from toy import ToyLM, ToyTask

from tldrlab.errors import InvalidInputError, RunCancelledError, RunPreemptedError
from tldrlab.runs import preempt
from tldrlab.runs.registry import RunStatus, open_registry
from tldrlab.runs.run import execute_run, start_run
from tldrlab.train import EvalDecision, TrainConfig, TrainHooks, TrainState, train
from tldrlab.train.loop import epoch_batches
from tldrlab.train.schedule import build_optimizer, lr_at


def _config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = dict(
        max_steps=30,
        batch_size=8,
        lr=2e-2,
        eval_every=10,
        checkpoint_every=10,
        log_every=5,
        device="cpu",
        progress=False,
        plot=False,
    )
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_loop_learns_and_records_metrics() -> None:
    torch.manual_seed(0)
    with start_run("train", {"test": "learn"}) as run:
        result = train(ToyLM(), ToyTask(), _config(max_steps=60, plot=True), run)
    rows = run.metrics()
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert len(evals) == 6
    assert evals[-1] < evals[0] * 0.8, evals
    assert result.steps == 60 and result.best_step is not None
    assert result.best_value == min(evals)
    assert result.best_checkpoint is not None and (result.best_checkpoint / "index.json").exists()
    train_rows = [r for r in rows if "train_loss" in r]
    assert [r["step"] for r in train_rows] == list(range(5, 61, 5))
    assert all(r["tokens_per_s"] > 0 for r in train_rows)
    assert (run.dir / "plots" / "train_loss.png").stat().st_size > 1000
    assert (run.dir / "plots" / "eval.png").exists()
    record = open_registry().get(run.id)
    assert record.status == RunStatus.COMPLETED
    assert record.metrics["best_eval_loss"] == result.best_value
    # keep_checkpoints=2 of the periodic ones, plus the best
    names = sorted(p.name for p in run.checkpoints_dir.iterdir())
    assert names == ["best", "step-00000050", "step-00000060"]


def test_curves_are_drawn_at_the_end_and_not_at_every_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawing the PNGs took ~3 s per evaluation on this CPU, more than the steps between them: while
    training, they are redrawn at most once per PLOT_INTERVAL_S, and always at the end."""
    from tldrlab.train import loop

    drawn: list[int] = []
    real = loop.plot_run_metrics

    def counting(run_dir: object) -> object:
        drawn.append(len(drawn))
        return real(run_dir)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "plot_run_metrics", counting)
    with start_run("train", {"test": "plots"}) as run:
        train(ToyLM(), ToyTask(), _config(max_steps=20, eval_every=2, plot=True), run)
    assert len(drawn) == 1 and (run.dir / "plots" / "eval.png").exists()  # 10 evaluations, one drawing
    monkeypatch.setattr(loop, "PLOT_INTERVAL_S", 0.0)
    drawn.clear()
    with start_run("train", {"test": "plots"}) as run:
        train(ToyLM(), ToyTask(), _config(max_steps=4, eval_every=2, plot=True), run)
    assert len(drawn) == 3  # at each evaluation once the interval has passed, and at the end


def test_same_seed_same_losses_and_accumulation_matches_big_batch() -> None:
    def losses(**overrides: object) -> list[float]:
        torch.manual_seed(0)
        model = ToyLM(dropout=0.0)
        task = ToyTask()
        with start_run("train", {}) as run:
            train(model, task, _config(max_steps=10, log_every=1, **overrides), run)
        return [r["train_loss"] for r in run.metrics() if "train_loss" in r]

    a, b = losses(), losses()
    assert a == b
    # 2 micro-batches of 8 accumulate to the gradient of one batch of 16 over the same examples: the loop's
    # data order for batch 16 is the concatenation of consecutive batches of 8 only if the permutation is
    # the same, so compare against the mean of the micro-batch losses instead of exact equality of batches.
    accumulated = losses(grad_accum_steps=2)
    assert len(accumulated) == 10 and all(math.isfinite(x) for x in accumulated)
    assert accumulated != a


def test_epoch_batches_are_seeded_sharded_and_complete() -> None:
    one = epoch_batches(20, 3, seed=1, epoch=0)
    assert one == epoch_batches(20, 3, seed=1, epoch=0)
    assert one != epoch_batches(20, 3, seed=1, epoch=1)
    assert len(one) == 6 and all(len(b) == 3 for b in one)
    r0 = epoch_batches(20, 3, seed=1, epoch=0, rank=0, world_size=2)
    r1 = epoch_batches(20, 3, seed=1, epoch=0, rank=1, world_size=2)
    flat0, flat1 = {i for b in r0 for i in b}, {i for b in r1 for i in b}
    assert not flat0 & flat1 and len(r0) == len(r1) == 3


def test_lr_schedule_warmup_and_decay() -> None:
    cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, lr_schedule="cosine")
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.5)
    assert lr_at(100, cfg) == pytest.approx(0.0)
    lin = TrainConfig(max_steps=10, lr=2.0, lr_schedule="linear", min_lr_ratio=0.5)
    assert lr_at(5, lin) == pytest.approx(1.5)
    assert lr_at(7, TrainConfig(max_steps=10, lr=2.0, lr_schedule="constant")) == 2.0
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(max_steps=5, warmup_steps=6)


def test_weight_decay_applies_to_matrices_only() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    expected = {id(p): (0.1 if p.dim() >= 2 else 0.0) for p in model.parameters()}
    assert decay == expected  # embedding and linear weights decay; the bias and the norm's scale/shift do not
    assert sorted(expected.values()) == [0.0, 0.0, 0.0, 0.1, 0.1]


def test_early_stopping_with_max_mode() -> None:
    # A metric that never improves after the first eval: with patience 2 training stops at the third eval.
    class Flat(ToyTask):
        def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
            return {**super().evaluate(model), "score": 1.0}

    with start_run("train", {}) as run:
        result = train(
            ToyLM(),
            Flat(),
            _config(
                max_steps=100, eval_every=5, early_stopping_patience=2, best_metric="score", best_mode="max"
            ),
            run,
        )
    assert result.stopped_early and result.steps == 15 and result.best_step == 5


def test_a_run_stopped_early_between_log_steps_writes_the_loss_of_its_last_steps() -> None:
    """Early stopping at step 14 of a run logging every 5 steps: steps 11-14 were trained on, but their mean
    loss was never written (the last line said step 10), so the loss curve ended steps before the model."""

    class Flat(ToyTask):
        def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
            return {**super().evaluate(model), "score": 1.0}

    config = _config(
        max_steps=100, eval_every=7, early_stopping_patience=1, best_metric="score", best_mode="max"
    )
    with start_run("train", {}) as run:
        result = train(ToyLM(), Flat(), config, run)
    assert result.stopped_early and result.steps == 14
    lines = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "train_loss" in line] == [5, 10, 14]
    assert math.isfinite(lines[-1]["train_loss"]) and lines[-1]["steps_per_s"] > 0


def test_hook_replaces_model_rebuilds_optimizer_and_stops() -> None:
    class Grow(TrainHooks):
        def __init__(self) -> None:
            self.calls = 0

        def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
            self.calls += 1
            if self.calls == 1:
                bigger = ToyLM(dim=24)
                return EvalDecision(model=bigger, rebuild_optimizer=True)
            return EvalDecision(stop=True)

    with start_run("train", {}) as run:
        result = train(ToyLM(), ToyTask(), _config(max_steps=100, eval_every=5), run, hooks=Grow())
    assert result.steps == 10 and result.stopped_early
    assert result.model.embed.embedding_dim == 24  # type: ignore[union-attr]


def test_missing_best_metric_and_too_little_data_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="best_metric 'rouge1'"), start_run("train", {}) as run:
        train(ToyLM(), ToyTask(), _config(max_steps=5, eval_every=5, best_metric="rouge1"), run)
    with pytest.raises(InvalidInputError, match="too few for batch_size"), start_run("train", {}) as run:
        train(ToyLM(), ToyTask(n_train=4), _config(), run)


def test_cancel_and_preempt_checkpoint_then_resume() -> None:
    class CancelAt(TrainHooks):
        def on_step_end(self, state: TrainState, loss: float) -> None:
            if state.step == 7:
                open_registry().request_cancel(run_id)

    import tldrlab.train.loop as loop_module

    loop_module.CANCEL_CHECK_EVERY_S = 0.0
    try:
        with pytest.raises(RunCancelledError), start_run("train", {}) as run:
            run_id = run.id
            train(ToyLM(), ToyTask(), _config(), run, hooks=CancelAt())
    finally:
        loop_module.CANCEL_CHECK_EVERY_S = 2.0
    assert open_registry().get(run_id).status == RunStatus.CANCELLED
    assert (run.checkpoints_dir / "step-00000007" / "index.json").exists()

    class PreemptAt(TrainHooks):
        def on_step_end(self, state: TrainState, loss: float) -> None:
            if state.step == 4:
                preempt.request_stop()

    try:
        with pytest.raises(RunPreemptedError), start_run("train", {}) as run2:
            train(ToyLM(), ToyTask(), _config(), run2, hooks=PreemptAt())
    finally:
        preempt.reset()
    assert (run2.checkpoints_dir / "step-00000004").is_dir()


def test_a_stopped_run_reads_the_step_it_checkpointed_as_its_progress() -> None:
    # the registry's progress was the last rate-limited heartbeat's (at most one per 2 s): a run Ctrl-C'd at
    # step 122 of 3,000 read 3 % (step 100) in `runs list` and the API, cancelled or queued, for good
    class StopAt(TrainHooks):
        def __init__(self, step: int, stop: Callable[[], None]) -> None:
            self.step, self.stop = step, stop

        def on_step_end(self, state: TrainState, loss: float) -> None:
            if state.step == self.step:
                self.stop()

    import tldrlab.train.loop as loop_module

    loop_module.CANCEL_CHECK_EVERY_S = 0.0
    try:
        with pytest.raises(RunCancelledError), start_run("train", {}) as run:
            cancel = StopAt(7, lambda: open_registry().request_cancel(run.id))
            train(ToyLM(), ToyTask(), _config(eval_every=0), run, hooks=cancel)
    finally:
        loop_module.CANCEL_CHECK_EVERY_S = 2.0
    cancelled = open_registry().get(run.id)
    assert cancelled.status is RunStatus.CANCELLED and cancelled.progress == pytest.approx(7 / 30)

    try:
        with pytest.raises(RunPreemptedError), start_run("train", {}) as run:
            train(ToyLM(), ToyTask(), _config(eval_every=0), run, hooks=StopAt(13, preempt.request_stop))
    finally:
        preempt.reset()
    queued = open_registry().get(run.id)
    assert queued.status is RunStatus.QUEUED and queued.progress == pytest.approx(13 / 30)


@pytest.mark.parametrize(
    ("clip", "advice"),
    [
        (1.0, "lower the learning rate (now 1e+12) or try a lower max_grad_norm (now 1)"),
        (None, "try gradient clipping"),
    ],
)
def test_a_diverged_run_s_advice_fits_its_clipping(clip: float | None, advice: str) -> None:
    # clipping is on by default, and the advice was "or enable gradient clipping" whatever the config said
    with pytest.raises(InvalidInputError, match="training diverged") as caught, start_run("train", {}) as run:
        train(ToyLM(), ToyTask(), _config(lr=1e12, max_grad_norm=clip, eval_every=0), run)
    assert advice in caught.value.message and "enable" not in caught.value.message


def test_time_budget_ends_like_max_steps() -> None:
    with start_run("train", {}) as run:
        result = train(ToyLM(), ToyTask(), _config(max_steps=10_000, max_minutes=1e-6), run)
    assert result.steps == 1 and not result.stopped_early
    assert "eval_loss" in result.metrics
    assert (run.checkpoints_dir / "step-00000001" / "index.json").exists()
    assert "time budget reached" in (run.dir / "log.jsonl").read_text()


class ProgressWatch(TrainHooks):
    """The run's progress as the registry shows it after each step (what the runs page and API read)."""

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.run_id = ""

    def bind(self, run_id: str) -> ProgressWatch:
        self.run_id = run_id
        return self

    def on_step_end(self, state: TrainState, loss: float) -> None:
        progress = open_registry().get(self.run_id).progress
        if progress is not None:
            self.seen.append(progress)


def test_progress_follows_the_time_budget_when_it_ends_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    # `--max-steps 20000 --max-minutes 20` (docs/training.md): the bar counted to 20,000 with an ETA of
    # hours and the run's progress read 29 % when the budget ended it at step 5,890
    watch = ProgressWatch()
    with start_run("train", {}) as run:
        result = train(
            ToyLM(),
            ToyTask(),
            _config(max_steps=10_000_000, max_minutes=0.08, progress=True, eval_every=0, checkpoint_every=0),
            run,
            hooks=watch.bind(run.id),
        )
    assert 0 < result.steps < 10_000_000
    assert max(watch.seen) > 0.3, max(watch.seen)  # about 0.8 at the last heartbeat before the end
    bars = re.findall(r"(\d+)/(\d+) \[", capsys.readouterr().err)
    done, total = (int(n) for n in bars[-1])
    assert done == result.steps and total <= 1.1 * done, bars[-3:]


def test_progress_moves_when_evaluations_come_more_often_than_heartbeats() -> None:
    # each evaluation's phase messages ("evaluating", then "training") are heartbeats too, and restarted the
    # 2 s wait before the next step's: a run evaluating every second or so read 0 % until it completed
    watch = ProgressWatch()
    with start_run("train", {}) as run:
        train(
            ToyLM(),
            ToyTask(),
            _config(max_steps=200, eval_every=5, checkpoint_every=0),
            run,
            hooks=watch.bind(run.id),
        )
    assert max(watch.seen) > 0.5, max(watch.seen)


def test_a_resumed_run_keeps_its_best_and_its_early_stopping_count() -> None:
    """Preempted after the best evaluation and one worse one, the resumed run stops where the uninterrupted
    one does, and its `best` checkpoint still holds the best step, not the first evaluation after resume."""
    scores = {5: 1.0, 10: 3.0, 15: 2.0, 20: 2.5, 25: 1.5, 30: 1.0, 35: 0.5}

    class Scripted(ToyTask):
        step = 0

        def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
            return {**super().evaluate(model), "score": scores.get(self.step, 0.0)}

    class Follow(TrainHooks):
        def __init__(self, task: Scripted, preempt_at: int | None = None) -> None:
            self.task, self.preempt_at = task, preempt_at

        def on_step_end(self, state: TrainState, loss: float) -> None:
            self.task.step = state.step
            if state.step == self.preempt_at:
                preempt.request_stop()

    config = _config(
        max_steps=60, eval_every=5, checkpoint_every=5, early_stopping_patience=3, best_metric="score",
        best_mode="max",
    )  # fmt: skip
    with start_run("train", {}) as run:
        task = Scripted()
        straight = train(ToyLM(), task, config, run, hooks=Follow(task))
    assert (straight.steps, straight.best_step, straight.best_value) == (25, 10, 3.0)

    task = Scripted()
    try:
        with pytest.raises(RunPreemptedError), start_run("train", {}) as run:
            train(ToyLM(), task, config, run, hooks=Follow(task, preempt_at=17))
    finally:
        preempt.reset()
    with execute_run(run.id) as resumed_run:
        resumed = train(ToyLM(), task, config, resumed_run, hooks=Follow(task))
    assert resumed.resumed_from == 17 and resumed.stopped_early
    assert (resumed.steps, resumed.best_step, resumed.best_value) == (25, 10, 3.0)
    assert resumed.best_checkpoint is not None
    assert json.loads((resumed.best_checkpoint / "index.json").read_text())["step"] == 10


def test_a_best_checkpoint_written_after_the_checkpoint_a_run_resumes_from_is_not_kept() -> None:
    """A run killed after a new best (step 15) and before its next checkpoint (step 20) resumes from step 10,
    its state's best step 10's. The resumed evaluations are not bitwise the first attempt's (as on a GPU) and
    beat none: `best` still held the dead attempt's step-15 weights, so the run said best step 10 (score 2)
    and exported step 15's weights, of an evaluation its metrics no longer had."""

    class Scripted(ToyTask):
        def __init__(self, scores: dict[int, float]) -> None:
            super().__init__()
            self.scores, self.step = scores, 0

        def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
            return {**super().evaluate(model), "score": self.scores.get(self.step, 0.0)}

    class Follow(TrainHooks):
        def __init__(self, task: Scripted, die_at: int | None = None) -> None:
            self.task, self.die_at = task, die_at

        def on_step_end(self, state: TrainState, loss: float) -> None:
            self.task.step = state.step
            if state.step == self.die_at:
                raise RuntimeError("killed")  # no checkpoint, as for a kill -9 or an out-of-memory

    config = _config(max_steps=20, eval_every=5, checkpoint_every=10, best_metric="score", best_mode="max")
    with start_run("train", {}) as run:
        first = Scripted({5: 1.0, 10: 2.0, 15: 3.0})
        with pytest.raises(RuntimeError, match="killed"):
            train(ToyLM(), first, config, run, hooks=Follow(first, die_at=17))
        assert json.loads((run.checkpoints_dir / "best" / "index.json").read_text())["step"] == 15
        second = Scripted({15: 1.5, 20: 1.0})
        resumed = train(ToyLM(), second, config, run, hooks=Follow(second))
    assert resumed.resumed_from == 10
    assert (resumed.steps, resumed.best_step, resumed.best_value) == (20, 10, 2.0)
    # step 10's weights were replaced by the dead attempt's step 15: no best checkpoint, and the run says so
    assert resumed.best_checkpoint is None and not (run.checkpoints_dir / "best").exists()
    assert resumed.warnings == [
        "the best evaluation (score 2 at step 10) has no checkpoint: an attempt that stopped without"
        " checkpointing replaced it with a best of step 15, after step 10 where this one resumed; the model"
        " exported is the last step's"
    ]
    logged = (run.dir / "log.jsonl").read_text()
    assert "best checkpoint of step 15 is from after step 10" in logged

    # a resumed run that beats its best writes a best of its own trajectory
    with start_run("train", {}) as run:
        first = Scripted({5: 1.0, 10: 2.0, 15: 3.0})
        with pytest.raises(RuntimeError, match="killed"):
            train(ToyLM(), first, config, run, hooks=Follow(first, die_at=17))
        second = Scripted({15: 1.5, 20: 2.5})
        resumed = train(ToyLM(), second, config, run, hooks=Follow(second))
    assert (resumed.best_step, resumed.best_value, resumed.warnings) == (20, 2.5, [])
    assert resumed.best_checkpoint is not None
    assert json.loads((resumed.best_checkpoint / "index.json").read_text())["step"] == 20


class EveryThirdScore(ToyTask):
    """Like the seq2seq task with `generate_every=3`: `score` (ROUGE there) only at every third evaluation,
    counted by the task itself."""

    occasional_metrics = frozenset({"score"})

    def __init__(self) -> None:
        super().__init__()
        self.evaluations = 0

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        self.evaluations += 1
        metrics = super().evaluate(model)
        if self.evaluations % 3 == 0:
            metrics["score"] = float(self.evaluations)  # better at every generating evaluation
        return metrics


def _scores(run_dir: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line["score"]) for line in lines if "score" in line]


def test_a_best_metric_no_evaluation_computed_is_warned_of() -> None:
    """`--best-metric eval_rouge1 --generate-every 3` with max_steps ending before the third evaluation:
    no evaluation computed ROUGE, so no best was picked and the last weights were exported, silently."""
    config = _config(max_steps=10, eval_every=5, best_metric="score", best_mode="max")
    with start_run("train", {}) as run:
        result = train(ToyLM(), EveryThirdScore(), config, run)
    assert (result.steps, result.best_step, result.best_checkpoint) == (10, None, None)
    said = (
        "best_metric score was never computed (2 evaluations up to step 10): no best evaluation was picked,"
        " the model exported is the last step's"
    )
    assert result.warnings == [said]
    logged = [json.loads(line) for line in (run.dir / "log.jsonl").read_text().splitlines()]
    assert [line["level"] for line in logged if line["message"] == said] == ["WARNING"], logged


def test_a_best_metric_computed_at_every_nth_evaluation_and_resumed_at_the_same_steps() -> None:
    # `--best-metric eval_rouge1 --generate-every 3` failed at the first evaluation (no ROUGE there:
    # "best_metric is not among the evaluation metrics"), and a resumed run's task counted evaluations
    # from 0 again, so it generated at other steps than the uninterrupted run
    config = _config(
        max_steps=40, eval_every=5, checkpoint_every=5, early_stopping_patience=1, best_metric="score",
        best_mode="max",
    )  # fmt: skip
    with start_run("train", {}) as run:
        straight = train(ToyLM(), EveryThirdScore(), config, run)
    # evaluations without the score neither improve nor count towards early stopping (patience 1)
    assert (straight.steps, straight.best_step, straight.best_value) == (40, 30, 6.0)
    assert not straight.stopped_early
    assert _scores(run.dir) == [(15, 3.0), (30, 6.0)]

    class PreemptAt12(TrainHooks):
        def on_step_end(self, state: TrainState, loss: float) -> None:
            if state.step == 12:
                preempt.request_stop()

    try:
        with pytest.raises(RunPreemptedError), start_run("train", {}) as run:
            train(ToyLM(), EveryThirdScore(), config, run, hooks=PreemptAt12())
    finally:
        preempt.reset()
    with execute_run(run.id) as resumed_run:  # a new process: a new task, its count back at 0
        resumed = train(ToyLM(), EveryThirdScore(), config, resumed_run)
    assert resumed.resumed_from == 12  # the preemption checkpoint, after two evaluations
    assert _scores(run.dir) == [(15, 3.0), (30, 6.0)]
    assert (resumed.steps, resumed.best_step, resumed.best_value) == (40, 30, 6.0)
