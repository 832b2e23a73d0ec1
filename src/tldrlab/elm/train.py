"""`run_elm_training(run, config)`: one ELM training run (run kind "elm_train") through tldrlab's loop.

1. the prepared data's train / val splits (tldrlab elm prepare);
2. the LM's tokenizer: the LM's own, or for lm=scratch a given directory or a BPE trained on the training
   targets into <run_dir>/tokenizer (reused on resume);
3. the ElmModel (the recipe driver has seeded); adapter weights from `init_adapter` (an adapter.safetensors)
   when given;
4. the loop (`tldrlab.train.recipe.run_recipe`) for `epochs` epochs (or max_steps), evaluation every
   `eval_interval` steps, early stopping on BERTScore F1 patience, resuming from the run's newest checkpoint;
5. export: the best evaluation's weights saved with `save_elm` to <run_dir>/model (adapter.safetensors +
   lm/).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tldrlab.budget import ReadDimension, within_budget_as_read
from tldrlab.device import resolve_device, resolve_precision
from tldrlab.elm.config import (
    ElmModelConfig,
    ElmTrainConfig,
    adapter_parameter_count,
    scratch_parameter_count,
)
from tldrlab.elm.model import ElmModel, lm_width, load_adapter_weights, load_elm_lm, save_elm
from tldrlab.elm.prepare import (
    MANIFEST,
    SPLITS,
    check_lm_run_kind,
    embeddings_path,
    load_split,
    read_manifest,
    read_synthesis,
    synthesis_path,
)
from tldrlab.elm.task import ElmTask
from tldrlab.errors import ConfigError, InvalidInputError, NotFoundError
from tldrlab.models.architecture import model_width
from tldrlab.models.causal_lm import LoraSettings, lora_modules, lora_parameter_count
from tldrlab.models.resolve import resolve_model_ref
from tldrlab.runs.atomic import atomic_write_text
from tldrlab.runs.run import Run
from tldrlab.tokenizers import load_tokenizer, tokenizer_once
from tldrlab.train.loop import TrainHooks, TrainResult
from tldrlab.train.recipe import Recipe, RecipeExport, RecipeSetup, Tracking, run_recipe
from tldrlab.train.same_data import check_same_data

MODEL_SUBDIR = "model"
TOKENIZER_SUBDIR = "tokenizer"


def steps_for(config: ElmTrainConfig, n_train: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    per_step = config.train.batch_size * config.train.grad_accum_steps
    return max(1, math.ceil(config.epochs * n_train / per_step))


def elm_tokenizer(config: ElmTrainConfig, targets: list[str], run_dir: Path) -> Any:
    """lm=scratch: the given tokenizer, or a BPE trained once on the training targets; else None."""
    if config.model.lm != "scratch":
        return None
    if config.tokenizer:
        return load_tokenizer(config.tokenizer)

    def corpus() -> list[Path]:
        path = run_dir / "tokenizer_corpus.txt"
        atomic_write_text(path, "\n".join(t.replace("\n", " ") for t in targets) + "\n")
        return [path]

    return tokenizer_once(
        run_dir / TOKENIZER_SUBDIR, "bpe", corpus, config.vocab_size, seed=config.train.seed
    )


def elm_data_files(config: ElmTrainConfig, recorded: Sequence[Path] = ()) -> list[Path]:
    """The files of the prepared layout an `elm_train` run reads: its manifest, syntheses and embeddings
    (`same_data.RunFiles`; the same names whatever was `recorded`)."""
    data_dir = Path(config.data)
    return [
        data_dir / MANIFEST,
        *(p for s in SPLITS for p in (synthesis_path(data_dir, s), embeddings_path(data_dir, s))),
    ]


def _embeddings_source(embeddings: Path, dim: int) -> str:
    """Where a run's embedding_dim comes from, for a budget refusal naming `model.embedding_dim`."""
    return f"embedding_dim comes from the prepared embeddings {embeddings}, which have {dim} dimensions"


def check_budget_as_read(config: ElmTrainConfig, model_config: ElmModelConfig, tokenizer: Any) -> None:
    """lm=scratch: the ELM of `model_config` (the config's, with its data's embedding_dim) over `tokenizer`
    fits the parameter budget, counted as ElmTrainConfig's validation counts it with the configured
    embedding_dim (384 unless set) and `vocab_size`: 4096-dimensional embeddings, or a tokenizer directory of
    250,000 tokens, built a model many times the one counted, past the limit. InvalidConfigError naming the
    field the data made bigger and where its value came from. (A tokenizer the run trains has at most
    `vocab_size` tokens; a pretrained LM, which brings its own, is not bounded.)"""
    if tokenizer is None:
        return
    dim, tokens = model_config.embedding_dim, len(tokenizer)
    embeddings = embeddings_path(Path(config.data), "train")
    whose = f"the tokenizer {config.tokenizer}" if config.tokenizer else "the tokenizer the run trained"
    from_embeddings = _embeddings_source(embeddings, dim)
    from_tokenizer = f"vocab_size comes from {whose}, which has {tokens:,} tokens"
    dimensions = [
        ReadDimension(("model", "embedding_dim"), config.model.embedding_dim, dim, from_embeddings),
        ReadDimension(("vocab_size",), config.vocab_size, tokens, from_tokenizer),
    ]
    within_budget_as_read(scratch_parameter_count(model_config, tokens), dimensions)


def check_adapter_budget_as_read(config: ElmTrainConfig, model_config: ElmModelConfig, lm: Any) -> None:
    """A pretrained LM: the adapter and drift head the run is about to build on the loaded `lm`
    (`adapter_parameter_count` with its data's embedding_dim and the LM's width), and its LoRA adapters, fit
    the parameter budget, counted as the submit counts them (`elm.prepare.check_adapter_budget`) with the
    configured embedding_dim and the width the LM's files give (nothing when they did not say, or the LM was
    not found there: a name only the Hugging Face cache holds). The LM's own parameters are not counted."""
    width, dim = lm_width(lm), model_config.embedding_dim
    adapter = adapter_parameter_count(model_config, width)
    lora = 0
    if model_config.lora_rank is not None:
        lora = lora_parameter_count(lm, LoraSettings(r=model_config.lora_rank, alpha=model_config.lora_alpha))
    count = adapter + lora
    try:
        found = model_width(resolve_model_ref(config.model.lm))
    except NotFoundError:
        found = None
    counted, files = found if found is not None else (0, "")
    said = f"its files say {counted} ({files})" if found is not None else "its files did not say"
    embeddings = embeddings_path(Path(config.data), "train")
    dimensions = [
        ReadDimension(
            ("model", "embedding_dim"),
            config.model.embedding_dim,
            dim,
            _embeddings_source(embeddings, dim),
        ),
        ReadDimension(
            ("model", "lm"),
            counted,
            width,
            f"the adapter's width comes from the LM {config.model.lm} as loaded, which is {width} wide "
            f"({said}); the LM's own parameters are not counted",
        ),
    ]
    # neither the data nor the LM made it bigger than the submit counted (an elm_optimize trial's searched
    # hidden_dim, which the submit counted only as the largest of the search; LoRA adapters the submit could
    # not count, its files giving no config transformers builds the LM from): the adapter's own settings did
    on = f"on the LM {config.model.lm}, which is {width} wide, from {dim}-d embeddings"
    unchanged: list[tuple[tuple[str, ...], str]]
    if lora > adapter:  # the LoRA adapters are the bigger part: their rank, as the submit names it
        unchanged = [
            (
                ("model", "lora_rank"),
                f"lora_rank {model_config.lora_rank}: {lora:,} LoRA parameters on the LM's projections; "
                f"the adapter and drift head, {adapter:,}, {on}; the LM's own parameters are not counted",
            )
        ]
    else:
        on += f", and {lora:,} LoRA parameters" if lora else ""
        roles = {"hidden_dim": "the adapter MLP's width", "num_prefix_tokens": "prefix vectors per document"}
        unchanged = [
            (
                ("model", name),
                f"{name} {getattr(model_config, name)}: {role}; the adapter and drift head {on}; "
                "the LM's own parameters are not counted",
            )
            for name, role in roles.items()
        ]
    within_budget_as_read(count, dimensions, unchanged=unchanged)


def setup(run: Run | None, config: ElmTrainConfig) -> RecipeSetup:
    """The ELM recipe's setup: data, tokenizer, model (the driver has seeded), task and loop settings."""
    if run is None:
        raise ConfigError("ELM training does not run distributed")
    check_lm_run_kind(config.model.lm, ("model",))  # checked at submit; the run named may be replaced since
    # `elm prepare --out` the same directory rewrites it
    check_same_data(run, functools.partial(elm_data_files, config))
    train_split = load_split(config.data, "train")
    val_split = load_split(config.data, "val")
    if config.limit is not None:
        train_split.records = train_split.records[: config.limit]
    targets = [str(r["target_text"]) for r in train_split.records]
    if not any(target.strip() for target in targets):  # ElmTask says so too, but the tokenizer trained first
        # on them, and said "the corpus has no text: <run>/tokenizer_corpus.txt"
        train_file = synthesis_path(Path(config.data), "train")
        raise InvalidInputError(f"{train_file}: no training records with a target text")
    tokenizer = elm_tokenizer(config, targets, run.dir)
    model_config = config.model.model_copy(update={"embedding_dim": int(train_split.embeddings.shape[1])})
    check_budget_as_read(config, model_config, tokenizer)
    lm, tokenizer = load_elm_lm(model_config, tokenizer)
    if config.model.lm != "scratch":  # counted before the adapter is allocated on it
        check_adapter_budget_as_read(config, model_config, lm)
    model = ElmModel(lm, model_config)
    if config.init_adapter:
        load_adapter_weights(model, config.init_adapter)
    task = ElmTask(
        model, tokenizer, train_split, val_split, config.loss,
        max_target_len=config.max_target_len, eval_samples=config.eval_samples,
        max_val_examples=config.max_val_examples, bertscore_model=config.bertscore_model,
        use_bertscore=config.use_bertscore,
    )  # fmt: skip
    steps = steps_for(config, len(task.train_examples))
    eval_every = config.eval_interval or max(1, steps // 4)
    loop = config.train.model_copy(update={"max_steps": steps, "eval_every": eval_every})
    if loop.warmup_steps > steps:
        loop = loop.model_copy(update={"warmup_steps": steps})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    # the LM's layers LoRA went on: `lora_rank` names none, the LM's architecture decides (`resolve_lora`)
    lora: dict[str, Any] = {"lora_target_modules": targets} if (targets := lora_modules(model)) else {}
    on = f", LoRA on {', '.join(targets)}" if targets else ""
    run.log(
        f"ELM: {total:,} parameters ({trainable:,} trainable{on}), {len(task.train_examples)} training "
        f"examples, {loop.max_steps} steps",
        parameters=total,
        trainable=trainable,
        **lora,
    )
    return RecipeSetup(
        model=model,
        task=task,
        loop=loop,
        tokenizer=tokenizer,
        tracking=Tracking(mode=config.wandb, project="tldrlab-elm", config=config.model_dump(mode="json")),
        environment={
            "parameters": total,
            "trainable_parameters": trainable,
            "steps": loop.max_steps,
            **lora,
        },
    )


def export(run: Run, config: ElmTrainConfig, setup: RecipeSetup, result: TrainResult) -> RecipeExport:
    """The best weights as a saved ELM (adapter.safetensors + lm/) in <run_dir>/model."""
    model = result.model
    assert isinstance(model, ElmModel)
    step = result.best_step if result.best_checkpoint is not None else result.steps
    embedder = read_manifest(config.data).get("embedder")
    # `elm generate --text` prompts with it: it used the default template, which an ELM prepared with
    # another `--template` (or compare-lm's chat prompt) never saw
    records = read_synthesis(synthesis_path(Path(config.data), "train"))
    templates = Counter(str(r.get("input_prompt_template") or "{text}") for r in records[: config.limit])
    template = templates.most_common(1)[0][0] if templates else None
    save_elm(
        model, setup.tokenizer, run.dir / MODEL_SUBDIR,
        step=step, data=config.data, embedder=embedder, template=template,
    )  # fmt: skip
    return RecipeExport(model_dir=run.dir / MODEL_SUBDIR)


ELM_TRAIN: Recipe[ElmTrainConfig] = Recipe("elm_train", lambda config: config.train.seed, setup, export)
"""The ELM recipe."""


def run_elm_training(
    run: Run, config: ElmTrainConfig, *, hooks: TrainHooks | None = None, resume: bool = True
) -> TrainResult:
    """Train in `run` (see the module docstring); returns the loop's TrainResult."""
    return run_recipe(run, ELM_TRAIN, config, resume=resume, extra_hooks=[hooks] if hooks else ()).train


def elm_train_job(run: Run, config: ElmTrainConfig) -> dict[str, Any]:
    """Run kind "elm_train": resumes when checkpoints exist."""
    result = run_elm_training(run, config)
    return {"steps": result.steps, "metrics": result.metrics, "model_dir": str(run.dir / MODEL_SUBDIR)}


def check_device(config: ElmTrainConfig) -> None:
    """Kind `elm_train`'s command-line check of this machine: the device and precision are its own (they
    failed in the run, leaving it failed). (That the data is prepared is `elm.prepare.check_prepared`, which
    the API's submit runs too.)"""
    resolve_precision(config.train.precision, resolve_device(config.train.device))
