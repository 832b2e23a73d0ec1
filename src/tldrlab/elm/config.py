"""Typed configs of the ELM run kinds (no torch here: the API validates with them).

- `ElmModelConfig` (adapter shape, LM), `LossConfig` (loss weights), `ElmTrainConfig`: kind `elm_train`.
- `ElmPrepareConfig`, `ElmEvaluateConfig`, `ElmOptimizeConfig`: kinds `elm_prepare`, `elm_evaluate`,
  `elm_optimize`.
- `ElmGenerateOptions`, `ElmT5CompareConfig`: what `tldrlab elm generate` and `tldrlab elm compare` do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from tldrlab.budget import Loc, field_error, field_errors, nested_errors, within_budget
from tldrlab.configmodel import ConfigModel
from tldrlab.data.formats import ReaderFormat
from tldrlab.errors import error_message
from tldrlab.freeform import FreeForm
from tldrlab.numbers import booleans_for_numbers
from tldrlab.runs.paths import InputPath, ModelRef, OutputPath, Seed, ServerOnly, WandbMode
from tldrlab.targets import load_target
from tldrlab.tokenizers.config import MIN_VOCAB_SIZES
from tldrlab.train.config import MODEL_FAMILIES, TrainConfig, TrainJobConfig

DEFAULT_TEMPLATE = "Summarize the following text:\n\n{text}\n\nSummary:"
"""The default summary prompt; `{text}` is where the adapter's soft prefix goes."""


class ElmModelConfig(ConfigModel):
    """The adapter's shape and which LM it feeds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lm: Annotated[str, ModelRef(keep=("scratch",))] = "scratch"
    """`scratch` (a tldrlab GPT-2 trained from scratch), a tldrlab model directory or run, or any Hugging
    Face causal LM name or path (offline: a local directory)."""

    lm_size: str = "tiny"
    """Named GPT-2 size when lm=scratch: tiny, mini, small, base."""

    lm_settings: FreeForm = Field(default_factory=dict)
    """Extra tldrlab GPT-2 settings when lm=scratch (n_layer, dropout, n_positions, ...)."""

    freeze_lm: bool = False
    """Train only the adapter and heads (the LM's weights stay as loaded)."""

    lora_rank: int | None = Field(default=None, ge=1, le=1024)
    """With freeze_lm: also train LoRA adapters of this rank on the LM's attention and MLP projections (peft;
    every linear layer of its decoder layers, as its architecture names them: q/k/v/o and gate/up/down on a
    Llama, c_attn, c_proj and c_fc on a GPT-2, q/k/v_proj, out_proj, fc1 and fc2 on an OPT, ...; the LM's own
    weights stay frozen and are not copied into a saved ELM; the LoRA weights are saved with the adapter).
    None: no LoRA."""

    lora_alpha: int = Field(default=16, ge=1)
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""

    embedding_dim: int = Field(default=384, gt=0)
    """Dimension of the document embeddings (384 for MiniLM); set from the data."""

    num_prefix_tokens: int = Field(default=8, ge=1, le=256)
    """N: soft prefix vectors the adapter produces per document."""

    hidden_dim: int = Field(default=512, ge=1)
    """Hidden width of the adapter MLP (usually 2048-6144 for a 2560-d embedder feeding a 4B LM)."""

    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout inside the adapter MLP (BO range 0.0-0.3)."""

    residual_scale: float = Field(default=0.1, ge=0.0)
    """Scale of the MLP branch added to the direct linear projection (BO range 0.05-0.5)."""

    gradient_checkpointing: bool = False
    """Recompute the LM's activations in the backward pass (less memory, ~30% slower)."""

    @model_validator(mode="after")
    def _lora_on_a_frozen_pretrained_lm(self) -> ElmModelConfig:
        if self.lora_rank is not None and (not self.freeze_lm or self.lm == "scratch"):
            message = (
                "LoRA trains adapters on a frozen pretrained LM: set freeze_lm and an lm other than scratch"
            )
            raise field_error(type(self).__name__, ("lora_rank",), message)
        return self


def adapter_parameter_count(config: ElmModelConfig, width: int) -> int:
    """Parameters of the ELM's adapter (direct projection + MLP) and drift head on an LM `width` wide, from
    the config alone (`tldrlab.elm.model.ElmModel`; tested equal to the built model's)."""
    prefix = config.num_prefix_tokens * width
    direct = config.embedding_dim * prefix + prefix
    mlp = config.embedding_dim * config.hidden_dim + config.hidden_dim + config.hidden_dim * prefix + prefix
    drift_head = width * config.embedding_dim + config.embedding_dim
    return direct + mlp + drift_head


def scratch_parameter_count(model: ElmModelConfig, vocab_size: int) -> int | None:
    """Parameters of the ELM `model` builds with lm=scratch over a tokenizer of `vocab_size` tokens, from the
    dimensions alone: its GPT-2 (the family's `parameter_count`) and its adapter (`adapter_parameter_count`).
    None when the settings do not decide it: another LM, or lm_settings.from_pretrained (a checkpoint's)."""
    if model.lm != "scratch":
        return None
    gpt2 = load_target(MODEL_FAMILIES)["gpt2"]
    lm = gpt2.config_cls.model_validate({"size": model.lm_size, **model.lm_settings})
    count: int | None = gpt2.parameter_count(lm, vocab_size)
    if count is None:
        return None
    return count + adapter_parameter_count(model, lm.dims()["n_embd"])


class LossConfig(ConfigModel):
    """Which losses are on and how much each counts."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lm_weight: float = Field(default=1.0, ge=0)
    """Weight of the LM cross-entropy on the target tokens."""

    use_text_drift_loss: bool = True
    """Add the text drift loss (summary representation should stay close to the document embedding)."""

    text_drift_weight: float = Field(default=0.03, ge=0)
    """Weight of the drift loss (seed default 0.03; BO range 0.01-0.1)."""

    text_drift_target_similarity: float = Field(default=0.75, ge=-1, le=1)
    """Cosine similarity below which the drift loss penalises (seed default 0.75; BO range 0.7-0.9)."""

    use_contrastive_loss: bool = True
    """Add the in-batch InfoNCE loss between summary representations and document embeddings."""

    contrastive_weight: float = Field(default=0.01, ge=0)
    """Weight of the contrastive loss (BO range 0.0-0.1)."""

    contrastive_temperature: float = Field(default=0.07, gt=0)
    """Softmax temperature of the contrastive logits."""


ELM_LOSS_METRICS = ("eval_loss", "eval_perplexity", "eval_drift_similarity")
"""What every ELM evaluation computes, generated summaries or not (`tldrlab.elm.task.ElmTask.evaluate`)."""


def _default_train() -> TrainConfig:
    # best_mode is left to follow the metric (max for bertscore_f1): given here, it was merged under a
    # config's own `best_metric: eval_loss`, and the run kept its checkpoint of the highest loss
    return TrainConfig(batch_size=8, lr=1e-3, best_metric="bertscore_f1", early_stopping_patience=2)


LOOP_FIELDS = (("max_steps", "max_steps"), ("eval_every", "eval_interval"))
"""The loop's own fields (`train.max_steps`) and the ElmTrainConfig fields the run takes them from."""


class ElmTrainConfig(ConfigModel):
    """Everything one ELM training run needs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    data: Annotated[str, InputPath()]
    """A directory written by `tldrlab elm prepare` (synthesis/ + embeddings/)."""

    model: ElmModelConfig = Field(default_factory=ElmModelConfig)
    """Adapter shape and LM; embedding_dim is taken from the data. With lm=scratch the LM and the adapter
    together may have at most `max_model_parameters` parameters (TLDRLAB_MAX_MODEL_PARAMETERS; counted with
    `vocab_size` tokens and the configured embedding_dim, and again with the tokenizer's size and the data's
    embedding_dim before the run builds the model); a pretrained LM is not bounded, but the adapter, drift
    head and LoRA adapters on it are (counted with the LM's width as its files give it, and again with the
    loaded LM's and the data's embedding_dim before the run builds the adapter)."""

    loss: LossConfig = Field(default_factory=LossConfig)
    """Loss weights."""

    train: TrainConfig = Field(default_factory=_default_train)
    """Loop settings; max_steps is replaced by `epochs` unless `max_steps` below is set."""

    epochs: float = Field(default=2.0, gt=0)
    """Passes over the training records (2 by default, short enough for quick search trials)."""

    max_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps instead of `epochs` (quick runs)."""

    eval_interval: int | None = Field(default=None, ge=1)
    """Evaluate every N steps; None: 4 times per run (and always at the end)."""

    tokenizer: Annotated[str | None, InputPath()] = None
    """lm=scratch: a trained tokenizer directory; None trains a BPE on the training targets."""

    vocab_size: int = Field(default=4000, ge=MIN_VOCAB_SIZES["bpe"])
    """lm=scratch: vocabulary of the byte-level BPE tokenizer trained when none is given."""

    max_target_len: int = Field(default=48, ge=2)
    """Target tokens kept (with eos) and the most tokens generated."""

    eval_samples: int = Field(default=32, ge=0)
    """Validation documents summarised at each evaluation for BERTScore / ROUGE (0: loss only)."""

    max_val_examples: int = Field(default=256, ge=1)
    """Validation records used for the eval loss."""

    limit: int | None = Field(default=None, ge=1)
    """Train on at most this many records (quick runs)."""

    bertscore_model: Annotated[str | None, InputPath()] = None
    """Local encoder directory for BERTScore; None: the offline MiniLM."""

    use_bertscore: bool = True
    """Compute BERTScore at each evaluation (needed for the default best_metric bertscore_f1)."""

    init_adapter: Annotated[str | None, InputPath()] = None
    """Start from these adapter weights (an adapter.safetensors from a saved ELM) instead of random ones."""

    wandb: WandbMode = None
    """Weights & Biases mode;
    None: $TLDRLAB_WANDB_MODE, else $WANDB_MODE, else the `wandb_mode` setting (offline by default)."""

    @model_validator(mode="after")
    def _loop_length_from_its_own_fields(self) -> ElmTrainConfig:
        """The run sets the loop's length from `max_steps` (else `epochs`) and its evaluation interval from
        `eval_interval`, so a `train.max_steps` / `train.eval_every` given there (--train.max-steps, a config
        file's or a sweep's train section) was silently replaced: the run trained two epochs. Given alone, it
        now sets its top-level counterpart; given with a different one, it is refused.

        Given means set, whatever the value: `--train.max-steps 1000` (the loop's default) was ignored. A
        recorded config (a run's, a sweep's base; what `--resume` and the worker read) sets every field, the
        loop's default included, beside the top-level one that governed (null: `epochs` / 4 evaluations): with
        the top-level field given, the loop's default is not a choice."""
        for name, own in LOOP_FIELDS:
            flag = "--" + own.replace("_", "-")
            value, top = getattr(self.train, name), getattr(self, own)
            is_default = value == TrainConfig.model_fields[name].default
            given = name in self.train.model_fields_set and not (is_default and own in self.model_fields_set)
            if not given or value == top:
                continue
            if top is None and value > 0:
                setattr(self, own, value)
                continue
            takes = f"elm train takes the loop's {name} from {own} ({flag})"
            problem = (
                f"{takes}, which is {top} here: give {own} only"
                if top is not None
                else f"{takes}, at least 1 (None: 4 evaluations a run); 0 is not one"
            )
            raise field_error(type(self).__name__, ("train", name), problem)
        return self

    @model_validator(mode="after")
    def _best_metric_is_computed(self) -> ElmTrainConfig:
        """`train.best_metric` is one the evaluations compute: the loss metrics always, the others (ROUGE,
        length statistics, BERTScore) only from the `eval_samples` generated summaries, BERTScore only with
        `use_bertscore`. Otherwise the run trained up to its first evaluation and failed there
        (`--no-use-bertscore` alone did, the default best_metric being bertscore_f1)."""
        metric, hint = self.train.best_metric, "(e.g. --train.best-metric eval_loss --train.best-mode min)"
        if metric in ELM_LOSS_METRICS:
            return self
        if self.eval_samples == 0:
            raise field_error(
                type(self).__name__,
                ("train", "best_metric"),
                f"{metric} is computed from generated summaries, and eval_samples is 0: generate some or "
                f"choose a loss metric, {', '.join(ELM_LOSS_METRICS)} {hint}",
            )
        if metric.startswith("bertscore") and not self.use_bertscore:
            raise field_error(
                type(self).__name__,
                ("train", "best_metric"),
                f"{metric} needs use_bertscore: keep BERTScore on or choose another best metric {hint}",
            )
        return self

    @model_validator(mode="after")
    def _scratch_lm_fits(self) -> ElmTrainConfig:
        """lm=scratch: the GPT-2 settings are valid and the LM and adapter fit the parameter budget."""
        if self.model.lm != "scratch":
            return self
        title, gpt2 = type(self).__name__, load_target(MODEL_FAMILIES)["gpt2"]
        try:
            gpt2.config_cls.model_validate({"size": self.model.lm_size})
        except ValidationError as exc:
            raise field_error(title, ("model", "lm_size"), error_message(exc.errors()[0])) from None
        # the GPT-2 class validates the free-form mapping here, past kinds.validate_model's walk, so it is
        # walked too: pydantic's lax mode built `n_layer: true` as one layer
        if booleans := list(booleans_for_numbers(gpt2.config_cls, self.model.lm_settings)):
            problems = [(("model", "lm_settings", *p["loc"]), p["msg"]) for p in booleans]
            raise field_errors(title, problems)
        try:
            gpt2.config_cls.model_validate({"size": self.model.lm_size, **self.model.lm_settings})
        except ValidationError as exc:
            raise nested_errors(title, ("model", "lm_settings"), exc) from None
        # the data's embedding_dim and a tokenizer directory's size are known only when the run starts (which
        # counts again with them, `tldrlab.elm.train.check_budget_as_read`): the configured ones are counted
        within_budget(scratch_parameter_count(self.model, self.vocab_size), loc=("model",), title=title)
        return self


class ElmPrepareConfig(ConfigModel):
    """Kind `elm_prepare`: embed the documents of a pair data set and write the ELM layout (or filter an
    existing ELM directory to one task)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data: Annotated[str, InputPath()]
    """Pair data (any records format), or an ELM directory to filter."""
    out: Annotated[str, OutputPath()]
    """Output directory (synthesis/ + embeddings/ + elm_data.json)."""
    format: ReaderFormat = None
    """Reader format of `data`; None detects it."""
    embedder: Annotated[str, ServerOnly()] = "minilm"
    """Embedder: minilm (offline all-MiniLM-L6-v2) or a sentence-transformers path."""
    task: str = "summary"
    """Task type written, or kept when filtering an ELM directory."""
    template: str = DEFAULT_TEMPLATE
    """Prompt template with `{text}`."""

    @field_validator("template")
    @classmethod
    def _template_has_the_text(cls, template: str) -> str:
        # refused once the run had read the data, which stayed a failed run (and a 202 at POST /runs)
        if "{text}" not in template:
            raise ValueError("the prompt template must contain {text} (where the embedding goes)")
        return template

    limit: int | None = Field(default=None, ge=1)
    """Read at most this many training records."""
    eval_limit: int | None = Field(default=None, ge=1)
    """At most this many validation and test records each."""
    val_fraction: float = Field(default=0.05, gt=0, lt=1)
    """Fraction of the (training) records held out for validation when the data has no validation split."""
    test_fraction: float = Field(default=0.05, gt=0, lt=1)
    """Fraction of the (training) records held out for test when the data has neither a test split nor a
    validation split (whose second half is then the test)."""
    seed: Seed = 0
    """Seed of the validation / test split."""
    progress: bool = True
    """Show progress bars on the console."""
    overwrite: bool = False
    """Replace the prepared layout `out` already holds (synthesis/, embeddings/, elm_data.json); without it
    such an `out` is refused before the run starts."""


class ElmEvaluateConfig(ConfigModel):
    """Kind `elm_evaluate`: BERTScore P/R/F1 + composite, ROUGE and length statistics of predictions."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    predictions: Annotated[str, InputPath()]
    """JSON lines with `prediction` (and `reference` or `target_text`)."""
    references: Annotated[str | None, InputPath()] = None
    """Separate references (e.g. a test_synthesis.jsonl), row-aligned with the predictions."""
    bertscore_model: Annotated[str | None, InputPath()] = None
    """Local encoder directory for BERTScore; None: the offline MiniLM."""
    num_layers: int | None = Field(default=None, ge=1)
    """Encoder layer whose embeddings BERTScore compares (None: the model's default)."""
    output: Annotated[str | None, OutputPath()] = None
    """Also write the metrics as JSON to this file (they are always in the run)."""


class ElmGenerateOptions(ConfigModel):
    """What `tldrlab elm generate` summarises with a saved ELM, and how: exactly one source of documents (a
    prepared split, a synthesis file of that layout, or raw texts)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str
    """A saved ELM directory or an elm_train run id."""
    data: str | None = None
    """An ELM data directory (with `split`)."""
    split: Literal["train", "val", "test"] = "test"
    """The split of `data` to summarise: train, val or test."""
    input: str | None = None
    """A <split>_synthesis.jsonl in an ELM layout."""
    text: list[str] = Field(default_factory=list)
    """Raw documents to summarise (embedded here)."""

    @field_validator("text")
    @classmethod
    def _documents_have_text(cls, texts: list[str]) -> list[str]:
        # a blank document was embedded and "summarised" like any other: a summary of nothing
        if blank := [str(i + 1) for i, text in enumerate(texts) if not text.strip()]:
            raise ValueError(f"document {', '.join(blank)} of --text is blank: give each document's text")
        return texts

    output: str | None = None
    """Write the prediction rows (JSON lines) here."""
    limit: int | None = Field(default=None, ge=1)
    """At most this many records."""
    max_new_tokens: int = Field(default=48, ge=1)
    """Longest summary, in tokens."""
    temperature: float = Field(default=0.0, ge=0)
    """Sampling temperature; 0: greedy."""
    seed: Seed = 0
    """Seed of the sampling."""


COMPARE_VOCAB_SIZE = 4000
"""The BPE vocabulary of both models `elm compare` trains (the ELM's GPT-2 and the T5)."""

COMPARE_PREFIX_TOKENS = 8
"""The soft prefix vectors per document of the ELM `elm compare` trains."""

COMPARE_BATCH_SIZE = 16
"""The batch size of both models `elm compare` trains (one setting for both, as their budget is)."""


class ElmT5CompareConfig(ConfigModel):
    """What `tldrlab elm compare` trains and scores: the ELM adapter vs a from-scratch T5 under the same CPU
    budget, on the same test documents."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data: str
    """Pair data, e.g. ../shared/data/debian_descriptions."""
    out: str = "elm_compare"
    """Output directory (data, table, plot, samples). The data prepared there is reused by a later compare
    with the same data, limit, eval_limit and seed; one with others is refused."""
    minutes: float = Field(default=10.0, gt=0)
    """Training wall-time budget of each model."""
    limit: int | None = Field(default=4000, ge=COMPARE_BATCH_SIZE)
    """Training records read: at least one batch (both models train with batch size 16)."""
    eval_limit: int = Field(default=200, ge=1)
    """Validation and test documents each."""
    lm_size: str = "tiny"
    """The ELM's GPT-2 size."""
    hidden_dim: int = Field(default=256, ge=1)
    """The ELM adapter's MLP width."""
    t5_size: str = "tiny"
    """The T5's size."""
    eval_every: int = Field(default=200, ge=1)
    """Validation loss every N steps."""
    threads: int = Field(default=1, ge=0)
    """torch CPU threads for both models (0: torch's default)."""
    seed: Seed = 0
    """Seed of the data split and both models' initialisation."""

    def prepared_data(self) -> Path:
        """Where the documents are embedded into the ELM layout (reused when it already holds one prepared
        with the same data, limits and seed: `compare.check_reusable`)."""
        return Path(self.out) / "elm_data"

    def elm_train_config(self) -> dict[str, Any]:
        """The `elm_train` config of the ELM it trains: an adapter on a GPT-2 `lm_size` from scratch, with
        a BPE of COMPARE_VOCAB_SIZE tokens trained on the prepared training targets."""
        return {
            "data": str(self.prepared_data()),
            "model": {"lm": "scratch", "lm_size": self.lm_size, "hidden_dim": self.hidden_dim,
                      "num_prefix_tokens": COMPARE_PREFIX_TOKENS},
            "vocab_size": COMPARE_VOCAB_SIZE,
            "max_steps": 1_000_000,
            "eval_interval": self.eval_every,
            "eval_samples": 0,
            "use_bertscore": False,
            "train": {
                "batch_size": COMPARE_BATCH_SIZE, "lr": 1e-3, "warmup_steps": 50, "lr_schedule": "constant",
                "best_metric": "eval_loss", "best_mode": "min", "early_stopping_patience": None,
                "max_minutes": self.minutes, "checkpoint_every": self.eval_every, "seed": self.seed,
            },
        }  # fmt: skip

    def t5_train_config(self) -> dict[str, Any]:
        """The `train` config of the T5 it trains: `t5_size` from scratch, on the same training records, with
        a BPE of COMPARE_VOCAB_SIZE tokens."""
        return {
            "model": "t5",
            "model_settings": {"size": self.t5_size},
            "data": {"path": self.data, "limit": self.limit, "max_target_len": 48, "max_source_len": 256},
            "tokenizer": {"method": "bpe", "vocab_size": COMPARE_VOCAB_SIZE},
            "train": {
                "max_steps": 1_000_000, "batch_size": COMPARE_BATCH_SIZE, "lr": 1e-3, "warmup_steps": 50,
                "lr_schedule": "constant", "eval_every": self.eval_every, "checkpoint_every": self.eval_every,
                "max_minutes": self.minutes, "seed": self.seed,
            },
        }  # fmt: skip

    @model_validator(mode="after")
    def _models_fit(self) -> ElmT5CompareConfig:
        """Both models' run configs are valid, their sizes within the parameter budget included (counted by
        their own validators, ElmTrainConfig's and TrainJobConfig's), before anything runs: a model over the
        budget (or a size its family does not have) was refused only once the comparison reached it, after
        embedding every document (the T5 after the ELM's whole training), with a traceback. Each refusal
        names the setting here that decides it."""
        problems: list[tuple[Loc, str]] = []
        try:
            ElmTrainConfig.model_validate(self.elm_train_config())
        except ValidationError as exc:
            problems += [self._elm_problem(error) for error in exc.errors()]
        try:
            TrainJobConfig.model_validate(self.t5_train_config())
        except ValidationError as exc:
            for error in exc.errors():
                note = ""
                if error["loc"] == ("model_settings",):  # the budget, counted over the whole T5
                    note = (
                        f" (the T5 {self.t5_size} from scratch, over a BPE of {COMPARE_VOCAB_SIZE:,} tokens)"
                    )
                problems.append((("t5_size",), error_message(error) + note))
        if problems:
            raise field_errors(type(self).__name__, problems)
        return self

    def _elm_problem(self, error: Any) -> tuple[Loc, str]:
        """An error of the ELM's run config, at the setting here that decides it: over the budget (counted
        over the whole model, GPT-2 and adapter), the one of lm_size and hidden_dim whose part is bigger."""
        loc, message = tuple(error["loc"]), error_message(error)
        if loc == ("model", "hidden_dim"):
            return ("hidden_dim",), message
        if loc != ("model",):
            return ("lm_size",), message
        # the two parts ElmTrainConfig's count (`scratch_parameter_count`) adds up
        elm = ElmModelConfig.model_validate(self.elm_train_config()["model"])
        gpt2 = load_target(MODEL_FAMILIES)["gpt2"]
        lm_config = gpt2.config_cls(size=self.lm_size)
        lm = gpt2.parameter_count(lm_config, COMPARE_VOCAB_SIZE) or 0
        adapter = adapter_parameter_count(elm, lm_config.dims()["n_embd"])
        parts = (
            f"the ELM: GPT-2 {self.lm_size} from scratch, {lm:,}, and its adapter and drift head with "
            f"hidden_dim {self.hidden_dim}, {adapter:,}"
        )
        return ("hidden_dim",) if adapter > lm else ("lm_size",), f"{message} ({parts})"


SEARCHED_HIDDEN_DIMS = [128, 256, 512]
"""The adapter widths an `elm_optimize` searches when its `hidden_dims` does not name them."""


class ElmOptimizeConfig(ConfigModel):
    """Kind `elm_optimize`: Bayesian search (TPE, median pruning) of the adapter's settings for the
    BERTScore composite; every trial is an `elm_train` run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base: ElmTrainConfig
    """The training config every trial starts from (the searched settings override it)."""
    trials: int = Field(default=20, ge=1)
    """Finished (completed or pruned) trials the study should hold (a resumed study counts its old ones); a
    failed trial does not count: another is run in its place, and 3 failing in a row stop the search."""
    jobs: int = Field(default=1, ge=1, le=64)
    """Worker processes sharing the study."""
    storage: Annotated[str | None, ServerOnly()] = None
    """Study storage: sqlite:///PATH or postgresql://...; None: SQLite file <home>/sweeps.db."""
    study: str = "elm-summary-optimization"
    """Study name (running again with the same name resumes it)."""
    warmup: int = Field(default=2, ge=0)
    """Median pruning: evaluations before a trial may be pruned."""
    hidden_dims: list[int] | None = None
    """Adapter widths searched (None: 128, 256, 512)."""
    seed: Seed | None = 0
    """Seed of the sampler (None: unseeded)."""
    quiet: bool = False
    """No progress bars or run logs inside trials."""

    def searched_hidden_dims(self) -> list[int]:
        """The adapter widths the trials search (`hidden_dims`, or the default search's)."""
        return list(self.hidden_dims or SEARCHED_HIDDEN_DIMS)


COMPARE_SYSTEMS = ["zero_shot", "finetune", "elm", "elm_lora"]
"""The systems of `elm compare-lm`, in the order they run."""


class ElmLMCompareConfig(ConfigModel):
    """Kind `elm_compare_lm`: the ELM on a frozen pretrained LM vs the same LM fine-tuned on the full text vs
    the LM prompted zero-shot; both trained systems get the same CPU budget; all summarise the same test
    documents."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data: Annotated[str, InputPath()]
    """Pair data (any records format); embedded into the ELM layout once (under `out`)."""
    out: Annotated[str | None, OutputPath()] = None
    """Directory of the prepared ELM data; None: inside the run. A layout already there is reused when it was
    prepared with the same data, limit, eval_limit, seed and embedder, for the same lm and instruction (its
    records carry the prompt built from them); one prepared with others is refused."""
    lm: Annotated[str, ModelRef()] = "smollm2"
    """The pretrained chat LM: a directory, a .gguf file, an installed name, a run id, or `smollm2`."""
    systems: list[str] = Field(default_factory=lambda: ["zero_shot", "finetune", "elm"])
    """Systems compared: zero_shot, finetune (the LM on the full text), elm (adapter on the frozen LM),
    elm_lora (adapter + LoRA adapters of rank `lora_rank` on the frozen LM)."""
    cpu_minutes: float = Field(default=15.0, gt=0)
    """CPU time of each trained system's training (process CPU time, evaluations included); training stops
    at the first evaluation past it."""
    limit: int | None = Field(default=2000, ge=1)
    """Training records read (the documents embedded for the ELM)."""
    eval_limit: int = Field(default=100, ge=2)
    """Validation and test documents each (`elm prepare`'s val and test: the validation split halved,
    seeded, or the test file when the data has one)."""
    embedder: Annotated[str, ServerOnly()] = "minilm"
    """Document embedder of the ELM (minilm: the offline all-MiniLM-L6-v2, 384-d)."""
    instruction: str | None = None
    """The request in the chat prompt of every system; None: the chat models' default."""
    num_prefix_tokens: int = Field(default=8, ge=1, le=256)
    """N: soft prefix vectors the ELM adapter produces per document."""
    hidden_dim: int = Field(default=256, ge=1)
    """Hidden width of the adapter MLP."""
    lora_rank: int = Field(default=8, ge=1, le=1024)
    """Rank of the LoRA adapters elm_lora trains on the frozen LM (on its attention and MLP projections: every
    linear layer of its decoder layers, as its architecture names them)."""
    elm_lr: float = Field(default=1e-3, gt=0)
    """Learning rate of the ELM adapter (constant after warm-up)."""
    finetune_lr: float = Field(default=1e-4, gt=0)
    """Learning rate of full-text fine-tuning (constant after warm-up)."""
    batch_size: int = Field(default=8, ge=1)
    """Training examples per step (both trained systems)."""
    max_source_tokens: int = Field(default=64, ge=8)
    """Documents are cut to this many tokens in the full-text prompt (fine-tuning and zero-shot)."""
    max_target_tokens: int = Field(default=32, ge=2)
    """Reference summaries are cut to this many tokens; the longest generated summary."""
    eval_every: int = Field(default=25, ge=1)
    """Steps between validation losses (the best one's weights are kept; the budget is checked there)."""
    eval_size: int = Field(default=32, ge=1)
    """Validation records of the loss."""
    seed: Seed = 0
    """Seeds the split, the weights' initialisation and the data order."""
    bertscore: bool = True
    """Score BERTScore F1 (offline MiniLM) besides ROUGE."""
    wandb: WandbMode = None
    """Weights & Biases mode of the trained systems' runs; None: $WANDB_MODE, else the setting."""
