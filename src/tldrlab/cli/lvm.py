"""`tldrlab lvm ingest | index | sequences | train | evaluate | generate`: concept-vector models.

A typical session, each step a run (see `tldrlab runs list`):

    tldrlab lvm ingest ../shared/data/wikipedia/enwiki_2016_sample.jsonl
    tldrlab lvm index
    tldrlab lvm sequences --context 5 --seed 0
    tldrlab lvm train --model gru
    tldrlab lvm evaluate <train-run-id> [<train-run-id> ...]
    tldrlab lvm generate <train-run-id> --text "First sentence." --text "Second sentence." --nearest

Files live under `<home>/lvm/` unless told otherwise: `concepts.db` (SQLite store; a postgres database URL
puts the concepts in PostgreSQL + pgvector instead), `index/` and `sequences.npz`.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console

from tldrlab.cli.options import JSON_OPTION, Flag, config_command
from tldrlab.cli.runkinds import RunCommand, add, show_result
from tldrlab.cli.tables import emit, print_report
from tldrlab.launch import launch_run

lvm_app = typer.Typer(help="Concept-vector models: ingest, index, sequences, train, evaluate, generate.")
console = Console()


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
    # lazy: loads numpy (kept off `tldrlab --help`)
    from tldrlab.lvm.ingest import label_concepts
    from tldrlab.lvm.store import open_concept_store

    with closing(open_concept_store(db)) as store:
        done = label_concepts(store, source, embedder, only_missing=missing)
    console.print(f"TMD labels written: {done or 'nothing to label'}")


def stats_command(query: Any, db: str | None, as_json: bool) -> None:
    """What the concept store holds: counts, dimensions, samples and the TMD distribution.

    Example: tldrlab lvm stats --samples 3
    """
    # lazy: loads numpy (kept off `tldrlab --help`)
    from tldrlab.lvm.store import open_concept_store, public_stats, stats_report

    with closing(open_concept_store(db)) as store:
        found = store.stats(query.source, samples=query.samples)
    emit(public_stats(found), lambda: stats_report(found), as_json=as_json)


DB = ("db", str | None, typer.Option(None, help="Concept store URL."))


@lvm_app.command("generate")
@lvm_app.command("decode", hidden=True)  # the old name: `generate --nearest`
def generate(
    ctx: typer.Context,
    run_ref: str = typer.Argument(..., help="lvm_train run id (or model directory)."),
    text: list[str] = typer.Option(None, "--text", help="Context sentences, in order (repeatable)."),
    article: str | None = typer.Option(None, help="Stored article as SOURCE/ARTICLE_ID."),
    position: int | None = typer.Option(None, help="With --article: continue from this position."),
    steps: int = typer.Option(1, help="How many next concepts to generate."),
    k: int | None = typer.Option(
        None, help="Nearest stored concepts per step (the smoother reads them all) [default: 3, --nearest 5]."
    ),
    nearest: bool = typer.Option(False, "--nearest", help="List every nearest concept of the first step."),
    smooth: bool = typer.Option(False, "--smooth", help="Fuse each step's concepts into one sentence."),
    lm: str = typer.Option("smollm2", help="The local LM that smooths (a model reference)."),
    vec2text: bool = typer.Option(False, help="Also invert the prediction with vec2text (optional package)."),
    corrector: str | None = typer.Option(None, help="--vec2text: corrector model path."),
    measure: int | None = typer.Option(
        None, help="Instead: score raw / smoothed / copy-last on this many windows of --split."
    ),
    split: str = typer.Option("cross", help="--measure: the split whose windows are scored."),
    sequences_path: Path | None = typer.Option(None, "--sequences", help="--measure: sequences NPZ."),
    seed: int = typer.Option(0, help="--measure: seed of the window sample."),
    index_dir: Path | None = typer.Option(None, "--index", help="Index directory."),
    db: str | None = typer.Option(None, help="Concept store URL."),
) -> None:
    """Continue an article: predict the next concept, decode it to stored concepts (`--nearest`: list them
    all), optionally smooth them into one sentence with the local LM. With --measure N, score that against
    the true next sentences (a run of kind lvm_generate). `tldrlab lvm decode` is the old name of --nearest.

    Example: tldrlab lvm generate <run> --article wikitext/Tikal --position 4 --steps 3 --smooth
    """
    # lazy: loads numpy (kept off `tldrlab --help`)
    from tldrlab.lvm.decode import vec2text_decode
    from tldrlab.lvm.generate import Smoother, continue_context

    nearest = nearest or ctx.info_name == "decode"
    k = k or (5 if nearest else 3)
    if measure is not None:
        config = dict(run=run_ref, split=split, windows=measure, seed=seed, k=k, smooth=smooth, lm=lm)
        launched = launch_run("lvm_generate", {**config, "sequences": sequences_path and str(sequences_path)})
        show_result("lvm_generate", launched.record.id, launched.result or {})
        return
    smoother = Smoother(lm) if smooth else None
    continued = continue_context(
        run_ref, texts=text, article=article, position=position, steps=steps, k=k, smoother=smoother,
        index_dir=index_dir, db=db,
    )  # fmt: skip
    print_report(continued.report(all_nearest=nearest))
    if vec2text:
        console.print(f"vec2text: {vec2text_decode(continued.steps[0].vector[None], corrector)[0]}")


def _select(metric: str) -> dict[str, Any]:
    return {"train": {"best_metric": metric, "best_mode": "min" if metric == "eval_loss" else "max"}}


MODEL_SETTINGS = (
    ("hidden", int, "backbone width"),
    ("layers", int, "backbone layers"),
    ("dropout", float, "dropout"),
    ("skip", str, "add the head to: mean | last | learned | none"),
    ("skip_decay", float, "--skip learned: starting weight ratio of each older position"),
    ("pretrained", str, "--model pretrained: the causal LM (smollm2, a GGUF file, a model dir or a run)"),
    ("pretrained_layers", int, "--model pretrained: keep the LM's first K decoder layers"),
    ("adaptation", str, "--model pretrained: frozen | lora | full"),
    ("lora_rank", int, "--model pretrained --adaptation lora: adapter rank"),
    ("tmd_inputs", bool, "also read each context concept's TMD labels"),
)
"""LVMConfig fields (`model_settings`) with options of their own."""
LVM_TRAIN_EXTRA = (
    *(Flag(f"model_settings.{n}", ("--" + n.replace("_", "-"),), t, text) for n, t, text in MODEL_SETTINGS),
    Flag("", ("--steps",), int, "Optimizer steps (warm-up: the first min(50, steps)).",
         convert=lambda n: {"train": {"max_steps": n, "warmup_steps": min(50, n)}}),
    Flag("", ("--eval-every",), int, "Validate and checkpoint every N steps.",
         convert=lambda n: {"train": {"eval_every": n, "checkpoint_every": n}}),
    Flag("", ("--select",), Literal["eval_loss", "val_cosine", "val_top1_excl"],
         "Keep the checkpoint with the best of these validation metrics.", convert=_select),
)  # fmt: skip
STORE = {"store_url": "--db"}
SEQUENCES = "<home>/lvm/sequences.npz"  # tldrlab.lvm.config.default_sequences()
LOOP = {f"train.{n}": "--" + n.replace("_", "-") for n in ("lr", "batch_size", "weight_decay", "max_minutes")}


def register(app: typer.Typer) -> None:
    for spec in (
        RunCommand("lvm ingest", "lvm_ingest", "tldrlab lvm ingest enwiki.jsonl --chunking semantic",
                   aliases=STORE, arguments=("path",)),
        RunCommand("lvm index", "lvm_index", "tldrlab lvm index --ivf-threshold 10000", aliases=STORE),
        RunCommand("lvm sequences", "lvm_sequences", "tldrlab lvm sequences --context 5 --test-source wt",
                   aliases={**STORE, "val_fraction": "--val", "test_fraction": "--test"},
                   defaults={"out": SEQUENCES}),
        RunCommand("lvm train", "lvm_train", "tldrlab lvm train --model mamba --loss cosine --steps 2000",
                   aliases=LOOP, extra=LVM_TRAIN_EXTRA,
                   defaults={"sequences": SEQUENCES}),
        RunCommand("lvm evaluate", "lvm_evaluate", "tldrlab lvm evaluate lvm_train-20261121-0101-ab12cd",
                   arguments=("runs",)),
    ):  # fmt: skip
        add(lvm_app, spec)
    config_command(lvm_app, "stats", "tldrlab.lvm.store:StatsQuery", stats_command, params=[DB, JSON_OPTION])
    app.add_typer(lvm_app, name="lvm")
