"""`tldrlab lvm ingest | index | sequences | train | evaluate | decode`: concept-vector models (seed 003).

A typical session, each step a run (see `tldrlab runs list`):

    tldrlab lvm ingest ../shared/data/wikipedia/enwiki_2016_sample.jsonl
    tldrlab lvm index
    tldrlab lvm sequences --context 5 --seed 0
    tldrlab lvm train --model gru
    tldrlab lvm evaluate <train-run-id> [<train-run-id> ...]
    tldrlab lvm decode <train-run-id> --text "First sentence." --text "Second sentence."

Files live under `<home>/lvm/` unless told otherwise: `concepts.db` (SQLite store; a postgres database URL
puts the concepts in PostgreSQL + pgvector instead), `index/` and `sequences.npz`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tldrlab.cli.tables import Column, print_listing
from tldrlab.errors import ConfigError
from tldrlab.lvm.config import default_index, default_sequences

lvm_app = typer.Typer(help="Concept-vector models: ingest, index, sequences, train, evaluate, decode.")
console = Console()


@lvm_app.command("ingest")
def ingest(
    articles: Path = typer.Argument(..., help="Articles file (wikipedia JSON lines or any readable format)."),
    format: str | None = typer.Option(None, "--format", help="Reader format (default: detected)."),
    chunking: str = typer.Option("sentence", help="sentence | semantic"),
    max_chars: int = typer.Option(600, help="Semantic chunks stay at most this many characters."),
    threshold: float = typer.Option(0.55, help="Semantic chunking: cosine to the chunk needed to merge."),
    embedder: str | None = typer.Option(None, help="Embedder name or sentence-transformers path."),
    source: str | None = typer.Option(None, help="Data set source label (default: the file name)."),
    domain: str | None = typer.Option(None, help="Optional domain label stored with every concept."),
    db: str | None = typer.Option(None, help="Concept store URL (default: SQLite under the home)."),
    limit: int | None = typer.Option(None, help="Ingest at most this many articles."),
    batch_size: int = typer.Option(64, help="Texts per embedding batch."),
) -> None:
    """Split articles into concepts, embed them and store them with provenance (a run).

    Example: tldrlab lvm ingest enwiki.jsonl --chunking semantic --domain encyclopedia
    """
    from tldrlab.launch import launch_run
    from tldrlab.lvm.config import IngestConfig

    config = IngestConfig(
        path=str(articles),
        format=format,
        chunking=chunking,
        max_chars=max_chars,
        threshold=threshold,
        embedder=embedder,
        source=source,
        domain=domain,
        store_url=db,
        limit=limit,
        batch_size=batch_size,
    )
    launched = launch_run("lvm_ingest", config)
    metrics = launched.result or {}
    console.print(
        f"run {launched.record.id}: {metrics['articles']} articles -> {metrics['concepts']} concepts "
        f"(source {metrics['source']}, {metrics['embedder']}, {metrics['dim']}-d) "
        f"in {metrics['wall_seconds']:.1f}s; "
        f"stage seconds {metrics['stage_seconds']}"
    )


@lvm_app.command("index")
def index(
    source: str | None = typer.Option(None, help="Only concepts of this source (default: all)."),
    db: str | None = typer.Option(None, help="Concept store URL."),
    out: Path | None = typer.Option(None, help="Index directory (default: <home>/lvm/index)."),
    ivf_threshold: int = typer.Option(50_000, help="Use IVF-Flat from this many vectors on (exact below)."),
    nlist: int | None = typer.Option(None, help="IVF lists (default about 4*sqrt(n))."),
    nprobe: int = typer.Option(16, help="IVF lists searched per query."),
    seed: int = typer.Option(0, help="Seed of the IVF k-means."),
) -> None:
    """Build the FAISS concept index from the store (a run).

    Example: tldrlab lvm index --ivf-threshold 10000
    """
    from tldrlab.launch import launch_run

    config = {
        "source": source,
        "store_url": db,
        "out": str(out) if out else None,
        "ivf_threshold": ivf_threshold,
        "nlist": nlist,
        "nprobe": nprobe,
        "seed": seed,
    }
    launched = launch_run("lvm_index", config)
    built = launched.result or {}
    console.print(
        f"run {launched.record.id}: {built['kind']} index of {built['count']} concepts ({built['dim']}-d) "
        f"-> {built['out']}"
    )


@lvm_app.command("tmd")
def tmd(
    source: str | None = typer.Option(None, help="Only concepts of this source (default: all)."),
    missing: bool = typer.Option(False, "--missing", help="Only concepts without TMD labels yet."),
    embedder: str | None = typer.Option(
        None, help="Embedder of the label descriptions (default: the store's)."
    ),
    db: str | None = typer.Option(None, help="Concept store URL."),
) -> None:
    """Label stored concepts with TMD codes (domain / task / modifier) from their vectors (no re-embedding).

    Ingest labels new concepts already; this (re)labels a store made before, or after the labels change.
    Example: tldrlab lvm tmd --source wikitext
    """
    from tldrlab.lvm.ingest import label_concepts
    from tldrlab.lvm.store import open_concept_store

    store = open_concept_store(db)
    try:
        done = label_concepts(store, source, embedder, only_missing=missing)
    finally:
        store.close()
    console.print(f"TMD labels written: {done or 'nothing to label'}")


@lvm_app.command("stats")
def stats(
    source: str | None = typer.Option(None, help="Only this source (default: all)."),
    samples: int = typer.Option(5, help="Random concepts to show."),
    db: str | None = typer.Option(None, help="Concept store URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """What the concept store holds: counts, dimensions, samples and the TMD distribution.

    Example: tldrlab lvm stats --samples 3
    """
    import json
    from dataclasses import asdict

    from tldrlab.lvm.store import open_concept_store

    store = open_concept_store(db)
    try:
        found = store.stats(source, samples=samples)
    finally:
        store.close()
    if as_json:
        print(json.dumps({**found, "samples": [asdict(c) for c in found["samples"]]}, indent=2))
        return
    table = Table("source", "articles", "concepts", "TMD labelled", "embedder", "dim", title="concept store")
    for row in found["sources"]:
        table.add_row(
            row["source"],
            str(row["articles"]),
            str(row["concepts"]),
            str(row["tmd_labelled"]),
            row["embedder"],
            str(row["dim"]),
        )
    console.print(table)
    for facet, counts in found["tmd"].items():
        total = sum(counts.values()) or 1
        shown = ", ".join(f"{label} {n} ({100 * n / total:.0f} %)" for label, n in counts.items())
        console.print(f"[bold]TMD {facet}:[/] {shown or 'no labels yet (tldrlab lvm tmd)'}")
    for concept in found["samples"]:
        code = concept.tmd.code if concept.tmd else "-"
        console.print(
            f"[dim]{concept.source}/{concept.article_id}#{concept.position} [{code}][/] {concept.text[:160]}"
        )


@lvm_app.command("sequences")
def sequences(
    context: int = typer.Option(5, help="Context concepts per example."),
    seed: int = typer.Option(0, help="Seed of the article-level train/val/test split."),
    val_fraction: float = typer.Option(0.1, "--val", help="Fraction of articles for validation."),
    test_fraction: float = typer.Option(
        0.1, "--test", help="Fraction of articles for the in-corpus test (0 allowed with --test-source)."
    ),
    min_context: int = typer.Option(1, help="Shortest context kept (shorter ones are left-padded + masked)."),
    source: str | None = typer.Option(
        None, help="Only concepts of this source (default: all; with --test-source: all others)."
    ),
    test_source: str | None = typer.Option(
        None, help="Another ingested source as an unseen test corpus: the `cross` split."
    ),
    db: str | None = typer.Option(None, help="Concept store URL."),
    out: Path | None = typer.Option(None, help="Output NPZ (default: <home>/lvm/sequences.npz)."),
) -> None:
    """Build article-bounded (context -> next concept) sequences, split by article (a run).

    Example: tldrlab lvm sequences --context 5 --seed 0 --test-source wikitext
    """
    from tldrlab.launch import launch_run
    from tldrlab.lvm.sequences import SequencesConfig

    config = SequencesConfig(
        context=context,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        min_context=min_context,
        source=source,
        test_source=test_source,
        store_url=db,
        out=str(out or default_sequences()),
    )
    launched = launch_run("lvm_sequences", config)
    built = launched.result or {}
    line = f"run {launched.record.id}: sequences {built['sequences']} from articles {built['articles']}"
    duplicates = built.get("cross_near_duplicates")
    if duplicates:
        line += (
            f"; {duplicates['concepts']} of {duplicates['of']} {test_source} concepts nearly repeat a "
            f"training-corpus concept (cosine >= {duplicates['cosine']})"
        )
    console.print(f"{line} -> {config.out}")


@lvm_app.command("train")
def train(
    model: str = typer.Option("gru", help="lstm | gru | transformer | mamba | pretrained"),
    loss: str = typer.Option(
        "cosine+infonce", help="mse | cosine | infonce | corpus, or a weighted '+' sum: cosine+0.3*corpus."
    ),
    sequences_path: Path | None = typer.Option(None, "--sequences", help="Sequences NPZ."),
    hidden: int = typer.Option(256, help="Backbone width."),
    layers: int = typer.Option(2, help="Backbone layers."),
    dropout: float = typer.Option(0.1, help="Dropout."),
    skip: str = typer.Option("mean", help="Add the head to: mean | last | learned | none."),
    skip_decay: float = typer.Option(
        1.0, help="--skip learned: starting weight ratio of each older position (1 = mean, 0.5 = halving)."
    ),
    pretrained: str = typer.Option(
        "smollm2", help="--model pretrained: the causal LM (smollm2, a GGUF file, a model dir or a run)."
    ),
    pretrained_layers: int | None = typer.Option(
        None, help="--model pretrained: keep the LM's first K decoder layers (default: all)."
    ),
    adaptation: str = typer.Option("lora", help="--model pretrained: frozen | lora | full."),
    lora_rank: int = typer.Option(8, help="--model pretrained --adaptation lora: adapter rank."),
    steps: int = typer.Option(1500, help="Optimizer steps."),
    max_minutes: float | None = typer.Option(
        None, help="Wall-time budget: stop (evaluate, save) after this many minutes of training."
    ),
    tmd_inputs: bool = typer.Option(
        False, "--tmd-inputs", help="Also read each context concept's TMD labels (domain/task/modifier)."
    ),
    batch_size: int = typer.Option(256, help="Examples per batch (also the InfoNCE negatives)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    temperature: float = typer.Option(0.05, help="Temperature of the infonce / corpus losses."),
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay."),
    select: str = typer.Option(
        "eval_loss", help="Keep the checkpoint with the best: eval_loss | val_cosine | val_top1_excl."
    ),
    group: int = typer.Option(1, help="Consecutive windows of one article per batch item (hard negatives)."),
    eval_every: int = typer.Option(250, help="Validate (and checkpoint) every N steps."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    precision: str = typer.Option("auto", help="auto | fp32 | fp16 | bf16"),
    seed: int = typer.Option(0, help="Seed."),
    resume: str | None = typer.Option(
        None, help="Continue this (interrupted) lvm_train run from its checkpoint."
    ),
) -> None:
    """Train an LVM through the Trainer core loop (a run; resumable).

    Example: tldrlab lvm train --model mamba --loss cosine+infonce --steps 2000
    """
    from tldrlab.launch import launch_run
    from tldrlab.lvm.config import SELECT_METRICS, LVMTrainJobConfig, default_train_config

    if select not in SELECT_METRICS:
        raise ConfigError(f"--select {select!r}: choose one of {', '.join(SELECT_METRICS)}")

    if resume:
        launched = launch_run("lvm_train", {}, resume=resume)
        console.print(f"run {launched.record.id} resumed: {launched.result}")
        return
    loop = default_train_config().model_copy(
        update={
            "max_steps": steps,
            "batch_size": max(1, batch_size // group),  # items of `group` windows each
            "lr": lr,
            "weight_decay": weight_decay,
            "best_metric": select,
            "best_mode": "min" if select == "eval_loss" else "max",
            "eval_every": eval_every,
            "checkpoint_every": eval_every,
            "warmup_steps": min(50, steps),
            "max_minutes": max_minutes,
            "device": device,
            "precision": precision,
            "seed": seed,
        }
    )
    config = LVMTrainJobConfig.model_validate(
        {
            "sequences": str(sequences_path or default_sequences()),
            "model": model,
            "model_settings": {
                "hidden": hidden,
                "layers": layers,
                "dropout": dropout,
                "skip": skip,
                "skip_decay": skip_decay,
                "tmd_inputs": tmd_inputs,
                **(
                    {
                        "pretrained": pretrained,
                        "pretrained_layers": pretrained_layers,
                        "adaptation": adaptation,
                        "lora_rank": lora_rank,
                    }
                    if model == "pretrained"
                    else {}
                ),
            },
            "loss": loss,
            "temperature": temperature,
            "group": group,
            "train": loop.model_dump(),
        }
    )
    launched = launch_run("lvm_train", config)
    run_dir = Path(launched.record.run_dir)
    console.print(f"run {launched.record.id}: {model} trained: {launched.result} -> {run_dir / 'model'}")


@lvm_app.command("evaluate")
def evaluate(
    runs: list[str] = typer.Argument(
        None, help="lvm_train run ids, run directories or model directories; none: baselines only."
    ),
    sequences_path: Path | None = typer.Option(
        None, "--sequences", help="Sequences NPZ (default: the runs')."
    ),
    split: str | None = typer.Option(
        None,
        help="Split to score: test | val | cross (default: test, and cross when the sequences have one).",
    ),
    out: Path | None = typer.Option(None, help="Also copy the evaluation files (md, json, png) here."),
    baselines: str | None = typer.Option(
        None, help="Comma-separated baselines to score (default: all of tldrlab.lvm.baselines.BASELINES)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of tables."),
) -> None:
    """Score models beside the baselines: MSE, cosine, top-1/top-5 (with and without context excluded).

    Example: tldrlab lvm evaluate lvm_train-20261121-0101-ab12cd lvm_train-20261121-0110-ef34gh
    """
    from tldrlab.launch import launch_run

    chosen = [b.strip() for b in baselines.split(",") if b.strip()] if baselines is not None else None
    config = {
        "runs": list(runs or []),
        "sequences": str(sequences_path) if sequences_path else None,
        "split": split,
        "baselines": chosen,
        "out": str(out) if out else None,
    }
    launched = launch_run("lvm_evaluate", config)
    if as_json:
        record = launched.record
        payload = {"run_id": record.id, "run_dir": record.run_dir, **(launched.result or {})}
        typer.echo(json.dumps(payload, default=str))
        return
    for report in (launched.result or {})["reports"]:
        _print_results(report["split"], report["sequences"], report["results"], report["verdict"])
    console.print(f"run {launched.record.id}: report in {launched.record.run_dir}")


def _print_results(split: str, count: int, results: list[Any], outcome: dict[str, Any]) -> None:
    from tldrlab.lvm.evaluation import markdown_verdict

    what = {"test": "in-corpus test", "cross": "cross-corpus test", "val": "validation"}.get(split, split)
    metrics = [("MSE", "mse", 5), ("cosine", "cosine", 4), ("top-1", "top1", 4), ("top-5", "top5", 4)]
    metrics += [("top-1 excl", "top1_excl", 4), ("top-5 excl", "top5_excl", 4)]
    columns = [Column("method", key=True), Column("kind", optional=True)]
    columns += [Column(header, justify="right") for header, _, _ in metrics]
    rows = [
        [r["name"], r["kind"], *(f"{r['metrics'][key]:.{digits}f}" for _, key, digits in metrics)]
        for r in results
    ]
    print_listing(console, columns, rows, title=f"{what} split, {count} sequences")
    console.print(markdown_verdict(outcome), markup=False)


@lvm_app.command("decode")
def decode(
    run_ref: str = typer.Argument(..., help="lvm_train run id (or model directory)."),
    text: list[str] = typer.Option(None, "--text", help="Context concepts as text, in order (repeatable)."),
    article: str | None = typer.Option(
        None, help="Stored article as SOURCE/ARTICLE_ID (context from the store)."
    ),
    position: int | None = typer.Option(None, help="With --article: predict the concept at this position."),
    k: int = typer.Option(5, help="How many nearest concepts to print."),
    index_dir: Path | None = typer.Option(None, "--index", help="Index directory."),
    db: str | None = typer.Option(None, help="Concept store URL."),
    vec2text: bool = typer.Option(False, help="Also invert the prediction with vec2text (optional package)."),
    corrector: str | None = typer.Option(None, help="vec2text corrector model path."),
) -> None:
    """Predict the next concept of a context and print the nearest stored concepts (their texts).

    Example: tldrlab lvm decode <run> --article enwiki_2016_sample/enwiki:12 --position 7
    """
    from tldrlab.lvm.decode import vec2text_decode
    from tldrlab.lvm.generate import generate_next
    from tldrlab.lvm.index import load_index
    from tldrlab.lvm.jobs import load_run_model
    from tldrlab.lvm.store import open_concept_store

    _, model, _ = load_run_model(run_ref)
    concept_index = load_index(index_dir or default_index())
    store = open_concept_store(db)
    try:
        window, truth = _context_window(model, store, concept_index, text, article, position)
        step = generate_next(model, window, concept_index, store, k=k)
    finally:
        store.close()
    if truth is not None:
        console.print(f"[bold]true next ({truth.position}):[/] {truth.text}")
    for rank, hit in enumerate(step.nearest, start=1):
        console.print(
            f"{rank}. [{hit.score:.3f}] {hit.text}  [dim]({hit.source}/{hit.article_id}#{hit.position})[/]"
        )
    if vec2text:
        console.print(f"vec2text: {vec2text_decode(step.vector[None], corrector)[0]}")


def _context_window(
    model: Any,
    store: Any,
    concept_index: Any,
    text: list[str] | None,
    article: str | None,
    position: int | None,
) -> tuple[Any, Any]:
    """The context of decode / generate: --text sentences, or --article SOURCE/ID --position P (printed)."""
    from tldrlab.errors import InvalidInputError
    from tldrlab.lvm.generate import window_from_article, window_from_texts
    from tldrlab.lvm.ingest import load_embedder

    if text and article:
        raise InvalidInputError("give the context either as --text or as --article/--position, not both")
    if text:
        embedder = load_embedder(concept_index.meta.get("embedder"))
        return window_from_texts(list(text), embedder, labels=model.config.tmd_inputs), None
    if article:
        if position is None:
            raise InvalidInputError("--article needs --position")
        window, truth = window_from_article(store, article, position, model.config.context)
        for offset, concept_text in enumerate(window.texts):
            console.print(f"[dim]context {position - len(window.texts) + offset}:[/] {concept_text}")
        return window, truth
    raise InvalidInputError("give a context: --text (repeatable) or --article SOURCE/ID --position P")


@lvm_app.command("generate")
def generate(
    run_ref: str = typer.Argument(..., help="lvm_train run id (or model directory)."),
    text: list[str] = typer.Option(None, "--text", help="Context sentences, in order (repeatable)."),
    article: str | None = typer.Option(None, help="Stored article as SOURCE/ARTICLE_ID."),
    position: int | None = typer.Option(None, help="With --article: continue from this position."),
    steps: int = typer.Option(1, help="How many next concepts to generate."),
    k: int = typer.Option(3, help="Nearest stored concepts per step (the smoother reads them all)."),
    smooth: bool = typer.Option(False, "--smooth", help="Fuse each step's concepts into one sentence."),
    lm: str = typer.Option("smollm2", help="The local LM that smooths (a model reference)."),
    measure: int | None = typer.Option(
        None, help="Instead: score raw / smoothed / copy-last on this many windows of --split."
    ),
    split: str = typer.Option("cross", help="--measure: the split whose windows are scored."),
    sequences_path: Path | None = typer.Option(None, "--sequences", help="--measure: sequences NPZ."),
    seed: int = typer.Option(0, help="--measure: seed of the window sample."),
    index_dir: Path | None = typer.Option(None, "--index", help="Index directory."),
    db: str | None = typer.Option(None, help="Concept store URL."),
) -> None:
    """Continue an article: predict the next concept, decode it to stored concepts, optionally smooth them
    into one sentence with the local LM. With --measure N, score that against the true next sentences.

    Example: tldrlab lvm generate <run> --article wikitext/Tikal --position 4 --steps 3 --smooth
    """
    from tldrlab.lvm.generate import Smoother
    from tldrlab.lvm.generate import generate as continue_text
    from tldrlab.lvm.index import load_index
    from tldrlab.lvm.jobs import load_run_model
    from tldrlab.lvm.store import open_concept_store

    if measure is not None:  # a run of kind lvm_generate
        _measure_generation(run_ref, smooth, lm, measure, split, sequences_path, seed, k)
        return
    _, model, _ = load_run_model(run_ref)
    smoother = Smoother(lm) if smooth else None
    concept_index = load_index(index_dir or default_index())
    store = open_concept_store(db)
    try:
        window, truth = _context_window(model, store, concept_index, text, article, position)
        produced = continue_text(model, window, concept_index, store, steps=steps, k=k, smoother=smoother)
    finally:
        store.close()
    for number, step in enumerate(produced, start=1):
        best = step.nearest[0] if step.nearest else None
        where = f"{best.source}/{best.article_id}#{best.position}, {best.score:.3f}" if best else "-"
        console.print(f"[bold]{number}. decoded:[/] {best.text if best else '-'}  [dim]({where})[/]")
        if step.smoothed is not None:
            console.print(f"   [bold]smoothed:[/] {step.smoothed}")
        timing = ", ".join(f"{stage} {1000 * s:.0f} ms" for stage, s in step.seconds.items())
        console.print(f"   [dim]{timing}[/]")
    if truth is not None:
        console.print(f"[bold]true next ({truth.position}):[/] {truth.text}")


def _measure_generation(
    run_ref: str,
    smooth: bool,
    lm: str,
    count: int,
    split: str,
    sequences_path: Path | None,
    seed: int,
    k: int,
) -> None:
    from tldrlab.launch import launch_run

    config = {
        "run": run_ref,
        "sequences": str(sequences_path) if sequences_path else None,
        "split": split,
        "windows": count,
        "seed": seed,
        "k": k,
        "smooth": smooth,
        "lm": lm,
    }
    launched = launch_run("lvm_generate", config)
    report = launched.result or {}
    table = Table(
        "method",
        "BERTScore F1",
        "cosine",
        "margin over copy-last (F1; cosine) [95 %]",
        title=f"next sentence on {report['windows']} {split} windows ({report['articles']} articles)",
    )
    for name, r in report["methods"].items():
        margin = r.get("margin_over_copy_last")
        cell = "-"
        if margin:
            cell = "; ".join(
                "{:+.4f} [{:+.4f}, {:+.4f}]".format(margin[m]["margin"], *margin[m]["interval95"])
                for m in ("bertscore_f1", "cosine")
            )
        table.add_row(name, f"{r['bertscore_f1']:.4f}", f"{r['cosine']:.4f}", cell)
    console.print(table)
    console.print(
        "latency per step: " + ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in report["latency_ms"].items())
    )
    console.print(f"run {launched.record.id}: {Path(launched.record.run_dir) / 'generation.json'}")


def register(app: typer.Typer) -> None:
    app.add_typer(lvm_app, name="lvm")
