"""What runs of the kinds `elm_prepare` and `elm_evaluate` execute (see tldrlab.kinds).

`elm_train` lives beside the training (`tldrlab.elm.train.elm_train_job`); `elm_optimize` is a sweep
(`tldrlab.service.sweeps.elm_optimize_job`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tldrlab.elm.config import ElmEvaluateConfig, ElmPrepareConfig
from tldrlab.elm.evaluate import evaluate_files
from tldrlab.elm.prepare import prepare_dataset
from tldrlab.report import Column, Report, Table, key_value_table
from tldrlab.runs import Run
from tldrlab.runs.atomic import atomic_write_json


def elm_prepare_job(run: Run, config: ElmPrepareConfig) -> dict[str, Any]:
    stats = prepare_dataset(
        config.data,
        config.out,
        format=config.format,
        embedder=config.embedder,
        task=config.task,
        template=config.template,
        limit=config.limit,
        eval_limit=config.eval_limit,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
        progress=config.progress,
    )
    run.set_summary(**{f"{split}_records": s["records"] for split, s in stats.items()})
    return {"out": config.out, "splits": stats}


def elm_evaluate_job(run: Run, config: ElmEvaluateConfig) -> dict[str, Any]:
    metrics = evaluate_files(
        Path(config.predictions),
        Path(config.references) if config.references else None,
        bertscore_model=config.bertscore_model,
        num_layers=config.num_layers,
    )
    run.log_metrics(0, **metrics)
    run.set_summary(**metrics)
    path = run.artifacts_dir / "metrics.json"
    atomic_write_json(path, metrics)
    run.add_artifact(path, kind="metrics")
    if config.output:
        atomic_write_json(Path(config.output), metrics)
    return metrics


def prepare_report(run_id: str, result: dict[str, Any]) -> Report:
    headers = ("split", "records", "embeddings", "dim", "task types", "target words (mean / max)")
    rows = []
    for split, s in result["splits"].items():
        tasks = ", ".join(f"{k}: {v}" for k, v in s["task_types"].items())
        words = f"{s['target_words_mean']} / {s['target_words_max']}"
        rows.append([split, str(s["records"]), str(s["embeddings"]), str(s["dim"]), tasks, words])
    table = Table([Column(h, key=h == "split") for h in headers], rows)
    return Report([table, f"written to {result['out']}  run {run_id}"])


def evaluate_report(run_id: str, metrics: dict[str, Any]) -> Report:
    return Report([key_value_table(metrics, title=f"run {run_id}")])
