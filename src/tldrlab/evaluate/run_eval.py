"""Evaluating a saved model on a data split: LM loss / perplexity, or seq2seq ROUGE / BERTScore / lengths.

    metrics = launchers.evaluate_target("train-2026...", split="validation")  # eval.json + samples.jsonl

The target is a run id (its `<run_dir>/model`, data named in its config) or a model directory (then `data`
is required). Seq2seq evaluation generates (greedy by default, seeded when sampling) for up to `max_samples`
records and writes every generation to `samples.jsonl`; LM evaluation cuts the text into blocks and reports
the token-weighted loss and its perplexity, plus a few seeded continuations as samples.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from tldrlab.data import splits
from tldrlab.data.readers import read_records
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.evaluate.artifacts import highlight_metrics, highlight_rows, write_evaluation
from tldrlab.evaluate.config import EvalConfig
from tldrlab.evaluate.generate import generate, pad_right
from tldrlab.evaluate.metrics import (
    EMPTY_OUTPUT_CAUSE,
    ROUGE_TYPES,
    bertscore,
    distinct_n,
    empty_count,
    length_stats,
    perplexity,
    rouge_per_sample,
)
from tldrlab.evaluate.model_run import model_run, training_data
from tldrlab.logs import progress_bar
from tldrlab.models.chat import chat_pair_ids, collate_chat_pairs, context_limit, instruction_of
from tldrlab.models.registry import model_name_of, model_task
from tldrlab.models.resolve import resolve_model_ref
from tldrlab.runs import Run, open_registry
from tldrlab.runs.atomic import atomic_write_json, atomic_write_jsonl
from tldrlab.tokenizers.plain import plain_ids

EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.jsonl"
PLOT_FILE = "eval.png"


class EvalProgress:
    """Progress for a long evaluation: a tqdm bar (items/s, ETA), run heartbeats and cancellation checks."""

    def __init__(self, total: int, desc: str, run: Run | None, show: bool) -> None:
        self.total = total
        self.done = 0
        self.run = run
        self.bar = progress_bar(total=total, desc=desc, unit="ex", shown=show, leave=False)

    def advance(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        if self.run is not None:
            self.run.check_cancelled()
            self.run.heartbeat(progress=self.done / max(self.total, 1))

    def close(self) -> None:
        self.bar.close()


def _records(config: EvalConfig) -> list[Any]:
    return read_records(config.data, config.format, split=config.split, limit=config.limit)


def _seq2seq_records(config: EvalConfig) -> list[Any]:
    """Records with a reference summary; with `val_fraction`, the run's seeded holdout of what is read (the
    run's training split, or all of unsplit data)."""
    records = _records(config)
    if config.val_fraction:
        records, _ = splits.seeded_holdout(records, config.val_fraction, config.holdout_seed)
    return [r for r in records if r.summaries][: config.max_samples]


@torch.no_grad()
def lm_loss(
    model: Any, tokenizer: Any, text: str, config: EvalConfig, reporter: EvalProgress | None = None
) -> tuple[float, int, int, list[float]]:
    """(token-weighted mean loss in nats, predicted tokens, blocks, loss of each block) over contiguous
    blocks of the text."""
    ids = plain_ids(tokenizer, text)
    if config.val_fraction:
        _, ids = splits.lm_tail(ids, config.val_fraction)  # what the training run held out
    block = config.block_size
    limit = getattr(getattr(model, "config", None), "n_positions", None)
    if limit is not None:
        block = min(block, limit)
    blocks = [ids[i : i + block] for i in range(0, len(ids), block)]
    blocks = [b for b in blocks if len(b) >= 2][: config.max_samples]
    if not blocks:
        raise InvalidInputError(f"{config.data}: not enough text to evaluate (needs at least 2 tokens)")
    if reporter is not None:
        reporter.total = reporter.bar.total = len(blocks)
    total_loss, total_tokens = 0.0, 0
    block_losses: list[float] = []
    model.eval()
    for start in range(0, len(blocks), config.batch_size):
        batch = blocks[start : start + config.batch_size]
        width = max(len(b) for b in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, b in enumerate(batch):
            input_ids[row, : len(b)] = torch.tensor(b)
            labels[row, : len(b)] = torch.tensor(b)
        logits = model(input_ids=input_ids.to(model.device)).logits[:, :-1].float()
        targets = labels[:, 1:].to(logits.device)
        token_loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="none"
        ).view(targets.shape)
        counts = (targets != -100).sum(dim=1)
        sums = token_loss.sum(dim=1)
        block_losses.extend((sums / counts.clamp(min=1)).tolist())
        total_loss += float(sums.sum())
        total_tokens += int(counts.sum())
        if reporter is not None:
            reporter.advance(len(batch))
    return total_loss / total_tokens, total_tokens, len(blocks), block_losses


Evaluated = tuple[dict[str, Any], list[dict[str, Any]], dict[str, list[float]], list[dict[str, Any]]]
"""(metrics, samples, per-example series for the plot, per-sentence highlight rows)."""


def evaluate_lm(
    model: Any, tokenizer: Any, config: EvalConfig, *, run: Run | None = None, progress: bool = True
) -> Evaluated:
    records = _records(config)
    text = "\n".join(r.document for r in records)
    reporter = EvalProgress(config.max_samples, "eval blocks", run, progress)
    try:
        loss, tokens, blocks, block_losses = lm_loss(model, tokenizer, text, config, reporter)
    finally:
        reporter.close()
    metrics: dict[str, Any] = {
        "loss": loss,
        "perplexity": perplexity(loss),
        "tokens": tokens,
        "blocks": blocks,
    }
    samples: list[dict[str, Any]] = []
    if config.num_lm_samples:
        # Prompts: the first line of evenly spaced blocks of the evaluated text.
        lines = [line for line in text.splitlines() if line.strip()]
        step = max(1, len(lines) // config.num_lm_samples)
        prompts = [lines[i][:40] for i in range(0, len(lines), step)][: config.num_lm_samples]
        outputs = generate(model, tokenizer, prompts, config.generation)
        samples = [{"prompt": p, "outputs": o} for p, o in zip(prompts, outputs, strict=True)]
        metrics["distinct_2"] = distinct_n([o for s in samples for o in s["outputs"]])
        metrics["empty_samples"] = empty_count([o for s in samples for o in s["outputs"]])
    return metrics, samples, {"block loss (nats/token)": block_losses}, []


@torch.no_grad()
def reference_loss(
    model: Any, tokenizer: Any, sources: list[str], refs: list[str], config: EvalConfig
) -> float:
    """Teacher-forced loss of the references given their sources (nats per target token). Each pair is fed
    as the training loop fed it (`train.tasks.Seq2SeqTask`): the source's tokens cut to `max_source_len` with
    the eos, the reference's to `max_target_len` with the eos, so a run's model scores here what its
    eval_loss said (without the eos, or with whole references, the loss was another)."""
    total, count = 0.0, 0
    eos = tokenizer.eos_token_id
    # the loss is the training objective's, measured as training measured it; what a summary is judged
    # against (ROUGE, BERTScore) is the whole reference, never cut
    keep = None if config.max_target_len is None else config.max_target_len - 1
    for start in range(0, len(sources), config.batch_size):
        rows = [
            [*plain_ids(tokenizer, source)[: config.max_source_len - 1], eos]
            for source in sources[start : start + config.batch_size]
        ]
        input_ids, attention_mask = pad_right(rows, tokenizer.pad_token_id)
        tgt = [[*plain_ids(tokenizer, r)[:keep], eos] for r in refs[start : start + config.batch_size]]
        width = max(len(t) for t in tgt)
        labels = torch.full((len(tgt), width), -100, dtype=torch.long)
        for row, t in enumerate(tgt):
            labels[row, : len(t)] = torch.tensor(t)
        out = model(
            input_ids=input_ids.to(model.device),
            attention_mask=attention_mask.to(model.device),
            labels=labels.to(model.device),
        )
        n = int((labels != -100).sum())
        total += float(out.loss) * n
        count += n
    return total / max(count, 1)


@torch.no_grad()
def chat_reference_loss(
    model: Any, tokenizer: Any, sources: list[str], refs: list[str], config: EvalConfig
) -> float:
    """A chat model's teacher-forced loss of the references as its answers (nats per answer token), each
    example cut as chat fine-tuning cuts it (`train.chat_sft`): the document to `max_source_len`, the answer
    to `max_target_len` with its end-of-turn."""
    instruction = instruction_of(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    total, count, context = 0.0, 0, context_limit(model)
    for start in range(0, len(sources), config.batch_size):
        pairs = [
            chat_pair_ids(
                tokenizer,
                src,
                ref,
                instruction,
                max_source_tokens=config.max_source_len,
                max_target_tokens=config.max_target_len,
                max_total_tokens=context,
            )
            for src, ref in zip(
                sources[start : start + config.batch_size],
                refs[start : start + config.batch_size],
                strict=True,
            )
        ]
        batch = {k: v.to(model.device) for k, v in collate_chat_pairs(pairs, pad).items()}
        n = int((batch["labels"] != -100).sum())
        total += float(model(**batch).loss) * n
        count += n
    return total / max(count, 1)


def max_over_references(preds: list[str], records: list[Any]) -> dict[str, float]:
    """Mean over examples of the best ROUGE F1 against any of the example's references."""
    best = []
    for pred, record in zip(preds, records, strict=True):
        rows = rouge_per_sample([pred] * len(record.summaries), list(record.summaries))
        best.append({name: max(r[name] for r in rows) for name in ROUGE_TYPES})
    return {f"{name}_max_ref": sum(b[name] for b in best) / len(best) for name in ROUGE_TYPES}


def evaluate_seq2seq(
    model: Any, tokenizer: Any, config: EvalConfig, *, run: Run | None = None, progress: bool = True
) -> Evaluated:
    """Summaries generated by a seq2seq or chat model, scored against the references."""
    import time

    chat = model_task(model_name_of(model)) == "chat"
    records = _seq2seq_records(config)
    if not records:
        raise InvalidInputError(f"{config.data}: no records with a reference summary to evaluate against")
    # A chat model's request is its instruction inside the chat template, never a seq2seq prefix.
    sources = [r.document if chat else config.prefix + r.document for r in records]
    refs = [r.summary for r in records]
    options = config.generation.model_copy(update={"max_input_tokens": config.max_source_len})
    preds: list[str] = []
    reporter = EvalProgress(len(sources), "eval generate", run, progress)
    started = time.perf_counter()
    try:
        for start in range(0, len(sources), config.batch_size):
            chunk = sources[start : start + config.batch_size]
            preds.extend(outs[0] for outs in generate(model, tokenizer, chunk, options))
            reporter.advance(len(chunk))
    finally:
        reporter.close()
    generate_seconds = time.perf_counter() - started
    loss = (chat_reference_loss if chat else reference_loss)(model, tokenizer, sources, refs, config)
    per_sample = rouge_per_sample(preds, refs)
    metrics: dict[str, Any] = {"loss": loss, "perplexity": perplexity(loss), "examples": len(records)}
    metrics.update({name: sum(r[name] for r in per_sample) / len(per_sample) for name in ROUGE_TYPES})
    if any(len(r.summaries) > 1 for r in records):
        metrics.update(max_over_references(preds, records))
    # generation time per summary at this batch size (greedy prompts are decoded `batch_size` at a time)
    metrics["seconds_per_summary"] = generate_seconds / len(records)
    if config.bertscore:
        metrics.update(bertscore(preds, refs))
    metrics.update(length_stats(preds, tokenizer, prefix="pred_"))
    metrics.update(length_stats(refs, tokenizer, prefix="ref_"))
    metrics["distinct_2"] = distinct_n(preds)
    metrics["empty_predictions"] = empty_count(preds)
    highlights = highlight_rows(records, preds)  # where the data labels sentences worth highlighting
    metrics.update(highlight_metrics(highlights))
    samples = [
        {"id": r.id, "document": r.document[:2000], "reference": ref, "prediction": pred, **scores}
        for r, ref, pred, scores in zip(records, refs, preds, per_sample, strict=True)
    ]
    series = {
        "ROUGE-1 F1 per example": [r["rouge1"] for r in per_sample],
        "prediction length (words)": [float(len(p.split())) for p in preds],
        "reference length (words)": [float(len(r.split())) for r in refs],
    }
    return metrics, samples, series, highlights


def split_read(config: dict[str, Any]) -> str:
    """What of the data an evaluation read, as its report says it: the split, or the fraction a training run
    held out of it (" [train]" alone read as if the records the model trained on had been scored)."""
    split, fraction = config.get("split"), config.get("val_fraction")
    if fraction:
        held = f"the {100 * fraction:g}% held out in training"
        return f" [{split}: {held}]" if split else f" [{held}]"
    return f" [{split}]" if split else ""


def plot_eval(series: dict[str, list[float]], path: Path, title: str) -> Path:
    """Histograms of per-example figures (ROUGE, lengths, block losses) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.4), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items(), strict=True):
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#4477aa")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("count")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # the title also as the PNG's Title text, so what the image shows can be read without looking at it
    fig.savefig(path, dpi=110, metadata={"Title": title})
    plt.close(fig)
    return path


def evaluate_model(
    model: Any,
    tokenizer: Any,
    name: str,
    config: EvalConfig,
    out_dir: Path | str | None = None,
    *,
    run: Run | None = None,
    progress: bool = True,
    summary_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate and (when `out_dir` is given) write eval.json, samples.jsonl, eval.png, eval_summary.json,
    eval_table.csv and (where sentences carry highlight labels) highlight_eval_table.csv there.

    With a `run`, progress goes to its heartbeat and a cancel request stops the evaluation between batches.
    """
    started = time.perf_counter()
    task = model_task(name)
    evaluate = evaluate_seq2seq if task in ("seq2seq", "chat") else evaluate_lm
    metrics, samples, series, highlights = evaluate(model, tokenizer, config, run=run, progress=progress)
    warnings = empty_output_warnings(metrics)
    for warning in warnings:
        if run is not None:
            run.log(warning, level=logging.WARNING)
    settings = config.model_dump(mode="json")
    result = {
        "model": name,
        "task": task,
        "config": settings,
        "metrics": metrics,
        "seconds": time.perf_counter() - started,
        "created_at": time.time(),
        "warnings": warnings,
    }
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json(out / EVAL_FILE, result)
        atomic_write_jsonl(out / SAMPLES_FILE, samples)
        title = f"{name} on {Path(config.data).name}" + split_read(settings)
        plot_eval(series, out / PLOT_FILE, title)
        write_evaluation(out, result, samples, highlights, **(summary_extra or {}))
    return result


def _training_splits(data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(train split, validation split) as the training loop picked them for the run's data."""
    if not data.get("path"):
        return None, None
    return splits.detect_splits(data["path"], data.get("train_split"), data.get("val_split"))


def training_prefix(target: str | Path) -> str:
    """The text a seq2seq run put before every document in training (its `data.prefix`); '' for a model that
    is not a run's."""

    run_dir = resolve_model_ref(target).run_dir
    if run_dir is None:
        return ""
    try:
        record = open_registry().get(run_dir.name)
    except NotFoundError:
        return ""
    return str((record.config.get("data") or {}).get("prefix") or "")


def eval_config_for(target: str | Path, **overrides: Any) -> tuple[EvalConfig, Path | None, str | None]:
    """(EvalConfig, output directory, run id or None) for any model reference (`models.resolve`).

    The output directory is the run directory of a run's model, a model directory itself, and None for a GGUF
    file, the bundled model and installed models (their results stay in the eval run's own directory).

    Settings missing from `overrides` come from the run's config (`data.path`, `data.val_split` or the split
    the loop detected, `data.prefix`, `data.max_source_len`, `data.max_target_len`, `data.block_size`,
    `data.limit` unless the run's validation split is read, and for unsplit data `data.val_fraction` with
    `train.seed`), so a run is evaluated on exactly what it held out. `data` given with no split nor
    `val_fraction` is read at its held-out split (`splits.held_out_split`: a data-set directory's test split,
    else its validation split, else all of it).
    """

    overrides = {k: v for k, v in overrides.items() if v is not None}
    found = model_run(target)  # a run's model: the run's own data (the rule the API's submit checks too)
    out_dir, record = found.out_dir, found.record
    run_id = record.id if record is not None else None
    run_config: dict[str, Any] = dict(record.config) if record is not None else {}
    data = training_data(record) or {}
    if "data" not in overrides:
        if not data:
            raise InvalidInputError(f"{target}: no data to evaluate on; pass --data PATH")
        settings: dict[str, Any] = {
            "data": data["path"],
            "format": data.get("format"),
            "limit": data.get("limit"),
        }
        train_split, val_split = _training_splits(data)
        settings["split"] = val_split
        asked = overrides.get("split")
        if val_split and (asked is None or splits.same_split(asked, val_split)):
            # `data.limit` capped the records the run trained on, not its validation split, which it read
            # whole: a run trained with limit 2 was evaluated on 2 of the records it validated on
            settings["limit"] = None
        if not val_split and data.get("val_fraction") and not overrides.get("split"):
            # the holdout of the records the run trained on (its training split): every file was read
            # before, so a run trained on train.jsonl was evaluated on a holdout that mixed test.jsonl in
            # and did not match the one it held out (some of it trained on)
            settings["split"] = train_split
            settings["val_fraction"] = data["val_fraction"]
            settings["holdout_seed"] = int((run_config.get("train") or {}).get("seed", 0))
        for key in ("prefix", "max_source_len", "max_target_len", "block_size"):
            if data.get(key) is not None:
                settings[key] = data[key]
        overrides = {**settings, **overrides}
    else:
        if data.get("prefix") is not None and "prefix" not in overrides:
            overrides["prefix"] = data["prefix"]
        if not overrides.get("split") and not overrides.get("val_fraction"):
            # data given with no split: a data-set directory's held-out split, as a run's own data is read
            # (a model that is no run's was scored on every file of the directory, its training files too)
            overrides["split"] = splits.held_out_split(overrides["data"])
    try:
        return EvalConfig.model_validate(overrides), out_dir, run_id
    except ValueError as exc:
        raise InvalidInputError(f"invalid evaluation settings: {exc}") from exc


def empty_output_warnings(metrics: dict[str, Any]) -> list[str]:
    """A warning when every (or some) generated output of an evaluation is empty, with the likely cause."""
    for key, total_key, what in (
        ("empty_predictions", "examples", "prediction"),
        ("empty_samples", "", "sample"),
    ):
        empty = int(metrics.get(key) or 0)
        if not empty:
            continue
        total = int(metrics.get(total_key) or 0) if total_key else 0
        if total and empty == total:
            zero = "so the text metrics are zero"
            return [f"every {what} is empty ({empty} of {total}), {zero}: {EMPTY_OUTPUT_CAUSE}"]
        of = f" of {total}" if total else ""
        return [f"{empty}{of} {what}s are empty (they score zero): {EMPTY_OUTPUT_CAUSE}"]
    return []
