"""`tldrlab elm compare`: the ELM adapter vs a from-scratch T5, same data, same CPU time budget, one table.

    config = ElmT5CompareConfig(data="../shared/data/debian_descriptions", out="out/compare", minutes=10)
    rows = compare_elm_t5(config)

1. `prepare_dataset` embeds the documents (MiniLM) into the ELM layout (train / val / test), under `out`
   (reused by a later compare with the same data, limits and seed, refused with others);
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

from tldrlab.elm.config import COMPARE_BATCH_SIZE, ElmT5CompareConfig
from tldrlab.elm.evaluate import predict_split, summary_quality
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.evaluate.config import GenerateOptions
from tldrlab.runs import start_run
from tldrlab.runs.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text
from tldrlab.train.config import TrainJobConfig

COLUMNS = (
    "rouge1", "rouge2", "rougeL", "bertscore_f1", "bertscore_composite", "length_ratio",
    "distinct_prediction_rate",
)  # fmt: skip


def check_inputs(config: ElmT5CompareConfig) -> None:
    """What the comparison would otherwise find only once MiniLM had embedded the documents (or, for the T5,
    once the ELM had trained for `minutes` and its run was recorded), checked by reading the data, no model:
    the data is here and is pair data, not an ELM layout (the T5 cannot read one); `out` is not a file; a
    layout in `out` was prepared with these options (`check_reusable`); and the ELM's training split, as
    `prepare_dataset` cuts it (or as the layout in `out` holds it, which is reused), has at least one batch
    of COMPARE_BATCH_SIZE usable records. The T5 trains on the same records (holding fewer out of data
    without a dev split), so it has as many. InvalidInputError (NotFoundError for missing data) otherwise."""
    # lazy: prepare takes half a second to import, which every other command of the CLI would pay
    from tldrlab.elm.prepare import has_layout, read_manifest, read_synthesis, synthesis_path, usable_splits

    data, out, elm_data = Path(config.data), Path(config.out), config.prepared_data()
    if not data.exists():
        raise NotFoundError(f"data not found: {data}")
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"the output {out} is a file: give a directory to write the comparison in")
    if data.is_dir() and has_layout(data):
        source = read_manifest(data).get("source")
        raise InvalidInputError(
            f"{data} is a prepared ELM layout: compare embeds the documents itself and trains the T5 on "
            "them, " + (f"give the pair data it was prepared from ({source})" if source else "give pair data")
        )
    remedy = ""
    if has_layout(elm_data):
        check_reusable(config, read_manifest(elm_data))
        where = f"{elm_data} (a layout an earlier compare prepared in --out, reused)"
        remedy = "; give another --out to prepare the data again"
        targets = [str(r["target_text"]) for r in read_synthesis(synthesis_path(elm_data, "train"))]
    else:
        where = f"{data}" + (f" with --limit {config.limit}" if config.limit is not None else "")
        splits = usable_splits(data, None, limit=config.limit, eval_limit=config.eval_limit, seed=config.seed)
        targets = [r.summary for r in splits["train"]]
    usable = sum(1 for target in targets if target.strip())  # what the ELM's task trains on
    if usable < COMPARE_BATCH_SIZE:
        raise InvalidInputError(
            f"{where} has {usable} usable training records: too few for one batch of "
            f"{COMPARE_BATCH_SIZE}, the batch size both models train with{remedy}"
        )


def check_reusable(config: ElmT5CompareConfig, manifest: dict[str, Any]) -> None:
    """The layout in `config.out`, whose manifest is `manifest`, was prepared from the same data with the same
    limits and seed (the options that decide which records `prepare_dataset` embeds), so reusing it compares
    the records the options say. It was reused whatever they were: the ELM trained and was scored on the
    earlier records while the T5 trained on the new ones, and the table did not say so. InvalidInputError
    naming what differs otherwise (or that the layout does not record them: one prepared before they were
    recorded), to give another --out; a layout is not prepared over, as `elm prepare` does not replace one
    without --overwrite. The rule is `prepare.reuse_refusal`, which `elm compare-lm` applies to its `out`
    too."""
    # lazy: prepare takes half a second to import, which every other command of the CLI would pay
    from tldrlab.elm.prepare import reuse_refusal

    given: dict[str, tuple[str, Any]] = {  # option -> (the manifest's key, its value now)
        "--data": ("source", config.data),
        "--limit": ("limit", config.limit),
        "--eval-limit": ("eval_limit", config.eval_limit),
        "--seed": ("seed", config.seed),
    }
    refusal = reuse_refusal(
        manifest,
        given,
        layout=f"{config.prepared_data()} (a layout an earlier compare prepared in --out)",
        reused_by="compare",
        remedy="give another --out to prepare the data again",
        called="options",
    )
    if refusal is not None:
        raise InvalidInputError(refusal)


def _train_elm(config: ElmT5CompareConfig) -> tuple[str, Any]:
    # lazy: loads numpy, torch (this module stays light without them)
    from tldrlab.elm.model import load_elm
    from tldrlab.elm.train import ElmTrainConfig, run_elm_training

    train = ElmTrainConfig.model_validate(config.elm_train_config())
    with start_run("elm_train", train, seed=config.seed, tags={"compare": "elm"}) as run:
        result = run_elm_training(run, train)
    return run.id, (load_elm(run.id), result)


def _train_t5(config: ElmT5CompareConfig) -> tuple[str, Any]:
    # lazy: loads numpy, torch (this module stays light without them)
    from tldrlab.models import load_model
    from tldrlab.train.jobs import run_training

    job = TrainJobConfig.model_validate(config.t5_train_config())
    with start_run("train", job, seed=config.seed, tags={"compare": "t5"}) as run:
        result = run_training(run, job)
    return run.id, (load_model(run.dir / "model"), result)


def compare_elm_t5(config: ElmT5CompareConfig, echo: Any = print) -> list[dict[str, Any]]:
    """Train both within the budget and score them on the same test documents; returns the table rows.

    `config.threads` sets torch's CPU threads for both (1 by default: tiny models on a shared machine run
    fastest on one thread; 0 keeps torch's default). Both models' configs, and so their sizes against the
    parameter budget, were checked when `config` was validated.
    """
    import torch

    data, out = Path(config.data), Path(config.out)
    minutes, lm_size, t5_size = config.minutes, config.lm_size, config.t5_size
    check_inputs(config)  # before anything changes in this process
    if config.threads:
        torch.set_num_threads(config.threads)

    # lazy: loads torch (this module stays light without it)
    from tldrlab.elm.prepare import has_layout, load_split, prepare_dataset
    from tldrlab.evaluate.generate import generate
    from tldrlab.models.registry import count_parameters

    elm_data = config.prepared_data()
    if not has_layout(elm_data):
        echo(f"embedding documents of {data} into {elm_data}")
        prepare_dataset(data, elm_data, limit=config.limit, eval_limit=config.eval_limit, seed=config.seed)
    test = load_split(elm_data, "test")
    refs = [str(r["target_text"]) for r in test.records]

    rows: list[dict[str, Any]] = []
    echo(f"training the ELM (GPT-2 {lm_size} from scratch) for {minutes} min")
    elm_run, ((elm, elm_tok), elm_result) = _train_elm(config)
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
    t5_run, ((t5, t5_tok, _), t5_result) = _train_t5(config)
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
        "data": str(data), "minutes": minutes, "limit": config.limit, "test_documents": len(refs),
        "threads": torch.get_num_threads(), "lm_size": lm_size, "t5_size": t5_size, "seed": config.seed,
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
