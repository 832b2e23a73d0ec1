"""Typed configs of the experiments (no torch here: the API validates with them).

`CompressionSpec` (how the compressed T5 shrinks the baseline), `DendriteConfig` (PerforatedAI settings) and
`ExperimentConfig` (kind `experiment`: baseline vs compressed vs compressed + dendrites).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tldrlab.runs.paths import InputPath

InitMode = Literal["baseline", "random"]


class CompressionSpec(BaseModel):
    """How small the compressed model is. Explicit sizes win over `compression_ratio`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    compression_ratio: float | None = Field(default=None, gt=0.0, le=1.0)
    """Target fraction of the baseline's parameters to keep (0.5 keeps about half); picks layers, widths."""
    enc_num_layers: int | None = Field(default=None, ge=1)
    """Encoder blocks to keep."""
    dec_num_layers: int | None = Field(default=None, ge=1)
    """Decoder blocks to keep."""
    d_model: int | None = Field(default=None, ge=1)
    """Residual-stream width of the compressed model."""
    dec_d_model: int | None = Field(default=None, ge=1)
    """Decoder width; T5's cross-attention ties it to d_model, so it must equal d_model when both are set."""
    d_ff: int | None = Field(default=None, ge=1)
    """Feed-forward width."""
    num_heads: int | None = Field(default=None, ge=1)
    """Attention heads per layer (each keeps the baseline's d_kv)."""
    init: InitMode = "baseline"
    """'baseline': copy selected layers / sliced weights from the baseline; 'random': fresh weights."""


class DendriteConfig(BaseModel):
    """Which modules get dendrites and when PerforatedAI adds them."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    module_names: list[str] = Field(default_factory=lambda: ["T5DenseActDense", "T5DenseGatedActDense"])
    """Module class names that get dendrites (default: T5's feed-forward blocks, wi and wo together)."""
    module_ids: list[str] = Field(default_factory=list)
    """Individual modules by path, PAI style: '.encoder.block.0.layer.1.DenseReluDense'."""
    output_dimensions: list[int] = Field(default_factory=lambda: [-1, -1, 0])
    """Roles of the perforated modules' output axes: 0 marks the neuron axis, -1 the others ([b, seq, d])."""
    switch_mode: Literal["fixed", "history"] = "fixed"
    """'fixed': add dendrites every `switch_every` evaluations; 'history': when the metric stops improving."""
    switch_every: int = Field(default=3, ge=1)
    """Evaluations between dendrite additions ('fixed'), or patience in evaluations ('history')."""
    max_dendrites: int = Field(default=2, ge=0)
    """Upper bound on dendrite sets added; training completes after the last one settles."""
    max_dendrite_tries: int = Field(default=2, ge=1)
    """Retries with a fresh initialisation when an added dendrite set does not improve the metric."""
    candidate_weight_init: float = Field(default=0.01, gt=0)
    """Scale of new dendrite weights (PAI's candidate_weight_initialization_multiplier)."""
    improvement_threshold_raw: float = Field(default=1e-5, ge=0)
    """Smallest absolute change of the metric that counts as an improvement."""
    silent: bool = True
    """Silence PerforatedAI's own console chatter (its files are written regardless)."""


class ExperimentConfig(BaseModel):
    """Everything that defines the experiment (plain fields, so sweeps can search them)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    data: Annotated[str, InputPath()]
    """Summarization records: a file or data-set directory any tldrlab reader understands."""
    format: str | None = None
    """Reader format (detected when None)."""
    eval_data: Annotated[str | None, InputPath()] = None
    """Separate validation records; when None, `eval_size + test_size` records are held out from `data`."""
    train_limit: int | None = Field(default=4000, ge=1)
    """Most training records used (None: all)."""
    eval_size: int = Field(default=64, ge=1)
    """Records for the validation loss the tracker and best checkpoint follow."""
    test_size: int = Field(default=32, ge=1)
    """Records summarised for ROUGE / BERTScore / highlight precision / latency."""
    arms: list[str] = Field(default_factory=lambda: ["baseline", "compressed", "compressed_pai"])
    """Arms to train, by name in ARMS."""
    seeds: list[int] = Field(default_factory=lambda: [1])
    """One run per arm and seed; several seeds give mean and spread."""
    budget_steps: int = Field(default=300, ge=1)
    """Optimizer steps per arm (the schedule's length)."""
    budget_minutes: float | None = Field(default=None, gt=0)
    """Also stop each arm at the first evaluation after this many minutes (not deterministic)."""
    model_size: Literal["tiny", "mini", "small", "base"] = "tiny"
    """Baseline T5 size (tldrlab.models.t5 sizes)."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """T5 dropout in every arm."""
    tokenizer_method: str = "bpe"
    """Tokenizer trained on the training records, shared by all arms."""
    vocab_size: int = Field(default=2000, ge=64)
    """Tokenizer vocabulary size."""
    max_source_tokens: int = Field(default=256, ge=8)
    """Documents are truncated to this many tokens."""
    max_target_tokens: int = Field(default=48, ge=4)
    """Reference summaries are truncated to this many tokens."""
    max_new_tokens: int = Field(default=32, ge=1)
    """Longest generated summary (greedy decoding)."""
    batch_size: int = Field(default=16, ge=1)
    """Training batch size."""
    lr: float = Field(default=1e-3, gt=0)
    """Peak learning rate (cosine schedule with 5% warm-up)."""
    eval_every: int = Field(default=25, ge=1)
    """Steps between validation evaluations (each one is a PAI tracker epoch)."""
    compression: CompressionSpec = Field(default_factory=lambda: CompressionSpec(compression_ratio=0.5))
    """How the compressed arms shrink the baseline."""
    dendrites: DendriteConfig = Field(default_factory=lambda: DendriteConfig())
    """PerforatedAI settings of the compressed_pai arm."""
    auto_switch: bool = True
    """Space the fixed dendrite switches so the last one settles at the end of the step budget."""
    bertscore: bool = True
    """Compute BERTScore F1 (offline MiniLM)."""
    highlights: bool = True
    """Compute highlight precision@3 where records carry highlight labels (SciTLDR)."""
    wandb_mode: Literal["offline", "online", "disabled"] | None = None
    """W&B mode; None: $TLDRLAB_WANDB_MODE, else $WANDB_MODE, else the `wandb_mode` setting (offline by
    default). Files stay inside each run directory."""
    jobs: int = Field(default=1, ge=1)
    """Seeds trained at once, each in its own process with its share of the CPUs as threads (available CPUs
    // jobs, capped by those idle; `--threads` sets it) (1: one seed after another in this process). Results
    do not depend on it except through the thread count."""


class ExperimentArmConfig(ExperimentConfig):
    """Kind `experiment_arm` (started by an experiment, not submitted): one arm trained for one seed."""

    arm: str
    """The arm trained (a name in tldrlab.experiments.dendrite_experiment.ARMS)."""
    seed: int
    """The seed of this arm's run (weights, data order, compression)."""
