"""The run-kind registry: every kind of run tldrlab can execute, each one entry carrying its whole contract.

    KINDS["train"].config          # TrainJobConfig: validated at submit, documented in OpenAPI
    validate_config("train", raw)  # -> TrainJobConfig, or InvalidConfigError naming the field (API: 422)
    resolve_execute("train")       # -> tldrlab.train.jobs.train_job, imported only when a run executes

An entry says what a run of its kind is: `name`, `config` (a pydantic class from a module that imports no
torch, so the API validates and documents configs cheaply), `execute` ("module:function" with signature
`(run: Run, config: TheConfig) -> dict | None`; a dict becomes the run's artifacts/result.json), a one-line
`help`, whether users may submit it (`submittable`; internal child kinds may not), and optionally
`prepare` ("module:function", `(config) -> config`, torch-free: run before the run is created, by the API's
submit and the CLI alike, e.g. to record the data splits it found), `follower` (what non-main ranks of a
distributed launch run, `(config) -> None`), `resume_fields` (dotted config fields that may change when a run
is resumed; None: the kind does not resume), `aliases` (old names still found in the registry) and
`trial_execute` (what a run of the kind executes when a sweep created it as a trial: the same recipe plus
the study's pruning, `tldrlab.sweep.trial_jobs`), `check` (what a run reads is there: checked at submit by
the CLI and the API alike), and for front ends `inputs`, `local_check` and `report`.

To add a kind: write its config class (a `tldrlab.configmodel.ConfigModel`, docstring under every
field, bounds, `extra="forbid"`, `allow_inf_nan=False` so no float field takes inf or nan, a value no class
describes typed `tldrlab.freeform.FreeForm` so no number inside it does either; its nested sections
alike) in the area's `config.py`, its execute function beside the work it does, and one `RunKind(...)` line
below. `tldrlab.launch` runs it (CLI in-process, API submit, workers);
`GET /kinds`, `POST /runs` and the runs page pick it up from here.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic.json_schema import models_json_schema
from pydantic_core import to_jsonable_python

from tldrlab.choices import field_choices, unknown_choice
from tldrlab.digest.config import (
    HighlightRerankerTrainConfig,
    HighlightScorerTrainConfig,
    ThreadIngestConfig,
)
from tldrlab.elm.config import (
    ElmEvaluateConfig,
    ElmLMCompareConfig,
    ElmOptimizeConfig,
    ElmPrepareConfig,
    ElmTrainConfig,
)
from tldrlab.errors import InvalidConfigError, UnknownKindError, error_message, validation_problems
from tldrlab.evaluate.config import EvaluateConfig, GenerateConfig, ScoreConfig
from tldrlab.experiments.config import (
    ExperimentArmConfig,
    ExperimentConfig,
    LMArmConfig,
    LMCompressConfig,
    LMExperimentConfig,
)
from tldrlab.freeform import FieldsOf
from tldrlab.lvm.config import (
    IngestConfig,
    LVMEvaluateConfig,
    LVMGenerateConfig,
    LVMIndexConfig,
    LVMTrainJobConfig,
    SequencesConfig,
)
from tldrlab.numbers import booleans_for_numbers
from tldrlab.report import Report, key_value_table
from tldrlab.runs.paths import SettingsOf
from tldrlab.sweep.config import SweepConfig, TrialConfig
from tldrlab.targets import load_target
from tldrlab.tokenizers.config import TokenizerJobConfig
from tldrlab.train.config import SmokeConfig, TrainJobConfig

ModelT = TypeVar("ModelT", bound=BaseModel)
ExecuteFunction = Callable[[Any, Any], dict[str, Any] | None]


@dataclass(frozen=True)
class RunKind:
    """One kind of run and its whole contract (see the module docstring)."""

    name: str
    config: type[BaseModel]
    execute: str
    help: str
    submittable: bool = True
    prepare: str | None = None
    follower: str | None = None
    resume_fields: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    trial_execute: str | None = None
    inputs: tuple[str, ...] = ()
    """Config fields that may name input files or directories: a command line makes them absolute when they
    exist, so the run finds them wherever it executes."""
    must_exist: tuple[str, ...] = ()
    """Input fields that must exist (when set) before a run is created (`tldrlab.launch.check_inputs`), so a
    typo leaves no failed run behind."""
    outputs: tuple[str, ...] = ()
    """Config fields naming output paths: a command line makes them absolute (relative to where it runs)."""
    check: str | None = None
    """"module:function", `(config) -> None`: more checks of what the run will read (the data directory is a
    prepared one, a model run exists in this home, the store holds the concepts), made before a run is
    created by every front end: a command line's pre-flight and the API's submit (`tldrlab.launch.
    check_inputs`; its refusals are 422s there, a conflict 409), so a run that cannot start is refused
    instead of queued to fail. Facts about the config alone (a model family or a loss is known, the tokenizer
    vocabulary fits its method, the model fits the parameter budget) are the config class's own validators
    instead."""
    local_check: str | None = None
    """"module:function", `(config) -> None`: checks only a command line makes, as it executes the run now in
    its own process: of this machine (the device and precision, a distributed launch), and of a model the
    run loads, which over the API a training still queued may yet save (the API's confinement checks that
    the run or model named exists), and of what the run reads first where that is a read of the whole data,
    too slow for the API's submit (an ingest's article ids, an experiment's records and the tokenizer it
    trains on them). The API's workers meet these in the run."""
    report: str | None = None
    """"module:function", `(run_id, result) -> tldrlab.report.Report`: how the result reads (else JSON)."""
    study: str | None = None
    """"module:function", `(config) -> str`: the name of the study a run of the kind opens when it starts (a
    sweep's, a search's), recorded in the registry's `study` column when the run is created, so a submit
    finds the queued runs of one study by a query (`sweep.storage.refuse_another_queued_sweep`)."""
    continued_by_parent: bool = False
    """A run of this kind that stopped with the run it is part of (its parent) is continued by that run when
    it resumes (an lm_experiment's arms), not started anew: nothing else may execute it meanwhile."""
    data_files: str | None = None
    """"module:function", `(config, recorded) -> list[Path]`: the data files a resumable run must find as it
    first read them (size and sha256, recorded at its first start; `recorded`, those it recorded, for a
    kind that picks among them: `tldrlab.train.same_data.RunFiles`); a command line's `--resume` checks them
    before it changes anything of the run (`tldrlab.launch.check_resume_data`)."""


_ENTRIES = (
    RunKind(
        "train",
        TrainJobConfig,
        "tldrlab.train.jobs:train_job",
        "Train a model (t5, gpt2, char_lstm, ...) on a data set; resumable; the best model is saved.",
        prepare="tldrlab.train.config:record_splits",
        follower="tldrlab.train.jobs:train_follower",
        resume_fields=("train.progress",),
        trial_execute="tldrlab.sweep.trial_jobs:train_trial_job",
        inputs=("data.path", "tokenizer.path"),
        check="tldrlab.train.config:check_train_data",
        local_check="tldrlab.train.jobs:check_train",
        data_files="tldrlab.train.same_data:train_data_files",
        report="tldrlab.train.recipe:training_report",
    ),
    RunKind(
        "tokenizer",
        TokenizerJobConfig,
        "tldrlab.tokenizers.job:tokenizer_job",
        "Train a tokenizer (bpe, sentencepiece, char) on corpus files.",
        prepare="tldrlab.tokenizers.job:check_tokenizer_out",
        inputs=("corpus",),
        outputs=("out_dir",),
        check="tldrlab.tokenizers.job:check_tokenizer",
        local_check="tldrlab.tokenizers.job:check_tokenizer_corpus",
        report="tldrlab.tokenizers.job:tokenizer_report",
    ),
    RunKind(
        "evaluate",
        EvaluateConfig,
        "tldrlab.evaluate.jobs:evaluate_job",
        "Evaluate a trained model on a data split (loss, perplexity, ROUGE, BERTScore, lengths).",
        aliases=("eval",),
        inputs=("model_run", "data"),
        must_exist=("data",),
        check="tldrlab.evaluate.model_run:check_model_run",
        local_check="tldrlab.evaluate.jobs:check_evaluate",
        report="tldrlab.evaluate.jobs:evaluate_report",
    ),
    RunKind(
        "generate",
        GenerateConfig,
        "tldrlab.evaluate.jobs:generate_job",
        "Generate summaries or continuations with a trained model.",
        prepare="tldrlab.evaluate.config:read_held_out_split",
        inputs=("model_run",),
        check="tldrlab.evaluate.model_run:check_model_run",
        local_check="tldrlab.evaluate.jobs:check_model",
        report="tldrlab.evaluate.jobs:generate_report",
    ),
    RunKind(
        "score",
        ScoreConfig,
        "tldrlab.evaluate.jobs:score_job",
        "Score a text under a trained model: loss, perplexity, per-token surprisal.",
        prepare="tldrlab.evaluate.config:read_held_out_split",
        inputs=("model_run",),
        check="tldrlab.evaluate.model_run:check_model_run",
        local_check="tldrlab.evaluate.jobs:check_model",
        report="tldrlab.evaluate.jobs:score_report",
    ),
    RunKind(
        "ingest",
        ThreadIngestConfig,
        "tldrlab.digest.ingest:ingest_job",
        "Ingest forum threads into the sentence store (only changed posts are re-embedded).",
        inputs=("path",),
        must_exist=("path",),
        check="tldrlab.digest.ingest:check_ingest_inputs",
        report="tldrlab.digest.ingest:ingest_report",
    ),
    RunKind(
        "highlight_scorer_train",
        HighlightScorerTrainConfig,
        "tldrlab.digest.scorer_training:highlight_scorer_train_job",
        "Train a learned highlight scorer (a listwise linear model per mode) on labelled train splits.",
        inputs=("scitldr_train", "forum_dump", "qmsum_train"),
        outputs=("out", "vector_cache_dir"),
        check="tldrlab.digest.ingest:check_highlight_training",
    ),
    RunKind(
        "highlight_reranker_train",
        HighlightRerankerTrainConfig,
        "tldrlab.digest.reranker_training:highlight_reranker_train_job",
        "Fine-tune a MiniLM re-ranker (LoRA) of query-aware highlights on QMSum train.",
        inputs=("qmsum_train",),
        outputs=("out", "vector_cache_dir"),
        check="tldrlab.digest.ingest:check_highlight_training",
    ),
    RunKind(
        "elm_prepare",
        ElmPrepareConfig,
        "tldrlab.elm.jobs:elm_prepare_job",
        "ELM: embed a pair data set's documents and write the synthesis + embeddings layout.",
        prepare="tldrlab.elm.prepare:check_prepare_out",
        inputs=("data",),
        must_exist=("data",),
        check="tldrlab.elm.prepare:check_prepare_data",
        outputs=("out",),
        report="tldrlab.elm.jobs:prepare_report",
    ),
    RunKind(
        "elm_train",
        ElmTrainConfig,
        "tldrlab.elm.train:elm_train_job",
        "ELM: train the summary adapter (and the LM unless frozen); resumable.",
        resume_fields=("train.progress",),
        trial_execute="tldrlab.elm.optimize:elm_trial_job",
        inputs=("data", "tokenizer", "init_adapter"),
        check="tldrlab.elm.prepare:check_prepared",
        local_check="tldrlab.elm.train:check_device",
        data_files="tldrlab.elm.train:elm_data_files",
        report="tldrlab.train.recipe:training_report",
    ),
    RunKind(
        "elm_evaluate",
        ElmEvaluateConfig,
        "tldrlab.elm.jobs:elm_evaluate_job",
        "ELM: BERTScore, ROUGE and length statistics of a predictions file.",
        prepare="tldrlab.elm.evaluate:check_files",
        inputs=("predictions", "references", "bertscore_model"),
        must_exist=("predictions", "references"),
        outputs=("output",),
        report="tldrlab.elm.jobs:evaluate_report",
    ),
    RunKind(
        "elm_optimize",
        ElmOptimizeConfig,
        "tldrlab.service.sweeps:elm_optimize_job",
        "ELM: Bayesian search of the adapter's settings for the BERTScore composite (resumable study).",
        prepare="tldrlab.elm.search:check_optimize_study",
        study="tldrlab.elm.search:optimize_study_name",
        check="tldrlab.elm.prepare:check_optimize_prepared",
        local_check="tldrlab.elm.optimize:check_optimize_data",
        inputs=("base.data", "base.tokenizer"),
        report="tldrlab.sweep.report:sweep_report",
    ),
    RunKind(
        "elm_compare_lm",
        ElmLMCompareConfig,
        "tldrlab.elm.compare_lm:compare_lm_job",
        "ELM on a frozen pretrained LM vs the LM fine-tuned on the full text vs zero-shot, same CPU budget.",
        inputs=("data",),
        check="tldrlab.elm.prepare:check_compare_lm",
        report="tldrlab.experiments.results:results_report",
        outputs=("out",),
    ),
    RunKind(
        "lvm_ingest",
        IngestConfig,
        "tldrlab.lvm.ingest:lvm_ingest_job",
        "LVM: split articles into concepts, embed and store them with provenance.",
        inputs=("path",),
        must_exist=("path",),
        check="tldrlab.lvm.ingest:check_ingest",
        local_check="tldrlab.lvm.ingest:check_articles",
        report="tldrlab.lvm.ingest:ingest_report",
    ),
    RunKind(
        "lvm_index",
        LVMIndexConfig,
        "tldrlab.lvm.jobs:lvm_index_job",
        "LVM: build the FAISS concept index from the concept store.",
        outputs=("out",),
        check="tldrlab.lvm.sequences:check_store",
        report="tldrlab.lvm.jobs:index_report",
    ),
    RunKind(
        "lvm_sequences",
        SequencesConfig,
        "tldrlab.lvm.sequences:lvm_sequences_job",
        "LVM: build (context -> next concept) sequences split by article.",
        outputs=("out",),
        check="tldrlab.lvm.sequences:check_store",
        report="tldrlab.lvm.sequences:sequences_report",
    ),
    RunKind(
        "lvm_train",
        LVMTrainJobConfig,
        "tldrlab.lvm.training:lvm_train_job",
        "LVM: train a next-concept model (lstm, gru, transformer, mamba, pretrained); resumable.",
        resume_fields=("train.progress",),
        trial_execute="tldrlab.lvm.sweep:lvm_trial_job",
        # the pretrained backbone is loaded again whenever the saved LVM is (model/lvm_model.json names it)
        inputs=("sequences", "model_settings.pretrained"),
        check="tldrlab.lvm.sequences:check_sequences_file",
        data_files="tldrlab.lvm.training:lvm_data_files",
        report="tldrlab.train.recipe:training_report",
    ),
    RunKind(
        "lvm_evaluate",
        LVMEvaluateConfig,
        "tldrlab.lvm.jobs:lvm_evaluate_job",
        "LVM: score trained models beside the baselines (MSE, cosine, top-k retrieval).",
        check="tldrlab.lvm.sequences:check_lvm_inputs",
        local_check="tldrlab.lvm.jobs:check_models",
        inputs=("runs", "sequences"),
        outputs=("out",),
        report="tldrlab.lvm.evaluation:evaluate_report",
    ),
    RunKind(
        "lvm_generate",
        LVMGenerateConfig,
        "tldrlab.lvm.generate:lvm_generate_job",
        "LVM: measure text out (raw / smoothed decoding, copy-last) against the true next sentences.",
        check="tldrlab.lvm.sequences:check_lvm_inputs",
        local_check="tldrlab.lvm.jobs:check_models",
        report="tldrlab.lvm.generate:generation_report",
    ),
    RunKind(
        "experiment",
        ExperimentConfig,
        "tldrlab.experiments.dendrite_experiment:experiment_job",
        "Baseline vs compressed vs compressed + dendrites T5, same data, tokenizer, seeds and budget.",
        inputs=("data", "eval_data"),
        check="tldrlab.experiments.config:check_experiment_data",
        local_check="tldrlab.experiments.dendrite_experiment:check_experiment_inputs",
        report="tldrlab.experiments.results:results_report",
    ),
    RunKind(
        "experiment_arm",
        ExperimentArmConfig,
        "tldrlab.experiments.dendrite_experiment:experiment_arm_job",
        "One arm of an experiment trained for one seed (started by its experiment).",
        submittable=False,
    ),
    RunKind(
        "lm_experiment",
        LMExperimentConfig,
        "tldrlab.experiments.lm_experiment:lm_experiment_job",
        "A pretrained causal LM: baseline vs compressed vs + dendrites vs random vs distilled, same budget.",
        prepare="tldrlab.experiments.lm_prepare:prepare_lm_experiment",
        resume_fields=(),
        inputs=("data", "eval_data"),
        check="tldrlab.experiments.lm_prepare:check_lm_model",
        data_files="tldrlab.experiments.lm_experiment:lm_experiment_data_files",
        report="tldrlab.experiments.results:results_report",
    ),
    RunKind(
        "lm_experiment_arm",
        LMArmConfig,
        "tldrlab.experiments.lm_experiment:lm_experiment_arm_job",
        "One arm of an lm_experiment trained for one seed (started by its experiment).",
        submittable=False,
        continued_by_parent=True,  # a resumed lm_experiment continues its unfinished arms
    ),
    RunKind(
        "lm_compress",
        LMCompressConfig,
        "tldrlab.experiments.lm_experiment:lm_compress_job",
        "Cut a pretrained causal LM (layers, MLP neurons, heads by importance) and export it.",
        prepare="tldrlab.experiments.compressible:check_compressible",
        inputs=("calibration_data",),
        outputs=("out",),
        check="tldrlab.experiments.compressible:check_compress_out",
    ),
    RunKind(
        "sweep",
        SweepConfig,
        "tldrlab.service.sweeps:sweep_job",
        "A W&B sweep run on Optuna (resumable study); every trial is a queued run.",
        prepare="tldrlab.sweep.storage:check_study",
        study="tldrlab.sweep.storage:study_name",
        check="tldrlab.sweep.trials:check_sweep_inputs",
        local_check="tldrlab.sweep.runner:check_sweep",
        report="tldrlab.sweep.report:sweep_report",
    ),
    RunKind(
        "trial",
        TrialConfig,
        "tldrlab.sweep.trials:trial_job",
        "One trial of a command-line or experiment sweep (started by its sweep).",
        submittable=False,
    ),
    RunKind(
        "smoke",
        SmokeConfig,
        "tldrlab.train.smoke:smoke_job",
        "A real, tiny, exactly-resumable training (seconds on a CPU) that checks a worker deployment.",
        resume_fields=(),
    ),
)

KINDS: dict[str, RunKind] = {kind.name: kind for kind in _ENTRIES}
"""Every run kind by name."""


def register_kind(kind: RunKind) -> None:
    """Add (or replace) a kind at run time, e.g. a plug-in's or a test's."""
    KINDS[kind.name] = kind


def get_kind(name: str) -> RunKind:
    """The kind called `name` (or formerly called so); UnknownKindError listing the known kinds."""
    kind = KINDS.get(name) or next((k for k in KINDS.values() if name in k.aliases), None)
    if kind is None:
        raise UnknownKindError(unknown_choice("run kind", name, sorted(KINDS)), kinds=sorted(KINDS))
    return kind


def resumes(name: str) -> bool:
    """Whether runs recorded under the kind name `name` resume (`--resume`); False for a kind this version
    no longer has (nothing here could resume its runs)."""
    try:
        return get_kind(name).resume_fields is not None
    except UnknownKindError:
        return False


def continued_by_parent(name: str) -> bool:
    """Whether a stopped run recorded under the kind name `name` is continued by its parent's resume
    (`RunKind.continued_by_parent`); False for a kind this version no longer has."""
    try:
        return get_kind(name).continued_by_parent
    except UnknownKindError:
        return False


def recorded_kind_names(*names: str) -> tuple[str, ...]:
    """Every name runs of the kinds called `names` (current or old names) may be recorded under: each kind's
    current name and its old ones, as runs made before a rename keep the name they were made under; in order,
    each once. UnknownKindError listing the known kinds for a name that is neither. The one rule for every
    filter of runs by kind (`runs list/prune --kind`, `GET /runs?kind=`, retention.kinds)."""
    kinds = [get_kind(name) for name in names]
    return tuple(dict.fromkeys(name for kind in kinds for name in (kind.name, *kind.aliases)))


def kind_names_by_recorded_name() -> dict[str, str]:
    """Every name runs may be recorded under -> their kind's current name (`eval` -> `evaluate`), by
    `recorded_kind_names`: what retention (which sits below this registry) needs to take an old run for what
    it is. Made per call, so kinds registered at run time count."""
    return {recorded: kind.name for kind in KINDS.values() for recorded in recorded_kind_names(kind.name)}


def result_report(kind_name: str, run_id: str, result: Any) -> Report:
    """How a run's result reads, the same in every front end (CLI, API, runs page, Discord): its kind's
    `report`, else a table of the result's fields (nested values as JSON)."""
    kind = get_kind(kind_name)
    if kind.report is not None:
        report: Report = load_target(kind.report)(run_id, result)
        return report
    fields = result if isinstance(result, dict) else {"result": result}
    shown: dict[str, object] = {
        str(k): v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v, default=str)
        for k, v in fields.items()
    }
    return Report([f"run {run_id}", key_value_table(shown, key="field")])


def submittable_kinds() -> list[RunKind]:
    return [kind for kind in KINDS.values() if kind.submittable]


def config_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as `{"loc": [...], "msg": ...}`, the shape the API returns."""
    return [{"loc": [str(p) for p in e["loc"]], "msg": error_message(e)} for e in exc.errors()]


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` on top, nested mappings merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = deep_merge(out[key], value) if both else value
    return out


def with_section_defaults(model: type[BaseModel], raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with every nested section it gives in part completed from that section's default value.

    ELM's `train` section defaults to batch_size 8 and lr 1e-3: `{"train": {"max_steps": 5}}` keeps them,
    where plain validation would fall back to TrainConfig's own defaults.
    """
    out = dict(raw)
    for name, info in model.model_fields.items():
        value, section = out.get(name), section_class(info.annotation)
        if section is not None and value is None and info.is_required():
            value = {}  # so that a missing required section is reported by its missing fields
        if section is None or not isinstance(value, Mapping):
            continue
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            value = deep_merge(default.model_dump(exclude_unset=True), value)
        out[name] = with_section_defaults(section, value)
    return out


def validate_model(model: type[ModelT], raw: Mapping[str, Any], *, what: str, **details: Any) -> ModelT:
    """`raw` as a `model` (a section given in part keeps the rest of its default, see
    `with_section_defaults`); InvalidConfigError naming every bad field otherwise (a boolean given for a
    number too: `booleans_for_numbers`)."""
    if problems := list(booleans_for_numbers(model, raw)):
        listed = "; ".join(f"{'.'.join(p['loc']) or '(config)'}: {p['msg']}" for p in problems)
        raise InvalidConfigError(f"invalid {what}: {listed}", errors=problems, **details)
    try:
        return model.model_validate(with_section_defaults(model, raw))
    except ValidationError as exc:
        message = f"invalid {what}: {validation_problems(exc)}"
        raise InvalidConfigError(message, errors=config_errors(exc), **details) from None


def validate_config(kind: str, raw: dict[str, Any] | BaseModel) -> BaseModel:
    """The kind's typed config from `raw` (see `validate_model`)."""
    spec = get_kind(kind)
    if isinstance(raw, spec.config):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(mode="json")
    return validate_model(spec.config, raw, what=f"{spec.name} config", kind=spec.name)


def resolve_execute(kind: str) -> ExecuteFunction:
    """The function executing runs of `kind` (imported now)."""
    function: ExecuteFunction = load_target(get_kind(kind).execute)
    return function


def section_class(annotation: Any) -> type[BaseModel] | None:
    """The config class a field holds (also inside `X | None`), if any."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def config_template(model: type[BaseModel]) -> dict[str, Any]:
    """A starting config for `model`: every field at its default, required ones None (nested sections
    filled in the same way), as JSON values. What the runs page puts in its config box."""
    template: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            nested = section_class(field.annotation)
            template[name] = config_template(nested) if nested is not None else None
        else:
            template[name] = to_jsonable_python(field.get_default(call_default_factory=True))
    return template


def kind_schema(kind: RunKind) -> dict[str, Any]:
    """What `GET /kinds` says about a kind: name, help, submittable, resumable, the config's JSON schema and
    a template config (defaults, required fields None)."""
    return {
        "name": kind.name,
        "help": kind.help,
        "submittable": kind.submittable,
        "resumable": kind.resume_fields is not None,
        "schema": config_json_schema(kind.config),
        "template": config_template(kind.config),
    }


def config_json_schemas(
    configs: list[type[BaseModel]], ref_template: str
) -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]]:
    """({class: {"$ref": ...}} of each of `configs`, the schemas of every class they use by name), with each
    settings field (`model_settings`) documented as one of the classes whose fields it takes (a training's:
    one per model family), its description naming which field picks which. `GET /kinds` and /openapi.json
    both come from here, so they describe a config alike; submit validates a settings field as before."""
    settings = [field for config in configs for field in settings_fields(config)]
    classes = [*configs, *(f.holder for f in settings), *(c for f in settings for c in f.classes.values())]
    unique = list({id(c): c for c in classes}.values())
    refs, schema = models_json_schema([(c, "validation") for c in unique], ref_template=ref_template)
    definitions: dict[str, Any] = schema.get("$defs", {})
    for field in settings:
        component = refs[(field.holder, "validation")]["$ref"].rsplit("/", 1)[1]
        documented = definitions[component]["properties"][field.name]
        documented.pop("type", None)
        documented.pop("additionalProperties", None)
        documented["anyOf"] = [dict(refs[(cls, "validation")]) for cls in field.classes.values()]
        named = [
            f"{choice}: {cls.__name__}" if choice else cls.__name__ for choice, cls in field.classes.items()
        ]
        which = f"the class its `{field.by}` picks ({'; '.join(named)})" if field.by else ", ".join(named)
        documented["description"] += f" The fields of {which}."
    return {config: dict(refs[(config, "validation")]) for config in configs}, definitions


def config_json_schema(config: type[BaseModel]) -> dict[str, Any]:
    """`config`'s JSON schema as `model_json_schema` makes it (the classes it uses under `$defs`), its
    settings fields documented as /openapi.json documents them (`config_json_schemas`)."""
    refs, definitions = config_json_schemas([config], "#/$defs/{model}")
    schema: dict[str, Any] = definitions.pop(refs[config]["$ref"].rsplit("/", 1)[1])
    return {**schema, "$defs": definitions} if definitions else schema


# -- the config reference (docs/config.md; --help shows the same defaults and bounds) -----------------------
BOUNDS = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "length >="),
    (annotated_types.MaxLen, "max_length", "length <="),
)


def bounds_text(info: FieldInfo) -> str:
    """The field's bounds as text, e.g. `>= 1, < 1`."""
    return ", ".join(
        f"{sign} {getattr(item, attr)}"
        for item in info.metadata
        for kind, attr, sign in BOUNDS
        if isinstance(item, kind)
    )


def show_value(value: Any) -> str:
    """A default as people read it: lists and mappings as JSON, a section as the values it sets."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    return json.dumps(value, default=str) if isinstance(value, list | dict | tuple) else str(value)


def type_text(annotation: Any, names: list[str] | None = None) -> str:
    """A readable type: `int`, `int | None`, `tiny | mini`, `list[str]`; with `names` (a `OneOf` field's),
    its strings as those names, as a Literal's are: `bpe | char`, `list[mean | ridge] | None`."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(str(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " \\| ".join(type_text(a, names) for a in get_args(annotation))
    if annotation is type(None):
        return "None"
    if annotation is str and names is not None:
        return " \\| ".join(names)
    if origin is not None:
        inner = ", ".join(type_text(a, names) for a in get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def markdown_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def field_rows(
    model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None, *, kind: str = ""
) -> Iterator[str]:
    """One markdown table row per leaf field (nested sections as dotted names): type, default, bounds,
    docstring. A section that may be None gets a row of its own too (its docstring says what None means); a
    settings field links to the tables of the classes it takes (`settings_tables` of `kind`)."""
    for name, info in model.model_fields.items():
        required = info.is_required() and defaults is None
        default = getattr(defaults, name) if defaults is not None else None
        if defaults is None and not required:
            default = info.get_default(call_default_factory=True)
        section = section_class(info.annotation)
        meaning = info.description or ""
        if takes := settings_classes(info):
            by, classes = takes
            path = f"{prefix}{name}"
            links = [
                f"[{c or cls.__name__}](#{anchor(settings_heading(kind, path, by, c))})"
                for c, cls in classes.items()
            ]
            meaning += f" Its fields{f' by `{by}`' if by else ''}: {', '.join(links)}."
        if section is None or type(None) in get_args(info.annotation):
            shown = "required" if required else f"`{show_value(default)}`"
            row = " | ".join(markdown_cell(cell) for cell in (shown, bounds_text(info), meaning))
            yield f"| `{prefix}{name}` | {type_text(info.annotation, field_choices(info))} | {row} |"
        if section is not None:
            nested = default if isinstance(default, BaseModel) else None
            yield from field_rows(section, f"{prefix}{name}.", nested, kind=kind)


# -- settings fields: free-form dicts holding another config class's fields --------------------------------
def settings_classes(info: FieldInfo) -> tuple[str, dict[str, type[BaseModel]]] | None:
    """What a settings field takes: (the sibling field whose value picks the class, "" when one class serves
    all; that value -> the class) by its `SettingsOf` (a training's `model_settings`: the class of the model
    family its `model` names, from the family registry, so a new family is listed by itself) or `FieldsOf`
    marker (an LVM training's: LVMConfig); None for any other field."""
    for marker in info.metadata:
        if isinstance(marker, SettingsOf):
            return marker.field, marker.classes()
        if isinstance(marker, FieldsOf):
            return "", {"": marker.config}
    return None


def settings_heading(kind: str, path: str, by: str, choice: str) -> str:
    """The heading of the table of the fields `path` of `kind` takes for `choice` of its sibling field `by`:
    "`train`: `model_settings` for `model: t5`"."""
    return f"`{kind}`: `{path}`" + (f" for `{by}: {choice}`" if by else "")


def anchor(heading: str) -> str:
    """The id a markdown page gives `heading`, as GitHub makes it (lower case, punctuation dropped, spaces
    to -): `train-model_settings-for-model-t5`."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def leaf_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The fields of `model` as dotted names (a nested section's fields as `lora.r`)."""
    names: list[str] = []
    for name, info in model.model_fields.items():
        section = section_class(info.annotation)
        names += [f"{prefix}{name}"] if section is None else leaf_names(section, f"{prefix}{name}.")
    return names


def settings_help(info: FieldInfo) -> str:
    """`--help`'s line of what a settings field takes (`Its fields by model: t5: size, d_model, ...; ...`),
    else ""."""
    if (takes := settings_classes(info)) is None:
        return ""
    by, classes = takes
    listed = "; ".join(f"{f'{c}: ' if c else ''}{', '.join(leaf_names(cls))}" for c, cls in classes.items())
    return f"Its fields{f' by `{by}`' if by else ''} (each explained in docs/config.md): {listed}."


class SettingsField(NamedTuple):
    """A settings field of a config class, and the classes whose fields it takes."""

    path: str
    """Dotted, from the config class down: `model_settings`."""
    holder: type[BaseModel]
    """The class the field is declared in (the config class or one of its sections)."""
    name: str
    by: str
    """The sibling field whose value picks the class ("": one class serves every value)."""
    classes: dict[str, type[BaseModel]]
    """That value -> the class."""


def settings_fields(model: type[BaseModel], prefix: str = "") -> Iterator[SettingsField]:
    """Every settings field of `model` and its sections."""
    for name, info in model.model_fields.items():
        if (section := section_class(info.annotation)) is not None:
            yield from settings_fields(section, f"{prefix}{name}.")
        elif takes := settings_classes(info):
            yield SettingsField(f"{prefix}{name}", model, name, *takes)


def settings_tables(kind: str, model: type[BaseModel]) -> Iterator[str]:
    """A markdown table of each class the settings fields of `model` take (one per model family), under a
    heading the field's own row links to."""
    for field in settings_fields(model):
        for choice, config in field.classes.items():
            yield (
                f"\n### {settings_heading(kind, field.path, field.by, choice)}\n\n"
                f"`{config.__name__}`: {' '.join((config.__doc__ or '').split())}\n\n{TABLE_HEAD}"
                + "\n".join(field_rows(config, f"{field.path}."))
                + "\n"
            )


TABLE_HEAD = "| field | type | default | bounds | meaning |\n|---|---|---|---|---|\n"


def config_reference(header: str, commands: Mapping[str, list[str]]) -> str:
    """Every kind's config fields as markdown (`commands`: kind -> the commands that start it)."""
    parts = [
        f"# Run-kind configs\n\n{header}Each run kind takes one config: these fields, as a YAML/JSON file "
        "(`--config FILE`), as dotted options (`--train.lr 3e-4`) or as the `config` of `POST /runs`.\n"
    ]
    for kind in KINDS.values():
        model = kind.config
        started_by = "".join(f" (`{command}`)" for command in commands.get(kind.name, []))
        parts.append(
            f"\n## `{kind.name}`{started_by}\n\n{kind.help}\n\n"
            f"`{model.__name__}`: {' '.join((model.__doc__ or '').split())}\n\n{TABLE_HEAD}"
        )
        parts.append("\n".join(field_rows(model, kind=kind.name)) + "\n")
        parts.extend(settings_tables(kind.name, model))
    return "".join(parts)
