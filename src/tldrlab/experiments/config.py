"""Typed configs of the experiments (no torch here: the API validates with them).

`CompressionSpec` (how the compressed T5 shrinks the baseline), `DendriteConfig` (PerforatedAI settings) and
`ExperimentConfig` (kind `experiment`: baseline vs compressed vs compressed + dendrites, T5).

On a pretrained causal LM: `LMCompressionSpec` (depth and width cuts of a Llama-style model),
`LMCompressConfig` (kind `lm_compress`: compress and export one model), `DistillationConfig` (the distilled
arm) and `LMExperimentConfig` (kind `lm_experiment`: baseline, compressed, + dendrites, random, distilled).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tldrlab.budget import field_error, within_budget
from tldrlab.choices import OneOf
from tldrlab.configmodel import ConfigModel
from tldrlab.data.formats import ReaderFormat
from tldrlab.data.readers import split_files
from tldrlab.data.splits import detect_splits
from tldrlab.errors import InvalidInputError, refused_at
from tldrlab.runs.paths import InputPath, ModelRef, OutputPath, Seed, WandbMode
from tldrlab.targets import load_target
from tldrlab.tokenizers.config import TokenizerMethod, check_vocabulary
from tldrlab.train.config import MODEL_FAMILIES

InitMode = Literal["baseline", "random"]


class CompressionSpec(ConfigModel):
    """How small the compressed model is. Explicit sizes win over `compression_ratio`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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

    @model_validator(mode="after")
    def _one_width(self) -> CompressionSpec:
        if self.dec_d_model is not None and self.d_model is not None and self.dec_d_model != self.d_model:
            raise ValueError(
                f"dec_d_model={self.dec_d_model} differs from d_model={self.d_model}: T5's cross-attention "
                "reads encoder states of width d_model, so both stacks must have the same width"
            )
        return self


class DendriteConfig(ConfigModel):
    """Which modules get dendrites and when PerforatedAI adds them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    module_names: list[str] = Field(default_factory=lambda: ["T5DenseActDense", "T5DenseGatedActDense"])
    """Module class names that get dendrites, each block whole (its input and output projections together);
    the default names the experiment's model's feed-forward blocks: T5's, or the Llama-style MLP blocks of
    `experiment lm`."""
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
    graphs_every_eval: bool = True
    """Let PerforatedAI redraw its PNG graphs at every evaluation (seconds each on a CPU); off: they are drawn
    once, when the run saves its PAI state at the end."""

    @field_validator("module_ids")
    @classmethod
    def _ids_in_pai_style(cls, module_ids: list[str]) -> list[str]:
        # PerforatedAI raised a bare ValueError for a path without its leading dot once the arm perforated
        # its model (after the baseline trained): a traceback, exit 1
        if bad := [module_id for module_id in module_ids if not module_id.startswith(".")]:
            raise ValueError(
                f"{', '.join(map(repr, bad))}: a module path starts with '.' (PerforatedAI's style: "
                f"'.{bad[0]}')"
            )
        return module_ids


EXPERIMENT_ARMS = ["baseline", "compressed", "compressed_pai", "compressed_random"]
"""Every arm of the T5 experiment (its builders: `tldrlab.experiments.dendrite_experiment.ARMS`), known
here without torch so that a config naming another is refused before its run exists."""


def check_arms(arms: list[str], seeds: list[int]) -> None:
    """ValueError for no arm or no seed at all, or one given twice (an unknown arm is the `arms` field's own
    error). A seed given twice trained the same run twice and reported its numbers as two seeds' mean with
    a spread of 0; an arm given twice did the same within each seed."""
    if not arms or not seeds:
        raise ValueError("give at least one arm and one seed")
    for what, values in (("seed", [str(seed) for seed in seeds]), ("arm", arms)):
        if twice := sorted({value for value in values if values.count(value) > 1}):
            raise ValueError(f"{what} {', '.join(twice)} given twice: give each {what} once")


class ExperimentConfig(ConfigModel):
    """Everything that defines the experiment (plain fields, so sweeps can search them)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data: Annotated[str, InputPath()]
    """Summarization records: a file or data-set directory any tldrlab reader understands."""
    format: ReaderFormat = None
    """Reader format (detected when None)."""
    eval_data: Annotated[str | None, InputPath()] = None
    """Separate validation records; when None, `eval_size + test_size` records are held out from `data` (a
    directory with a train file trains on it only: eval from its dev file, else from the train records; test
    from its test file, else from where eval comes from)."""
    train_limit: int | None = Field(default=4000, ge=1)
    """Most training records used (None: all)."""
    eval_size: int = Field(default=64, ge=1)
    """Records for the validation loss the tracker and best checkpoint follow."""
    test_size: int = Field(default=32, ge=1)
    """Records summarised for ROUGE / BERTScore / highlight precision / latency."""
    arms: Annotated[list[str], OneOf("arm", EXPERIMENT_ARMS)] = Field(
        default_factory=lambda: ["baseline", "compressed", "compressed_pai"]
    )
    """Arms to train."""
    seeds: list[Seed] = Field(default_factory=lambda: [1])
    """One run per arm and seed; several seeds give mean and spread."""
    budget_steps: int = Field(default=300, ge=1)
    """Optimizer steps per arm (the schedule's length)."""
    budget_minutes: float | None = Field(default=None, gt=0)
    """Also stop each arm at the first evaluation after this many minutes (not deterministic)."""
    model_size: Literal["tiny", "mini", "small", "base"] = "tiny"
    """Baseline T5 size (tldrlab.models.t5 sizes)."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """T5 dropout in every arm."""
    tokenizer_method: TokenizerMethod = "bpe"
    """Tokenizer trained on the training records, shared by all arms."""
    vocab_size: int = Field(default=2000, ge=64)
    """Tokenizer vocabulary size (at least what the method needs: bpe 260, sentencepiece 260 plus one per
    distinct character of the corpus, so 261 is only its floor). The baseline
    T5 over it may have at most `max_model_parameters` parameters (TLDRLAB_MAX_MODEL_PARAMETERS)."""
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
    wandb_mode: WandbMode = None
    """W&B mode; None: $TLDRLAB_WANDB_MODE, else $WANDB_MODE, else the `wandb_mode` setting (offline by
    default). Files stay inside each run directory."""
    jobs: int = Field(default=1, ge=1)
    """Seeds trained at once, each in its own process with its share of the CPUs as threads (available CPUs
    // jobs, capped by those idle; `--threads` sets it) (1: one seed after another in this process). Results
    do not depend on it except through the thread count."""

    @field_validator("vocab_size")
    @classmethod
    def _fitting_vocabulary(cls, vocab_size: int, info: ValidationInfo) -> int:
        check_vocabulary(info.data.get("tokenizer_method"), vocab_size)
        return vocab_size

    @model_validator(mode="after")
    def _arms_that_can_run(self) -> ExperimentConfig:
        # checked when the experiment ran: an unknown arm, no arm or seed, a compressed arm without the
        # baseline it is cut from each left a failed experiment run behind (and a 201 at POST /runs)
        check_arms(self.arms, self.seeds)
        needs_baseline = {"compressed", "compressed_pai"} & set(self.arms)
        if needs_baseline and self.compression.init == "baseline" and "baseline" not in self.arms:
            raise ValueError(
                "the compressed arms start from the trained baseline: add 'baseline' to --arms "
                "(or use compression init 'random')"
            )
        return self

    @model_validator(mode="after")
    def _baseline_fits(self) -> ExperimentConfig:
        """The baseline T5 (the largest arm: the others are cut from it) fits the parameter budget."""
        t5 = load_target(MODEL_FAMILIES)["t5"]
        baseline = t5.config_cls.model_validate({"size": self.model_size})
        count = t5.parameter_count(baseline, self.vocab_size)
        within_budget(count, loc=("vocab_size",), title=type(self).__name__)
        return self


class ExperimentArmConfig(ExperimentConfig):
    """Kind `experiment_arm` (started by an experiment, not submitted): one arm trained for one seed."""

    arm: str
    """The arm trained (a name in tldrlab.experiments.dendrite_experiment.ARMS)."""
    seed: Seed
    """The seed of this arm's run (weights, data order, compression)."""


# -- pretrained causal LMs ----------------------------------------------------------------------------------
LM_MLP_CLASSES = ["LlamaMLP", "Qwen2MLP", "Qwen3MLP", "MistralMLP"]
"""The gated MLP blocks of Llama-style models (what PerforatedAI wraps in the causal-LM experiment)."""

LM_ARMS = ["baseline", "compressed", "compressed_pai", "compressed_random", "compressed_kd"]
"""Every arm of the causal-LM experiment, in training order (the baseline first: the others need it)."""


class LMCompressionSpec(ConfigModel):
    """How a pretrained causal LM is cut. Explicit sizes are fixed; `ratio` chooses the others."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ratio: float | None = Field(default=0.5, gt=0.0, le=1.0)
    """Target fraction of the original parameters kept (embeddings included); None: explicit sizes only."""
    num_layers: int | None = Field(default=None, ge=1)
    """Transformer layers kept (evenly spaced, first and last kept)."""
    intermediate_size: int | None = Field(default=None, ge=1)
    """MLP neurons kept per layer (the most important ones)."""
    num_key_value_heads: int | None = Field(default=None, ge=1)
    """Key/value head groups kept per layer (grouped-query attention: each with its query heads)."""
    heads_per_group: int | None = Field(default=None, ge=1)
    """Query heads kept inside each kept key/value group."""
    importance: Literal["activation", "taylor", "weight"] = "activation"
    """How neurons and heads are ranked: activation magnitude x weight norm on calibration data, a
    first-order Taylor estimate of the loss change, or weight norms alone."""
    init: Literal["pretrained", "random"] = "pretrained"
    """'pretrained': copy the kept weights; 'random': the same shape with fresh weights."""


class LMCompressConfig(ConfigModel):
    """Kind `lm_compress`: cut a pretrained causal LM and write it as a plain Hugging Face directory."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: Annotated[str, ModelRef()] = "smollm2"
    """The model to compress: a directory, a .gguf file, an installed name, a run id, or `smollm2`."""
    out: Annotated[str | None, OutputPath()] = None
    """Output directory; None: `model/` inside the run."""
    compression: LMCompressionSpec = Field(default_factory=LMCompressionSpec)
    """Target size and how units are ranked."""
    calibration_data: Annotated[str | None, InputPath()] = None
    """Records (any tldrlab reader; of a data-set directory, its training split) whose chat-formatted pairs
    rank the units; required unless importance is 'weight' or init is 'random'."""
    calibration_size: int = Field(default=32, ge=1)
    """Records used for calibration."""
    max_source_tokens: int = Field(default=128, ge=8)
    """Calibration documents are cut to this many tokens."""
    instruction: str | None = None
    """The request put before each calibration document; None: the chat models' default request."""
    seed: Seed = 0
    """Seeds the random init (init='random')."""

    @model_validator(mode="after")
    def _calibration_when_ranked(self) -> LMCompressConfig:
        # checked by the run, after it loaded the model: POST /runs accepted the default config (importance
        # 'activation', no records) and the run failed 10-30 s later
        spec = self.compression
        if spec.init == "pretrained" and spec.importance != "weight" and not self.calibration_data:
            raise field_error(
                type(self).__name__,
                ("calibration_data",),
                f"importance {spec.importance!r} ranks units on calibration records: give calibration_data "
                "(or importance 'weight')",
            )
        return self


class DistillationConfig(ConfigModel):
    """Knowledge distillation of the compressed_kd arm from the fine-tuned baseline (arm A) of its seed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    """Weight of the distillation term; 1 - alpha weighs the cross-entropy on the reference answer."""
    temperature: float = Field(default=2.0, gt=0.0)
    """Softmax temperature of teacher and student in the distillation term (scaled back by T^2)."""
    top_k: int = Field(default=32, ge=1)
    """Teacher logits cached per answer token: the top-k, renormalised over those k."""


class LMExperimentConfig(ConfigModel):
    """Kind `lm_experiment`: arms of a pretrained causal LM trained the same way on the same records."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    data: Annotated[str, InputPath()]
    """Summarization records: a file or data-set directory any tldrlab reader understands."""
    format: ReaderFormat = None
    """Reader format (detected when None)."""
    eval_data: Annotated[str | None, InputPath()] = None
    """Separate held-out records (validation loss and test); None: held out from `data` (a directory with a
    train file trains on it only: eval from its dev file, else from the train records; test from its test
    file, else from where eval comes from)."""
    model: Annotated[str, ModelRef()] = "smollm2"
    """The pretrained model: a directory, a .gguf file, an installed name, a run id, or `smollm2`."""
    arms: Annotated[list[str], OneOf("arm", LM_ARMS)] = Field(default_factory=lambda: list(LM_ARMS))
    """Arms to train."""
    seeds: list[Seed] = Field(default_factory=lambda: [1, 2])
    """One run per arm and seed; several seeds give mean and spread."""
    train_limit: int | None = Field(default=4000, ge=1)
    """Most training records read (None: all)."""
    eval_size: int = Field(default=32, ge=1)
    """Held-out records for the validation loss (best checkpoint, the PAI tracker)."""
    test_size: int = Field(default=100, ge=1)
    """Other held-out records summarised for ROUGE / BERTScore / latency."""
    budget_steps: int = Field(default=120, ge=1)
    """Optimizer steps per arm (the same for every arm)."""
    batch_size: int = Field(default=8, ge=1)
    """Training examples per step."""
    lr: float = Field(default=5e-5, gt=0)
    """Peak learning rate of the arms that start from pretrained weights (cosine, 5% warm-up)."""
    random_lr: float = Field(default=1e-3, gt=0)
    """Peak learning rate of compressed_random (fresh weights need a larger rate than fine-tuning)."""
    eval_every: int = Field(default=20, ge=1)
    """Steps between validation evaluations (each one is a PAI tracker epoch)."""
    max_source_tokens: int = Field(default=96, ge=8)
    """Documents are cut to this many tokens before they go into the chat prompt."""
    max_target_tokens: int = Field(default=32, ge=2)
    """Reference summaries are cut to this many tokens (with the end-of-turn token)."""
    max_new_tokens: int = Field(default=32, ge=1)
    """Longest generated summary (greedy, batch 1)."""
    instruction: str | None = None
    """The request put before each document; None: the chat models' default ("Summarize the following text in
    one short sentence.")."""
    compression: LMCompressionSpec = Field(default_factory=LMCompressionSpec)
    """How the compressed arms are cut from the pretrained model."""
    calibration_size: int = Field(default=32, ge=1)
    """Training records that rank neurons and heads (activation / Taylor importance)."""
    dendrites: DendriteConfig = Field(
        default_factory=lambda: DendriteConfig(module_names=list(LM_MLP_CLASSES), max_dendrites=1)
    )
    """PerforatedAI settings of the compressed_pai arm (default: dendrites on every MLP block)."""
    auto_switch: bool = True
    """Space the fixed dendrite switches so the last dendrite set still trains for a share of the budget."""
    distillation: DistillationConfig = Field(default_factory=DistillationConfig)
    """How compressed_kd learns from the fine-tuned baseline."""
    bertscore: bool = True
    """Compute BERTScore F1 (offline MiniLM)."""
    lead_baseline: bool = True
    """Also score Lead-1 (the document's first sentence) on the test records."""
    plots: bool = True
    """Draw the PNG charts: each arm's training curves (at every evaluation) and the experiment's
    comparison.png / differences.png (once, at the end); off: tables and metrics only (PerforatedAI's own
    graphs follow `dendrites.graphs_every_eval`)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when available, else CPU (fp32 on a CPU, the loop's automatic precision on CUDA)."""
    checkpoint_every_eval: bool = True
    """The PAI arm writes a resumable checkpoint after every evaluation (so a run stopped after a
    restructure resumes with its dendrites); the other arms checkpoint only at the end."""
    wandb_mode: WandbMode = None
    """W&B mode; None: $WANDB_MODE, else offline. Files stay inside each run directory."""
    wandb_project: str = "tldrlab-lm-compression"
    """W&B project of every arm's run."""
    wandb_name: str | None = None
    """W&B run-name prefix (each arm's run is `<prefix>-<arm>-seed<n>`); None: the experiment run id."""
    wandb_tags: list[str] = Field(default_factory=list)
    """W&B tags of every arm's run (the arm's name is added)."""

    @model_validator(mode="after")
    def _arms_that_can_run(self) -> LMExperimentConfig:
        # checked once the experiment ran, which left a failed run behind
        check_arms(self.arms, self.seeds)
        if "compressed_kd" in self.arms and "baseline" not in self.arms:
            raise ValueError("compressed_kd distils the fine-tuned baseline: add 'baseline' to the arms")
        return self


class LMArmConfig(LMExperimentConfig):
    """Kind `lm_experiment_arm` (started by an `lm_experiment`, not submitted): one arm for one seed."""

    arm: str
    """The arm trained (one of the experiment's arms)."""
    seed: Seed
    """The seed of this arm's run (weights of compressed_random, data order)."""


def check_experiment_data(config: ExperimentConfig) -> None:
    """Kind `experiment`'s check before a run is created (command line and API alike), as `train`'s
    (`train.config.check_train_data`): its data (and `eval_data`) are here and hold data files, a data-set
    directory its training split. A missing path, or a directory of test files only, was refused in the run,
    which stayed a failed experiment."""
    for field, path in (("data", config.data), ("eval_data", config.eval_data)):
        if path is not None and not Path(path).exists():
            raise InvalidInputError(f"data not found: {path}").placed(field)
    with refused_at("data"):
        split_files(config.data, config.format, detect_splits(config.data)[0])
    if config.eval_data is not None:
        with refused_at("eval_data"):
            split_files(config.eval_data, config.format)
    refuse_trained_eval_data(config.data, config.eval_data, config.format)


def refuse_trained_eval_data(data: str, eval_data: str | None, format: str | None) -> None:
    """An experiment's `eval_data` (its validation and test records) is none of the files it trains on (the
    file `data` names, or a data-set directory's training split): `--eval-data` naming the `--data` file
    was accepted, and the arms were scored on records they had trained on. InvalidInputError at
    `eval_data`. Paths that are not there are the callers' to refuse."""
    if eval_data is None or not Path(data).exists() or not Path(eval_data).exists():
        return
    trained = {file.resolve() for file in split_files(data, format, detect_splits(data)[0])}
    if shared := sorted(str(f) for f in split_files(eval_data, format) if f.resolve() in trained):
        raise InvalidInputError(
            f"eval_data: {', '.join(shared)} is also what the arms train on (data {data}): its validation "
            "and test records would have been trained on; give held-out records, or leave eval_data out to "
            "hold them out of data"
        ).placed("eval_data")
