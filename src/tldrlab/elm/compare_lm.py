"""`tldrlab elm compare-lm`: the ELM on a frozen pretrained LM vs the LM fine-tuned on the full text vs the LM
prompted zero-shot, scored on the same test documents (kind `elm_compare_lm`).

1. the pair data is embedded once into the ELM layout (`prepare_dataset`; val / test = the validation split
   halved with the seed, or the test file when the data has one), its prompt template being the LM's own
   chat prompt with the document replaced by the adapter's soft prefix; a layout already in `out` is reused
   only when prepared with the same data, limit, eval_limit, seed and embedder (refused otherwise);
2. `zero_shot`: the pretrained LM answers the chat prompt with the document (cut to `max_source_tokens`);
3. `finetune`: the whole LM fine-tuned on the same training records (chat format, answer-only loss) for
   `cpu_minutes` of CPU time, best validation loss kept (a child run);
4. `elm`: the adapter trained on the frozen LM for the same CPU time, with the drift and contrastive losses,
   best validation loss kept (an `elm_train` child run); `elm_lora` the same plus LoRA adapters on the LM;
5. every system summarises the test documents one at a time (batch 1, greedy); the ELM's time includes
   embedding the document. ROUGE-1/2/L, BERTScore F1, the ELM's composite and distinct-prediction rate, CPU
   and wall time per summary, and paired bootstrap intervals of each pairwise difference go to
   comparison.{json,md,png} and samples.jsonl in the run.

The budget is process CPU time (one thread), checked at each evaluation, so the machine's other load does not
change how much training each system gets; wall times are reported too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tldrlab.data.records import SummaryRecord
from tldrlab.elm.config import COMPARE_SYSTEMS, ElmLMCompareConfig, ElmTrainConfig
from tldrlab.elm.evaluate import summary_quality
from tldrlab.elm.model import generate_summaries, load_elm
from tldrlab.elm.prepare import (
    check_compare_lm_layout,
    check_lm_run_kind,
    compare_lm_prompt_source,
    has_layout,
    load_split,
    prepare_dataset,
)
from tldrlab.elm.train import run_elm_training
from tldrlab.embed import get_embedder
from tldrlab.errors import ConfigError
from tldrlab.evaluate.bootstrap import paired_bootstrap_interval
from tldrlab.experiments.lm_experiment import (
    ArmTask,
    instruction_of_config,
    load_pretrained,
    score_predictions,
    summarize_records,
)
from tldrlab.models.chat import chat_prompt
from tldrlab.runs import Run, start_run
from tldrlab.runs.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text
from tldrlab.train.config import DataConfig, TrainConfig
from tldrlab.train.loop import EvalDecision, TrainHooks, TrainResult, TrainState
from tldrlab.train.recipe import Recipe, RecipeExport, RecipeSetup, Tracking, run_recipe

COLUMNS = ("rouge1", "rouge2", "rougeL", "bertscore_f1", "distinct_prediction_rate")
LABELS = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "bertscore_f1": "BERTScore F1",
    "distinct_prediction_rate": "distinct",
}


class CpuBudget(TrainHooks):
    """Stops training at the first evaluation after `minutes` of this process's CPU time."""

    def __init__(self, minutes: float) -> None:
        self.limit = minutes * 60
        self.started: float | None = None
        self.used = 0.0

    def on_train_start(self, state: TrainState, model: Any) -> None:
        self.started = time.process_time()

    def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
        self.used = time.process_time() - (self.started or 0.0)
        return EvalDecision(stop=True) if self.used >= self.limit else None


@dataclass
class _Generation:
    """What `summarize_records` reads from a config."""

    max_source_tokens: int
    max_new_tokens: int
    instruction: str


def prompt_template(tokenizer: Any, instruction: str) -> str:
    """The LM's chat prompt with `{text}` where the document (the ELM's soft prefix) goes."""
    return chat_prompt(tokenizer, "{text}", instruction)


def _records(split: Any) -> list[SummaryRecord]:
    return [
        SummaryRecord(
            id=str(r.get("source_id", i)),
            document=str(r.get("document", "")),
            summaries=[str(r["target_text"])],
        )
        for i, r in enumerate(split.records)
    ]


FINETUNE_KIND = "elm_compare_finetune"


def finetune_recipe(
    train_records: list[SummaryRecord], val_records: list[SummaryRecord], budget: CpuBudget, parent: str
) -> Recipe[ElmLMCompareConfig]:
    """The `finetune` system as a recipe: the whole LM fine-tuned on the full text (chat format, answer-only
    loss) until `budget` is spent; the driver keeps the best validation loss's weights."""

    def setup(run: Run | None, config: ElmLMCompareConfig) -> RecipeSetup:
        model, tokenizer = load_pretrained(config.lm)
        instruction = instruction_of_config(config)
        model.config.tldrlab_instruction = instruction
        data = DataConfig(
            path=config.data,
            max_source_len=config.max_source_tokens,
            max_target_len=config.max_target_tokens,
            max_val_examples=config.eval_size,
        )
        loop = TrainConfig(
            max_steps=10**8,  # the CPU budget stops it
            batch_size=config.batch_size,
            lr=config.finetune_lr,
            warmup_steps=10,
            lr_schedule="constant",
            weight_decay=0.0,
            eval_every=config.eval_every,
            checkpoint_every=0,
            keep_checkpoints=1,
            seed=config.seed,
            log_every=max(1, config.eval_every // 5),
        )
        return RecipeSetup(
            model=model,
            task=ArmTask(train_records, val_records, tokenizer, data, instruction),
            loop=loop,
            tokenizer=tokenizer,
            hooks=[budget],
            tracking=Tracking(
                mode=config.wandb,
                project="tldrlab-elm",
                group=parent,
                tags=["compare-lm", "finetune"],
                config={**config.model_dump(mode="json"), "system": "finetune"},
            ),
            resume=False,
        )

    def export(run: Run, config: ElmLMCompareConfig, setup: RecipeSetup, result: TrainResult) -> RecipeExport:
        # the comparison scores the model in memory; nothing is saved beyond the run's checkpoint
        facts = {
            "run_id": run.id,
            "steps": result.steps,
            "best_step": result.best_step,
            "train_cpu_seconds": budget.used,
            "train_seconds": result.seconds,
            "trainable_parameters": sum(p.numel() for p in result.model.parameters()),
        }
        numbers = {k: v for k, v in facts.items() if isinstance(v, int | float)}
        return RecipeExport(summary=numbers, result=facts)

    return Recipe(FINETUNE_KIND, lambda config: config.seed, setup, export)


def _finetune(config: ElmLMCompareConfig, data_dir: Path, parent: str) -> tuple[Any, Any, dict[str, Any]]:
    """The LM fine-tuned on the full text within the CPU budget (best validation loss), in a child run:
    model, tokenizer, facts."""

    train_records = _records(load_split(data_dir, "train"))
    val_records = _records(load_split(data_dir, "val"))[: config.eval_size]
    budget = CpuBudget(config.cpu_minutes)
    recipe = finetune_recipe(train_records, val_records, budget, parent)
    run_config = {**config.model_dump(mode="json"), "system": "finetune"}
    with start_run(FINETUNE_KIND, run_config, seed=config.seed, parent_id=parent) as run:
        outcome = run_recipe(run, recipe, config)
    return outcome.train.model, outcome.setup.tokenizer, outcome.export.result


def _train_elm(
    config: ElmLMCompareConfig, data_dir: Path, parent: str, *, lora: bool
) -> tuple[Any, Any, dict[str, Any]]:
    """The adapter (with `lora`: and LoRA adapters) on the frozen LM within the CPU budget (best validation
    loss): model, tokenizer, facts."""

    elm_config = ElmTrainConfig.model_validate(
        {
            "data": str(data_dir),
            "model": {
                "lm": config.lm,
                "freeze_lm": True,
                "lora_rank": config.lora_rank if lora else None,
                "hidden_dim": config.hidden_dim,
                "num_prefix_tokens": config.num_prefix_tokens,
            },
            "max_steps": 10**8,
            "eval_interval": config.eval_every,
            "eval_samples": 0,
            "use_bertscore": False,
            "max_target_len": config.max_target_tokens,
            "max_val_examples": config.eval_size,
            "wandb": config.wandb,
            "train": {
                "batch_size": config.batch_size,
                "lr": config.elm_lr,
                "warmup_steps": 10,
                "lr_schedule": "constant",
                "best_metric": "eval_loss",
                "best_mode": "min",
                "early_stopping_patience": None,
                "checkpoint_every": 0,
                "seed": config.seed,
                "log_every": max(1, config.eval_every // 5),
            },
        }
    )
    budget = CpuBudget(config.cpu_minutes)
    with start_run(
        "elm_train", elm_config, seed=config.seed, parent_id=parent, tags={"compare": "elm"}
    ) as run:
        result = run_elm_training(run, elm_config, hooks=budget)
    model, tokenizer = load_elm(run.id)
    trainable = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("lm.") or "lora_" in n)
    facts = {
        "run_id": run.id,
        "steps": result.steps,
        "best_step": result.best_step,
        "train_cpu_seconds": budget.used,
        "train_seconds": result.seconds,
        "trainable_parameters": trainable,
    }
    return model, tokenizer, facts


@torch.no_grad()
def elm_summaries(
    model: Any, tokenizer: Any, documents: list[str], template: str, embedder: Any, max_new_tokens: int
) -> tuple[list[str], float, float]:
    """One document at a time: embed it, then generate from its prefix; mean wall and CPU seconds each."""

    outputs, wall, cpu = [], 0.0, 0.0
    for document in documents:
        started, cpu_started = time.perf_counter(), time.process_time()
        vector = torch.as_tensor(embedder.encode([document]), dtype=torch.float32)
        outputs.extend(
            generate_summaries(model, tokenizer, vector, [template], max_new_tokens=max_new_tokens)
        )
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
    return outputs, wall / max(len(documents), 1), cpu / max(len(documents), 1)


def compare_lm_job(run: Run, config: ElmLMCompareConfig) -> dict[str, Any]:
    """Run kind `elm_compare_lm` (see the module docstring)."""

    unknown = [s for s in config.systems if s not in COMPARE_SYSTEMS]
    if unknown or not config.systems:
        raise ConfigError(f"systems must be among {', '.join(COMPARE_SYSTEMS)}; got {config.systems}")
    # checked at submit too, but a queued run's `out` may have been prepared since: refused before the LM
    # loads, not reused
    check_compare_lm_layout(config)
    check_lm_run_kind(config.lm, ())  # as the layout: the run `lm` names may have been replaced since
    instruction = instruction_of_config(config)
    data_dir = Path(config.out) if config.out else run.dir / "elm_data"
    _, tokenizer = load_pretrained(config.lm)
    template = prompt_template(tokenizer, instruction)
    if not has_layout(data_dir):
        run.set_phase("embedding the documents")
        prepare_dataset(
            config.data,
            data_dir,
            embedder=config.embedder,
            template=template,
            limit=config.limit,
            eval_limit=config.eval_limit,
            seed=config.seed,
            recorded=compare_lm_prompt_source(config),
        )
    test = load_split(data_dir, "test")
    documents = [str(r["document"]) for r in test.records]
    references = [str(r["target_text"]) for r in test.records]
    generation = _Generation(config.max_source_tokens, config.max_target_tokens, instruction)
    records = [
        SummaryRecord(id=str(i), document=d, summaries=[r])
        for i, (d, r) in enumerate(zip(documents, references, strict=True))
    ]
    rows: list[dict[str, Any]] = []
    predictions: dict[str, list[str]] = {}
    for system in [s for s in COMPARE_SYSTEMS if s in config.systems]:
        run.set_phase(f"{system}: training" if system != "zero_shot" else "zero_shot: summarising")
        run.log("system", system=system)
        if system == "zero_shot":
            model, tok = load_pretrained(config.lm)
            model.config.tldrlab_instruction = instruction
            facts: dict[str, Any] = {
                "steps": 0,
                "train_cpu_seconds": 0.0,
                "train_seconds": 0.0,
                "trainable_parameters": 0,
            }
            preds, wall, cpu = summarize_records(model, tok, records, generation)
        elif system == "finetune":
            model, tok, facts = _finetune(config, data_dir, run.id)
            preds, wall, cpu = summarize_records(model, tok, records, generation)
        else:
            model, tok, facts = _train_elm(config, data_dir, run.id, lora=system == "elm_lora")
            embedder = get_embedder(config.embedder)
            preds, wall, cpu = elm_summaries(
                model, tok, documents, template, embedder, config.max_target_tokens
            )
        scores = score_predictions(preds, references, bertscore=config.bertscore)
        quality = summary_quality(preds, references, use_bertscore=config.bertscore)
        rows.append(
            {
                "system": system,
                **facts,
                "parameters": sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values()),
                **{
                    k: quality[k]
                    for k in ("distinct_prediction_rate", "length_ratio", "empty_prediction_rate")
                    if k in quality
                },
                **{k: v for k, v in scores.items() if k != "per_record"},
                "seconds_per_summary": wall,
                "cpu_seconds_per_summary": cpu,
                "per_record": scores["per_record"],
            }
        )
        predictions[system] = preds
        del model
        _write(run.dir, config, rows, predictions, documents, references)
    return _write(run.dir, config, rows, predictions, documents, references)


def pairwise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every later system minus every earlier one, per quality metric, with a 95 % bootstrap interval."""
    out = []
    for i, first in enumerate(rows):
        for second in rows[i + 1 :]:
            for metric in ("rouge1", "rouge2", "rougeL", "bertscore_f1"):
                if metric not in first["per_record"] or metric not in second["per_record"]:
                    continue
                diff = [
                    b - a
                    for a, b in zip(first["per_record"][metric], second["per_record"][metric], strict=True)
                ]
                # one test record gives no interval (resampling it draws the same difference every time)
                low, high = (
                    paired_bootstrap_interval(diff)  # type: ignore[arg-type]
                    if len(diff) > 1
                    else (None, None)
                )
                out.append(
                    {
                        "system": second["system"],
                        "reference": first["system"],
                        "metric": metric,
                        "difference": sum(diff) / len(diff),
                        "low": low,
                        "high": high,
                    }
                )
    return out


def markdown(rows: list[dict[str, Any]], differences: list[dict[str, Any]]) -> str:
    head = [
        "system",
        "params",
        "trainable",
        "steps",
        "train CPU s",
        *[LABELS[c] for c in COLUMNS],
        "CPU s/summary",
        "wall s/summary",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["system"],
            f"{row['parameters']:,}",
            f"{row['trainable_parameters']:,}",
            str(row["steps"]),
            f"{row['train_cpu_seconds']:.0f}",
            *[f"{row[c]:.4f}" if c in row else "–" for c in COLUMNS],
            f"{row['cpu_seconds_per_summary']:.3f}",
            f"{row['seconds_per_summary']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if differences:
        lines += ["", "| difference | metric | mean [95 % interval] |", "|---|---|---|"]
        for d in differences:
            lines.append(
                f"| {d['system']} − {d['reference']} | {LABELS[d['metric']]} | "
                f"{d['difference']:+.4f}"
                + (f" [{d['low']:+.4f}, {d['high']:+.4f}]" if d["low"] is not None else "")
                + " |"
            )
    return "\n".join(lines) + "\n"


def _write(
    out: Path,
    config: ElmLMCompareConfig,
    rows: list[dict[str, Any]],
    predictions: dict[str, list[str]],
    documents: list[str],
    references: list[str],
) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    differences = pairwise(rows)
    table = markdown(rows, differences)
    plain = [{k: v for k, v in r.items() if k != "per_record"} for r in rows]
    setup = config.model_dump(mode="json")
    atomic_write_json(out / "comparison.json", {"setup": setup, "rows": plain, "differences": differences})
    atomic_write_text(out / "comparison.md", table)
    samples = [
        {"document": d[:300], "reference": r, **{s: p[i] for s, p in predictions.items()}}
        for i, (d, r) in enumerate(zip(documents, references, strict=True))
    ]
    atomic_write_jsonl(out / "samples.jsonl", samples)
    metrics = [c for c in ("rouge1", "rouge2", "rougeL", "bertscore_f1") if all(c in r for r in rows)]
    fig, (ax, cost) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1.3]})
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        ax.bar(
            [x + i * width for x in range(len(metrics))],
            [row[m] for m in metrics],
            width,
            label=row["system"],
        )
    ax.set_xticks(
        [x + width * (len(rows) - 1) / 2 for x in range(len(metrics))], [LABELS[m] for m in metrics]
    )
    ax.set_title(
        f"{config.lm}: same {config.cpu_minutes:g} CPU min of training, {len(references)} test documents"
    )
    ax.legend()
    cost.bar([r["system"] for r in rows], [r["cpu_seconds_per_summary"] for r in rows], color="#8172b3")
    cost.set_title("CPU s per summary (batch 1)")
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=110)
    plt.close(fig)
    return {
        "rows": plain,
        "differences": differences,
        "table_markdown": table,
        "files": {
            n: str(out / n) for n in ("comparison.json", "comparison.md", "comparison.png", "samples.jsonl")
        },
    }
