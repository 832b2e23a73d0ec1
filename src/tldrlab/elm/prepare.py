"""ELM data: document embeddings + synthesis JSONL per split, in the layout below.

    stats = prepare_dataset("../shared/data/debian_descriptions", "data/elm")      # embed + write
    stats = filter_task("data/multitask", "data/summary_only", task="summary")   # keep one task, remap
    split = load_split("data/elm", "train")   # split.records (dicts), split.embeddings (N, dim) float32

Layout:
    DIR/synthesis/{train,val,test}_synthesis.jsonl   one JSON object a line: task_type, input_prompt_template,
                                                     embedding_index, target_text, variation, source_id, ...
    DIR/embeddings/{train,val,test}_embeddings.safetensors   one tensor "embeddings" (rows, dim) float32
    DIR/elm_data.json                                  embedder, dimension, counts, where the data came from
                                                     (source, seed, limit, eval_limit)

`embedding_index` is the row of the split's embeddings tensor holding the document's embedding. Several
records (tasks, variations) may share a row; `filter_task` keeps only the rows its records use and rewrites
the indices to the new, dense numbering.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tldrlab.budget import over_budget
from tldrlab.data.readers import read_records, split_files
from tldrlab.data.splits import detect_splits, test_split
from tldrlab.elm.config import (
    DEFAULT_TEMPLATE,
    ElmLMCompareConfig,
    ElmModelConfig,
    ElmOptimizeConfig,
    ElmPrepareConfig,
    ElmTrainConfig,
    adapter_parameter_count,
)
from tldrlab.elm.layout import (  # noqa: F401 (re-exported: the layout's names, as importers know them)
    EMBEDDINGS_DIR,
    MANIFEST,
    SPLITS,
    SYNTHESIS_DIR,
    embeddings_path,
    has_layout,
    holds_layout,
    refuse_layout_file,
    synthesis_path,
)
from tldrlab.embed import check_embedder_name, get_embedder
from tldrlab.errors import (
    ConfigError,
    ConflictError,
    InvalidConfigError,
    InvalidInputError,
    NotFoundError,
    refused_at,
)
from tldrlab.logs import progress_bar
from tldrlab.models.architecture import model_width
from tldrlab.models.causal_lm import (
    LoraSettings,
    check_causal_lm_model,
    lora_parameter_count,
    meta_module_tree,
)
from tldrlab.models.chat import DEFAULT_INSTRUCTION
from tldrlab.models.resolve import ResolvedModel, resolve_model_ref, run_kind_refusal
from tldrlab.runs.atomic import atomic_write_json, atomic_write_jsonl
from tldrlab.runs.weights import save_safetensors

if TYPE_CHECKING:  # torch is imported where tensors are made: the sweep service imports load_split, and
    import torch  # a process that only coordinates a search must not pay seconds of CPU to load it

EMBEDDING_KEY = "embeddings"
VAL_FRACTION = TEST_FRACTION = 0.05
"""The fractions of the records of data without a dev (or test) split that `prepare_dataset` holds out."""

REQUIRED_FIELDS = ("task_type", "embedding_index", "target_text")


@dataclass
class ElmSplit:
    """One split in memory."""

    records: list[dict[str, Any]]
    """The synthesis records (JSON objects)."""
    embeddings: torch.Tensor
    """(rows, dim) float32 document embeddings; records point at rows by `embedding_index`."""


# -- reading ------------------------------------------------------------------------------------------------
def read_synthesis(path: Path) -> list[dict[str, Any]]:
    """Records of one synthesis JSONL, each checked for the required fields."""
    records = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # a binary or mis-encoded file: a traceback otherwise
        raise InvalidInputError(f"{path}: not UTF-8 JSON lines (byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"{path}:{number}: not valid JSON: {exc}") from exc
        missing = [f for f in REQUIRED_FIELDS if f not in record] if isinstance(record, dict) else ["object"]
        if missing:
            raise InvalidInputError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
        if not isinstance(record["embedding_index"], int) or record["embedding_index"] < 0:
            raise InvalidInputError(f"{path}:{number}: embedding_index must be a non-negative integer")
        records.append(record)
    return records


def read_embeddings(path: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for damaged files
        raise InvalidInputError(f"{path}: cannot read the embeddings: {exc}") from exc
    if EMBEDDING_KEY not in tensors:
        raise InvalidInputError(f"{path}: no tensor named {EMBEDDING_KEY!r} (has {sorted(tensors)})")
    embeddings = tensors[EMBEDDING_KEY].float()
    if embeddings.dim() != 2:
        raise InvalidInputError(f"{path}: embeddings must be 2-d (rows, dim); got {tuple(embeddings.shape)}")
    return embeddings


def load_split(data_dir: Path | str, split: str) -> ElmSplit:
    """Records and embeddings of one split; every embedding_index must point at an existing row."""
    data_dir = Path(data_dir)
    syn, emb = synthesis_path(data_dir, split), embeddings_path(data_dir, split)
    for path in (syn, emb):
        if not path.is_file():
            raise NotFoundError(f"{path} not found: prepare the data first (tldrlab elm prepare)")
    records, embeddings = read_synthesis(syn), read_embeddings(emb)
    bad = [r["embedding_index"] for r in records if r["embedding_index"] >= len(embeddings)]
    if bad:
        raise InvalidInputError(
            f"{syn}: embedding_index {bad[0]} is out of range: {emb} has {len(embeddings)} rows"
        )
    return ElmSplit(records, embeddings)


def require_prepared(data_dir: Path | str) -> None:
    """`data_dir` holds the splits an ELM training loads (train and val, synthesis and embeddings), as `elm
    prepare` writes them; NotFoundError naming the first missing one otherwise. Reads no file (no torch): the
    API's submit runs it too."""
    path = Path(data_dir)
    if not path.is_dir():
        raise NotFoundError(
            f"data directory not found: {data_dir} (write one with `tldrlab elm prepare`, or an "
            "elm_prepare run)"
        )
    for split in ("train", "val"):
        for needed in (synthesis_path(path, split), embeddings_path(path, split)):
            if not needed.is_file():
                raise NotFoundError(
                    f"{needed} not found: {path} is not a prepared ELM data directory; prepare the data "
                    "first (`tldrlab elm prepare`, or an elm_prepare run)"
                )


def check_prepared(config: ElmTrainConfig) -> None:
    """Kind `elm_train`'s check before a run is created (command line and API alike): its data is a prepared
    directory (a directory `elm prepare` did not write was accepted over the API, and the run failed once a
    worker loaded it), and its LM one the run can build (`check_elm_lm`)."""
    with refused_at("data"):
        require_prepared(config.data)
    check_elm_lm(config.model, ("model",))


def check_optimize_prepared(config: ElmOptimizeConfig) -> None:
    """Kind `elm_optimize`'s check before a run is created (command line and API alike): the data its trials
    train on is a prepared directory, their LM one they can build (`check_elm_lm`), and the largest adapter
    the search can pick (the largest of `hidden_dims`: every trial overrides the base's hidden_dim) fits the
    parameter budget, so a study is not begun whose trials fail one by one when they run."""
    with refused_at(("base", "data")):
        require_prepared(config.base.data)
    check_elm_lm(config.base.model, ("base", "model"), searched_hidden_dims=config.searched_hidden_dims())


def reuse_refusal(
    manifest: dict[str, Any],
    given: dict[str, tuple[str, Any]],
    *,
    layout: str,
    reused_by: str,
    remedy: str,
    called: str = "settings",
) -> str | None:
    """Why a prepared layout (`layout`, its manifest `manifest`) is not reused by `reused_by` with the
    `called` (settings, options) `given` (each as the command names it -> (the manifest's key, its value
    now)), or None when it records every one of them with the value given: reusing it then trains and scores
    on the records they give. Otherwise the sentence naming what differs (or what the manifest does not
    record: a layout prepared before it recorded them), ending in `remedy`. The data (key `source`) is the
    same however its path was written."""
    if missing := [name for name, (key, _) in given.items() if key not in manifest]:
        return (
            f"{layout} does not record the {_listed(missing)} it was prepared with, so {reused_by} cannot "
            f"tell whether it holds the records these {called} give: {remedy}"
        )
    differs = []
    for name, (key, value) in given.items():
        recorded = manifest[key]
        if key == "source":
            same = Path(str(recorded)).resolve() == Path(str(value)).resolve()
        else:
            same = recorded == value
        if not same:
            differs.append(f"{name} {_shown(recorded)}, not {_shown(value)}")
    if not differs:
        return None
    return (
        f"{layout} was prepared with {'; '.join(differs)}: {reused_by} reuses it only for the same "
        f"{_listed(list(given))}; {remedy}"
    )


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def _listed(words: list[str]) -> str:
    """`a, b and c`."""
    return " and ".join(filter(None, [", ".join(words[:-1]), words[-1]]))


def compare_lm_prompt_source(config: ElmLMCompareConfig) -> dict[str, str]:
    """What kind `elm_compare_lm` builds its records' prompt template from (the LM's chat format and the
    instruction), as its layout's manifest records them: the strings, so that telling whether a layout was
    prepared for them needs no tokenizer."""
    # as `instruction_of_config`: None asks with the default, an empty instruction is kept
    instruction = config.instruction if config.instruction is not None else DEFAULT_INSTRUCTION
    return {"lm": config.lm, "instruction": instruction}


def check_compare_lm_layout(config: ElmLMCompareConfig) -> None:
    """A layout already in kind `elm_compare_lm`'s `out` (which the run reuses rather than embedding the
    documents again) was prepared from its data with its limit, eval_limit, seed and embedder, and for its
    lm and instruction (`reuse_refusal`); InvalidConfigError at `out` otherwise. It was reused whatever they
    were: every system was trained and scored on the earlier records and embeddings, comparison.json's setup
    reported the new settings, and the ELM trained with the earlier prompt and summarised with the new one.
    Reads only the manifest (no torch): the submit runs it, and the run again before it uses the layout,
    which may have changed while the run was queued."""
    if config.out is None or not has_layout(out := Path(config.out)):
        return
    prompt = compare_lm_prompt_source(config)
    given: dict[str, tuple[str, Any]] = {
        "data": ("source", config.data),
        "limit": ("limit", config.limit),
        "eval_limit": ("eval_limit", config.eval_limit),
        "seed": ("seed", config.seed),
        "embedder": ("embedder", config.embedder.strip()),  # the name `get_embedder` records
        # the records' prompt template is built from these: the ELM learns the one it was trained with
        "lm": ("lm", prompt["lm"]),
        "instruction": ("instruction", prompt["instruction"]),
    }
    refusal = reuse_refusal(
        read_manifest(out),
        given,
        layout=f"the layout in {out}",
        reused_by="compare-lm",
        remedy="give another out to prepare the data again",
    )
    if refusal is not None:
        raise InvalidConfigError.at("out", refusal)


def check_compare_lm(config: ElmLMCompareConfig) -> None:
    """Kind `elm_compare_lm`'s check before a run is created (command line and API alike): a layout in its
    `out` was prepared with its settings (`check_compare_lm_layout`); its LM is a causal LM, and with the
    `elm_lora` system one LoRA finds the projections of (`check_elm_lm`, on the ELM settings that system
    trains with), and their adapters fit the parameter budget; its embedder is one that can be built
    (`--embedder nosuch` was refused by the run, left behind failed)."""
    check_embedder_name(config.embedder)
    check_compare_lm_layout(config)
    lora_rank = config.lora_rank if "elm_lora" in config.systems else None
    elm = ElmModelConfig(
        lm=config.lm,
        freeze_lm=True,
        lora_rank=lora_rank,
        num_prefix_tokens=config.num_prefix_tokens,
        hidden_dim=config.hidden_dim,
    )
    check_elm_lm(elm, (), adapter=bool({"elm", "elm_lora"} & set(config.systems)))


def check_lm_run_kind(lm: str, field: tuple[str, ...]) -> None:
    """An ELM's `lm` (at the config's `field`) that is the id of a run of a kind that never saves a model is
    refused naming `lm` (`models.resolve.run_kind_refusal`): by `check_elm_lm` before a run exists, and by
    the run as it starts, since the run named may have been replaced after the submit checked it. The run
    failed then without naming the field: elm_train took the id for a Hugging Face name and failed offline,
    elm_compare_lm said the run "has no saved model". Reads the registry only."""
    if lm != "scratch" and (refusal := run_kind_refusal(lm)) is not None:
        raise InvalidConfigError.at((*field, "lm"), refusal)


def check_elm_lm(
    model: ElmModelConfig,
    field: tuple[str, ...],
    *,
    adapter: bool = True,
    searched_hidden_dims: list[int] | None = None,
) -> None:
    """The ELM's pretrained LM (`model.lm`, with LoRA of `model.lora_rank`: the settings at the config's
    `field`), checked before a run exists by the functions the run's build uses (`models.causal_lm`): a
    causal LM (`check_causal_lm_model`; a T5 failed once the run loaded it), and with `lora_rank` one with
    the attention and MLP projections LoRA goes on (`resolve_lora` with no targets named, as the run's
    `ElmModel`, on the LM built from its config on the meta device, no weights read). Refusals name `lm` /
    `lora_rank` under `field`. An LM this process does not find (a name only the Hugging Face cache may hold,
    a queued run's model) or whose files do not say is left to the run, which checks it with the same
    functions; a run of a kind that never saves a model is refused (`models.resolve.run_kind_refusal`).
    The LoRA check reads the LM built on the meta device, which needs torch and transformers: a process
    without them (the API's) has a child process build it (`models.causal_lm.meta_module_tree`).

    With `adapter` (the run builds one), what the run allocates and trains besides the pretrained LM (not
    bounded) fits the parameter budget too (`check_adapter_budget`). With `searched_hidden_dims` (an
    `elm_optimize`'s, which replace `model.hidden_dim` in every trial), counted at the smallest of them
    (over: every trial is, refused at `num_prefix_tokens`) and at the largest (refused at `hidden_dims`)."""
    if model.lm == "scratch":
        return
    try:
        resolved = resolve_model_ref(model.lm)
    except NotFoundError:
        # a run that never saves a model (a smoke run, an evaluation) was left to the run as a queued run's
        # model is, and the run failed with "has no saved model"
        check_lm_run_kind(model.lm, field)
        return
    try:
        check_causal_lm_model(resolved)
    except InvalidInputError as exc:
        raise InvalidConfigError.at((*field, "lm"), exc.message) from None
    lora = 0
    if model.lora_rank is not None and (tree := meta_module_tree(resolved)) is not None:
        settings = LoraSettings(r=model.lora_rank, alpha=model.lora_alpha)
        try:
            lora = lora_parameter_count(tree, settings)
        except ConfigError as exc:
            raise InvalidConfigError.at((*field, "lora_rank"), exc.message) from None
    if not adapter:
        return
    if searched_hidden_dims is None:
        check_adapter_budget(model, resolved, lora, field)
        return
    smallest, largest = min(searched_hidden_dims), max(searched_hidden_dims)
    check_adapter_budget(model.model_copy(update={"hidden_dim": smallest}), resolved, lora, field)
    check_adapter_budget(
        model.model_copy(update={"hidden_dim": largest}),
        resolved,
        lora,
        field,
        at=("hidden_dims",),
        searched=f"hidden_dim {largest}, the largest the search tries",
    )


def check_adapter_budget(
    model: ElmModelConfig,
    lm: ResolvedModel,
    lora: int,
    field: tuple[str, ...],
    *,
    at: tuple[str, ...] | None = None,
    searched: str = "",
) -> None:
    """The adapter and drift head an ELM builds on the pretrained LM `lm` (`adapter_parameter_count`, with
    the configured embedding_dim and the LM's width as its files give it, `model_width`: no torch), and its
    `lora` LoRA parameters, fit the parameter budget: they grow with num_prefix_tokens x the LM's width x
    (embedding_dim + hidden_dim), hundreds of millions of parameters on a 576-wide LM at 256 prefix tokens.
    The LM itself is a pretrained checkpoint, not bounded. InvalidConfigError under `field` at the setting
    of the bigger part, `lora_rank` when the LoRA parameters outnumber the adapter's, else
    `num_prefix_tokens` (or at `at`, a searched setting's field, with `searched` saying which value was
    counted), saying where the width came from; an LM whose files do not give its width is left to the run,
    which counts again with the LM it loaded (`tldrlab.elm.train.check_adapter_budget_as_read`)."""
    if (found := model_width(lm)) is None:
        return
    width, key = found
    adapter = adapter_parameter_count(model, width)
    count = adapter + lora
    if (reason := over_budget(count)) is None:
        return
    where = f"{lm.path}'s header" if lm.kind == "gguf" else f"{lm.path / 'config.json'}"
    parts = "the adapter and drift head" + (f" with {searched}" if searched else "")
    if lora:  # both counts, so the refusal shows why it names the setting it names
        parts += f", {adapter:,}, and {lora:,} LoRA parameters of rank {model.lora_rank},"
    elif searched:
        parts += ","
    # the setting to change: the LoRA adapters' rank when they are the bigger part (num_prefix_tokens was
    # named whatever the parts, though no number of prefix vectors brings LoRA adapters over the limit
    # under it), as `elm compare` names lm_size or hidden_dim by the bigger of its two parts
    bigger = "lora_rank" if lora > adapter else "num_prefix_tokens"
    raise InvalidConfigError.at(
        at or (*field, bigger),
        f"{reason} ({parts} on the pretrained LM {model.lm}, which is {width} wide: {key} in {where}; "
        "the LM's own parameters are not counted)",
    )


def check_prepare_out(config: ElmPrepareConfig) -> ElmPrepareConfig:
    """Kind `elm_prepare`'s prepare step, before its run exists (command line and API alike): an `out` that
    is a file is refused, and one that already holds a prepared layout (409) unless `overwrite` asks to
    replace it. Writing over it
    lost the layout silently: training runs resumed on it notice their data changed, but cannot get it back.
    A worker executing the same run again (a retry, a preempted run) does not come through here."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        # refused inside the run, after it started: a failed run left behind for a mistyped --out
        raise InvalidConfigError.at("out", f"{out} is a file: give a directory to write the layout in")
    if not config.overwrite and holds_layout(out):
        raise ConflictError(
            f"{out} already holds a prepared ELM layout ({MANIFEST}, {SYNTHESIS_DIR}/, {EMBEDDINGS_DIR}/): "
            "give another --out, or --overwrite to replace it"
        )
    return config


def check_prepare_data(config: ElmPrepareConfig) -> None:
    """Kind `elm_prepare`'s check before a run is created (command line and API alike), as `experiment`'s
    (`experiments.config.check_experiment_data`): its data, unless a prepared layout to filter, holds data
    files, none of them empty, and a data-set directory its training split. An empty file was refused once
    the run read it, which stayed a failed run; so was an embedder name no embedder has (`--embedder
    nosuch`)."""
    data = Path(config.data)
    if data.is_dir() and has_layout(data):
        return  # filtered: its documents are embedded already
    check_embedder_name(config.embedder)
    with refused_at("data"):
        split_files(data, config.format, detect_splits(data)[0])


def read_manifest(data_dir: Path | str) -> dict[str, Any]:
    path = Path(data_dir) / MANIFEST
    return dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else {}


# -- writing ------------------------------------------------------------------------------------------------
def write_split(data_dir: Path, split: str, records: list[dict[str, Any]], embeddings: torch.Tensor) -> None:
    (data_dir / SYNTHESIS_DIR).mkdir(parents=True, exist_ok=True)
    save_safetensors({EMBEDDING_KEY: embeddings.float().contiguous()}, embeddings_path(data_dir, split))
    atomic_write_jsonl(synthesis_path(data_dir, split), records)


def split_stats(records: list[dict[str, Any]], embeddings: torch.Tensor) -> dict[str, Any]:
    """Counts and target lengths of one split (what `prepare` prints)."""
    words = [len(str(r["target_text"]).split()) for r in records] or [0]
    tasks: dict[str, int] = {}
    for r in records:
        tasks[str(r["task_type"])] = tasks.get(str(r["task_type"]), 0) + 1
    return {
        "records": len(records),
        "embeddings": int(embeddings.shape[0]),
        "dim": int(embeddings.shape[1]) if embeddings.dim() == 2 else 0,
        "task_types": tasks,
        "target_words_mean": round(sum(words) / len(words), 2),
        "target_words_max": max(words),
    }


def filter_task(
    in_dir: Path | str, out_dir: Path | str, *, task: str = "summary"
) -> dict[str, dict[str, Any]]:
    """Keep the records of one task type in every split, with only their embedding rows, re-indexed densely.

    The new index of a row is its rank among the kept rows (in the old order); records keep their order and
    get `original_embedding_index` so a filtered record can be traced back.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if in_dir.resolve() == out_dir.resolve():
        raise InvalidInputError("--out must differ from the input directory (nothing is overwritten)")
    filtered: dict[str, tuple[list[dict[str, Any]], Any]] = {}
    for split in SPLITS:
        if not synthesis_path(in_dir, split).is_file():
            continue
        source = load_split(in_dir, split)
        kept = [r for r in source.records if r["task_type"] == task]
        old_rows = sorted({r["embedding_index"] for r in kept})
        new_index = {old: new for new, old in enumerate(old_rows)}
        records = [
            {
                **r,
                "embedding_index": new_index[r["embedding_index"]],
                "original_embedding_index": r["embedding_index"],
            }
            for r in kept
        ]
        import torch

        rows = torch.tensor(old_rows, dtype=torch.long)
        embeddings = source.embeddings.index_select(0, rows) if old_rows else source.embeddings[:0]
        filtered[split] = (records, embeddings)
    if not filtered:
        raise NotFoundError(f"{in_dir}: no {SYNTHESIS_DIR}/<split>_synthesis.jsonl files")
    if not any(records for records, _ in filtered.values()):
        # refused before anything is written: the splits written before it left an empty layout in `out`,
        # which `elm train` took for prepared data and a second `prepare` into `out` refused as one
        raise InvalidInputError(f"{in_dir}: no records with task_type {task!r}")
    stats: dict[str, dict[str, Any]] = {}
    for split, (records, embeddings) in filtered.items():
        write_split(out_dir, split, records, embeddings)
        stats[split] = split_stats(records, embeddings)
    for split in set(SPLITS) - set(stats):  # an overwritten layout's split this one does not have
        synthesis_path(out_dir, split).unlink(missing_ok=True)
        embeddings_path(out_dir, split).unlink(missing_ok=True)
    manifest = {**read_manifest(in_dir), "filtered_from": str(in_dir), "task": task, "splits": stats}
    atomic_write_json(out_dir / MANIFEST, manifest)
    return stats


def _split_records(
    path: Path, fmt: str | None, *, limit: int | None, seed: int, val_fraction: float, test_fraction: float
) -> dict[str, list[Any]]:
    """train / val / test SummaryRecords, shuffled with `seed`. A data-set directory trains on its training
    split (`splits.detect_splits`); val is its dev split, else a `val_fraction` of the train records; test is
    its test file, else half of dev, else a `test_fraction` of the train records. Data without splits is cut
    into seeded fractions. A directory of train.jsonl + test.jsonl was read whole before: test records were
    trained on."""

    train_split, dev_split = detect_splits(path)
    test_name = test_split(path) if train_split else None
    rng = random.Random(seed)
    test: list[Any] | None = None
    if test_name:
        test = read_records(path, fmt, split=test_name)
        rng.shuffle(test)
    if train_split and dev_split:
        train = read_records(path, fmt, split=train_split, limit=limit)
        dev = read_records(path, fmt, split=dev_split)
        rng.shuffle(dev)
        if test is not None:
            return {"train": train, "val": dev, "test": test}
        half = len(dev) // 2
        return {"train": train, "val": dev[:half], "test": dev[half:]}
    records = read_records(path, fmt, split=train_split, limit=limit)
    rng.shuffle(records)
    n_val = max(1, int(len(records) * val_fraction))
    n_test = 0 if test is not None else max(1, int(len(records) * test_fraction))
    if 0 < len(records) <= n_val + n_test:
        # every record went to val and test: refused as "no train records with a document and a summary",
        # which the data's one or two good records contradicted
        held = "a validation record" + (" and a test record" if n_test else "")
        raise InvalidInputError(
            f"{path}: {len(records)} record{'s' if len(records) > 1 else ''}, too few to hold out {held} "
            f"and train on the rest: give at least {n_val + n_test + 1}"
        )
    return {
        "val": records[:n_val],
        "test": test if test is not None else records[n_val : n_val + n_test],
        "train": records[n_val + n_test :],
    }


def usable_splits(
    data: Path,
    fmt: str | None,
    *,
    limit: int | None,
    eval_limit: int | None,
    seed: int,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
) -> dict[str, list[Any]]:
    """The records `prepare_dataset` embeds, per split (`_split_records`): those with a document and a
    summary, val and test cut to `eval_limit` each. Reads the data only (no embedder), so a split with none
    is refused before any split is embedded (it was found after embedding the splits before it), and a
    caller can count the training records first (`elm compare`'s batch)."""
    splits = _split_records(
        data, fmt, limit=limit, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )
    usable: dict[str, list[Any]] = {}
    for split in SPLITS:
        usable[split] = [r for r in splits[split] if r.summaries and r.document.strip()]
        if split != "train" and eval_limit is not None:
            usable[split] = usable[split][:eval_limit]
        if not usable[split]:
            raise InvalidInputError(f"{data}: no {split} records with a document and a summary")
    return usable


def prepare_dataset(
    data: Path | str,
    out_dir: Path | str,
    *,
    format: str | None = None,
    embedder: str | None = "minilm",
    task: str = "summary",
    template: str = DEFAULT_TEMPLATE,
    limit: int | None = None,
    eval_limit: int | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    progress: bool = True,
    recorded: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Embed every document of a pair data set and write the ELM layout; returns per-split statistics.

    An input directory already in the ELM layout (a multi-task synthesis set) is filtered to `task` instead.
    `limit` caps the training records read, `eval_limit` the val and test records each. `recorded`: more
    the manifest records (what the caller built `template` from, to tell whether to reuse the layout).
    """

    data, out_dir = Path(data), Path(out_dir)
    if not data.exists():
        raise NotFoundError(f"data not found: {data}")
    if out_dir.exists() and not out_dir.is_dir():
        # found only when the first split was written, after embedding it: a NotADirectoryError traceback
        raise InvalidInputError(f"the output {out_dir} is a file: give a directory to write the layout in")
    if data.is_dir() and has_layout(data):
        return filter_task(data, out_dir, task=task)
    if "{text}" not in template:
        raise InvalidInputError("the prompt template must contain {text} (where the embedding goes)")
    splits = usable_splits(
        data,
        format,
        limit=limit,
        eval_limit=eval_limit,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    model = get_embedder(embedder)
    stats: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        usable = splits[split]
        vectors = _encode(model, [r.document for r in usable], f"embedding {split}", progress)
        records = [
            {
                "task_type": task,
                "input_prompt_template": template,
                "embedding_index": i,
                "target_text": r.summary,
                "variation": 0,
                "source_id": r.id,
                "source": r.source,
                "document": r.document,
            }
            for i, r in enumerate(usable)
        ]
        write_split(out_dir, split, records, vectors)
        stats[split] = split_stats(records, vectors)
    manifest = {
        "source": str(data),
        "format": format,
        "embedder": model.name,
        "embedding_dim": int(model.dim),
        "task": task,
        "seed": seed,
        # with source and seed, what decides the records: `elm compare` reuses a layout only for the same
        "limit": limit,
        "eval_limit": eval_limit,
        **(recorded or {}),
        "splits": stats,
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return stats


def _encode(model: Any, texts: list[str], desc: str, progress: bool) -> torch.Tensor:
    """Embeddings in chunks, with a progress bar (MiniLM does a few hundred documents a second on a CPU)."""
    import numpy as np
    import torch

    chunk = 256
    parts = []
    # `tldrlab -q` sets the console's, not the config's
    with progress_bar(total=len(texts), desc=desc, unit="doc", shown=progress) as bar:
        for start in range(0, len(texts), chunk):
            parts.append(np.asarray(model.encode(texts[start : start + chunk]), dtype=np.float32))
            bar.update(len(texts[start : start + chunk]))
    return torch.from_numpy(np.concatenate(parts, axis=0))
