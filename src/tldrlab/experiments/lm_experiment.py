"""Compression, dendrites and distillation on a pretrained causal LM: five arms, trained the same way.

    results = run_lm_experiment(LMExperimentConfig(data="debian_descriptions/", budget_steps=120))

One experiment run (kind `lm_experiment`) holds the shared pieces and the results; each (arm, seed) is a child
run (kind `lm_experiment_arm`) with its metrics, curves, checkpoints, exported model and W&B files. Every arm
fine-tunes on the same records in the same order (set by the random seed), with the same step budget, batch,
schedule, prompt format (the model's chat template, answer-only loss) and evaluation:

- `baseline` (A): the pretrained model, every layer; cross-entropy;
- `compressed` (C): cut from the pretrained weights (`lm_compression`: depth + width by importance);
- `compressed_pai` (B): the same cut, PerforatedAI dendrites on every MLP block;
- `compressed_random`: the same shape, fresh weights (trained at `random_lr`);
- `compressed_kd`: the same cut, trained on distillation from A's logits + cross-entropy.

The unit importance behind the cut is measured once on `calibration_size` training pairs with the pretrained
model, so every compressed arm of every seed starts from the same weights. compressed_kd's teacher is the
baseline arm of its own seed after its training; its top-k logits on the examples the student will draw are
computed ahead of training (`distill.TeacherCache`, seconds reported as `teacher_seconds`).

Each arm is written as a recipe: `arm_setup` (model, task, loop settings, hooks) and `arm_export` (score the
final weights on the test records, save the model, the PAI files). After every arm the tables are rewritten
(`lm_results.write_lm_results`): a stopped experiment keeps what it measured; the charts are drawn at the end.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tldrlab.choices import unknown_choice
from tldrlab.data.readers import read_records, split_files
from tldrlab.data.records import SummaryRecord
from tldrlab.data.sentences import split_sentences
from tldrlab.data.splits import detect_splits, experiment_records
from tldrlab.device import resolve_device
from tldrlab.errors import ConfigError
from tldrlab.evaluate.metrics import bertscore_f1_per_sample, rouge_per_sample
from tldrlab.experiments.config import LM_ARMS, LMArmConfig, LMCompressConfig, LMExperimentConfig
from tldrlab.experiments.dendrites import (
    GRADIENT_DESCENT_NOTE,
    DendriteHooks,
    dendrite_count,
    pai_parameter_count,
    pai_traps,
    perforated_modules,
)
from tldrlab.experiments.distill import TeacherCache, answer_logits, distillation_loss, examples_seen
from tldrlab.experiments.lm_compression import (
    CompressionPlan,
    Importance,
    calibration_batches,
    compress_causal_lm,
    count_parameters,
    export_compressed,
    importance_scores,
)
from tldrlab.experiments.lm_results import write_lm_results
from tldrlab.experiments.results import failure_path, failures_so_far, record_failure
from tldrlab.logs import progress_bar
from tldrlab.models.causal_lm import export_model, load_causal_lm, load_tokenizer
from tldrlab.models.chat import (
    DEFAULT_INSTRUCTION,
    chat_prompt_ids,
    collate_chat_pairs,
    context_limit,
    fitting_document,
    truncate_text,
)
from tldrlab.models.resolve import resolve_model_ref
from tldrlab.runs import Run, RunRecord, RunStatus, execute_run, start_run
from tldrlab.runs.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text
from tldrlab.runs.weights import save_module_safetensors, save_pretrained
from tldrlab.train.chat_sft import ChatSFTTask
from tldrlab.train.config import DataConfig, TrainConfig
from tldrlab.train.loop import TrainHooks, TrainResult
from tldrlab.train.recipe import Recipe, RecipeExport, RecipeSetup, Tracking, run_recipe
from tldrlab.train.same_data import check_same_data

ARM_KIND = "lm_experiment_arm"
ROWS_DIR = "rows"
COMPRESSED_ARMS = ("compressed", "compressed_pai", "compressed_random", "compressed_kd")


def instruction_of_config(config: Any) -> str:
    """The request a config asks with: its `instruction`, else (None) the chat models' default. An empty one
    is kept, as `models.chat.instruction_of` keeps a model's: the document is asked alone (it became the
    default, and the arms trained, generated and saved their models with it)."""
    value = getattr(config, "instruction", None)
    return value if isinstance(value, str) else DEFAULT_INSTRUCTION


# -- data -------------------------------------------------------------------------------------------------
@dataclass
class LMData:
    train: list[SummaryRecord]
    eval: list[SummaryRecord]
    test: list[SummaryRecord]


def load_lm_data(config: LMExperimentConfig) -> LMData:
    """The experiment's records (`splits.experiment_records`: eval + test held out with seed 0, a test file
    never trained on)."""
    return LMData(*experiment_records(config))


# -- the task ---------------------------------------------------------------------------------------------
class _IndexedPairs(torch.utils.data.Dataset[Any]):
    """The task's lazily tokenized pairs, each with its dataset index (for the teacher cache)."""

    def __init__(self, pairs: Any) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[int, list[int], list[int]]:
        prompt, answer = self.pairs[index]
        return index, prompt, answer


class ArmTask(ChatSFTTask):
    """Chat fine-tuning whose loss runs the output head on the answer tokens only (the same loss as the
    model's own, cheaper: see `distill.answer_logits`), optionally distilled from cached teacher logits.
    Evaluation: the answers' token-weighted loss on the validation records."""

    def __init__(
        self,
        *args: Any,
        teacher: TeacherCache | None = None,
        alpha: float = 0.5,
        temperature: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.indexed = _IndexedPairs(self.train_pairs)
        self.teacher = teacher
        self.alpha = alpha
        self.temperature = temperature
        self.last_parts: dict[str, float] = {}

    def train_dataset(self) -> torch.utils.data.Dataset[Any]:
        return self.indexed

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        if items and len(items[0]) == 3:
            batch = collate_chat_pairs([(p, a) for _, p, a in items], self.pad_id)
            batch["example_index"] = torch.tensor([i for i, _, _ in items])
            return batch
        return collate_chat_pairs(items, self.pad_id)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        inputs = {k: v for k, v in batch.items() if k != "example_index"}
        logits, targets = answer_logits(model, inputs)
        ran_on = int(inputs["attention_mask"].sum())  # throughput counts the prompt too (see TrainTask.loss)
        if self.teacher is None:
            return F.cross_entropy(logits.float(), targets), ran_on
        values, indices = self.teacher.lookup(batch["example_index"].tolist())
        loss, self.last_parts = distillation_loss(
            logits,
            values.to(logits.device),
            indices.to(logits.device),
            targets,
            alpha=self.alpha,
            temperature=self.temperature,
        )
        return loss, ran_on

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        total, tokens = 0.0, 0
        for start in range(0, len(self.val_pairs), 8):
            batch = {k: v.to(device) for k, v in self.collate(self.val_pairs[start : start + 8]).items()}
            logits, targets = answer_logits(model, batch)
            total += float(F.cross_entropy(logits.float(), targets, reduction="sum"))
            tokens += int(targets.numel())
        loss = total / max(tokens, 1)
        return {"eval_loss": loss, "eval_perplexity": float(torch.tensor(min(loss, 50.0)).exp())}


# -- shared pieces ----------------------------------------------------------------------------------------
@dataclass
class Shared:
    """What every arm of the experiment uses: the data, the tokenizer, the pretrained model, the importance
    scores (measured once) and the trained baseline of each random seed (the distillation teacher)."""

    config: LMExperimentConfig
    data: LMData
    tokenizer: Any
    pretrained: Any
    device: str
    importance: Importance | None = None
    baselines: dict[int, nn.Module] = field(default_factory=dict)

    def importance_scores(self, log: Callable[..., None] | None = None) -> Importance:
        if self.importance is None:
            records = self.data.train[: self.config.calibration_size]
            batches = calibration_batches(
                self.tokenizer,
                records,
                instruction=instruction_of_config(self.config),
                max_source_tokens=self.config.max_source_tokens,
                max_target_tokens=self.config.max_target_tokens,
            )
            self.importance = importance_scores(self.pretrained, batches, self.config.compression.importance)
            if log is not None:
                log("unit importance measured", method=self.importance.method, records=len(records))
        return self.importance


def load_pretrained(reference: str) -> tuple[Any, Any]:
    """(model in float32, its tokenizer with a pad token) for a model reference."""

    resolved = resolve_model_ref(reference)
    return load_causal_lm(resolved), load_tokenizer(resolved)


def open_shared(config: LMExperimentConfig) -> Shared:
    check_arms(config)
    data = load_lm_data(config)
    model, tokenizer = load_pretrained(config.model)
    check_context_fits(model, tokenizer, config)
    model.config.tldrlab_instruction = instruction_of_config(config)
    return Shared(config, data, tokenizer, model, resolve_device(config.device))


def check_context_fits(model: Any, tokenizer: Any, config: Any) -> None:
    """ConfigError, before any arm trains, when a model with learned positions (`context_limit`: GPT-2's
    `n_positions`) cannot hold the chat prompt (template and instruction, the document cut away entirely)
    beside an answer of `max_target_tokens` or beside `max_new_tokens` generated tokens. Documents are cut
    to fit the rest; answers and generation lengths are what the config asks for, so they are not cut
    silently (an example past the positions was an IndexError inside the model's forward)."""
    limit = context_limit(model)
    if limit is None:
        return
    least = len(chat_prompt_ids(tokenizer, "", instruction_of_config(config)))
    for name in ("max_target_tokens", "max_new_tokens"):
        tokens = int(getattr(config, name))
        if least + tokens > limit:
            raise ConfigError(
                f"{name}: the model's {limit} positions (n_positions) hold its chat prompt ({least} tokens "
                f"with the document cut away) and at most {max(0, limit - least)} more, not {tokens}: lower "
                f"{name}, shorten the instruction, or use a model with a longer context"
            )


def check_arms(config: LMExperimentConfig) -> None:
    for arm in config.arms:
        if arm not in LM_ARMS:
            raise ConfigError(unknown_choice("arm", arm, LM_ARMS))
    if not config.arms or not config.seeds:
        raise ConfigError("give at least one arm and one seed")
    if "compressed_kd" in config.arms and "baseline" not in config.arms:
        raise ConfigError("compressed_kd distils the fine-tuned baseline: add 'baseline' to the arms")


def ordered_arms(arms: list[str]) -> list[str]:
    return [a for a in LM_ARMS if a in arms]


# -- one arm: setup and export ----------------------------------------------------------------------------
@dataclass
class ArmSetup:
    """What an arm trains: the recipe contract's setup (model, task, loop settings, hooks, facts)."""

    model: nn.Module
    task: ArmTask
    loop: TrainConfig
    hooks: TrainHooks | None = None
    info: dict[str, Any] = field(default_factory=dict)
    plan: CompressionPlan | None = None


def loop_config(config: LMExperimentConfig, arm: str, seed: int, device: str) -> TrainConfig:
    steps = config.budget_steps
    checkpoint = config.eval_every if arm == "compressed_pai" and config.checkpoint_every_eval else 0
    return TrainConfig(
        max_steps=steps,
        batch_size=config.batch_size,
        lr=config.random_lr if arm == "compressed_random" else config.lr,
        warmup_steps=max(1, steps // 20),
        lr_schedule="cosine",
        weight_decay=0.0,
        eval_every=config.eval_every,
        checkpoint_every=checkpoint,
        keep_checkpoints=1,
        save_best=False,  # every arm is scored with its final weights
        device=device,  # type: ignore[arg-type]
        precision="auto",
        seed=seed,
        log_every=max(1, config.eval_every // 4),
        plot=config.plots,
    )


def make_task(shared: Shared, teacher: TeacherCache | None = None) -> ArmTask:
    config = shared.config
    data = DataConfig(
        path=config.data,
        max_source_len=config.max_source_tokens,
        max_target_len=config.max_target_tokens,
        max_val_examples=config.eval_size,
    )
    return ArmTask(
        shared.data.train,
        shared.data.eval,
        shared.tokenizer,
        data,
        instruction_of_config(config),
        # examples cut to the model's positions, as the train recipe's chat task does (a GPT-2 of 32
        # positions failed with an IndexError in its forward); the arms' models keep the pretrained one's
        context=context_limit(shared.pretrained),
        teacher=teacher,
        alpha=config.distillation.alpha,
        temperature=config.distillation.temperature,
    )


def _dendrite_settings(config: LMExperimentConfig) -> Any:
    dendrites = config.dendrites
    if config.auto_switch and dendrites.switch_mode == "fixed":
        evaluations = max(1, config.budget_steps // config.eval_every)
        dendrites = dendrites.model_copy(
            update={"switch_every": max(1, evaluations // (dendrites.max_dendrites + 1))}
        )
    return dendrites


def arm_setup(shared: Shared, arm: str, seed: int, run: Run, sink: Any = None) -> ArmSetup:
    """Build the arm's model, task and loop settings (the seed is set by the caller)."""
    config = shared.config
    loop = loop_config(config, arm, seed, shared.device)
    if arm == "baseline":
        import copy

        model = copy.deepcopy(shared.pretrained)
        return ArmSetup(model, make_task(shared), loop, info={"parameters": count_parameters(model)})
    init = "random" if arm == "compressed_random" else "pretrained"
    spec = config.compression.model_copy(update={"init": init})
    importance = shared.importance_scores(run.log) if init == "pretrained" else None
    model, plan = compress_causal_lm(shared.pretrained, spec, importance, seed=seed)
    model.config.tldrlab_instruction = instruction_of_config(config)
    info: dict[str, Any] = {"parameters": count_parameters(model), "compression": plan.to_json()}
    teacher = None
    if arm == "compressed_kd":
        teacher_model = shared.baselines.get(seed)
        if teacher_model is None:
            raise ConfigError(f"compressed_kd needs the baseline arm of seed {seed} trained first")
        task = make_task(shared)
        seen = examples_seen(len(task.indexed), loop.batch_size, loop.max_steps, seed)
        run.log("teacher logits", examples=len(seen), top_k=config.distillation.top_k)
        teacher = TeacherCache.build(
            teacher_model,
            task.indexed,
            seen,
            task.collate,
            top_k=config.distillation.top_k,
            batch_size=loop.batch_size,
            progress=_progress(len(seen), "teacher logits"),
        )
        teacher.save(run.dir / "teacher_topk.safetensors")
        info["teacher_seconds"] = teacher.seconds
        info["teacher_examples"] = len(seen)
    task = make_task(shared, teacher)
    hooks: TrainHooks | None = None
    if arm == "compressed_pai":
        dendrites = _dendrite_settings(config)
        pai = DendriteHooks(
            dendrites,
            save_dir=run.dir / "pai",
            lr=config.lr,
            log=run.log,
            metrics_sink=sink,
            device=shared.device,
        )
        model = pai.perforate(model)
        hooks = pai
        info.update(perforated_modules=perforated_modules(model), dendrite_config=dendrites.model_dump())
    return ArmSetup(model, task, loop, hooks=hooks, info=info, plan=plan)


def _progress(total: int, desc: str) -> Callable[[int], None]:
    bar = progress_bar(total=total, desc=desc, unit="ex", leave=False)

    def advance(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return advance


@torch.no_grad()
def summarize_records(
    model: Any, tokenizer: Any, records: list[SummaryRecord], config: Any
) -> tuple[list[str], float, float]:
    """Greedy answers one document at a time (batch 1) in the chat template (`config`: max_source_tokens,
    instruction, max_new_tokens); mean wall and CPU seconds per summary. A model with learned positions
    (`context_limit`) gets each document cut further so that prompt and answer fit them (an IndexError in
    its forward otherwise); InvalidInputError when not even the template does (`check_context_fits`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    instruction = instruction_of_config(config)
    limit = context_limit(model)
    outputs, seconds, cpu = [], 0.0, 0.0
    try:
        for record in progress_bar(records, desc="summaries", unit="doc", leave=False):
            if limit is None:
                document = truncate_text(tokenizer, record.document, config.max_source_tokens)
            else:
                budget = limit - config.max_new_tokens
                document = fitting_document(
                    tokenizer, record.document, instruction, budget, config.max_source_tokens
                )
            ids = chat_prompt_ids(tokenizer, document, instruction)
            input_ids = torch.tensor([ids], device=device)
            started, cpu_started = time.perf_counter(), time.process_time()
            generated = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
                use_cache=True,
                temperature=None,
                top_k=None,
                top_p=None,
            )
            seconds += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            answer = generated[0, len(ids) :].tolist()
            if eos in answer:
                answer = answer[: answer.index(eos)]
            outputs.append(str(tokenizer.decode(answer, skip_special_tokens=True)).strip())
    finally:
        model.train(was_training)
    return outputs, seconds / max(len(records), 1), cpu / max(len(records), 1)


def score_predictions(predictions: list[str], references: list[str], *, bertscore: bool) -> dict[str, Any]:
    """Mean ROUGE-1/2/L and BERTScore F1, and the per-record scores (for paired bootstrap intervals)."""

    per = {"rouge1": [], "rouge2": [], "rougeL": []}  # type: dict[str, list[float]]
    for scores in rouge_per_sample(predictions, references):
        for key in per:
            per[key].append(scores[key])
    if bertscore:
        per["bertscore_f1"] = bertscore_f1_per_sample(predictions, references)
    means = {k: sum(v) / max(len(v), 1) for k, v in per.items()}
    return {**means, "per_record": per}


def lead1(records: list[SummaryRecord]) -> list[str]:
    """The first sentence of each document."""

    out = []
    for record in records:
        sentences = record.sentences or [s.text for s in split_sentences(record.document)]
        out.append(sentences[0] if sentences else record.document)
    return out


def arm_export(
    shared: Shared, arm: str, seed: int, run: Run, setup: ArmSetup, result: TrainResult
) -> dict[str, Any]:
    """Score the final weights on the test records, save the model in `<run>/model` (and PAI's state in
    `<run>/pai`); the results row (per-record scores included, for the bootstrap)."""
    config = shared.config
    model = result.model
    is_pai = isinstance(setup.hooks, DendriteHooks)
    run.set_phase("scoring the test summaries")
    predictions, latency, latency_cpu = summarize_records(model, shared.tokenizer, shared.data.test, config)
    references = [r.summary for r in shared.data.test]
    scores = score_predictions(predictions, references, bertscore=config.bertscore)
    row: dict[str, Any] = {
        "arm": arm,
        "seed": seed,
        "run_id": run.id,
        "parameters": pai_parameter_count(model) if is_pai else count_parameters(model),
        "steps": result.steps,
        "train_seconds": result.seconds,
        "eval_loss": result.metrics.get("eval_loss"),
        "latency_ms": latency * 1000,
        "latency_cpu_ms": latency_cpu * 1000,
        "train_cpu_seconds": setup.info.get("train_cpu_seconds"),
        **{k: v for k, v in scores.items() if k != "per_record"},
    }
    if "teacher_seconds" in setup.info:
        row["teacher_seconds"] = setup.info["teacher_seconds"]
    if isinstance(setup.hooks, DendriteHooks):
        events = setup.hooks.events
        row["dendrites"] = dendrite_count()
        row["restructures"] = sum(1 for e in events if e["restructured"])
        row["pai_complete"] = setup.hooks.completed
    run.set_phase("exporting the model")
    model_dir = run.dir / "model"
    if isinstance(setup.hooks, DendriteHooks):
        _save_pai_model(model, shared.tokenizer, model_dir, setup, row)
        setup.hooks.save_state()
        setup.hooks.draw_graphs()
        setup.hooks.drop_model_snapshots()
        _log_to_wandb_run(run.dir / "pai", f"pai-{arm}-seed{seed}", "pai")
    elif setup.plan is not None:
        export_compressed(model, shared.tokenizer, setup.plan, model_dir)
    else:
        export_compressed_baseline(model, shared.tokenizer, model_dir)
    samples = [
        {"id": r.id, "reference": ref, "prediction": pred}
        for r, ref, pred in zip(shared.data.test, references, predictions, strict=True)
    ]
    atomic_write_jsonl(run.dir / "samples.jsonl", samples)
    row["per_record"] = scores["per_record"]
    row["examples"] = samples[:3]
    return row


def export_compressed_baseline(model: Any, tokenizer: Any, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    export_model(model, out)
    save_pretrained(tokenizer, out)


def _save_pai_model(model: Any, tokenizer: Any, out: Path, setup: ArmSetup, row: dict[str, Any]) -> None:
    """The perforated model's weights (safetensors, dendrites included: PerforatedAI loads them into a
    perforated copy of config.json's model), config, tokenizer and what was compressed."""
    out.mkdir(parents=True, exist_ok=True)
    save_module_safetensors(model, out / "model.safetensors")
    atomic_write_text(out / "config.json", model.config.to_json_string())
    save_pretrained(tokenizer, out)
    atomic_write_json(
        out / "pai_model.json",
        {
            "note": GRADIENT_DESCENT_NOTE,
            "compression": setup.info.get("compression"),
            "perforated_modules": setup.info.get("perforated_modules"),
            "dendrites": row.get("dendrites"),
            "dendrite_config": setup.info.get("dendrite_config"),
        },
    )


def _active_wandb_run() -> Any:
    """The W&B run the recipe driver started for this arm (None when W&B is off or not imported)."""
    module = sys.modules.get("wandb")
    return getattr(module, "run", None) if module is not None else None


def _log_to_wandb_run(path: Path, name: str, kind: str) -> None:
    wandb_run = _active_wandb_run()
    if wandb_run is None:
        return
    import wandb

    artifact = wandb.Artifact(name, type=kind)
    artifact.add_dir(str(path))
    wandb_run.log_artifact(artifact)


def _pai_sink(run: Run) -> Callable[[int, dict[str, float]], None]:
    """Where the PAI metrics of each evaluation go: the run's metrics and the arm's W&B run."""

    def sink(step: int, metrics: dict[str, float]) -> None:
        run.log_metrics(step, **metrics)
        wandb_run = _active_wandb_run()
        if wandb_run is not None:
            wandb_run.log(dict(metrics), step=step)

    return sink


class CpuClock(TrainHooks):
    """CPU time of this process between the start and the end of training (the machine's other load does not
    count, unlike wall time)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def on_train_start(self, state: Any, model: nn.Module) -> None:
        self.started = time.process_time()

    def on_train_end(self, state: Any, result: TrainResult) -> None:
        self.seconds = time.process_time() - self.started


def arm_recipe(shared: Shared) -> Recipe[LMArmConfig]:
    """One arm as a recipe: `arm_setup` builds it (the shared pieces, the baseline of its random seed as
    the teacher), `arm_export` scores the final weights (not the best) and saves them."""

    def setup(run: Run | None, config: LMArmConfig) -> RecipeSetup:
        if run is None:
            raise ConfigError("the experiment's arms do not run distributed")
        built = arm_setup(shared, config.arm, config.seed, run, _pai_sink(run))
        clock = CpuClock()
        is_pai = isinstance(built.hooks, DendriteHooks)
        silent = config.dendrites.silent

        def guard() -> contextlib.AbstractContextManager[Any]:
            # PAI's modules may call sys.exit / pdb from inside forward and backward passes, not only its API
            return pai_traps("training", silent=silent) if is_pai else contextlib.nullcontext()

        experiment = run.record.parent_id or run.id
        facts = {k: v for k, v in built.info.items() if isinstance(v, int | float)}
        return RecipeSetup(
            model=built.model,
            task=built.task,
            loop=built.loop,
            tokenizer=shared.tokenizer,
            hooks=[h for h in (built.hooks, clock) if h is not None],
            tracking=Tracking(
                mode=config.wandb_mode,
                project=config.wandb_project,
                name=f"{config.wandb_name or experiment}-{config.arm}-seed{config.seed}",
                group=experiment,
                tags=list(dict.fromkeys([*config.wandb_tags, config.arm])),
                config=config.model_dump(mode="json"),
            ),
            environment={"arm": config.arm, **facts},
            restore_best=False,
            resume=True,
            guard=guard,
            extra={"arm": built, "clock": clock},
        )

    def export(run: Run, config: LMArmConfig, setup: RecipeSetup, result: TrainResult) -> RecipeExport:
        built: ArmSetup = setup.extra["arm"]
        built.info["train_cpu_seconds"] = setup.extra["clock"].seconds
        row = arm_export(shared, config.arm, config.seed, run, built, result)
        numbers = {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        run.log_metrics(result.steps, **numbers)
        atomic_write_json(run.dir / "result.json", {k: v for k, v in row.items() if k != "per_record"})
        artifacts = [(run.dir / "pai", "pai")] if isinstance(built.hooks, DendriteHooks) else []
        return RecipeExport(
            model_dir=run.dir / "model", summary=numbers, artifacts=artifacts, result={"row": row}
        )

    return Recipe(ARM_KIND, lambda config: config.seed, setup, export)


def train_arm(
    shared: Shared, arm: str, seed: int, parent_id: str | None, unfinished: RunRecord | None = None
) -> tuple[dict[str, Any], nn.Module]:
    """One arm for one seed in its own child run (kind `lm_experiment_arm`); its results row and the model.
    With `unfinished` (this arm's run from a stopped attempt) that run continues from its last checkpoint
    (the PAI arm's: after its last evaluation, dendrites and tracker included)."""
    config = LMArmConfig.model_validate({**shared.config.model_dump(), "arm": arm, "seed": seed})
    if unfinished is not None:
        with execute_run(unfinished) as run:
            run.log("resuming the arm from its last checkpoint", arm=arm, seed=seed)
            outcome = run_recipe(run, arm_recipe(shared), config)
    else:
        with start_run(ARM_KIND, config, seed=seed, parent_id=parent_id, tags={"arm": arm}) as run:
            outcome = run_recipe(run, arm_recipe(shared), config)
    return outcome.export.result["row"], outcome.train.model


def earlier_arm_runs(experiment: Run) -> dict[tuple[str, int], RunRecord]:
    """The arm runs of this experiment's earlier attempts, the newest per (arm, seed). Asked for by parent in
    the query, every one of them: reading the newest 100,000 arm runs of every experiment (configs too) and
    keeping this one's cost a scan of the whole table, and missed this one's behind that many newer ones."""
    found: dict[tuple[str, int], RunRecord] = {}
    children = experiment.registry.list(kind=ARM_KIND, parent_id=experiment.id, limit=None)  # newest first
    for record in children:
        if "arm" in record.tags:
            found.setdefault((str(record.tags["arm"]), int(record.config["seed"])), record)
    return found


def _trained_baseline(shared: Shared, record: RunRecord) -> nn.Module:
    """A finished baseline arm's exported model (on a resume: the teacher of compressed_kd, same random
    seed)."""
    model, _ = load_pretrained(str(Path(record.run_dir) / "model"))
    return model.to(shared.device).eval()


def lm_experiment_arm_job(run: Run, config: LMArmConfig) -> dict[str, Any]:
    """Run kind `lm_experiment_arm` on its own (a worker; an experiment trains its arms in-process): the
    shared pieces rebuilt as the experiment builds them; compressed_kd trains its teacher (the baseline) in
    this run first."""
    shared = open_shared(config)
    if config.arm == "compressed_kd":
        base = config.model_copy(update={"arm": "baseline"})
        shared.baselines[config.seed] = run_recipe(run, arm_recipe(shared), base).train.model
    row: dict[str, Any] = run_recipe(run, arm_recipe(shared), config).export.result["row"]
    return {k: v for k, v in row.items() if k != "per_record"}


# -- the whole experiment ---------------------------------------------------------------------------------
def _row_path(out_dir: Path, seed: int, arm: str) -> Path:
    (out_dir / ROWS_DIR).mkdir(exist_ok=True)
    return out_dir / ROWS_DIR / f"seed{seed}-{arm}.json"


def rows_so_far(out_dir: Path, config: LMExperimentConfig) -> list[dict[str, Any]]:
    rows = []
    for seed in config.seeds:
        for arm in ordered_arms(config.arms):
            path = _row_path(out_dir, seed, arm)
            if path.exists():
                rows.append(json.loads(path.read_text()))
    return rows


def run_lm_experiment(config: LMExperimentConfig) -> dict[str, Any]:
    """Every arm for every seed as an `lm_experiment` run; see `lm_experiment_job`."""
    check_arms(config)
    with start_run("lm_experiment", config) as run:
        return lm_experiment_job(run, config)


def lm_experiment_data_files(config: LMExperimentConfig, recorded: Sequence[Path] = ()) -> list[Path]:
    """The files an `lm_experiment` reads its records from (`same_data.RunFiles`): every data file of its
    `data` and `eval_data` (the train, eval and test records all come from them), and recorded ones that
    went since."""
    files: list[Path] = []
    for given in (config.data, config.eval_data):
        if given is not None and Path(given).exists():
            files += split_files(given, config.format)
    return list(dict.fromkeys([*files, *(file for file in recorded if not file.exists())]))


def lm_experiment_job(run: Run, config: LMExperimentConfig) -> dict[str, Any]:
    """Run kind `lm_experiment`: train every arm for every seed (the baseline first), score them, and write
    results.{md,csv,json}, comparison.png and differences.png in the run."""

    # a resumed experiment keeps the arms it finished: on data edited since, the others trained and were
    # scored on other records, and one table compared them
    check_same_data(run, functools.partial(lm_experiment_data_files, config))
    shared = open_shared(config)
    run.log(
        "lm experiment",
        arms=config.arms,
        seeds=config.seeds,
        train_records=len(shared.data.train),
        test_records=len(shared.data.test),
        model=config.model,
    )
    lead = None
    if config.lead_baseline:
        references = [r.summary for r in shared.data.test]
        lead = {
            "arm": "lead1",
            **score_predictions(lead1(shared.data.test), references, bertscore=config.bertscore),
        }
        (run.dir / ROWS_DIR).mkdir(exist_ok=True)
        atomic_write_json(run.dir / ROWS_DIR / "lead1.json", lead)
    total = len(config.seeds) * len(config.arms)
    earlier = earlier_arm_runs(run)  # a resumed experiment keeps the arms it finished
    for seed in config.seeds:
        for arm in ordered_arms(config.arms):
            previous = earlier.get((arm, seed))
            if _row_path(run.dir, seed, arm).exists() and previous is not None:
                needs_teacher = (
                    "compressed_kd" in config.arms and not _row_path(run.dir, seed, "compressed_kd").exists()
                )
                if arm == "baseline" and needs_teacher:
                    shared.baselines[seed] = _trained_baseline(shared, previous)
                run.log("arm already finished", arm=arm, seed=seed, run_id=previous.id)
                continue
            unfinished = (
                previous if previous is not None and previous.status is not RunStatus.COMPLETED else None
            )
            failure_path(run.dir / ROWS_DIR, seed, arm).unlink(missing_ok=True)  # trained again
            try:
                row, model = train_arm(shared, arm, seed, run.id, unfinished)
            except Exception as exc:
                # the experiment fails with it; its table says which arm failed and why
                if record_failure(run.dir / ROWS_DIR, seed, arm, exc):
                    failures = failures_so_far(run.dir / ROWS_DIR, config.seeds, ordered_arms(config.arms))
                    rows = rows_so_far(run.dir, config)
                    write_lm_results(run.dir, rows, lead, config, plots=False, failures=failures)
                raise
            atomic_write_text(_row_path(run.dir, seed, arm), json.dumps(row, default=str))
            if arm == "baseline" and "compressed_kd" in config.arms:
                shared.baselines[seed] = model
            else:
                del model
            done = len(rows_so_far(run.dir, config))
            write_lm_results(run.dir, rows_so_far(run.dir, config), lead, config, plots=False)
            run.heartbeat(progress=done / total, message=f"{done} of {total} arms done")
        shared.baselines.pop(seed, None)
    results = write_lm_results(run.dir, rows_so_far(run.dir, config), lead, config, plots=config.plots)
    results.update(run_id=run.id, run_dir=str(run.dir))
    atomic_write_json(run.dir / "results.json", results)
    run.add_artifact(run.dir / "results.json", kind="results")
    run.set_summary(
        **{f"{a['arm']}_{k}": v for a in results["summary"] for k, v in a.items() if k.endswith("_mean")}
    )
    return results


# -- kind lm_compress -------------------------------------------------------------------------------------
def calibration_records(path: str, size: int) -> list[SummaryRecord]:
    """The first `size` records with a document and a summary of `path`'s training split (`splits.
    detect_splits`): calibration ranks the units that are kept, so it reads training pairs only. Read whole,
    a directory of train.jsonl + test.jsonl gave its test records first (files are read in name order)."""
    train_split, _ = detect_splits(path)
    records = read_records(path, split=train_split, limit=size * 4)
    return [r for r in records if r.document.strip() and r.summaries][:size]


def lm_compress_job(run: Run, config: LMCompressConfig) -> dict[str, Any]:
    """Run kind `lm_compress`: rank units on calibration records, cut, export to `out` (or the run's
    model/)."""

    model, tokenizer = load_pretrained(config.model)
    spec = config.compression
    importance = None
    if spec.init == "pretrained" and spec.importance != "weight":
        if not config.calibration_data:
            raise ConfigError(
                f"importance {spec.importance!r} ranks units on calibration records: give calibration_data "
                "(or importance 'weight')"
            )
        records = calibration_records(config.calibration_data, config.calibration_size)
        batches = calibration_batches(
            tokenizer,
            records,
            instruction=instruction_of_config(config),
            max_source_tokens=config.max_source_tokens,
        )
        importance = importance_scores(model, batches, spec.importance)
    small, plan = compress_causal_lm(model, spec, importance, seed=config.seed)
    small.config.tldrlab_instruction = instruction_of_config(config)
    out = Path(config.out) if config.out else run.dir / "model"
    export_compressed(small, tokenizer, plan, out)
    if out.resolve().is_relative_to(run.dir.resolve()):
        run.add_artifact(out, kind="model")
    atomic_write_json(run.dir / "compression.json", plan.to_json())
    run.add_artifact(run.dir / "compression.json", kind="plan")
    summary = plan.to_json()
    run.set_summary(parameters=plan.parameters, kept_fraction=summary["kept_fraction"])
    return {"model_dir": str(out), **{k: v for k, v in summary.items() if k not in ("heads", "kv_groups")}}
