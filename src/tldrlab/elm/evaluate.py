"""Summary quality for the ELM: BERTScore P/R/F1 + composite, ROUGE, length ratio, empty and unique rates.

    metrics = summary_quality(predictions, references)               # offline MiniLM BERTScore
    metrics = summary_quality(predictions, references, bertscore_model="/path/to/encoder", num_layers=12)

The composite (one number for early stopping and the optimiser, documented in docs/elm.md):

    bertscore_composite = (0.5 * F1 + 0.25 * P + 0.25 * R) * min(1, avg_unique_token_ratio / 0.5)

The second factor only bites on degenerate, repetitive output (fewer than half of a prediction's words
distinct); empty predictions already score 0 in every BERTScore part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tldrlab.elm.config import ElmEvaluateConfig, ElmGenerateOptions
from tldrlab.errors import ConfigError, InvalidInputError, NotFoundError, refused_at
from tldrlab.evaluate.metrics import bertscore, rouge_scores
from tldrlab.report import Report
from tldrlab.runs.atomic import atomic_write_jsonl

UNIQUE_RATIO_FLOOR = 0.5
"""Below this average share of distinct words per prediction the composite is scaled down proportionally."""


def unique_token_ratio(text: str) -> float:
    """Distinct words / words of one text (1.0 for an empty text: nothing repeats)."""
    words = text.lower().split()
    return len(set(words)) / len(words) if words else 1.0


def quality_stats(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Length ratio (predicted words / reference words), empty rate, mean unique-token ratio, and the share of
    distinct predictions across documents."""
    n = max(len(predictions), 1)
    pred_words = sum(len(p.split()) for p in predictions)
    ref_words = sum(len(r.split()) for r in references)
    non_empty = [p for p in predictions if p.strip()]
    return {
        "length_ratio": pred_words / ref_words if ref_words else 0.0,
        "empty_prediction_rate": (len(predictions) - len(non_empty)) / n,
        "avg_unique_token_ratio": (
            sum(unique_token_ratio(p) for p in non_empty) / len(non_empty) if non_empty else 0.0
        ),
        # across documents: a model that writes one generic summary for everything scores low here
        "distinct_prediction_rate": len({p.strip() for p in predictions}) / n,
    }


def composite(bert: dict[str, float], avg_unique_token_ratio: float) -> float:
    weighted = (
        0.5 * bert["bertscore_f1"] + 0.25 * bert["bertscore_precision"] + 0.25 * bert["bertscore_recall"]
    )
    return weighted * min(1.0, avg_unique_token_ratio / UNIQUE_RATIO_FLOOR)


def summary_quality(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    bertscore_model: str | None = None,
    num_layers: int | None = None,
    use_bertscore: bool = True,
) -> dict[str, float]:
    """Every ELM metric of predictions against references (see the module docstring)."""

    if len(predictions) != len(references):
        raise InvalidInputError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise InvalidInputError("nothing to evaluate: no predictions")
    metrics = dict(rouge_scores(predictions, references))
    stats = quality_stats(predictions, references)
    metrics.update(stats)
    if use_bertscore:
        kwargs: dict[str, Any] = {} if num_layers is None else {"num_layers": num_layers}
        bert = bertscore(predictions, references, model_path=bertscore_model, **kwargs)
        metrics.update(bert)
        metrics["bertscore_composite"] = composite(bert, stats["avg_unique_token_ratio"])
    return metrics


# -- files: `tldrlab elm evaluate` ---------------------------------------------------------------------------
def read_jsonl_texts(path: Path, field_names: Sequence[str]) -> list[str]:
    """The first present field of `field_names` from every line of a JSONL file."""
    if not path.is_file():
        raise NotFoundError(f"file not found: {path}")
    texts = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # a binary or mis-encoded file: a traceback otherwise
        raise InvalidInputError(f"{path}: not UTF-8 JSON lines (byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"{path}:{number}: not valid JSON: {exc}") from exc
        value = next((row[f] for f in field_names if isinstance(row, dict) and f in row), None)
        if not isinstance(value, str):
            raise InvalidInputError(f"{path}:{number}: no text field ({' or '.join(field_names)})")
        texts.append(value)
    return texts


def evaluate_files(predictions: Path, references: Path | None = None, **kwargs: Any) -> dict[str, float]:
    """Metrics of a predictions JSONL (`prediction`, with `reference` / `target_text` inline or in a
    separate references JSONL such as a test_synthesis.jsonl)."""
    preds = read_jsonl_texts(predictions, ("prediction",))
    source = references or predictions
    refs = read_jsonl_texts(source, ("reference", "target_text"))
    if len(preds) != len(refs):
        raise InvalidInputError(
            f"{predictions} has {len(preds)} predictions but {source} has {len(refs)} references"
        )
    return summary_quality(preds, refs, **kwargs)


def check_files(config: ElmEvaluateConfig) -> ElmEvaluateConfig:
    """Kind `elm_evaluate`'s prepare step: the files parse and line up, before a run is created. Each
    refusal is placed at the field naming the file it is about (`errors.refused_at`), so the API's submit
    answers it at `predictions` or `references` (the predictions file's own references when none is named).
    The metrics' `output` is neither of the files read: `--output preds.jsonl` replaced the predictions with
    the metrics, and the next evaluation of them failed on the JSON."""
    for field in ("predictions", "references"):
        read = getattr(config, field)
        if config.output and read and Path(config.output).resolve() == Path(read).resolve():
            raise InvalidInputError(
                f"output: {config.output} is the {field} file evaluated: the metrics would replace it; write "
                "them to another file"
            ).placed("output")
    with refused_at("predictions"):
        predictions = read_jsonl_texts(Path(config.predictions), ("prediction",))
        if not predictions:  # refused inside the run ("nothing to evaluate"), which stayed behind failed
            raise InvalidInputError(f"{config.predictions} holds no predictions: nothing to evaluate")
    source = Path(config.references or config.predictions)
    with refused_at("references" if config.references else "predictions"):
        references = read_jsonl_texts(source, ("reference", "target_text"))
        if len(predictions) != len(references):
            raise InvalidInputError(
                f"{config.predictions} has {len(predictions)} predictions but {source} has {len(references)} "
                "references"
            )
    return config


def predict_split(
    model: Any,
    tokenizer: Any,
    records: list[dict[str, Any]],
    embeddings: Any,
    *,
    max_new_tokens: int = 48,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One prediction row per synthesis record: source_id, prediction, reference."""
    import torch

    # lazy: loads torch (this module stays light without it)
    from tldrlab.elm.model import generate_summaries

    if not records:
        return []
    rows = torch.stack([embeddings[r["embedding_index"]] for r in records])
    templates = [str(r.get("input_prompt_template") or "{text}") for r in records]
    preds = generate_summaries(
        model, tokenizer, rows, templates, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
    )
    return [
        {"source_id": r.get("source_id"), "prediction": p, "reference": r.get("target_text", "")}
        for r, p in zip(records, preds, strict=True)
    ]


def predict(
    model_ref: str,
    *,
    data: Path | None = None,
    split: str = "test",
    input: Path | None = None,
    texts: Sequence[str] = (),
    limit: int | None = None,
    max_new_tokens: int = 48,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Prediction rows of a saved ELM (a directory or an elm_train run id) for exactly one source: a
    prepared data directory's `split`, a `<split>_synthesis.jsonl` of that layout (`input`), or raw `texts`
    (embedded here with the ELM's embedder)."""
    import torch

    # lazy: loads torch (this module stays light without it)
    from tldrlab.elm.model import generate_summaries, load_elm, resolve_elm_dir
    from tldrlab.elm.prepare import DEFAULT_TEMPLATE, load_split
    from tldrlab.embed import get_embedder

    if sum(x is not None and x not in ([], ()) for x in (data, input, texts or None)) != 1:
        raise ConfigError("give exactly one of --data DIR, --input FILE or --text TEXT")
    elm, tokenizer = load_elm(model_ref)
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    if texts:
        saved = json.loads((resolve_elm_dir(model_ref) / "elm_config.json").read_text(encoding="utf-8"))
        vectors = torch.from_numpy(get_embedder(saved.get("embedder") or "minilm").encode(list(texts)))
        # the template the ELM was trained with (an ELM saved before it was recorded: the default)
        templates = [saved.get("template") or DEFAULT_TEMPLATE] * len(texts)
        return [{"prediction": p} for p in generate_summaries(elm, tokenizer, vectors, templates, **options)]
    if input is not None:  # <dir>/synthesis/<split>_synthesis.jsonl
        data, split = input.resolve().parent.parent, input.name.removesuffix("_synthesis.jsonl")
    assert data is not None
    loaded = load_split(data, split)
    return predict_split(elm, tokenizer, loaded.records[:limit], loaded.embeddings, **options)


def generate_predictions(options: ElmGenerateOptions) -> list[dict[str, Any]]:
    """`predict` of what `options` name, the rows also written to `options.output` (JSON lines) if set."""
    data, synthesis = (Path(p) if p else None for p in (options.data, options.input))
    rows = predict(
        options.model, data=data, split=options.split, input=synthesis, texts=options.text,
        limit=options.limit, max_new_tokens=options.max_new_tokens, temperature=options.temperature,
        seed=options.seed,
    )  # fmt: skip
    if options.output:
        atomic_write_jsonl(Path(options.output), rows)
    return rows


def predictions_report(rows: list[dict[str, Any]], output: str | None = None) -> Report:
    """The first ten predictions (with their references), then where all of them were written."""
    refs = [f"   (ref: {r['reference']})" if "reference" in r else "" for r in rows[:10]]
    shown = [f"- {r['prediction']}{ref}" for r, ref in zip(rows, refs, strict=False)]
    return Report([*shown, *([f"{len(rows)} predictions written to {output}"] if output else [])])
