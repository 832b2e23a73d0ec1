"""What runs of the kinds `evaluate`, `generate` and `score` execute (see tldrlab.kinds).

Each takes the run and its validated config and returns the result the API serves as the run's
`artifacts/result.json` (`GET /runs/{id}/generate/{request_id}`, score, eval). The CLI's `tldrlab eval`
launches the same `evaluate` kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tldrlab.data.readers import read_records, split_files
from tldrlab.errors import CheckpointError, InvalidConfigError, InvalidInputError
from tldrlab.evaluate.artifacts import (
    FINAL_EVAL_TAG,
    HIGHLIGHT_TABLE_FILE,
    SUMMARY_FILE,
    TABLE_FILE,
    evaluation_dir,
)
from tldrlab.evaluate.config import EvaluateConfig, GenerateConfig, ScoreConfig
from tldrlab.evaluate.generate import char_lstm_refusal, generate_detailed
from tldrlab.evaluate.metrics import EMPTY_OUTPUT_CAUSE, empty_count, perplexity
from tldrlab.evaluate.model_run import check_model_run
from tldrlab.evaluate.run_eval import (
    EVAL_FILE,
    PLOT_FILE,
    SAMPLES_FILE,
    eval_config_for,
    evaluate_model,
    split_read,
    training_prefix,
)
from tldrlab.evaluate.score import score_text
from tldrlab.models.io import load_model, model_name_in
from tldrlab.models.registry import model_task
from tldrlab.models.resolve import resolve_model_ref
from tldrlab.models.store import install_bundled
from tldrlab.report import Column, Report, Table, key_value_table
from tldrlab.runs import Run
from tldrlab.runs.atomic import atomic_write_bytes
from tldrlab.runs.datasets import dataset_refs
from tldrlab.track.wandb_tracker import WandbTracker, wandb_mode

EVALUATION_FILES = (EVAL_FILE, SAMPLES_FILE, PLOT_FILE, SUMMARY_FILE, TABLE_FILE, HIGHLIGHT_TABLE_FILE)
"""What an evaluation writes (the highlight table only where the data labels highlights)."""
ARTIFACT_KINDS = {
    SAMPLES_FILE: "samples",
    PLOT_FILE: "plot",
    TABLE_FILE: "table",
    HIGHLIGHT_TABLE_FILE: "table",
}

PER_TOKEN_FIELDS = ("tokens", "token_ids", "surprisal_bits", "topk")
"""What `detail_level="summary"` leaves out of a score."""


def _load(run: Run, config: EvaluateConfig | GenerateConfig | ScoreConfig) -> tuple[Any, Any, str]:
    # the run its `model_run` names may have been replaced since the submit checked it: a run of a kind that
    # saves no model is said to be one, naming the field, before "has no saved model"
    check_model_run(config)
    model_run = config.model_run
    run.log(f"loading the model of {model_run}")
    # the bundled GGUF is converted once into the model store: later loads skip ~20 s of de-quantizing
    model, tokenizer, name = load_model(install_bundled(resolve_model_ref(model_run)).ref)
    if tokenizer is None:
        raise InvalidInputError(f"{model_run}: the saved model has no tokenizer files")
    return model, tokenizer, name


def _records(config: GenerateConfig | ScoreConfig) -> list[Any]:
    """The records a `dataset` names (the first `limit` of `split`)."""

    assert config.dataset is not None
    records = read_records(config.dataset, split=config.split, limit=config.limit, skip_invalid=True)
    if not records:
        raise InvalidInputError(f"{config.dataset}: no records to use")
    return records


def _read_from(config: GenerateConfig | ScoreConfig) -> dict[str, Any]:
    """What a result says of the records it read: the data set and its split (None: all of it)."""
    return {"dataset": config.dataset, "split": config.split}


def _read_line(result: dict[str, Any], count: int) -> str:
    """The report's line naming the records read and their split (a data-set directory's held-out one
    unless asked for another: the training files were read too, and nothing said so)."""
    split = f"split {result['split']}" if result.get("split") else "all of it"
    return f"{count} records of {result['dataset']} ({split})"


def generate_job(run: Run, config: GenerateConfig) -> dict[str, Any]:
    """Outputs for the prompts (or a data set's documents), with each output's steps and whether it ended on
    the end-of-sequence token."""
    model, tokenizer, name = _load(run, config)
    records: list[Any] = []
    # a seq2seq run's training prefix goes before typed-in prompts too, as before a data set's documents and
    # those of POST /summarize: without it the same document got another summary here than over the API
    prefix = training_prefix(config.model_run) if model_task(name) == "seq2seq" else ""
    if config.dataset is not None:
        records = _records(config)
        prompts = [prefix + r.document for r in records]
    else:
        prompts = [prefix + prompt for prompt in config.prompts or []]
    outputs = generate_detailed(model, tokenizer, prompts, config.options)
    flat = [o for outs in outputs for o in outs]
    run.set_summary(
        prompts=len(prompts),
        mean_steps=sum(o.steps for o in flat) / len(flat),
        eos_terminated=sum(o.eos_terminated for o in flat) / len(flat),
    )
    result: dict[str, Any] = {
        "model": name,
        "outputs": [[o.text for o in outs] for outs in outputs],
        "details": [
            [{"steps": o.steps, "eos_terminated": o.eos_terminated, "stopped": o.stopped} for o in outs]
            for outs in outputs
        ],
    }
    if records:
        result["records"] = [{"id": r.id, "reference": r.summary} for r in records]
        result.update(_read_from(config))
    return result


def _scored(result: dict[str, Any], detail_level: str) -> dict[str, Any]:
    if detail_level == "summary":
        return {k: v for k, v in result.items() if k not in PER_TOKEN_FIELDS}
    return result


def score_job(run: Run, config: ScoreConfig) -> dict[str, Any]:
    """Loss, perplexity (and per token: surprisal and top predictions) of a text, or of each record of a data
    set with the token-weighted totals."""
    model, tokenizer, name = _load(run, config)
    top_k = config.top_k if config.detail_level == "per_token" else 0
    task = model_task(name)
    prefix = training_prefix(config.model_run) if task == "seq2seq" else ""
    if config.dataset is None:
        assert config.text is not None
        # a typed-in source gets the run's training prefix, as a data set's documents do
        source = prefix + config.source if config.source else ""
        result = score_text(model, tokenizer, config.text, top_k, source=source, max_tokens=config.max_tokens)
        run.set_summary(**{k: result[k] for k in ("loss", "perplexity", "num_tokens")})
        return {"model": name, "max_tokens": config.max_tokens, **_scored(result, config.detail_level)}
    rows = []
    for record in _records(config):
        if task in ("seq2seq", "chat"):
            if not record.summary:
                continue
            scored = score_text(
                model,
                tokenizer,
                record.summary,
                top_k,
                source=prefix + record.document,
                max_tokens=config.max_tokens,
            )
        else:
            scored = score_text(model, tokenizer, record.document, top_k, max_tokens=config.max_tokens)
        rows.append({"id": record.id, **_scored(scored, config.detail_level)})
    if not rows:
        raise InvalidInputError(f"{config.dataset}: no records with a reference summary to score")
    tokens = sum(r["num_tokens"] for r in rows)
    loss = sum(r["loss"] * r["num_tokens"] for r in rows) / tokens
    totals = {"loss": loss, "perplexity": perplexity(loss), "num_tokens": tokens, "records": len(rows)}
    run.set_summary(**totals)
    read = _read_from(config)
    return {
        "model": name,
        **totals,
        "max_tokens": config.max_tokens,
        "detail_level": config.detail_level,
        "per_record": rows,
        **read,
    }


def evaluate_job(run: Run, config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate into the run (eval.json, samples.jsonl, eval.png, eval_summary.json, eval_table.csv and, where
    the data labels highlights, highlight_eval_table.csv) and next to the evaluated model (a training run's
    later evaluations: under its `evaluations/<run id>/`, `artifacts.evaluation_dir`); log them to W&B as an
    `evaluation` artifact."""
    check_model_run(config)  # before its data is looked for in the run it names
    eval_config, out_dir, evaluated = eval_config_for(config.model_run, **config.overrides())
    model, tokenizer, name = _load(run, config)
    run.log(f"evaluating {name} on {eval_config.data} split={eval_config.split}")
    extra = {
        "run_id": run.id,
        "evaluated_run": evaluated,
        "datasets": dataset_refs({"data": eval_config.data}),
    }
    result = evaluate_model(
        model, tokenizer, name, eval_config, run.dir, run=run, progress=config.progress, summary_extra=extra
    )
    final = bool(run.record.tags.get(FINAL_EVAL_TAG)) and run.record.parent_id == evaluated
    # a GGUF file, the bundled or an installed model: results stay in the run
    out_dir = evaluation_dir(out_dir, evaluated, run.id, final) or run.dir
    files = [f for f in EVALUATION_FILES if (run.dir / f).is_file()]
    for file in files:
        if out_dir.resolve() != run.dir.resolve():
            atomic_write_bytes(out_dir / file, (run.dir / file).read_bytes())
    numeric = {k: v for k, v in result["metrics"].items() if isinstance(v, int | float)}
    run.log_metrics(0, **numeric)
    run.set_summary(**numeric)
    for file in files:
        run.add_artifact(run.dir / file, kind=ARTIFACT_KINDS.get(file, "eval"))
    tracker = WandbTracker.start(
        run, mode=wandb_mode(config.wandb), config={"evaluation": extra, **result["config"]}
    )
    try:
        tracker.log(0, numeric)
        tracker.summary(numeric)
        tracker.log_artifact(f"evaluation-{run.id}", "evaluation", [run.dir / f for f in files])
    finally:
        tracker.finish()
    return {**result, "run_id": run.id, "out_dir": str(out_dir)}


def evaluate_report(run_id: str, result: dict[str, Any]) -> Report:
    title = f"{result['model']} ({result['task']}) -> {result['out_dir']}"
    samples = Path(result["out_dir"]) / "samples.jsonl"
    table = key_value_table(result["metrics"], title)
    config = result.get("config") or {}
    read = f"{config.get('data')}" + split_read(config)
    return Report(
        [table, f"eval run {run_id} on {read}; samples in {samples}"], list(result.get("warnings", []))
    )


def generate_report(run_id: str, result: dict[str, Any]) -> Report:
    report = Report()
    if result.get("dataset"):
        report.blocks.append(f"prompts: {_read_line(result, len(result['outputs']))}")
    for i, outputs in enumerate(result["outputs"]):
        report.blocks.append(f"--- {result['model']} prompt {i + 1}  run {run_id}")
        report.blocks += [
            f"[{j}] {out}" if out.strip() else f"[{j}] (empty)" for j, out in enumerate(outputs)
        ]
    if empty := empty_count([o for outs in result["outputs"] for o in outs]):
        total = sum(len(outs) for outs in result["outputs"])
        report.warnings.append(f"{empty} of {total} outputs are empty: {EMPTY_OUTPUT_CAUSE}")
    return report


def _scored_at_most(result: dict[str, Any]) -> str:
    """What cut a scored text: max_tokens (a result recorded before it had one: the model's context alone)."""
    if "max_tokens" not in result:
        return "the model's context"
    return f"max_tokens {result['max_tokens']} (or the model's context, where shorter)"


def score_report(run_id: str, result: dict[str, Any]) -> Report:
    totals = f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.2f}"
    if "per_record" in result:  # a data set: the totals, then one row per record
        columns = [Column("record", key=True), *(Column(h, justify="right") for h in ("loss", "perplexity"))]
        rows = [
            [row["id"], f"{row['loss']:.4f}", f"{row['perplexity']:.2f}", str(row["num_tokens"])]
            for row in result["per_record"]
        ]
        line = f"{totals}, {result['num_tokens']} tokens in {result['records']} records  run {run_id}"
        blocks: list[Any] = [line, Table([*columns, Column("tokens", justify="right")], rows)]
        if result.get("dataset"):  # a result recorded before it said what it read has no dataset
            blocks.insert(0, f"scored: {_read_line(result, result['records'])}")
        report = Report(blocks)
        if cut := [row["id"] for row in result["per_record"] if row.get("truncated")]:
            # a single text says "(truncated)"; a data set's rows said nothing, its token counts looking whole
            report.warnings.append(
                f"{len(cut)} of {result['records']} records are longer than {_scored_at_most(result)}: "
                f"only their start was scored ({', '.join(cut[:5])}{', ...' if len(cut) > 5 else ''})"
            )
        return report
    truncated = " (truncated)" if result["truncated"] else ""
    report = Report([f"{totals}, {result['num_tokens']} tokens{truncated}  run {run_id}"])
    # a result recorded before it counted the text has no text_tokens
    if result["truncated"] and "text_tokens" in result:
        report.warnings.append(
            f"the text is {result['text_tokens']} tokens, more than {_scored_at_most(result)}: "
            f"only its start was scored ({result['num_tokens']} tokens)"
        )
    if "tokens" in result:  # else detail_level summary
        rows = []
        for i, token in enumerate(result["tokens"]):
            top = result["topk"][i] if result["topk"] else []
            alternatives = "  ".join(f"{t['token']!r} {t['prob']:.2f}" for t in top)
            rows.append([repr(token), f"{result['surprisal_bits'][i]:.2f}", alternatives])
        columns = [Column("token"), Column("surprisal (bits)", justify="right"), Column("top predictions")]
        report.blocks.append(Table(columns, rows))
    return report


def check_model(config: GenerateConfig | ScoreConfig) -> None:
    """Kinds `generate` and `score`: a model that is not there, or a `dataset` without the `split` it names,
    fails before a run is created (the job reads the data only once the run exists); so do decoding options
    a char_lstm model there cannot follow (`generate.char_lstm_refusal`), which generating refuses again."""
    resolved = resolve_model_ref(config.model_run)
    if isinstance(config, GenerateConfig) and resolved.kind == "directory":
        try:
            name = model_name_in(resolved.path)
        except (CheckpointError, InvalidInputError):
            name = None  # not saved yet (a queued run's model), or unreadable: loading it says so
        if name == "char_lstm" and (refusal := char_lstm_refusal(config.options)) is not None:
            field = "num_beams" if config.options.num_beams > 1 else "num_return_sequences"
            raise InvalidConfigError.at(("options", field), refusal)
    if config.dataset is not None:
        split_files(config.dataset, split=config.split)


def check_evaluate(config: EvaluateConfig) -> None:
    """Kind `evaluate`: the data the evaluation would read (given, or the training run's, with the split it
    resolves to) has that split and holds records (`--data` a forum dump was refused by the run's read), so
    that a refused split or kind of data leaves no failed run behind."""
    eval_config, _, _ = eval_config_for(config.model_run, **config.overrides())
    split_files(eval_config.data, eval_config.format, eval_config.split, kind="records")
