"""`tldrlab lvm ingest | index | sequences | train | evaluate | generate`: concept-vector models.

A typical session, each step a run (see `tldrlab runs list`):

    tldrlab lvm ingest ../shared/data/wikipedia/enwiki_2016_sample.jsonl
    tldrlab lvm index
    tldrlab lvm sequences --context 5 --seed 0
    tldrlab lvm train --model gru
    tldrlab lvm evaluate <train-run-id> [<train-run-id> ...]      # on the validation split
    tldrlab lvm generate <train-run-id> --text "First sentence." --text "Second sentence." --nearest

`lvm evaluate` and `lvm generate --measure` measure the validation split unless told otherwise: the test
splits (`--split test`, and `--split cross`, the unseen corpus) are measured only when named, to report
figures nothing was chosen by.

Files live under `<home>/lvm/` unless told otherwise: `concepts.db` (SQLite store; a postgres database URL
puts the concepts in PostgreSQL + pgvector instead), `index/` and `sequences.npz`.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any, Literal

import typer
from rich.console import Console

from tldrlab.cli.options import Flag, config_command
from tldrlab.cli.runkinds import RunCommand, add, show_result
from tldrlab.cli.tables import emit, print_report
from tldrlab.kinds import validate_config
from tldrlab.launch import launch_run, preflight
from tldrlab.lvm.config import LVMConfig

lvm_app = typer.Typer(help="Concept-vector models: ingest, index, sequences, train, evaluate, generate.")
console = Console()


def tmd(options: Any) -> None:
    """Label stored concepts with TMD codes (domain / task / modifier) from their vectors (no re-embedding).

    Ingest labels new concepts already; this (re)labels a store made before, or after the labels change.
    Example: tldrlab lvm tmd --source wikitext
    """
    # lazy: loads numpy (kept off `tldrlab --help`)
    from tldrlab.lvm.ingest import label_concepts
    from tldrlab.lvm.store import open_stored_concepts

    with closing(open_stored_concepts(options.db)) as store:
        done = label_concepts(store, options.source, options.embedder, only_missing=options.missing)
    console.print(f"TMD labels written: {done or 'nothing to label'}")


def stats_command(query: Any, as_json: bool) -> None:
    """What the concept store holds: counts, dimensions, samples and the TMD distribution.

    Example: tldrlab lvm stats --samples 3
    """
    # lazy: loads numpy (kept off `tldrlab --help`)
    from tldrlab.lvm.store import open_stored_concepts, public_stats, stats_report

    with closing(open_stored_concepts(query.db)) as store:
        found = store.stats(query.source, samples=query.samples)
    emit(public_stats(found), lambda: stats_report(found), as_json=as_json)


def generate(options: Any, as_json: bool) -> None:
    """Continue an article: predict the next concept, decode it to stored concepts (`--nearest`: list them
    all), optionally smooth them into one sentence with the local LM (`--json`: the steps, their nearest
    concepts with scores and smoothed sentences as JSON). With --measure N, score that against the true next
    sentences of N windows of the validation split (`--split test` or `cross` only when named; a run of kind
    lvm_generate). `tldrlab lvm decode` is the old name of --nearest.

    Example: tldrlab lvm generate <run> --article wikitext/Tikal --position 4 --steps 3 --smooth
    """
    # lazy: loads numpy (kept off `tldrlab --help`)
    from tldrlab.lvm.decode import vec2text_decode
    from tldrlab.lvm.generate import Smoother, continue_context

    if options.measure is not None:
        # checked as `tldrlab lvm evaluate` is before its run exists: a failed run's model, or a split the
        # sequences lack, left a failed lvm_generate run behind
        config = validate_config("lvm_generate", options.measure_config())
        preflight("lvm_generate", config)
        launched = launch_run("lvm_generate", config)
        show_result("lvm_generate", launched.record.id, launched.result or {}, as_json=as_json)
        return
    continued = continue_context(options, Smoother(options.lm) if options.smooth else None)
    if as_json:
        data = continued.as_dict()
        if options.vec2text:  # a key of the one JSON document: worked out before anything is printed
            data["vec2text"] = vec2text_decode(continued.steps[0].vector[None], options.corrector)[0]
        emit(data, lambda: continued.report(all_nearest=options.nearest), as_json=True)
        return
    print_report(continued.report(all_nearest=options.nearest))
    if options.vec2text:
        vector = continued.steps[0].vector[None]
        console.print(f"vec2text: {vec2text_decode(vector, options.corrector)[0]}")


def _select(metric: str) -> dict[str, Any]:
    return {"train": {"best_metric": metric, "best_mode": "min" if metric == "eval_loss" else "max"}}


MODEL_ALIASES = {f"model_settings.{name}": "--" + name.replace("_", "-") for name in (
    "hidden", "layers", "dropout", "skip", "skip_decay", "pretrained", "pretrained_layers", "adaptation",
    "lora_rank",
)} | {"model_settings.tmd_inputs": "--tmd-inputs/--no-tmd-inputs"}  # fmt: skip
"""The short names of LVMConfig's options (`--hidden` for `--model-settings.hidden`)."""
LVM_TRAIN_EXTRA = (
    # what a shorthand implies (a warm-up, the checkpoints) yields to a config file that sets it; the mode
    # --select sets is its metric's own direction, not implied: a file's mode for another metric must not stay
    Flag("", ("--steps",), int,
         "Optimizer steps (warm-up, unless the config file or --train.warmup-steps sets it: the first "
         "min(50, steps)).",
         convert=lambda n: {"train": {"max_steps": n}},
         implies=lambda n: {"train": {"warmup_steps": min(50, n)}}),
    Flag("", ("--eval-every",), int,
         "Validate every N steps, and checkpoint then unless the config file or --train.checkpoint-every "
         "says when.",
         convert=lambda n: {"train": {"eval_every": n}},
         implies=lambda n: {"train": {"checkpoint_every": n}}),
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
                   aliases={**LOOP, **MODEL_ALIASES}, extra=LVM_TRAIN_EXTRA,
                   settings={"model_settings": LVMConfig},
                   exclude=("model_settings.dim", "model_settings.context"),
                   defaults={"sequences": SEQUENCES},
                   same=(("train.max_steps", "steps"), ("train.eval_every", "eval_every"),
                         ("train.best_metric", "select"))),
        RunCommand("lvm evaluate", "lvm_evaluate", "tldrlab lvm evaluate lvm_train-20261121-0101-ab12cd",
                   arguments=("runs",)),
    ):  # fmt: skip
        add(lvm_app, spec)
    config_command(lvm_app, "stats", "tldrlab.lvm.store:StoreStatsOptions", stats_command, as_json=True)
    config_command(lvm_app, "tmd", "tldrlab.lvm.ingest:LabelOptions", tmd)
    for name, nearest in (("generate", False), ("decode", True)):  # decode: the old name of --nearest
        config_command(
            lvm_app,
            name,
            "tldrlab.lvm.generate:ContinueOptions",
            generate,
            arguments=("run",),
            verbatim=("text",),
            defaults={"nearest": True} if nearest else None,
            as_json=True,
            hidden=nearest,
        )
    app.add_typer(lvm_app, name="lvm")
