"""Typed configuration of the training loop (`TrainConfig`) and of a whole training job (`TrainJobConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tldrlab.budget import field_error, field_errors, nested_errors, within_budget
from tldrlab.choices import OneOf, choose_one_of
from tldrlab.configmodel import ConfigModel
from tldrlab.data.formats import ReaderFormat
from tldrlab.data.readers import split_files
from tldrlab.data.splits import detect_splits
from tldrlab.errors import InvalidConfigError, InvalidInputError, listed_problems, refused_at
from tldrlab.evaluate.config import FinalEvalConfig, generated_metric_names
from tldrlab.freeform import FreeForm
from tldrlab.metric_direction import direction
from tldrlab.numbers import booleans_for_numbers
from tldrlab.runs.paths import InputPath, Seed, SettingsOf, SplitOf, WandbMode
from tldrlab.targets import load_target
from tldrlab.tokenizers.config import (
    MAX_VOCAB_SIZE,
    TokenizerMethod,
    fitting_vocabulary,
    resolve_tokenizer_dir,
)


class SmokeConfig(ConfigModel):
    """Kind `smoke`: a tiny linear model fitted on synthetic data by the real training loop."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = Field(default=30, ge=1, le=100_000)
    """Optimisation steps."""
    checkpoint_every: int = Field(default=5, ge=1)
    """Write a checkpoint every this many steps (and at the end)."""
    step_sleep_s: float = Field(default=0.0, ge=0.0, le=10.0)
    """Extra time per step, so that a test or a demo can interrupt a run mid-way."""
    features: int = Field(default=16, ge=1, le=4096)
    """Input width of the linear model."""
    batch_size: int = Field(default=32, ge=1, le=4096)
    """Examples per step."""
    lr: float = Field(default=0.05, gt=0.0)
    """Learning rate (AdamW, constant)."""
    seed: Seed = 0
    """Seeds the true weights, the data, the initial weights and the batch order."""
    wandb: WandbMode = "disabled"
    """Weights & Biases mode of the check (disabled by default: a deployment check should not need W&B);
    None: $TLDRLAB_WANDB_MODE, else $WANDB_MODE, else the `wandb_mode` setting."""


def better_mode(metric: str) -> Literal["min", "max"]:
    """Whether a lower (`min`) or a higher (`max`) value of the evaluation metric `metric` is better, from
    its name (`tldrlab.metric_direction`, the table `runs compare` judges regressions by); `min` for a name
    it does not know, the loop's historical default."""
    return "max" if direction(metric) == "higher" else "min"


MAX_STEPS = 100_000_000
"""The most optimizer steps a loop may be given (`TrainConfig.max_steps`)."""


class TrainConfig(ConfigModel):
    """How the loop trains: steps, batches, optimizer, schedule, precision, evaluation and checkpoints."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_steps: int = Field(default=1000, ge=1, le=MAX_STEPS)
    """Number of optimizer steps (each one is `grad_accum_steps` micro-batches)."""

    batch_size: int = Field(default=16, ge=1, le=65_536)
    """Examples per micro-batch on each process."""

    grad_accum_steps: int = Field(default=1, ge=1, le=65_536)
    """Micro-batches whose gradients are summed before one optimizer step."""

    lr: float = Field(default=3e-4, gt=0)
    """Peak learning rate (reached at the end of warm-up)."""

    weight_decay: float = Field(default=0.01, ge=0)
    """AdamW weight decay, applied to weight matrices only (not biases or norms)."""

    warmup_steps: int = Field(default=0, ge=0)
    """Steps of linear warm-up from 0 to `lr`."""

    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up: cosine or linear to `min_lr_ratio * lr` at `max_steps`, or constant."""

    min_lr_ratio: float = Field(default=0.0, ge=0, le=1)
    """Floor of the decayed learning rate, as a fraction of `lr`."""

    max_grad_norm: float | None = Field(default=1.0, gt=0)
    """Clip the global gradient norm to this value (None: no clipping)."""

    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    """auto: fp16 on CUDA, fp32 on CPU. fp16 uses loss scaling; bf16 does not need it."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when available, else CPU."""

    eval_every: int = Field(default=100, ge=0)
    """Evaluate every N steps (and at the end); 0 evaluates only at the end."""

    checkpoint_every: int = Field(default=100, ge=0)
    """Write a resumable checkpoint every N steps (and at the end); 0 only at the end."""

    keep_checkpoints: int = Field(default=2, ge=1)
    """How many periodic checkpoints to keep (the best one is kept apart)."""

    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop after this many evaluations without improvement of `best_metric` (None: never)."""

    best_metric: str = "eval_loss"
    """The evaluation metric that picks the best checkpoint and drives early stopping (a seq2seq generation
    metric such as eval_rouge1 is judged at the `generate_every`-th evaluations only)."""

    best_mode: Literal["min", "max"] = "min"
    """Whether a lower (`min`) or higher (`max`) `best_metric` is better. When not given it follows the
    metric's name (`better_mode`): `max` for ROUGE, BERTScore, cosine, top-k, accuracy, F1 and the like,
    `min` for losses, perplexity, MSE and any other name."""

    max_minutes: float | None = Field(default=None, gt=0)
    """Wall-time budget: after this many minutes of this call's training, end as if max_steps were reached
    (final evaluation, checkpoint, model). The step it stops at depends on the machine's speed."""

    seed: Seed = 0
    """Seeds weights' initialisation by the caller, the data order and every random number of the loop."""

    log_every: int = Field(default=10, ge=1)
    """Write train loss / lr / throughput to metrics.jsonl every N steps."""

    save_best: bool = True
    """Keep a copy of the model weights of the best evaluation under checkpoints/best."""

    plot: bool = True
    """Draw PNG curves (loss, eval metrics, lr) into the run directory at the end, and at evaluations at most
    once a minute while training."""

    progress: bool = True
    """Show a progress bar (steps/s, tokens/s, loss, ETA) on the console; off hides the final evaluation's
    bar too."""

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if "best_mode" not in self.model_fields_set:
            # `best_metric: val_cosine` alone kept the checkpoint of the *lowest* cosine (mode min). Set
            # without marking the field as given: a kind's default section (LVM's) merged under a config
            # that names another metric must not carry the mode of its own metric along
            self.__dict__["best_mode"] = better_mode(self.best_metric)
        if self.warmup_steps > self.max_steps:
            # named as the field to change: a kind's own default warm-up (LVM's 50 steps) applies to a `train`
            # section that gives only max_steps, as on every launch path (command line, API, sweep trials)
            message = (
                f"{self.warmup_steps} warm-up steps exceed max_steps ({self.max_steps}): set warmup_steps to "
                "at most max_steps (when not given it is the run kind's default)"
            )
            raise field_error("TrainConfig", ("warmup_steps",), message)
        return self


class DataConfig(ConfigModel):
    """Where the training text comes from and how it is split and cut."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Annotated[str, InputPath()]
    """A file or directory readable by tldrlab.data.readers (pairs, scitldr, debian, text, ...)."""

    format: ReaderFormat = None
    """Reader format; None detects it from the path."""

    train_split: Annotated[str | None, SplitOf("path")] = None
    """Split name for training when the data has its own splits (e.g. train); None: `train` for a directory
    whose file names hold splits (its train file, else its files named for no split: a test or validation
    file is never trained on), else all of the data."""

    val_split: Annotated[str | None, SplitOf("path")] = None
    """Split name for validation (e.g. validation, dev); None carves a seeded `val_fraction` off."""

    val_fraction: float = Field(default=0.05, gt=0, lt=1)
    """Fraction held out for validation when the data has no validation split."""

    limit: int | None = Field(default=None, ge=1)
    """Read at most this many records (quick experiments)."""

    max_val_examples: int = Field(default=200, ge=1)
    """Cap on validation examples (or blocks) used by each evaluation."""

    prefix: str = "summarize: "
    """Seq2seq: text put before every source document."""

    max_source_len: int = Field(default=256, ge=4)
    """Seq2seq: source tokens kept (longer documents are truncated)."""

    max_target_len: int = Field(default=64, ge=2)
    """Seq2seq: target tokens kept."""

    block_size: int = Field(default=128, ge=2)
    """Causal LM: tokens per training block (contiguous text, no padding)."""

    generate_every: int = Field(default=0, ge=0)
    """Seq2seq: also generate and score ROUGE (and BERTScore if `bertscore`) at every Nth eval; 0 never."""

    generate_examples: int = Field(default=16, ge=1)
    """Seq2seq: validation examples generated for ROUGE / BERTScore / the predictions table."""

    bertscore: bool = False
    """Seq2seq: add BERTScore (offline MiniLM) to the generated-sample metrics."""


class TokenizerChoice(ConfigModel):
    """Use an existing tokenizer directory, or train one on the training text first (what to train is a
    `tldrlab.tokenizers.config.TokenizerConfig`: `method` and `vocab_size` here, its defaults otherwise)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Annotated[str | None, InputPath()] = None
    """A trained tokenizer directory (tldrlab tokenizer train) or model directory; None trains one."""

    method: TokenizerMethod = "bpe"
    """Tokenizer method when training one. A training that sets none of path, method and vocab_size trains
    its model family's tokenizer instead of these defaults: char_lstm char (vocab 100), the others bpe."""

    vocab_size: int = Field(default=8000, ge=16, le=MAX_VOCAB_SIZE)
    """Vocabulary size when training one (at least what the method needs: bpe 260, char 5, sentencepiece
    260 plus one per distinct character of the corpus, so 261 is only its floor); char_lstm's default 100
    when neither it nor the method is set."""

    @field_validator("vocab_size")
    @classmethod
    def _fitting_vocabulary(cls, vocab_size: int, info: ValidationInfo) -> int:
        # only a tokenizer trained here must fit the method; a given directory brings its own vocabulary
        return vocab_size if info.data.get("path") else fitting_vocabulary(vocab_size, info)


LOSS_METRICS = ("eval_loss", "eval_perplexity")
"""What every evaluation of a training task computes (`evaluate` of the seq2seq, causal-LM and chat tasks)."""


def computed_metrics(task: str, data: DataConfig) -> tuple[str, ...]:
    """The metrics the evaluations of a training of task `task` (a model family's: seq2seq, causal_lm, chat)
    compute with these data settings: the loss metrics always; seq2seq and chat add the generated-summary
    metrics (ROUGE, seq2seq's empty-prediction count, BERTScore with `bertscore`) at every
    `generate_every`-th evaluation; a causal LM on plain text generates nothing."""
    if task == "causal_lm" or data.generate_every == 0:
        return LOSS_METRICS
    generated = generated_metric_names(bertscore=data.bertscore, empty_predictions=task == "seq2seq")
    return (*LOSS_METRICS, *sorted(generated))


MODEL_FAMILIES = "tldrlab.models.registry:MODELS"
"""The model families a training builds. Named, not imported: the registry sits in a layer above the configs
(it holds the builders); importing it loads no torch, so validating against it stays cheap."""


def model_families() -> dict[str, Any]:
    """The registry `MODEL_FAMILIES` names: family name -> ModelFamily."""
    families: dict[str, Any] = load_target(MODEL_FAMILIES)
    return families


class TrainJobConfig(ConfigModel):
    """Everything one `tldrlab train` run needs: the model, its data and tokenizer, and the loop settings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    model: Annotated[str, OneOf("model", model_families)] = "t5"
    """Model family (tldrlab.models.MODELS)."""

    model_settings: Annotated[FreeForm, SettingsOf("model", MODEL_FAMILIES)] = Field(default_factory=dict)
    """Model family config (sizes, dropout, ...) or `{"from_pretrained": PATH}`. A model built from these
    settings may have at most `max_model_parameters` parameters (TLDRLAB_MAX_MODEL_PARAMETERS, 1e9; counted
    with `tokenizer.vocab_size` tokens, and again with the tokenizer's own size before the run builds the
    model); a pretrained one is not bounded."""

    data: DataConfig
    """Training and validation data."""

    tokenizer: TokenizerChoice = Field(default_factory=TokenizerChoice)
    """Tokenizer to use or to train. A pretrained model (causal_lm; t5 or gpt2 `from_pretrained`) brings the
    tokenizer its weights were trained with, used unless `tokenizer.path` names one (`method` and
    `vocab_size` then train nothing)."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    """The loop settings."""

    wandb: WandbMode = None
    """Weights & Biases mode;
    None: $TLDRLAB_WANDB_MODE, else $WANDB_MODE, else the `wandb_mode` setting (offline by default)."""

    final_eval: FinalEvalConfig = Field(default_factory=FinalEvalConfig)
    """The evaluation run when training ends (small by default; `enabled: false` skips it)."""

    @model_validator(mode="before")
    @classmethod
    def _family_tokenizer(cls, data: Any) -> Any:
        """A config that names no tokenizer (no path, method or vocab_size) gets its model family's
        (`tokenizer_defaults`: char_lstm trained a generic 8000-token BPE vocabulary). Filled in before
        validation, so the config recorded in the manifest (what `--resume` and API runs read) names what was
        trained; whatever the user set, on the command line or in a config file, is kept as given."""
        if not isinstance(data, dict):
            return data
        name = data.get("model", cls.model_fields["model"].default)
        family = model_families().get(name) if isinstance(name, str) else None  # unknown: `model` says so
        defaults = getattr(family, "tokenizer_defaults", None)
        given = data.get("tokenizer")
        if not defaults:
            return data
        if isinstance(given, TokenizerChoice):
            given = given.model_dump(include=given.model_fields_set)
        if given is None:
            given = {}
        if not isinstance(given, dict) or {"path", "method", "vocab_size"} & given.keys():
            return data  # chosen by the user (or not a mapping at all: its own validation refuses it)
        return {**data, "tokenizer": {**given, **defaults}}

    @model_validator(mode="after")
    def _model_fits(self) -> TrainJobConfig:
        """The model family's settings are valid for it and the model fits the parameter budget (the family
        is known: `model`'s own check): facts about the config alone, so `POST /runs` refuses them (422 naming
        the field) like the CLI."""
        family = model_families()[self.model]
        # the family's class validates a free-form mapping here, past kinds.validate_model's walk, so it is
        # walked too: pydantic's lax mode would build `"num_layers": true` as one layer
        booleans = list(booleans_for_numbers(family.config_cls, self.model_settings, ("model_settings",)))
        if booleans:
            raise field_errors(type(self).__name__, [(tuple(p["loc"]), p["msg"]) for p in booleans])
        fields = family.config_cls.model_fields
        if "size" in self.model_settings and "size" not in fields:
            # `--model char_lstm --model-size tiny` answered "model_settings.size: Extra inputs are not
            # permitted", which says neither that the family has no sizes nor what it takes instead
            sized = [
                name for name, other in model_families().items() if "size" in other.config_cls.model_fields
            ]
            raise field_error(
                type(self).__name__,
                ("model_settings", "size"),
                f"a {self.model} model has no named sizes (those of {' and '.join(sized)} do): give its own "
                f"settings instead ({', '.join(fields)})",
            )
        try:
            family.config_cls.model_validate(self.model_settings)
        except ValidationError as exc:
            raise nested_errors(type(self).__name__, ("model_settings",), exc) from None
        # a tokenizer directory's own size is known only when the run starts (which counts again with it,
        # `tldrlab.train.jobs.check_budget_as_read`): the configured one is counted here
        count = self.parameter_count(self.tokenizer.vocab_size)
        within_budget(count, loc=("model_settings",), title=type(self).__name__)
        return self

    def parameter_count(self, vocab_size: int) -> int | None:
        """Parameters of the model these settings build over a tokenizer of `vocab_size` tokens, from the
        dimensions alone (the family's `parameter_count`); None when the settings do not decide it (a
        pretrained checkpoint)."""
        family = model_families()[self.model]
        if family.parameter_count is None:
            return None
        count: int | None = family.parameter_count(
            family.config_cls.model_validate(self.model_settings), vocab_size
        )
        return count

    def trains_tokenizer(self) -> bool:
        """Whether the job trains its tokenizer: not when it names one (`tokenizer.path`), nor when its model
        brings its own (a pretrained model's)."""
        if self.tokenizer.path:
            return False
        family = model_families()[self.model]
        if family.tokenizer is None:
            return True
        settings = family.config_cls.model_validate(self.model_settings)
        return family.brings_tokenizer is not None and not family.brings_tokenizer(settings)

    @model_validator(mode="after")
    def _best_metric_is_computed(self) -> TrainJobConfig:
        """`train.best_metric` is a metric the evaluations compute (`computed_metrics`). Otherwise the run
        was accepted (202 over the API), trained up to its first evaluation and failed there ('not among the
        evaluation metrics')."""
        family = model_families()[self.model]
        metric, computed = self.train.best_metric, computed_metrics(family.task, self.data)
        if metric in computed:
            return self
        choices = choose_one_of(computed)
        if family.task == "seq2seq" or (family.task == "chat" and metric != "eval_empty_predictions"):
            # a metric of generated summaries the settings do not generate: name the settings that would
            needs = [] if self.data.generate_every else ["data.generate_every above 0"]
            if metric.startswith("eval_bertscore_") and not self.data.bertscore:
                needs.append("data.bertscore true")
            if metric in generated_metric_names(bertscore=True) and needs:
                message = (
                    f"{metric} is computed from generated summaries: set {' and '.join(needs)}, or {choices}"
                )
                raise field_error(type(self).__name__, ("train", "best_metric"), message)
        message = f"{metric} is not computed by the evaluations of a {self.model} ({family.task}) training"
        message = f"{message}; {choices}"
        raise field_error(type(self).__name__, ("train", "best_metric"), message)


def check_train_data(job: TrainJobConfig) -> None:
    """Kind `train`'s check before a run is created (command line and API alike): the data is here, holds
    data files and has the splits the config names (a split it does not have fails here, not in a run it
    would leave failed), a tokenizer the config names is one, and the model family's own check of what its
    settings name passes."""
    with refused_at(("data", "path")):
        if not Path(job.data.path).exists():
            raise InvalidInputError(f"data not found: {job.data.path}")
        # the splits the run will read (those a directory's file names give when the config names none): a
        # directory of test and dev files only has no training split, refused here rather than in the run
        splits = detect_splits(job.data.path, job.data.train_split, job.data.val_split)
        named: list[str | None] = [split for split in splits if split]
        # no split named: the run reads the whole path, which must hold data (an empty directory was
        # accepted)
        for split in named or [None]:
            # records: a forum dump (threads) was refused by the run's read, which stayed behind failed
            split_files(job.data.path, job.data.format, split, kind="records")
    if job.tokenizer.path:
        # a mistyped `--tokenizer`, an empty directory or a file of another kind was found out by the run,
        # which stayed behind failed; over the API (where confinement had found the path) it was queued to
        # fail so. Resolved as the run resolves it: file names and the registry, nothing loaded
        with refused_at(("tokenizer", "path")):
            resolve_tokenizer_dir(job.tokenizer.path)
    family = model_families()[job.model]
    if family.check is None:
        return
    try:  # what the settings name (a t5 `from_pretrained` of a char_lstm run)
        family.check(family.config_cls.model_validate(job.model_settings))
    except InvalidConfigError as exc:  # a field of the settings: named from the job's top, as validation does
        errors = [{**e, "loc": ["model_settings", *e["loc"]]} for e in exc.details.get("errors") or []]
        if not errors:
            raise
        raise InvalidConfigError(listed_problems(exc, prefix=("model_settings",)), errors=errors) from None


def record_splits(job: TrainJobConfig) -> TrainJobConfig:
    """The job with the splits found in its data written in, so a later `evaluate` run evaluates on the same
    validation split (run before the run is created: the CLI's launch and the API's submit)."""
    train_split, val_split = detect_splits(job.data.path, job.data.train_split, job.data.val_split)
    data = job.data.model_copy(update={"train_split": train_split, "val_split": val_split})
    return job.model_copy(update={"data": data})
