"""What runs of the kinds `lvm_index` and `lvm_evaluate` execute (see tldrlab.kinds); loading trained LVMs.

`lvm_ingest`, `lvm_sequences` and `lvm_train` live beside their work (`ingest.lvm_ingest_job`,
`sequences.lvm_sequences_job`, `training.lvm_train_job`).
Paths a config leaves None resolve under `<home>/lvm/`: `index/`, `sequences.npz`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tldrlab.errors import InvalidConfigError, NotFoundError
from tldrlab.lvm.config import (
    LVMConfig,
    LVMEvaluateConfig,
    LVMGenerateConfig,
    LVMIndexConfig,
    default_index,
    default_sequences,
)
from tldrlab.lvm.evaluation import evaluate_methods, report_stem, summary_prefix, verdict, write_report
from tldrlab.lvm.index import build_index
from tldrlab.lvm.models import CONFIG_FILE, build_lvm, load_lvm
from tldrlab.lvm.sequences import (
    LVM_TRAIN,
    TRAINED_ARTICLES,
    load_sequences,
    lvm_run_fields,
    lvm_train_refusal,
    missing_split,
    named_run,
    read_sequences_arrays,
    read_trained_articles,
    seen_articles_refusal,
    splits_with_sequences,
)
from tldrlab.lvm.store import check_concept_store, open_stored_concepts
from tldrlab.lvm.training import MODEL_DIR
from tldrlab.report import Report
from tldrlab.runs import Run, RunStatus, open_registry
from tldrlab.runs.atomic import sha256_file
from tldrlab.runs.run import MANIFEST, read_manifest
from tldrlab.train.same_data import DATA_FILES


def lvm_index_job(run: Run, config: LVMIndexConfig) -> dict[str, Any]:
    out = Path(config.out) if config.out else default_index()
    store = open_stored_concepts(config.store_url)
    try:
        table = store.load(config.source)
    finally:
        store.close()
    built = build_index(
        table.vectors,
        table.ids,
        ivf_threshold=config.ivf_threshold,
        nlist=config.nlist,
        nprobe=config.nprobe,
        seed=config.seed,
        extra_meta={"embedder": table.embedder, "source": config.source},
    )
    built.save(out)
    run.set_summary(count=len(built), kind=built.kind)
    return {"kind": built.kind, "count": len(built), "dim": built.dim, "out": str(out)}


def best_checkpoint_model(config: dict[str, Any], run_dir: Path) -> Any:
    """The LVM of a run that stopped before saving model/: its best evaluated checkpoint."""
    from safetensors.torch import load_model

    seqs = load_sequences(config["sequences"])
    settings = {**config.get("model_settings", {}), "dim": seqs.dim, "context": seqs.context}
    model = build_lvm(config["model"], LVMConfig(**settings))
    load_model(model, str(run_dir / "checkpoints" / "best" / "model.safetensors"))
    return model.eval()


def locate_run_model(
    run_ref: str, field: tuple[str, ...] = ("run",)
) -> tuple[str, Path, dict[str, Any], bool]:
    """(run id, the model directory, run config, whether it is the run's best checkpoint) of a run id, a run
    directory or a model directory; NotFoundError when it names no trained LVM, InvalidConfigError at the
    config's `field` naming it when it names a run of another kind than lvm_train."""
    named = named_run(run_ref)
    if named is not None and named[1] != LVM_TRAIN:
        # checked at submit too, but the run may have been replaced since: a training run of another kind has
        # checkpoints/best too, and taken for an LVM's, its config was read as an LVM's (KeyError 'sequences')
        raise InvalidConfigError.at(field, lvm_train_refusal(*named))
    path = Path(run_ref)
    record = None
    if (path / CONFIG_FILE).exists():  # a model directory
        if (path.parent / MANIFEST).exists():
            return path.parent.name, path, read_manifest(path.parent)["config"], False
        return str(path), path, {}, False
    if (path / MANIFEST).exists():  # a run directory
        run_id, run_dir, config = path.name, path, read_manifest(path)["config"]
    else:
        record = open_registry().find(run_ref)
        run_id, run_dir, config = record.id, Path(record.run_dir), record.config
    best = run_dir / "checkpoints" / "best"
    if not (run_dir / MODEL_DIR).exists() and best.is_dir():
        # a run cancelled or preempted before it saved model/: its best evaluated checkpoint
        return run_id, best, config, True
    if record is not None and record.status != RunStatus.COMPLETED and not (run_dir / MODEL_DIR).exists():
        # "is not a trained LVM: no lvm_model.json in <run dir>/model" read as a wrong id: it has not trained
        raise NotFoundError(
            f"run {run_id} ({record.kind}, {record.status.value}) has saved no LVM: an lvm_train run "
            "saves it when it completes"
        )
    if not (run_dir / MODEL_DIR / CONFIG_FILE).exists():
        raise NotFoundError(f"{run_ref!r} is not a trained LVM: no {CONFIG_FILE} in {run_dir / MODEL_DIR}")
    return run_id, run_dir / MODEL_DIR, config, False


def load_located_model(located: tuple[str, Path, dict[str, Any], bool]) -> tuple[str, Any, dict[str, Any]]:
    """(run id, trained LVM, run config) of what `locate_run_model` found."""
    run_id, directory, config, checkpoint = located
    if checkpoint:
        return run_id, best_checkpoint_model(config, directory.parent.parent), config
    return run_id, load_lvm(directory), config


def load_run_model(run_ref: str, field: tuple[str, ...] = ("run",)) -> tuple[str, Any, dict[str, Any]]:
    """(run id, trained LVM, run config) from a run id, a run directory or a model directory (the config's
    `field`, named by a refusal)."""
    return load_located_model(locate_run_model(run_ref, field))


def seen_articles_problem(
    located: tuple[str, Path, dict[str, Any], bool], path: Path, split: str
) -> str | None:
    """Why the located LVM cannot be scored on `split` of the sequences `path`, or None when it can (or
    nothing says which articles it saw: a model directory saved outside a run). Its TRAINED_ARTICLES (its
    model directory's, else its run's) name the articles it trained and picked its checkpoint on
    (`seen_articles_refusal`). A run that trained before they were recorded is refused when the file it
    trained on, named the same, is not the file it read then (the size and sha256 its run recorded):
    `lvm sequences` wrote it again, splitting the articles anew, and which are held out cannot be told."""
    run_id, directory, _, checkpoint = located
    run_dir = directory.parent.parent if checkpoint else directory.parent
    places = [directory / TRAINED_ARTICLES] + (
        [run_dir / TRAINED_ARTICLES] if (run_dir / MANIFEST).is_file() else []
    )
    for place in places:
        if (record := read_trained_articles(place)) is not None:
            return seen_articles_refusal(run_id, record, path, split)
    recorded_files = run_dir / DATA_FILES
    if not (run_dir / MANIFEST).is_file() or not recorded_files.is_file():
        return None
    recorded = json.loads(recorded_files.read_text(encoding="utf-8"))
    same = [entry for name, entry in recorded.items() if Path(name).resolve() == path.resolve()]
    current = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    if not same or same[0] == current:
        return None
    return (
        f"{run_id} recorded no articles it trained on, and the sequences {path} were built again since it "
        "trained: which of their articles it has not seen cannot be told; evaluate it on the sequences it "
        "trained with, as they were, or train it again"
    )


def refuse_seen_articles(
    config: LVMEvaluateConfig | LVMGenerateConfig,
    located: list[tuple[str, Path, dict[str, Any], bool]],
    path: Path,
) -> None:
    """InvalidConfigError at the field of the first run the config names that cannot be scored on its split of
    the sequences `path` (`seen_articles_problem`): the command line's check before a run exists, and the
    run's own (over the API nothing checked it before)."""
    for (field, _), found in zip(lvm_run_fields(config), located, strict=True):
        if (problem := seen_articles_problem(found, path, config.split)) is not None:
            raise InvalidConfigError.at(field, problem)


def check_models(config: LVMEvaluateConfig | LVMGenerateConfig) -> None:
    """The command-line check of `lvm_evaluate` and `lvm_generate` (it runs them now): every run named is a
    trained LVM (a mistyped id, or a run that has not saved its model, failed inside the run and left it
    behind as a failed run), and the sequences they are scored on are there: given, else the first run's,
    else <home>/lvm/sequences.npz; and `lvm_generate`'s store holds concepts (a `--db` naming a typo was
    created empty by the run, which failed for want of concepts)."""
    located = [locate_run_model(ref, field) for field, ref in lvm_run_fields(config)]
    # A store the command named (`--db`) is checked before the sequences, the home's own store after them:
    # of two refusals, the one of what the user named says what to change (a `--db` typo, not the
    # sequences the run would take by default; `--split cross`, not the store it would decode into)
    generating = isinstance(config, LVMGenerateConfig)
    named_store = config.store_url if isinstance(config, LVMGenerateConfig) else None
    if named_store is not None:
        check_concept_store(named_store)
    recorded = (Path(c["sequences"]) for _, _, c, _ in located if c.get("sequences"))
    path = Path(config.sequences) if config.sequences else next(recorded, default_sequences())
    if not path.exists():  # a directory is refused by the read below, naming it
        raise NotFoundError(f"no sequences file {path}: run `tldrlab lvm sequences` first, or give sequences")
    # a split the sequences do not hold (`--split cross` of one corpus, the default `val` of sequences built
    # with `--val 0`) failed inside the run, leaving it behind as a failed run
    has = splits_with_sequences(path)
    if config.split not in has:
        raise missing_split(config.split, path, has)
    refuse_longer_contexts(config, located, path)
    refuse_seen_articles(config, located, path)
    if generating and named_store is None:
        check_concept_store(None)


def refuse_longer_contexts(
    config: LVMEvaluateConfig | LVMGenerateConfig,
    located: list[tuple[str, Path, dict[str, Any], bool]],
    path: Path,
) -> None:
    """A transformer LVM has one learned position per context concept it was trained with: sequences of a
    longer context (`lvm sequences --context` again since) failed inside the run, left behind as a failed run
    with "context of 5 exceeds the model's 3 positions", naming no run. InvalidConfigError at the run's field.
    (The recurrent and state-space models, and a pretrained backbone, read any length.)"""
    context = int(read_sequences_arrays(path, read=("context_index",))["context_index"].shape[1])
    for (field, _), (run_id, directory, _, checkpoint) in zip(lvm_run_fields(config), located, strict=True):
        if checkpoint:  # a run stopped before it saved model/: its shape is known once its checkpoint loads
            continue
        saved = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        positions = saved.get("config", {}).get("context")
        if saved.get("name") == "transformer" and isinstance(positions, int) and positions < context:
            raise InvalidConfigError.at(
                field,
                f"{run_id} is a transformer LVM of {positions} context positions; the sequences {path} have "
                f"contexts of {context}: give sequences of context {positions} or less (`--sequences`, or "
                f"`tldrlab lvm sequences --context {positions}`)",
            )


def model_label(model: Any, run_config: dict[str, Any]) -> str:
    """How a trained model is named in the evaluation table: backbone (the LM, its kept layers and adaptation
    for `pretrained`; +TMD when it reads TMD labels) (loss, temperature, group, skip)."""
    label: str = model.name
    if model.name == "pretrained":  # which LM, how many of its layers, how adapted
        layers = model.config.pretrained_layers or len(model.backbone.layers)
        label += f" {model.config.pretrained} K={layers} {model.config.adaptation}"
    if model.config.tmd_inputs:
        label += " +TMD"
    if run_config.get("loss"):
        label += f" ({run_config['loss']}"
        temperature = run_config.get("temperature", 0.05)
        contrastive = "infonce" in run_config["loss"] or "corpus" in run_config["loss"]
        label += f", T={temperature}" if contrastive and temperature != 0.05 else ""
        label += f", group {run_config['group']}" if run_config.get("group", 1) > 1 else ""
        skip = model.config.skip
        skip += f" from decay {model.config.skip_decay}" if model.config.skip_decay != 1.0 else ""
        label += f", skip {skip})" if skip != "mean" else ")"
    return label


def lvm_evaluate_job(run: Run, config: LVMEvaluateConfig) -> dict[str, Any]:
    """Score the models beside the baselines on the config's split (validation unless a test split is named);
    its report (md, json, png) and summary metrics are named by the split (`report_stem`, `summary_prefix`).
    The result keeps a list of reports, one per split, as it was when one run scored test and cross."""
    located = [locate_run_model(ref, field) for field, ref in lvm_run_fields(config)]
    path = Path(config.sequences) if config.sequences else None
    if path is None:
        path = next(
            (Path(c["sequences"]) for _, _, c, _ in located if c.get("sequences")), default_sequences()
        )
    seqs = load_sequences(path)
    if config.split in seqs.split_names():  # a split they lack is refused below, naming the splits they have
        refuse_seen_articles(config, located, path)
    loaded = [load_located_model(found) for found in located]
    models: dict[str, Any] = {}
    for run_id, model, run_config in loaded:
        label = model_label(model, run_config)
        if label in models:
            label += f" {run_id[-6:]}"
        models[label] = model
    name = config.split
    if name not in (has := seqs.split_names()):  # over the API, where no command line checked it first
        raise missing_split(name, path, has)
    results = evaluate_methods(seqs, models, split=name, baselines=config.baselines)
    outcome = verdict(results)
    meta = {"sequences": str(path), "split": name, "runs": [r for r, _, _ in loaded]}
    paths = write_report(results, run.dir, meta, outcome, stem=report_stem(name))
    for p in paths.values():
        run.add_artifact(p, kind="evaluation")
        if config.out is not None:
            Path(config.out).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, Path(config.out) / p.name)
    prefix = summary_prefix(name)
    run.set_summary(
        **{f"{prefix}goal_met": outcome["goal_met"]},
        **{
            f"{prefix}{r.name}_{m}": v
            for r in results
            for m, v in r.metrics.items()
            if m in ("cosine", "top1_excl")
        },
    )
    report = {
        "split": name,
        "sequences": len(seqs.split_arrays(name)),
        "results": [{"name": r.name, "kind": r.kind, "metrics": r.metrics} for r in results],
        "verdict": outcome,
    }
    return {"sequences": str(path), "split": name, "reports": [report]}


def index_report(run_id: str, built: dict[str, Any]) -> Report:
    count, dim = built["count"], built["dim"]
    return Report([f"run {run_id}: {built['kind']} index of {count} concepts ({dim}-d) -> {built['out']}"])
