"""A run's status follows its phase (tokenizer -> training -> evaluating -> exporting) and ends at 100 %."""

from __future__ import annotations

from pathlib import Path

import torch
from toy import ToyLM, ToyTask

from tldrlab.runs.registry import RunStatus, open_registry
from tldrlab.runs.run import start_run
from tldrlab.train import TrainConfig, TrainHooks, TrainState, train
from tldrlab.train.config import TrainJobConfig
from tldrlab.train.jobs import run_training


class RecordMessages(TrainHooks):
    """Reads the registry's message for the run while it trains and while it evaluates."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.during_steps: set[str] = set()
        self.during_evals: set[str] = set()

    def _message(self) -> str:
        return open_registry().get(self.run_id).message or ""

    def on_step_end(self, state: TrainState, loss: float) -> None:
        self.during_steps.add(self._message())

    def on_eval(self, state: TrainState, metrics: dict[str, float]) -> None:
        self.during_evals.add(self._message())


def test_messages_follow_the_phase_and_a_completed_run_is_at_100_percent() -> None:
    torch.manual_seed(0)
    config = TrainConfig(
        max_steps=40,
        batch_size=8,
        eval_every=10,
        checkpoint_every=0,
        device="cpu",
        progress=False,
        plot=False,
    )
    with start_run("train", {"test": "phases"}) as run:
        # evaluation sets "evaluating"; on_eval runs after it, once training resumes the message is back
        hooks = RecordMessages(run.id)
        # a falling loss judged with best_mode max never improves: early stopping ends the run at step 20
        # (with "min" it ran all 40 steps, and the progress read below was under 1.0 only because no
        # heartbeat had written the last evaluation's)
        stopping = {"early_stopping_patience": 1, "best_mode": "max"}
        result = train(ToyLM(), ToyTask(), config.model_copy(update=stopping), run, hooks=hooks)
        in_run = open_registry().get(run.id)
    assert result.stopped_early and result.steps == 20
    assert hooks.during_steps == {"training"}
    assert hooks.during_evals == {"training"}
    assert in_run.progress is not None and in_run.progress < 1.0  # early stopping ended it before max_steps
    done = open_registry().get(run.id)
    assert done.status is RunStatus.COMPLETED and done.progress == 1.0
    assert (done.message or "").startswith("completed")


def test_a_training_job_goes_through_tokenizer_training_evaluating_and_exporting(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 40)
    job = TrainJobConfig.model_validate(
        {
            "model": "char_lstm",
            "model_settings": {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1},
            "data": {"path": str(corpus), "block_size": 16},
            "tokenizer": {"method": "char", "vocab_size": 40},
            "train": {"max_steps": 4, "batch_size": 4, "eval_every": 2, "progress": False, "plot": False},
            "wandb": "disabled",
        }
    )
    seen: list[str] = []
    with start_run("train", job) as run:
        original = run.heartbeat

        def spy(progress: float | None = None, message: str | None = None, every_s: float = 2.0) -> None:
            if message is not None and (not seen or seen[-1] != message):
                seen.append(message)
            original(progress=progress, message=message, every_s=every_s)

        run.heartbeat = spy  # type: ignore[method-assign]
        run_training(run, job)
    assert seen == [
        "training the tokenizer",
        "training",
        "evaluating",
        "training",
        "evaluating",
        "training",
        "exporting the model",
    ]
    record = open_registry().get(run.id)
    assert record.progress == 1.0 and record.status is RunStatus.COMPLETED
