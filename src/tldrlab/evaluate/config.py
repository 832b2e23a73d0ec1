"""Typed configs of evaluation, generation and scoring (no torch here: the API validates with them).

- `GenerateOptions`: how to decode; `EvalConfig`: what a model is evaluated on and how.
- `EvaluateConfig`, `GenerateConfig`, `ScoreConfig`: the configs of the run kinds evaluate, generate, score.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from tldrlab.configmodel import ConfigModel
from tldrlab.data.formats import ReaderFormat
from tldrlab.data.splits import held_out_split
from tldrlab.runs.paths import GenerationLength, InputPath, ModelRef, Seed, SplitOf, WandbMode

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
"""The ROUGE variants every ROUGE score reports (F1 of each)."""


def generated_metric_names(*, bertscore: bool, empty_predictions: bool = True) -> frozenset[str]:
    """The `eval_*` metrics a training task's generating evaluation adds (`generation_metrics` of the
    seq2seq and chat tasks): ROUGE, the empty-prediction count (seq2seq only) and, when enabled, BERTScore.
    Here, beside the configs, so that a config can check its best metric against them without torch."""
    names = {f"eval_{name}" for name in ROUGE_TYPES}
    if empty_predictions:
        names.add("eval_empty_predictions")
    if bertscore:
        names |= {"eval_bertscore_precision", "eval_bertscore_recall", "eval_bertscore_f1"}
    return frozenset(names)


_DATASET_ID = re.compile(r"^ds-\d{8}-[0-9a-f]{10}$")


def dataset_reference(value: Any) -> Any:
    """A bare data set id (`ds-...`) as the `dataset:<id>` reference path fields take."""
    return f"dataset:{value}" if isinstance(value, str) and _DATASET_ID.match(value) else value


MIN_SAMPLING_TEMPERATURE = 1e-6
"""The lowest temperature above 0 that generation samples at: the scores divided by one near 1e-38 overflow
to inf and sampling failed with a traceback ("probability tensor contains either inf, nan"); so close to 0,
sampling is greedy decoding anyway."""


class GenerateOptions(ConfigModel):
    """How to decode."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_new_tokens: Annotated[int, GenerationLength()] = Field(default=64, ge=1, le=4096)
    """Most tokens to generate per sequence."""

    temperature: float = Field(default=1.0, ge=0.0)
    """Sampling temperature; 0 means greedy decoding (above 0, at least 1e-6)."""

    top_k: int = Field(default=0, ge=0)
    """Sample only among the k most likely tokens (0: no limit)."""

    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling: the smallest set of tokens whose probability reaches p (1.0: no limit)."""

    stop: list[str] = Field(default_factory=list)
    """Cut each output at the first occurrence of any of these strings (the stop string is dropped)."""

    stop_on_eos: bool = True
    """End an output at the model's end-of-sequence token (False: generate `max_new_tokens` tokens whatever
    the model says, the end-of-sequence tokens left out of the text)."""

    seed: Seed = 0
    """Seed of the sampling RNG: the same seed gives the same outputs."""

    num_return_sequences: int = Field(default=1, ge=1, le=64)
    """Outputs per prompt."""

    num_beams: int = Field(default=1, ge=1)
    """Beam search width for t5 / gpt2 (greedy only: with temperature 0; refused with sampling)."""

    batch_size: int = Field(default=16, ge=1)
    """Seq2seq greedy decoding: prompts decoded together (padding is masked). Sampling and LMs go one prompt
    at a time."""

    max_input_tokens: int = Field(default=512, ge=1)
    """Prompts are truncated (keeping their end for LMs, their start for seq2seq) to this many tokens (a
    seq2seq prompt's end-of-sequence token among them, as in training's `max_source_len`)."""

    @field_validator("temperature")
    @classmethod
    def _samplable(cls, temperature: float) -> float:
        if 0 < temperature < MIN_SAMPLING_TEMPERATURE:
            raise ValueError(
                f"{temperature:g} is too close to 0 to sample with: give 0 (greedy decoding, which such a "
                f"temperature amounts to) or at least {MIN_SAMPLING_TEMPERATURE:g}"
            )
        return temperature

    @model_validator(mode="after")
    def _beams_decode_greedily(self) -> GenerateOptions:
        # sampling never used the beams: `generate --options.num-beams 4`, at generate's default temperature
        # 1, sampled one output as if they had not been asked for
        if self.num_beams > 1 and self.temperature > 0:
            raise ValueError(
                f"num_beams {self.num_beams} is beam search, which decodes greedily: give temperature 0 "
                f"with it (at temperature {self.temperature:g} it would sample and ignore num_beams)"
            )
        return self


class EvalConfig(ConfigModel):
    """What to evaluate on and how."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data: str
    """A file or data-set directory readable by tldrlab.data.readers."""

    format: ReaderFormat = None
    """Reader format; None detects it."""

    split: str | None = None
    """Data split (e.g. validation); None uses the whole file."""

    val_fraction: float | None = Field(default=None, gt=0, lt=1)
    """What a training run without a validation split held out of what is read (the split, or the whole
    data): LM evaluates the last fraction of the tokens; seq2seq the first fraction of the records after a
    shuffle seeded with `holdout_seed`."""

    holdout_seed: Seed | None = None
    """Seq2seq with `val_fraction`: the training run's seed (None: no shuffle, the first records)."""

    limit: int | None = Field(default=None, ge=1)
    """Read at most this many records before any holdout is taken (as the training run did)."""

    max_samples: int = Field(default=200, ge=1)
    """Seq2seq: records evaluated; LM: blocks evaluated."""

    prefix: str = ""
    """Seq2seq: text put before every source document (must match training, e.g. "summarize: ")."""

    max_source_len: int = Field(default=256, ge=4)
    """Seq2seq: source tokens kept."""

    max_target_len: int | None = Field(default=None, ge=2)
    """Seq2seq and chat: reference tokens the loss scores, its end token included, as training cuts its
    targets (a run's `data.max_target_len`); None: whole references. ROUGE and BERTScore always score the
    whole references."""

    block_size: int = Field(default=128, ge=2)
    """LM: tokens per evaluation block."""

    batch_size: int = Field(default=16, ge=1)
    """Blocks per forward pass."""

    bertscore: bool = True
    """Seq2seq: also compute BERTScore with the offline MiniLM."""

    num_lm_samples: int = Field(default=4, ge=0)
    """LM: seeded continuations written to samples.jsonl."""

    generation: GenerateOptions = Field(default_factory=lambda: GenerateOptions(temperature=0.0))
    """Decoding options (greedy by default)."""


class FinalEvalConfig(ConfigModel):
    """The evaluation that runs when a training run ends: an `evaluate` run (its parent the training run) on
    the run's held-out data, writing eval.json, eval_summary.json and the tables next to the model."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    """Evaluate the saved model when training ends."""
    max_samples: int = Field(default=64, ge=1, le=100_000)
    """At most this many records (seq2seq, chat) or blocks (LM); also at most one per 10 training steps (at
    least 4), so that short runs stay short. `tldrlab eval RUN` evaluates on more."""
    bertscore: bool = False
    """Also compute BERTScore (loads the MiniLM encoder: seconds)."""
    max_new_tokens: Annotated[int, GenerationLength()] = Field(default=48, ge=1, le=4096)
    """Longest generated summary (greedy decoding)."""

    def samples_for(self, steps: int) -> int:
        """How many examples to evaluate after a run of `steps` optimisation steps."""
        return max(1, min(self.max_samples, max(4, steps // 10)))


class EvaluateConfig(ConfigModel):
    """Run kind `evaluate`: a trained model on a data split. Unset settings come from the model's training run
    (its data, validation split or held-out fraction, prefix and lengths), else from `EvalConfig`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    model_run: Annotated[str, ModelRef()]
    """The training run (id or unique prefix) whose model is evaluated, or any model reference."""
    data: Annotated[str | None, InputPath()] = None
    """Evaluate on this file or data-set directory instead of the training run's data, or on a registered
    data set by id (`ds-...` or `dataset:<id>`), as generate and score take it."""
    format: ReaderFormat = None
    """Reader format of `data`; None detects it."""
    split: Annotated[str | None, SplitOf("data", run="model_run")] = None
    """Data split (e.g. validation), all of it unless `val_fraction` is given; None: the training run's
    validation split, else its held-out fraction of its training split (or of unsplit data); with `data`
    given, its test split, else its validation split (a data-set directory's), else all of it."""
    val_fraction: float | None = Field(default=None, gt=0, lt=1)
    """No validation split: the fraction the training run held out (None: the run's)."""
    holdout_seed: Seed | None = None
    """Seq2seq with `val_fraction`: the seed of the held-out shuffle (None: the run's training seed)."""
    limit: int | None = Field(default=None, ge=1)
    """Read at most this many records before any holdout (None: the run's)."""
    max_samples: int | None = Field(default=None, ge=1)
    """Seq2seq: records evaluated; LM: blocks evaluated (None: 200)."""
    prefix: str | None = None
    """Seq2seq: text put before every source document (None: the run's)."""
    max_source_len: int | None = Field(default=None, ge=4)
    """Seq2seq: source tokens kept (None: the run's)."""
    max_target_len: int | None = Field(default=None, ge=2)
    """Seq2seq and chat: reference tokens the loss scores, as training cut its targets (None: the run's, or
    whole references for a model that is no run's); ROUGE and BERTScore score whole references."""
    block_size: int | None = Field(default=None, ge=2)
    """LM: tokens per evaluation block (None: the run's)."""
    batch_size: int | None = Field(default=None, ge=1)
    """Blocks or documents per forward pass (None: 16)."""
    bertscore: bool | None = None
    """Seq2seq: also compute BERTScore with the offline MiniLM (None: yes)."""
    num_lm_samples: int | None = Field(default=None, ge=0)
    """LM: seeded continuations written to samples.jsonl (None: 4)."""
    generation: GenerateOptions = Field(default_factory=lambda: GenerateOptions(temperature=0.0))
    """Decoding options (greedy by default; options given in part keep the rest of this default)."""
    progress: bool = True
    """Show a progress bar (examples/s, ETA) on the console; a training run's final evaluation follows the
    training's `train.progress`."""
    wandb: WandbMode = None
    """Weights & Biases mode; None: $TLDRLAB_WANDB_MODE, else $WANDB_MODE, else the `wandb_mode` setting
    (offline by default). A training run's final evaluation follows the training's `wandb`."""

    _dataset_id = field_validator("data", mode="before")(dataset_reference)

    def overrides(self) -> dict[str, Any]:
        """The EvalConfig settings this config sets (everything but `model_run`, how it shows progress, its
        W&B mode and the unset ones)."""
        dumped = self.model_dump(exclude={"model_run", "progress", "wandb"})
        return {k: v for k, v in dumped.items() if v is not None}


class GenerateConfig(ConfigModel):
    """Run kind `generate`: outputs of a trained model for some prompts."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    model_run: Annotated[str, ModelRef()]
    """The training run (id or unique prefix) whose model generates, or any model reference."""
    prompts: list[str] | None = Field(default=None, min_length=1, max_length=64)
    """Inputs: documents to summarise (seq2seq, chat) or text to continue (LM); or give `dataset`. A seq2seq
    run's documents get its training `data.prefix` put before them, as those sent to POST /summarize do."""
    dataset: Annotated[str | None, InputPath()] = None
    """Take the prompts from a data set instead: a registered or uploaded one by id (`ds-...` or
    `dataset:<id>`), or a data file; its records' documents are the prompts."""
    split: Annotated[str | None, SplitOf("dataset")] = None
    """With `dataset`: the split to take records from (train, dev, test); None: a data-set directory's test
    split, else its validation split, else all of it (as `tldrlab eval MODEL --data DIR` reads it)."""
    limit: int = Field(default=8, ge=1, le=64)
    """With `dataset`: how many records (the first ones)."""
    options: GenerateOptions = Field(default_factory=GenerateOptions)
    """How to decode (max_new_tokens, temperature, top_k, top_p, seed, stop_on_eos, ...)."""

    _dataset_id = field_validator("dataset", mode="before")(dataset_reference)

    @model_validator(mode="after")
    def _one_source(self) -> GenerateConfig:
        if (self.prompts is None) == (self.dataset is None):
            raise ValueError("give either prompts or dataset (a data set id or file to take prompts from)")
        return self


DEFAULT_MAX_SCORED_TOKENS = 1024
"""Tokens of a text a score run scores at most unless told otherwise (`ScoreConfig.max_tokens`): a forward
pass over a whole long text took minutes and its per-token log-probabilities gigabytes."""


class ScoreConfig(ConfigModel):
    """Run kind `score`: loss, perplexity and per-token surprisal of a text under a trained model."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    model_run: Annotated[str, ModelRef()]
    """The training run (id or unique prefix) whose model scores, or any model reference."""
    text: str | None = Field(default=None, min_length=1, max_length=100_000)
    """Text to score (the summary, for seq2seq and chat models); or give `dataset`."""
    source: str = ""
    """Seq2seq and chat: the document the text summarises (a seq2seq run's gets its training `data.prefix`
    put before it)."""
    dataset: Annotated[str | None, InputPath()] = None
    """Score a data set's records instead: a registered or uploaded one by id (`ds-...` or `dataset:<id>`), or
    a data file. Seq2seq and chat models score each record's reference summary given its document; LMs its
    document."""
    split: Annotated[str | None, SplitOf("dataset")] = None
    """With `dataset`: the split to take records from (train, dev, test); None: a data-set directory's test
    split, else its validation split, else all of it (as `tldrlab eval MODEL --data DIR` reads it)."""
    limit: int = Field(default=32, ge=1, le=1000)
    """With `dataset`: how many records (the first ones)."""
    detail_level: Literal["summary", "per_token"] = "per_token"
    """`per_token`: every token with its surprisal and top predictions; `summary`: loss, perplexity and token
    counts only (per record with `dataset`)."""
    top_k: int = Field(default=5, ge=0, le=50)
    """Top predictions reported per token (`per_token`)."""
    max_tokens: int = Field(default=DEFAULT_MAX_SCORED_TOKENS, ge=1, le=8192)
    """Tokens scored at most, of the text (or each record): a longer one is scored on its start and the result
    says so (`truncated`, `text_tokens`: how many it had); a seq2seq or chat `source` is cut to as many. A
    model with learned positions (GPT-2's `n_positions`) scores fewer where it takes fewer."""

    _dataset_id = field_validator("dataset", mode="before")(dataset_reference)

    @model_validator(mode="after")
    def _one_source(self) -> ScoreConfig:
        if (self.text is None) == (self.dataset is None):
            raise ValueError("give either text or dataset (a data set id or file to score)")
        return self


def read_held_out_split(config: GenerateConfig | ScoreConfig) -> GenerateConfig | ScoreConfig:
    """Kinds `generate` and `score`'s prepare step (command line and API alike, before the run exists): a
    `dataset` named with no `split` is read at its held-out split, as `tldrlab eval MODEL --data DIR` reads
    it (`data.splits.held_out_split`): a data-set directory's training files were read too (the first of
    them before its test file when the name sorted first). The split is written into the config, so the run
    records, and its report says, what it read."""
    if config.dataset is None or config.split is not None:
        return config
    return config.model_copy(update={"split": held_out_split(config.dataset)})
