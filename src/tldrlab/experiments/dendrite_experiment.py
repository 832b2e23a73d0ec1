"""The dendrite experiment: baseline vs compressed vs compressed + PerforatedAI, trained the same way.

    results = run_dendrite_experiment(ExperimentConfig(data="debian_descriptions/", budget_steps=300))

One experiment run (kind "experiment") holds the shared tokenizer and the results table / plot; each
(arm, seed) is a child run (kind "experiment_arm") with its own checkpoints, metrics, PAI files and final
model. Every arm sees the same records, tokenizer, seed, step budget, schedule and evaluation. The compressed
arms are cut from the *trained* baseline of the same seed (as one compresses a pretrained t5-small), so with
init="baseline" the baseline arm runs first; `compressed_random` is the same shape from random weights, which
measures what the baseline initialisation is worth.

Sweeps search `ExperimentConfig` fields and call `train_arm(config, arm, seed)` for a single arm's metrics.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from tldrlab.choices import unknown_choice
from tldrlab.data.splits import experiment_records
from tldrlab.errors import ConfigError
from tldrlab.experiments.compression import compress_t5, count_parameters, describe
from tldrlab.experiments.config import ExperimentArmConfig, ExperimentConfig
from tldrlab.experiments.dendrites import (
    GRADIENT_DESCENT_NOTE,
    DendriteHooks,
    pai_parameter_count,
    pai_traps,
    perforated_modules,
    settings_snapshot,
)
from tldrlab.experiments.results import (
    evaluate_summaries,
    failure_path,
    failures_so_far,
    record_failure,
    write_results,
)
from tldrlab.logs import progress_bars_shown, show_progress_bars
from tldrlab.models.t5 import T5ModelConfig, build
from tldrlab.runs import Run, start_run
from tldrlab.runs.atomic import atomic_write_json, atomic_write_text, sha256_file
from tldrlab.runs.run import git_commit
from tldrlab.runs.weights import save_module_safetensors, save_pretrained
from tldrlab.threads import adopt_threads, plan_for_share, worker_process_context
from tldrlab.tokenizers import load_tokenizer, tokenizer_once
from tldrlab.train.config import MAX_STEPS, DataConfig, TrainConfig
from tldrlab.train.loop import EvalDecision, TrainHooks, TrainResult, TrainState
from tldrlab.train.recipe import Recipe, RecipeExport, RecipeSetup, Tracking, run_recipe
from tldrlab.train.tasks import Seq2SeqTask


@dataclass
class ArmContext:
    """What an arm builder gets: the experiment's shared pieces and the baseline trained with this seed."""

    config: ExperimentConfig
    tokenizer: Any
    seed: int
    baseline: nn.Module | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArmModel:
    model: nn.Module
    hooks: TrainHooks | None = None
    info: dict[str, Any] = field(default_factory=dict)


# -- arms ---------------------------------------------------------------------------------------------------
def build_baseline(ctx: ArmContext, run: Run) -> ArmModel:

    model = build(T5ModelConfig(size=ctx.config.model_size, dropout=ctx.config.dropout), ctx.tokenizer)
    return ArmModel(model, info={"parameters": count_parameters(model)})


def _compressed(ctx: ArmContext, init: Literal["baseline", "random"]) -> tuple[nn.Module, dict[str, Any]]:
    spec = ctx.config.compression.model_copy(update={"init": init})
    source = ctx.baseline
    if source is None:
        if init == "baseline":
            raise ConfigError(
                "compressed arms initialised from the baseline need the 'baseline' arm to run first"
            )

        source = build(T5ModelConfig(size=ctx.config.model_size, dropout=ctx.config.dropout), ctx.tokenizer)
    model = compress_t5(source, spec, seed=ctx.seed)
    return model, {**describe(source, model), "init": init}


def build_compressed(ctx: ArmContext, run: Run) -> ArmModel:
    model, info = _compressed(ctx, ctx.config.compression.init)
    return ArmModel(model, info={**info, "parameters": count_parameters(model)})


def build_compressed_random(ctx: ArmContext, run: Run) -> ArmModel:
    model, info = _compressed(ctx, "random")
    return ArmModel(model, info={**info, "parameters": count_parameters(model)})


def build_compressed_pai(ctx: ArmContext, run: Run) -> ArmModel:
    model, info = _compressed(ctx, ctx.config.compression.init)
    dendrites = ctx.config.dendrites
    if ctx.config.auto_switch and dendrites.switch_mode == "fixed" and ctx.config.budget_minutes is None:
        evaluations = max(1, ctx.config.budget_steps // ctx.config.eval_every)
        dendrites = dendrites.model_copy(
            update={"switch_every": max(1, evaluations // (dendrites.max_dendrites + 1))}
        )
    hooks = DendriteHooks(dendrites, save_dir=run.dir / "pai", lr=ctx.config.lr, log=run.log)
    model = hooks.perforate(model)
    info = {
        **info,
        "perforated_modules": perforated_modules(model),
        "dendrite_config": dendrites.model_dump(),
    }
    return ArmModel(model, hooks=hooks, info=info)


ARMS: dict[str, Callable[[ArmContext, Run], ArmModel]] = {
    "baseline": build_baseline,
    "compressed": build_compressed,
    "compressed_pai": build_compressed_pai,
    "compressed_random": build_compressed_random,
}
"""Arm name -> builder of its model (and training hooks)."""


# -- data and task ------------------------------------------------------------------------------------------
@dataclass
class ExperimentData:
    train: list[Any]
    eval: list[Any]
    test: list[Any]


def load_data(config: ExperimentConfig) -> ExperimentData:
    """The experiment's records (`splits.experiment_records`: eval + test held out with seed 0, a test file
    never trained on)."""
    return ExperimentData(*experiment_records(config))


def summary_task(tokenizer: Any, data: ExperimentData, config: ExperimentConfig) -> Any:
    """The trainer's seq2seq task (document -> first summary, no prefix); evaluation = validation loss."""

    cut = DataConfig(
        path=config.data,
        prefix="",  # the summaries are generated from bare documents (results.summarize_timed)
        max_source_len=config.max_source_tokens,
        max_target_len=config.max_target_tokens,
        max_val_examples=config.eval_size,
    )
    return Seq2SeqTask(data.train, data.eval, tokenizer, cut)


class _DeadlineHooks(TrainHooks):
    """Wraps an arm's hooks; also stops at the first evaluation after a wall-clock deadline."""

    def __init__(self, inner: TrainHooks | None, minutes: float | None) -> None:
        self.inner = inner or TrainHooks()
        self.deadline = time.monotonic() + minutes * 60 if minutes else None

    def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
        decision = self.inner.on_eval(state, metrics)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            decision = decision or EvalDecision()
            decision.stop = True
        return decision


# -- one arm: a recipe -------------------------------------------------------------------------------------
def train_config(config: ExperimentConfig, seed: int) -> TrainConfig:
    by_time = config.budget_minutes is not None
    return TrainConfig(
        # a time budget has no known length: a constant rate after warm-up, stopped by _DeadlineHooks; the
        # loop's own ceiling of steps stands for "no step limit" (10**9 was above it: every timed arm failed)
        max_steps=MAX_STEPS if by_time else config.budget_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=20 if by_time else max(1, config.budget_steps // 20),
        lr_schedule="constant" if by_time else "cosine",
        eval_every=config.eval_every,
        checkpoint_every=0,
        weight_decay=0.0,
        device="cpu",
        precision="fp32",
        seed=seed,
        log_every=max(1, config.eval_every // 5),
        progress=True,
    )


def arm_recipe(ctx: ArmContext, data: ExperimentData) -> Recipe[ExperimentArmConfig]:
    """The recipe of one arm: its model built from the experiment's shared pieces (tokenizer, the baseline
    trained with this random seed), the summary task, the final weights (not the best) scored and saved."""

    def setup(run: Run | None, config: ExperimentArmConfig) -> RecipeSetup:
        assert run is not None
        built = ARMS[config.arm](ctx, run)
        is_pai = isinstance(built.hooks, DendriteHooks)
        silent = ctx.config.dendrites.silent

        def guard() -> contextlib.AbstractContextManager[Any]:
            # PAI's modules may call sys.exit / pdb from inside forward and backward passes, not only its API
            return pai_traps("training", silent=silent) if is_pai else contextlib.nullcontext()

        return RecipeSetup(
            model=built.model,
            task=summary_task(ctx.tokenizer, data, ctx.config),
            loop=train_config(ctx.config, config.seed),
            tokenizer=ctx.tokenizer,
            hooks=[_DeadlineHooks(built.hooks, ctx.config.budget_minutes)],
            tracking=Tracking(
                mode=ctx.config.wandb_mode,
                project="tldrlab-dendrites",
                name=f"{config.arm}-seed{config.seed}",
                group=run.record.parent_id or run.id,
                config=ctx.config.model_dump(mode="json"),
            ),
            restore_best=False,
            resume=False,
            guard=guard,
            extra={"built": built},
        )

    def export(
        run: Run, config: ExperimentArmConfig, setup: RecipeSetup, result: TrainResult
    ) -> RecipeExport:

        built: ArmModel = setup.extra["built"]
        model = result.model
        is_pai = isinstance(built.hooks, DendriteHooks)
        row: dict[str, Any] = {
            "arm": config.arm,
            "seed": config.seed,
            "run_id": run.id,
            "parameters": pai_parameter_count(model) if is_pai else count_parameters(model),
            "steps": result.steps,
            "train_seconds": result.seconds,
            "eval_loss": result.metrics.get("eval_loss"),
            "best_eval_loss": result.best_value,
        }
        if isinstance(built.hooks, DendriteHooks):
            events = built.hooks.events
            row["dendrites"] = events[-1]["dendrites"] if events else 0
            row["restructures"] = sum(1 for e in events if e["restructured"])
            row["pai_complete"] = built.hooks.completed
        row.update(evaluate_summaries(model, ctx.tokenizer, data.test, ctx.config))
        run.log_metrics(result.steps, **{k: v for k, v in row.items() if isinstance(v, int | float)})
        final = save_final(run, model, ctx.tokenizer, ctx.config, config.arm, config.seed, built, data, row)
        summary = {k: v for k, v in row.items() if isinstance(v, int | float | str)}
        return RecipeExport(model_dir=final, summary=summary, result={"row": row})

    return Recipe("experiment_arm", lambda config: config.seed, setup, export)


def train_one_arm(
    config: ExperimentConfig,
    arm: str,
    seed: int,
    ctx: ArmContext,
    data: ExperimentData,
    *,
    parent_id: str | None = None,
) -> tuple[dict[str, Any], nn.Module]:
    """Train one arm for one seed in its own run (kind `experiment_arm`); its metrics row and the model."""
    if arm not in ARMS:
        raise ConfigError(unknown_choice("arm", arm, ARMS))
    arm_config = ExperimentArmConfig.model_validate({**config.model_dump(), "arm": arm, "seed": seed})
    with start_run("experiment_arm", arm_config, seed=seed, parent_id=parent_id, tags={"arm": arm}) as run:
        outcome = run_recipe(run, arm_recipe(ctx, data), arm_config)
    return outcome.export.result["row"], outcome.train.model


def experiment_arm_job(run: Run, config: ExperimentArmConfig) -> dict[str, Any]:
    """Run kind `experiment_arm` on its own (a worker; an experiment trains its arms in-process): the data and
    tokenizer rebuilt as the experiment builds them; an arm cut from a trained baseline trains that first."""
    _check(config.model_copy(update={"arms": [config.arm], "seeds": [config.seed]}))
    data = load_data(config)
    tokenizer = experiment_tokenizer(config, data, run.dir / "tokenizer")
    ctx = ArmContext(config=config, tokenizer=tokenizer, seed=config.seed)
    if config.arm not in ("baseline", "compressed_random") and config.compression.init == "baseline":
        base = ExperimentArmConfig.model_validate({**config.model_dump(), "arm": "baseline"})
        ctx.baseline = run_recipe(run, arm_recipe(ctx, data), base).train.model
    outcome = run_recipe(run, arm_recipe(ctx, data), config)
    row: dict[str, Any] = outcome.export.result["row"]
    return row


def save_final(
    run: Run,
    model: nn.Module,
    tokenizer: Any,
    config: ExperimentConfig,
    arm: str,
    seed: int,
    built: ArmModel,
    data: ExperimentData,
    row: dict[str, Any],
) -> Path:
    """The arm's saved model in order: 1 model, 2 PAI tracker state, 3 run_metadata.json (the W&B artifact,
    4, is logged by the recipe driver)."""
    final = run.dir / "final"
    final.mkdir(exist_ok=True)
    # 1. the model (safetensors handles T5's tied embeddings) + its config and the tokenizer
    save_module_safetensors(model, final / "model.safetensors")
    config_obj = getattr(model, "config", None)
    if config_obj is not None:
        atomic_write_text(final / "config.json", config_obj.to_json_string())
    save_pretrained(tokenizer, final / "tokenizer")
    # 2. PAI tracker state and settings (the PAI arm only)
    pai_globals: dict[str, Any] | None = None
    if isinstance(built.hooks, DendriteHooks):
        built.hooks.save_state()
        for name in ("pai_tracker_state.json", "pai_globals_snapshot.json", "pai_events.json"):
            atomic_write_text(final / name, (built.hooks.save_dir / name).read_text())
        pai_globals = settings_snapshot()
    # 3. run metadata
    metadata = {
        "git_sha": git_commit(),
        "arm": arm,
        "seed": seed,
        "config": config.model_dump(mode="json"),
        "dataset": {"path": config.data, "format": config.format, "eval_data": config.eval_data,
                    "train_records": len(data.train), "eval_records": len(data.eval),
                    "test_records": len(data.test)},
        "model": built.info,
        "converted_modules": built.info.get("perforated_modules", []),
        "pai_globals": pai_globals,
        "note": GRADIENT_DESCENT_NOTE if pai_globals is not None else None,
        "results": row,
        "files": {p.name: sha256_file(p) for p in sorted(final.iterdir()) if p.is_file()},
    }  # fmt: skip
    atomic_write_json(final / "run_metadata.json", metadata)
    return final


# -- the whole experiment -----------------------------------------------------------------------------------
def experiment_tokenizer(config: ExperimentConfig, data: ExperimentData, out_dir: Path) -> Any:
    """One tokenizer for all arms, trained (once) on the training records' documents and summaries."""
    corpus = out_dir.parent / "tokenizer_corpus.txt"

    def corpus_files() -> list[Path]:
        lines = [line for r in data.train for line in (r.document, r.summaries[0]) if line.strip()]
        atomic_write_text(corpus, "\n".join(line.replace("\n", " ") for line in lines) + "\n")
        return [corpus]

    tokenizer = tokenizer_once(out_dir, config.tokenizer_method, corpus_files, config.vocab_size, seed=0)
    corpus.unlink(missing_ok=True)
    return tokenizer


def check_experiment_inputs(config: ExperimentConfig) -> None:
    """Kind `experiment`'s command-line check before its run is created: the records it splits (enough of
    them), and for a tokenizer method a corpus can refuse (char: no character frequent enough; sentencepiece:
    a vocabulary that does not fit its characters), the tokenizer trained on them as the run trains it, into
    a temporary directory (bpe fits any corpus). Each was refused in the run, which stayed a failed
    experiment; the API's worker meets them in the run, before any arm trains."""
    data = load_data(config)
    if config.tokenizer_method == "bpe":
        return
    with tempfile.TemporaryDirectory(prefix="tldrlab-tokenizer-check-") as directory:
        experiment_tokenizer(config, data, Path(directory) / "tokenizer")


def _check(config: ExperimentConfig) -> None:
    for arm in config.arms:
        if arm not in ARMS:
            raise ConfigError(unknown_choice("arm", arm, ARMS))
    if not config.arms or not config.seeds:
        raise ConfigError("give at least one arm and one seed")
    needs_baseline = {"compressed", "compressed_pai"} & set(config.arms)
    if needs_baseline and config.compression.init == "baseline" and "baseline" not in config.arms:
        raise ConfigError(
            "the compressed arms start from the trained baseline: add 'baseline' to --arms "
            "(or use compression init 'random')"
        )


def _ordered(arms: list[str]) -> list[str]:
    # the baseline first: the compressed arms are cut from it
    return sorted(dict.fromkeys(arms), key=lambda a: (a != "baseline", list(ARMS).index(a)))


def train_arm(config: ExperimentConfig, arm: str, seed: int) -> dict[str, Any]:
    """A single arm's metrics (for sweeps): trains the baseline first when this arm is cut from it."""
    one = config.model_copy(update={"arms": [arm], "seeds": [seed]})
    if arm != "baseline" and arm != "compressed_random" and config.compression.init == "baseline":
        one = one.model_copy(update={"arms": ["baseline", arm]})
    results = run_dendrite_experiment(one)
    return next(r for r in results["rows"] if r["arm"] == arm)


def train_seed(
    config: ExperimentConfig,
    seed: int,
    tokenizer: Any,
    data: ExperimentData,
    parent_id: str,
    out_dir: Path,
    on_row: Callable[[], object] | None = None,
) -> list[dict[str, Any]]:
    """Every arm for one seed, the baseline first; each row is also written to `out_dir/rows/`."""
    ctx = ArmContext(config=config, tokenizer=tokenizer, seed=seed)
    rows = []
    for arm in _ordered(config.arms):
        failure_path(out_dir / "rows", seed, arm).unlink(missing_ok=True)  # trained again
        try:
            row, model = train_one_arm(config, arm, seed, ctx, data, parent_id=parent_id)
        except Exception as exc:
            # the experiment fails with it; its table says which arm failed and why
            if record_failure(out_dir / "rows", seed, arm, exc) and on_row is not None:
                on_row()
            raise
        rows.append(row)
        atomic_write_text(_row_path(out_dir, seed, arm), json.dumps(row, default=str))
        if on_row is not None:
            on_row()
        if arm == "baseline":
            ctx.baseline = model
    return rows


def _row_path(out_dir: Path, seed: int, arm: str) -> Path:
    (out_dir / "rows").mkdir(exist_ok=True)
    return out_dir / "rows" / f"seed{seed}-{arm}.json"


def _rows_so_far(out_dir: Path, config: ExperimentConfig) -> list[dict[str, Any]]:
    """The finished (seed, arm) rows, in the experiment's order (seeds as given, the baseline first)."""
    rows = []
    for seed in config.seeds:
        for arm in _ordered(config.arms):
            path = _row_path(out_dir, seed, arm)
            if path.exists():
                rows.append(json.loads(path.read_text()))
    return rows


def _publish_rows(run: Run, config: ExperimentConfig, seen: int = -1) -> int:
    """Rewrite the results table from the finished rows when there are more than `seen` (a long experiment
    that is stopped keeps what it measured); returns how many there are."""

    rows = _rows_so_far(run.dir, config)
    failures = failures_so_far(run.dir / "rows", config.seeds, _ordered(config.arms))
    if len(rows) + len(failures) > seen:
        write_results(run.dir, rows, config, failures=failures)
        total = len(config.arms) * len(config.seeds)
        run.heartbeat(progress=len(rows) / total, message=f"{len(rows)} of {total} arms done")
    return len(rows) + len(failures)


def _seed_worker(
    config_json: str,
    seed: int,
    tokenizer_dir: str,
    parent_id: str,
    out_dir: str,
    threads: dict[str, Any],
    progress_bars: bool,
) -> int:
    """One seed in a worker process (spawned: a fresh interpreter, its own torch threads and PAI globals).

    `progress_bars` is the parent's `progress_bars_shown()`: a fresh interpreter starts with bars on, so the
    command's `--quiet` (which turns them off in the parent only) reaches the workers' training bars here."""

    adopt_threads(threads)
    show_progress_bars(progress_bars)
    config = ExperimentConfig.model_validate_json(config_json)
    train_seed(config, seed, load_tokenizer(tokenizer_dir), load_data(config), parent_id, Path(out_dir))
    return seed


def _train_seeds_in_parallel(config: ExperimentConfig, run: Run, tokenizer_dir: Path) -> int:
    """config.jobs seeds at once; the parent rewrites the results table whenever an arm finishes. Returns how
    many rows the table it wrote last holds."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    plan = plan_for_share(config.jobs)
    threads = plan.as_dict()
    run.log("training seeds in parallel", jobs=config.jobs, threads_per_job=plan.threads)
    context = worker_process_context()
    with ProcessPoolExecutor(max_workers=config.jobs, mp_context=context) as pool:
        pending = {
            pool.submit(
                _seed_worker,
                config.model_dump_json(),
                seed,
                str(tokenizer_dir),
                run.id,
                str(run.dir),
                threads,
                progress_bars_shown(),
            )
            for seed in config.seeds
        }
        seen = 0
        while pending:
            done, pending = wait(pending, timeout=30, return_when=FIRST_COMPLETED)
            seen = _publish_rows(run, config, seen)  # first: a failed arm's row is in the table
            for future in done:
                future.result()  # a failed seed fails the experiment (its runs say why)
    return seen


def run_dendrite_experiment(config: ExperimentConfig) -> dict[str, Any]:
    """Train every arm for every seed as an `experiment` run; see `experiment_job`."""
    _check(config)
    with start_run("experiment", config) as run:
        return experiment_job(run, config)


def experiment_job(run: Run, config: ExperimentConfig) -> dict[str, Any]:
    """Run kind `experiment`: train every arm for every seed; write results.{json,csv,md} and comparison.png
    in the run."""

    _check(config)
    data = load_data(config)
    run.log("dendrite experiment", arms=config.arms, seeds=config.seeds, train_records=len(data.train))
    tokenizer = experiment_tokenizer(config, data, run.dir / "tokenizer")
    published = [-1]  # rows in the files written last (this process): none yet

    def publish() -> None:
        published[0] = _publish_rows(run, config, published[0])

    if config.jobs > 1 and len(config.seeds) > 1:
        published[0] = _train_seeds_in_parallel(config, run, run.dir / "tokenizer")
    else:
        for seed in config.seeds:
            train_seed(config, seed, tokenizer, data, run.id, run.dir, on_row=publish)
    rows = _rows_so_far(run.dir, config)
    # the files are rewritten only when they lag (a resumed experiment whose rows were all done before)
    results = write_results(run.dir, rows, config, written=published[0] == len(rows))
    results["run_id"] = run.id
    results["run_dir"] = str(run.dir)
    atomic_write_text(run.dir / "results.json", json.dumps(results, indent=2, default=str))
    run.add_artifact(run.dir / "results.json", kind="results")
    run.set_summary(
        **{f"{a['arm']}_{k}": v for a in results["summary"] for k, v in a.items() if k.endswith("_mean")}
    )
    return results
