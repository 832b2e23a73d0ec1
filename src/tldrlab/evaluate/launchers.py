"""The functions that start `evaluate` runs: evaluating any model reference (`tldrlab eval`) and the
evaluation a training run ends with. They sit above `tldrlab.kinds` (docs/architecture.md, Layers): they go
through the one launch path, while the evaluation itself lives in `run_eval` and `jobs`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tldrlab.errors import RunCancelledError, RunPreemptedError, TldrlabError
from tldrlab.evaluate.artifacts import FINAL_EVAL_TAG
from tldrlab.evaluate.config import FinalEvalConfig
from tldrlab.evaluate.run_eval import eval_config_for
from tldrlab.launch import launch_run
from tldrlab.runs import Run
from tldrlab.runs.registry import SUBMITTED_VIA


def evaluate_target(target: str | Path, *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Evaluate any model reference as a run of kind `evaluate` (parent: the evaluated run); eval.json,
    samples.jsonl, eval.png, ... go into that run, and for a run's model also under `evaluations/<eval run
    id>/` in the evaluated run's directory (never over its final evaluation's files next to the model)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    _, _, parent = eval_config_for(target, **overrides)  # a bad target or setting fails before a run exists
    model_run = str(Path(target).resolve()) if Path(target).exists() else str(target)
    raw = {"model_run": model_run, **overrides, "progress": progress}
    # asked for on its own, though its parent is the evaluated run: a view must not settle it as a run that
    # only its parent would run (`launch.inside_its_parent`)
    launched = launch_run("evaluate", raw, parent_id=parent, tags={SUBMITTED_VIA: "cli"})
    assert launched.result is not None
    return launched.result


def evaluate_after_training(
    run: Run, final: FinalEvalConfig, steps: int, *, progress: bool = True, wandb: str | None = None
) -> str | None:
    """The evaluation a training run ends with (`FinalEvalConfig`): an `evaluate` run whose parent is `run`,
    on the run's held-out data, its files written next to the model too; its progress bar shown only when
    the training's is (`progress`: `train.progress`), its W&B mode the training's (`wandb`; None: the
    default, as for the training). Returns its run id; a failure is logged as a warning
    and never fails the training (`tldrlab eval RUN` can be run again); a cancel or a preemption ends the
    training as it ends the evaluation."""
    if not final.enabled:
        return None
    run.set_phase("evaluating the saved model")
    raw = {
        "model_run": run.id,
        "max_samples": final.samples_for(steps),
        "bertscore": final.bertscore,
        "num_lm_samples": 0,
        "generation": {"temperature": 0.0, "max_new_tokens": final.max_new_tokens},
        "progress": progress,
        "wandb": wandb,
    }
    try:
        launched = launch_run("evaluate", raw, parent_id=run.id, tags={FINAL_EVAL_TAG: True})
    except (RunCancelledError, RunPreemptedError):
        # not a failure of the evaluation: the training was cancelled (the request reached this child) or
        # its worker is stopping; the training ends so too, and its resume only has this evaluation left
        raise
    except TldrlabError as exc:
        run.log(f"the final evaluation failed: {exc.message}", level=logging.WARNING, code=exc.code)
        return None
    run.set_environment(final_eval_run=launched.record.id)
    run.log("final evaluation done", run_id=launched.record.id, **_headline(launched.result))
    return launched.record.id


def _headline(result: dict[str, Any] | None) -> dict[str, Any]:
    metrics = (result or {}).get("metrics", {})
    return {k: metrics[k] for k in ("loss", "perplexity", "rougeL", "highlight_auc") if k in metrics}
