"""`tldrlab elm compare`: the ELM adapter vs a from-scratch T5, same data, same CPU time budget, one table.

    rows = compare_elm_t5("../shared/data/debian_descriptions", "out/compare", minutes=10, limit=4000)

1. `prepare_dataset` embeds the documents (MiniLM) into the ELM layout (train / val / test);
2. the ELM (adapter + a GPT-2 trained from scratch by tldrlab) trains through tldrlab's loop for `minutes`;
3. a T5 trained from scratch by `tldrlab train`'s job code, on the same training records, for `minutes`;
4. both summarise the same test documents greedily; `summary_quality` scores them (ROUGE-1/2/L, BERTScore
   F1, composite, length ratio), written to comparison.json / comparison.md / comparison.png.

The budget is the loop's wall time (`max_minutes`, evaluation included) on the same machine; both use a
constant learning rate after warm-up (a time budget has no known step count to decay over), pick the best
checkpoint by validation loss and evaluate only the loss during training. Not in the budget: tokenizer
training, and for the ELM the document embeddings (computed once by `prepare`; at inference the ELM needs
one MiniLM pass per document, counted in the reported generation time).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tldrlab.elm.evaluate import predict_split, summary_quality
from tldrlab.errors import NotFoundError
from tldrlab.evaluate.config import GenerateOptions
from tldrlab.runs import start_run
from tldrlab.runs.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text
from tldrlab.train.config import TrainJobConfig

COLUMNS = (
    "rouge1", "rouge2", "rougeL", "bertscore_f1", "bertscore_composite", "length_ratio",
    "distinct_prediction_rate",
)  # fmt: skip


def _train_elm(
    data_dir: Path, minutes: float, lm_size: str, hidden_dim: int, seed: int, eval_every: int
) -> tuple[str, Any]:
    # lazy: loads numpy, torch (this module stays light without them)
    from tldrlab.elm.model import load_elm
    from tldrlab.elm.train import ElmTrainConfig, run_elm_training

    config = ElmTrainConfig.model_validate(
        {
            "data": str(data_dir),
            "model": {"lm": "scratch", "lm_size": lm_size, "hidden_dim": hidden_dim, "num_prefix_tokens": 8},
            "max_steps": 1_000_000,
            "eval_interval": eval_every,
            "eval_samples": 0,
            "use_bertscore": False,
            "train": {
                "batch_size": 16, "lr": 1e-3, "warmup_steps": 50, "lr_schedule": "constant",
                "best_metric": "eval_loss", "best_mode": "min", "early_stopping_patience": None,
                "max_minutes": minutes, "checkpoint_every": eval_every, "seed": seed,
            },
        }
    )  # fmt: skip
    with start_run("elm_train", config, seed=seed, tags={"compare": "elm"}) as run:
        result = run_elm_training(run, config)
    return run.id, (load_elm(run.id), result)


def _train_t5(
    source: Path, limit: int | None, minutes: float, size: str, seed: int, eval_every: int
) -> tuple[str, Any]:
    # lazy: loads numpy, torch (this module stays light without them)
    from tldrlab.models import load_model
    from tldrlab.train.jobs import run_training

    job = TrainJobConfig.model_validate(
        {
            "model": "t5",
            "model_settings": {"size": size},
            "data": {"path": str(source), "limit": limit, "max_target_len": 48, "max_source_len": 256},
            "tokenizer": {"method": "bpe", "vocab_size": 4000},
            "train": {
                "max_steps": 1_000_000, "batch_size": 16, "lr": 1e-3, "warmup_steps": 50,
                "lr_schedule": "constant", "eval_every": eval_every, "checkpoint_every": eval_every,
                "max_minutes": minutes, "seed": seed,
            },
        }
    )  # fmt: skip
    with start_run("train", job, seed=seed, tags={"compare": "t5"}) as run:
        result = run_training(run, job)
    return run.id, (load_model(run.dir / "model"), result)


def compare_elm_t5(
    data: Path | str,
    out_dir: Path | str,
    *,
    minutes: float = 10.0,
    limit: int | None = 4000,
    eval_limit: int = 200,
    lm_size: str = "tiny",
    hidden_dim: int = 256,
    t5_size: str = "tiny",
    seed: int = 0,
    eval_every: int = 200,
    threads: int | None = 1,
    echo: Any = print,
) -> list[dict[str, Any]]:
    """Train both within the budget and score them on the same test documents; returns the table rows.

    `threads` sets torch's CPU threads for both (1 by default: tiny models on a shared machine run fastest
    on one thread; None keeps torch's default).
    """
    import torch

    data, out = Path(data), Path(out_dir)
    if not data.exists():  # before anything changes in this process
        raise NotFoundError(f"data not found: {data}")
    if threads is not None:
        torch.set_num_threads(threads)

    # lazy: loads torch (this module stays light without it)
    from tldrlab.elm.prepare import has_layout, load_split, prepare_dataset
    from tldrlab.evaluate.generate import generate
    from tldrlab.models.registry import count_parameters

    elm_data = out / "elm_data"
    if not has_layout(elm_data):
        echo(f"embedding documents of {data} into {elm_data}")
        prepare_dataset(data, elm_data, limit=limit, eval_limit=eval_limit, seed=seed)
    test = load_split(elm_data, "test")
    refs = [str(r["target_text"]) for r in test.records]

    rows: list[dict[str, Any]] = []
    echo(f"training the ELM (GPT-2 {lm_size} from scratch) for {minutes} min")
    elm_run, ((elm, elm_tok), elm_result) = _train_elm(
        elm_data, minutes, lm_size, hidden_dim, seed, eval_every
    )
    started = time.perf_counter()
    elm_preds = [p["prediction"] for p in predict_split(elm, elm_tok, test.records, test.embeddings)]
    elm_seconds = time.perf_counter() - started
    rows.append(
        {
            "model": f"ELM adapter + GPT-2 {lm_size} (scratch)",
            "run_id": elm_run,
            "parameters": count_parameters(elm),
            "steps": elm_result.steps,
            "generate_s": round(elm_seconds, 2),
            **summary_quality(elm_preds, refs),
        }
    )
    echo(f"training T5 {t5_size} from scratch for {minutes} min")
    t5_run, ((t5, t5_tok, _), t5_result) = _train_t5(data, limit, minutes, t5_size, seed, eval_every)
    started = time.perf_counter()
    options = GenerateOptions(temperature=0.0, max_new_tokens=48, max_input_tokens=256)
    with torch.no_grad():
        t5_preds = [
            o[0]
            for o in generate(t5, t5_tok, ["summarize: " + str(r["document"]) for r in test.records], options)
        ]
    t5_seconds = time.perf_counter() - started
    rows.append(
        {
            "model": f"T5 {t5_size} (scratch)",
            "run_id": t5_run,
            "parameters": count_parameters(t5),
            "steps": t5_result.steps,
            "generate_s": round(t5_seconds, 2),
            **summary_quality(t5_preds, refs),
        }
    )
    samples = [
        {"reference": ref, "elm": e, "t5": t, "source_id": r.get("source_id")}
        for r, ref, e, t in zip(test.records, refs, elm_preds, t5_preds, strict=True)
    ]
    setup = {
        "data": str(data), "minutes": minutes, "limit": limit, "test_documents": len(refs),
        "threads": torch.get_num_threads(), "lm_size": lm_size, "t5_size": t5_size, "seed": seed,
    }  # fmt: skip
    write_report(out, rows, samples, setup)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ["model", "parameters", "steps", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"], f"{row['parameters']:,}", str(row["steps"])]
        cells += [f"{row[c]:.4f}" for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    out: Path, rows: list[dict[str, Any]], samples: list[dict[str, Any]], setup: dict[str, Any]
) -> None:

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", {"setup": setup, "rows": rows})
    atomic_write_text(out / "comparison.md", markdown_table(rows))
    atomic_write_jsonl(out / "samples.jsonl", samples)
    metrics = [c for c in COLUMNS if c not in ("length_ratio", "distinct_prediction_rate")]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        ax.bar(
            [x + i * width for x in range(len(metrics))], [row[m] for m in metrics], width, label=row["model"]
        )
    ax.set_xticks([x + width * (len(rows) - 1) / 2 for x in range(len(metrics))], metrics)
    ax.set_ylabel("score")
    ax.set_title(f"ELM vs T5, {setup['minutes']} CPU minutes each, {setup['test_documents']} test documents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=120)
    plt.close(fig)
