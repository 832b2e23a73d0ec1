"""Typed configs of the LVM run kinds and of the model itself (no torch here: the API validates with them).

`LVMConfig` (the shape of a model: a training's `model_settings`),
`IngestConfig` (kind `lvm_ingest`), `LVMIndexConfig` (`lvm_index`), `LVMTrainJobConfig` (`lvm_train`),
`LVMEvaluateConfig` (`lvm_evaluate`), `SequencesConfig` (`lvm_sequences`), `LVMGenerateConfig`
(`lvm_generate`).
Paths left None resolve under `<home>/lvm/` when the run executes (`concepts.db`, `index/`,
`sequences.npz`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tldrlab.budget import field_error, field_errors, nested_errors, within_budget
from tldrlab.choices import OneOf, unknown_choice
from tldrlab.config import get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.data.formats import ReaderFormat
from tldrlab.freeform import FieldsOf, FreeForm
from tldrlab.numbers import booleans_for_numbers
from tldrlab.runs.paths import InputPath, ModelRef, OutputPath, Seed, ServerOnly
from tldrlab.train.config import TrainConfig


def lvm_home() -> Path:
    """Where LVM files live unless a config says otherwise: <home>/lvm."""
    return get_settings().home / "lvm"


def default_index() -> Path:
    return lvm_home() / "index"


def default_sequences() -> Path:
    return lvm_home() / "sequences.npz"


def _unset_split_is_val(value: Any) -> Any:
    # configs recorded before `val` became the default say `split: null` (then: the test splits); a run queued
    # then and executed, resumed or shown now measures the default instead of failing its validation
    return "val" if value is None else value


MeasuredSplit = Annotated[Literal["val", "test", "cross"], BeforeValidator(_unset_split_is_val)]
"""The splits `lvm_evaluate` and `lvm_generate` measure (`tldrlab.lvm.sequences.SPLITS` less train). `val` is
their default: the test splits (`test`, and `cross`, the unseen corpus) are measured only when named, so that
nothing is chosen by their figures."""

SELECT_METRICS = ("eval_loss", "val_cosine", "val_top1_excl")
"""Validation metrics `tldrlab lvm train --select` picks the kept checkpoint by."""

EVAL_METRICS = ("eval_loss", "val_cosine", "val_mse", "val_top1_excl")
"""What every LVM evaluation reports (`tldrlab.lvm.training.LVMTask.evaluate`): the `train.best_metric` an
LVM training may keep its checkpoint by."""

LVM_BACKBONES = ("lstm", "gru", "transformer", "mamba", "pretrained")
"""The names of `tldrlab.lvm.models.LVM_MODELS`, known here (without torch) so a config naming another one is
refused when it is given."""

LOSS_NAMES = ("mse", "cosine", "infonce", "corpus")
"""The names of `tldrlab.lvm.losses.LVM_LOSSES` (the losses a `loss` spec combines)."""

CHUNKING_METHODS = ("sentence", "semantic")
"""The names of `tldrlab.lvm.chunking.CHUNKERS`, known here (without numpy) so an ingest naming another one is
refused when it is given, before a run exists."""

BASELINE_NAMES = ("copy_last", "mean", "ridge", "mean_ridge", "decay", "decay_top1")
"""The names of `tldrlab.lvm.baselines.BASELINES`, known here (without numpy's fitting code) so an evaluation
naming another one is refused when it is given, before a run exists."""

TMD_FEATURES = 30
"""Input features `tmd_inputs` adds (`tldrlab.lvm.tmd.TMD_DIM`: one-hot task, method and domain labels)."""

_LOSS_TERM = re.compile(r"^(?:(?P<weight>\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?(?P<name>[a-z_]+)$")


def loss_terms(spec: str) -> list[tuple[float, str]]:
    """`cosine+0.3*corpus` -> [(1.0, "cosine"), (0.3, "corpus")]; ValueError for an unknown name or a bad
    weight."""
    terms = []
    for part in (p.strip() for p in spec.split("+")):
        match = _LOSS_TERM.match(part)
        if match is None or match["name"] not in LOSS_NAMES:
            raise ValueError(
                f"bad loss {spec!r}: use {', '.join(LOSS_NAMES)} joined by '+', each optionally weighted "
                "as 0.3*name"
            )
        terms.append((float(match["weight"] or 1.0), match["name"]))
    return terms


class LVMConfig(ConfigModel):
    """Shape of an LVM; one config for every backbone (fields a backbone does not use are ignored)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dim: int = Field(384, ge=1)
    """Concept vector dimension (input and output), e.g. 384 for MiniLM."""
    hidden: int = Field(256, ge=4)
    """Width of the backbone."""
    layers: int = Field(2, ge=1)
    """Stacked recurrent layers / transformer blocks / mamba blocks."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout inside the backbone and before the head."""
    context: int = Field(5, ge=1)
    """Longest context the model reads (sizes the transformer's position table)."""
    heads: int = Field(4, ge=1)
    """Transformer attention heads (must divide `hidden`)."""
    d_state: int = Field(16, ge=1)
    """Mamba: state size per channel."""
    d_conv: int = Field(4, ge=1)
    """Mamba: width of the causal depthwise convolution."""
    expand: int = Field(2, ge=1)
    """Mamba: inner width = expand * hidden."""
    skip: Literal["mean", "last", "learned", "none"] = "mean"
    """What the head's output is added to: the context mean, the last context vector, a learned weighting of
    the context positions (starts as a decaying mean, see `skip_decay`), or nothing."""
    skip_decay: float = Field(1.0, gt=0.0, le=1.0)
    """`skip="learned"`: starting weight of each position relative to the next newer one (1 = the plain mean,
    0.5 = a weight that halves per step back, like the `decay` baseline)."""
    tmd_inputs: bool = False
    """Also read each context concept's one-hot TMD labels (tldrlab.lvm.tmd; 30 more input features)."""
    pretrained: str = "smollm2"
    """Model `pretrained`: the causal LM whose decoder layers are the backbone, as a model reference: the
    bundled `smollm2` (SmolLM2-135M-Instruct), a GGUF file, a model directory, an installed model or a run
    (see tldrlab.models.resolve). Its hidden size replaces `hidden`."""
    pretrained_layers: int | None = Field(None, ge=1)
    """Model `pretrained`: keep only the LM's first K decoder layers (None: all); fewer train faster."""
    adaptation: Literal["frozen", "lora", "full"] = "lora"
    """Model `pretrained`: what of the LM trains: nothing, LoRA adapters, or every kept weight."""
    lora_rank: int = Field(8, ge=1)
    """Model `pretrained`, adaptation `lora`: rank of the adapters."""
    lora_alpha: int = Field(16, ge=1)
    """Model `pretrained`, adaptation `lora`: adapter scaling numerator (scale = alpha / rank)."""


def lvm_parameter_count(backbone: str, config: LVMConfig) -> int | None:
    """Parameters of `tldrlab.lvm.models.LVM(backbone, config)`, from the config alone (tested equal to the
    built model's); None for `pretrained`, whose size is its LM's."""
    hidden, dim = config.hidden, config.dim
    inputs = dim + (TMD_FEATURES if config.tmd_inputs else 0)
    around = inputs * hidden + hidden + hidden * dim + dim  # input projection and head
    around += config.context if config.skip == "learned" else 0
    if backbone in ("lstm", "gru"):
        gates = 4 if backbone == "lstm" else 3
        return around + config.layers * gates * hidden * (2 * hidden + 2)
    if backbone == "transformer":  # pre-norm encoder layers (attention, 4x MLP, 2 norms), positions, norm
        block = 12 * hidden * hidden + 13 * hidden
        return around + config.context * hidden + config.layers * block + 2 * hidden
    if backbone == "mamba":
        inner, rank, state = config.expand * hidden, max(1, math.ceil(hidden / 16)), config.d_state
        block = sum(
            (
                2 * hidden,  # norm
                hidden * 2 * inner + 2 * inner,  # in_proj
                inner * config.d_conv + inner,  # depthwise conv
                inner * (rank + 2 * state),  # x_proj
                rank * inner + inner,  # dt_proj
                inner * state + inner,  # A (as its log) and D
                inner * hidden + hidden,  # out_proj
            )
        )
        return around + config.layers * block + 2 * hidden
    return None


class IngestConfig(ConfigModel):
    """One ingest: which articles, how they become concepts, which embedder, where they are stored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Annotated[str, InputPath()]
    """A file of articles (wikipedia JSON lines, or any format tldrlab.data.readers reads), or a directory of
    such files, none of them a test or validation split (`lvm sequences` splits the articles itself)."""
    format: ReaderFormat = None
    """Reader format; None detects it (wikipedia JSON lines are recognised by their fields)."""
    chunking: Annotated[str, OneOf("chunking", CHUNKING_METHODS)] = "sentence"
    """`sentence` or `semantic` (see tldrlab.lvm.chunking)."""
    max_chars: int = Field(600, ge=20)
    """Semantic chunks stay at most this long."""
    threshold: float = Field(0.55, ge=-1.0, le=1.0)
    """Semantic chunking similarity threshold."""
    embedder: Annotated[str | None, ServerOnly()] = None
    """Embedder name or sentence-transformers path; None uses the `embedder` setting (minilm-onnx)."""
    source: str | None = None
    """Data set source label stored with every concept; None: the reader's source (e.g. wikipedia)."""
    domain: str | None = None
    """Optional domain label stored with every concept (e.g. science, history)."""
    store_url: Annotated[str | None, ServerOnly()] = None
    """Concept store URL; None: PostgreSQL when the database URL is postgres, else SQLite under the home."""
    limit: int | None = Field(None, ge=1)
    """Ingest at most this many articles."""
    batch_size: int = Field(64, ge=1)
    """Texts per embedding batch."""


class LVMIndexConfig(ConfigModel):
    """Kind `lvm_index`: the FAISS concept index built from the concept store."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: str | None = None
    """Only concepts of this source (None: all)."""
    store_url: Annotated[str | None, ServerOnly()] = None
    """Concept store URL; None: the default store (see IngestConfig.store_url)."""
    out: Annotated[str | None, ServerOnly()] = None
    """Index directory; None: <home>/lvm/index (the server's, which decode and generate read)."""
    ivf_threshold: int = Field(default=50_000, ge=1)
    """Use IVF-Flat from this many vectors on (exact search below)."""
    nlist: int | None = Field(default=None, ge=1)
    """IVF lists (None: about 4*sqrt(n))."""
    nprobe: int = Field(default=16, ge=1)
    """IVF lists searched per query."""
    seed: Seed = 0
    """Seed of the IVF k-means."""


class SequencesConfig(ConfigModel):
    """One `tldrlab lvm sequences`: which concepts, how long a context, how articles are split."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    context: int = Field(5, ge=1, le=512)
    """Context concepts per example."""
    seed: Seed = 0
    """Seed of the article-level train/val/test shuffle."""
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction of the training corpus's articles for validation."""
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction of the training corpus's articles for the in-corpus test (0 allowed with `test_source`)."""
    min_context: int = Field(1, ge=1)
    """Shortest context kept (shorter ones are left-padded and masked)."""
    source: str | None = None
    """The training corpus: concepts of this source only; None: every source except `test_source`."""
    test_source: str | None = None
    """Another ingested source whose articles all form the `cross` split (scored, never trained on)."""
    store_url: Annotated[str | None, ServerOnly()] = None
    """Concept store URL; None: the default store (see tldrlab.lvm.store.default_store_url)."""
    out: Annotated[str, OutputPath()]
    """Where the NPZ is written."""


def default_train_config() -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "max_steps": 1500,
            "batch_size": 256,
            "lr": 1e-3,
            "weight_decay": 0.01,
            "warmup_steps": 50,
            "eval_every": 250,
            "checkpoint_every": 250,
            "log_every": 25,
        }
    )


class LVMTrainJobConfig(ConfigModel):
    """Everything one `tldrlab lvm train` run needs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    sequences: Annotated[str, InputPath()]
    """The sequences NPZ written by `tldrlab lvm sequences`."""
    model: Annotated[str, OneOf("LVM", LVM_BACKBONES)] = "gru"
    """Backbone (a model of tldrlab.lvm.models.LVM_MODELS)."""
    model_settings: Annotated[FreeForm, FieldsOf(LVMConfig)] = Field(default_factory=dict)
    """LVMConfig fields (hidden, layers, dropout, skip, ...); dim and context come from the sequences. The
    model may have at most `max_model_parameters` parameters (TLDRLAB_MAX_MODEL_PARAMETERS; counted with the
    settings' dim and context, 384 and 5 unless set, and again with the sequences' own before the run builds
    the model); a pretrained backbone is not bounded."""
    loss: str = "cosine+infonce"
    """mse, cosine, infonce, corpus or a weighted `+` combination such as `cosine+0.3*corpus`
    (see tldrlab.lvm.losses)."""
    temperature: float = Field(0.05, gt=0)
    """Temperature of the contrastive losses (infonce, corpus)."""
    group: int = Field(1, ge=1)
    """Consecutive windows of one article per dataset item (a batch holds batch_size items). With 8, the
    in-batch InfoNCE negatives include the article's neighbouring concepts, the hard negatives retrieval
    meets; 1 draws independent windows."""
    max_val_examples: int = Field(4000, ge=1)
    """Cap on validation examples scored at each evaluation."""
    train: TrainConfig = Field(default_factory=default_train_config)
    """The loop settings."""

    @field_validator("model_settings")
    @classmethod
    def known_model_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Checked against LVMConfig here, so a typo fails when the config is given, not mid-run. The
        free-form mapping is walked for booleans first: LVMConfig's lax validation built `layers: true` as
        one layer, past the walk `kinds.validate_model` makes of the typed fields."""
        if booleans := list(booleans_for_numbers(LVMConfig, settings)):
            raise field_errors(cls.__name__, [(tuple(p["loc"]), p["msg"]) for p in booleans])
        try:
            LVMConfig.model_validate(settings)
        except ValidationError as exc:
            # moved under the field, so each error names its path (`model_settings.hidden`) as a training's
            raise nested_errors(cls.__name__, (), exc) from None
        return settings

    @field_validator("loss")
    @classmethod
    def _known_losses(cls, loss: str) -> str:
        loss_terms(loss)
        return loss

    @model_validator(mode="after")
    def _model_fits(self) -> LVMTrainJobConfig:
        """A transformer's heads divide its width, and the model fits the parameter budget."""
        settings = LVMConfig.model_validate(self.model_settings)
        title = type(self).__name__
        if (metric := self.train.best_metric) not in EVAL_METRICS:
            # a typo (`val_cosin`) was found at the first evaluation: the run failed after its first steps
            message = unknown_choice("LVM evaluation metric", metric, EVAL_METRICS)
            raise field_error(title, ("train", "best_metric"), message)
        if self.model == "transformer" and settings.hidden % settings.heads:
            message = f"hidden ({settings.hidden}) must be divisible by heads ({settings.heads})"
            raise field_error(title, ("model_settings", "heads"), message)
        within_budget(lvm_parameter_count(self.model, settings), loc=("model_settings",), title=title)
        return self


class LVMEvaluateConfig(ConfigModel):
    """Kind `lvm_evaluate`: trained LVMs beside the baselines (MSE, cosine, top-1 / top-5 retrieval)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    runs: list[Annotated[str, InputPath()]] = Field(default_factory=list)
    """lvm_train run ids, run directories or model directories (empty: baselines only)."""
    sequences: Annotated[str | None, InputPath()] = None
    """Sequences NPZ; None: the first run's, else <home>/lvm/sequences.npz."""
    split: MeasuredSplit = "val"
    """Split to score: `val` (validation, where results are measured and compared), or, only when named,
    `test` (the in-corpus test) or `cross` (the unseen corpus of `lvm sequences --test-source`)."""
    baselines: Annotated[list[str] | None, OneOf("baseline", BASELINE_NAMES)] = None
    """Baselines to score (None: every one of tldrlab.lvm.baselines.BASELINES)."""
    out: Annotated[str | None, OutputPath()] = None
    """Also copy the evaluation files (md, json, png) into this directory (they are always in the run)."""


class LVMGenerateConfig(ConfigModel):
    """Kind `lvm_generate`: how well a trained LVM writes the next sentence (raw, smoothed, copy-last)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    run: Annotated[str, InputPath()]
    """The trained LVM: an lvm_train run id, run directory or model directory."""
    sequences: Annotated[str | None, InputPath()] = None
    """Sequences NPZ whose windows are scored; None: the run's."""
    split: MeasuredSplit = "val"
    """The split whose windows are scored: `val` (validation), or, only when named, `test` or `cross` (the
    unseen corpus), as `lvm_evaluate`."""
    windows: int = Field(100, ge=1, le=100_000)
    """How many windows (drawn without replacement, seeded)."""
    seed: Seed = 0
    """Seed of the window sample."""
    k: int = Field(3, ge=1, le=50)
    """Nearest stored concepts per prediction (the smoother reads them all)."""
    smooth: bool = True
    """Also smooth the decoded concepts into one sentence with the local LM."""
    lm: Annotated[str, ModelRef()] = "smollm2"
    """The smoothing LM (a model reference)."""
    store_url: Annotated[str | None, ServerOnly()] = None
    """Concept store URL (the texts); None: the default store."""
