"""The MODELS registry: name -> typed config, builder and task.

model = build_model("t5", {"size": "tiny"}, tokenizer)
model_task("gpt2")  # "causal_lm"
model_task("causal_lm")  # "chat": a pretrained chat LM fine-tuned on document -> summary turns
parameter_count("t5", {"size": "base"}, vocab_size=8000)  # 48.2M, from the dimensions alone

Importing it imports no torch (the families' builders load it when a model is built), so run configs are
validated against it cheaply: `model_settings` by the family's config, its size by `parameter_count`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from tldrlab.choices import unknown_choice
from tldrlab.errors import ConfigError, validation_problems
from tldrlab.models import causal_lm, char_lstm_config, gpt2, pretrained, t5
from tldrlab.targets import load_target

Task = Literal["seq2seq", "causal_lm", "chat"]


@dataclass(frozen=True)
class ModelSpec:
    """One model family."""

    config_cls: type[BaseModel]
    """Its typed pydantic config."""

    build: Callable[[Any, Any], Any]
    """(config, tokenizer) -> torch.nn.Module."""

    task: Task
    """What it learns: `seq2seq` (document -> summary), `causal_lm` (next token on plain text) or `chat`
    (document -> summary as a chat exchange with a causal LM, loss on the answer only)."""

    description: str

    tokenizer: Callable[[Any], Any] | None = None
    """config -> the model's own tokenizer (pretrained models); None: a tokenizer is given or trained."""

    brings_tokenizer: Callable[[Any], bool] | None = None
    """config -> whether its model brings its own tokenizer (`tokenizer`), as a t5 or gpt2 `from_pretrained`
    does; None: whenever `tokenizer` is set (causal_lm always does)."""

    export: Callable[[Any, Path], None] | None = None
    """(model, existing directory) -> writes the weights and config.json; None: `save_pretrained`."""

    load: Callable[[Path], Any] | None = None
    """directory -> the model `export` wrote; None: the family's transformers class (or its own loader)."""

    parameter_count: Callable[[Any, int], int | None] | None = None
    """(config, tokenizer vocabulary size) -> the parameters the built model has, from the config alone (no
    memory allocated); None (or a None count): not decided by the settings (a pretrained checkpoint)."""

    check: Callable[[Any], None] | None = None
    """config -> raises when what the settings name cannot be used (a t5 `from_pretrained` holding another
    family's model), before a run is created (the kind's check: command line and API submit alike)."""

    tokenizer_defaults: dict[str, Any] | None = None
    """The tokenizer a training of this family trains when its config names none of `tokenizer.path`,
    `tokenizer.method` and `tokenizer.vocab_size` (e.g. char_lstm: a character vocabulary; a character
    model over an 8000-token BPE vocabulary is not what it is for); None: TokenizerChoice's own defaults."""


def _char_lstm_build(config: Any, tokenizer: Any) -> Any:
    build: Callable[[Any, Any], Any] = load_target("tldrlab.models.char_lstm:build")  # torch, on first use
    return build(config, tokenizer)


MODELS: dict[str, ModelSpec] = {
    "t5": ModelSpec(
        t5.T5ModelConfig,
        t5.build,
        "seq2seq",
        "transformers T5 encoder-decoder summarizer",
        parameter_count=t5.parameter_count,
        tokenizer=pretrained.pretrained_tokenizer,
        brings_tokenizer=pretrained.is_pretrained,
        check=functools.partial(pretrained.check_pretrained_family, model_type="t5"),
    ),
    "gpt2": ModelSpec(
        gpt2.GPT2ModelConfig,
        gpt2.build,
        "causal_lm",
        "transformers GPT-2 causal LM",
        parameter_count=gpt2.parameter_count,
        tokenizer=pretrained.pretrained_tokenizer,
        brings_tokenizer=pretrained.is_pretrained,
        check=functools.partial(pretrained.check_pretrained_family, model_type="gpt2"),
    ),
    "char_lstm": ModelSpec(
        char_lstm_config.CharLSTMConfig,
        _char_lstm_build,
        "causal_lm",
        "PyTorch LSTM causal LM",
        parameter_count=char_lstm_config.parameter_count,
        tokenizer_defaults={"method": "char", "vocab_size": 100},
    ),
    "causal_lm": ModelSpec(
        causal_lm.CausalLMConfig,
        causal_lm.build,
        "chat",
        "any pretrained transformers causal LM (directory, GGUF, run, installed name; default the bundled "
        "SmolLM2-135M-Instruct), fine-tuned in full or with LoRA",
        tokenizer=causal_lm.family_tokenizer,
        export=causal_lm.export_model,
        load=causal_lm.load_exported,
        check=causal_lm.check_causal_lm,
    ),
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(unknown_choice("model", name, MODELS))
    return MODELS[name]


def model_task(name: str) -> Task:
    return get_spec(name).task


def parse_model_config(name: str, config: dict[str, Any] | BaseModel | None) -> BaseModel:
    """Validate a config dict (or re-validate a config object) against the model's typed config."""
    spec = get_spec(name)
    raw = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
    try:
        return spec.config_cls.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise ConfigError(f"invalid {name} model config: {problems}") from exc


def parameter_count(name: str, config: dict[str, Any] | BaseModel | None, *, vocab_size: int) -> int | None:
    """Parameters of the model `build_model(name, config, tokenizer)` makes when the tokenizer has
    `vocab_size` tokens, without building it; None when the settings do not decide it (pretrained)."""
    spec = get_spec(name)
    if spec.parameter_count is None:
        return None
    return spec.parameter_count(parse_model_config(name, config), vocab_size)


def build_model(name: str, config: dict[str, Any] | BaseModel | None, tokenizer: Any) -> Any:
    """A freshly initialised (or `from_pretrained`) model whose vocabulary matches `tokenizer`."""
    spec = get_spec(name)
    model = spec.build(parse_model_config(name, config), tokenizer)
    model.tldrlab_name = name  # save_model reads it back
    return model


def count_parameters(model: Any, *, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) in seen or (trainable_only and not param.requires_grad):
            continue
        seen.add(id(param))
        total += param.numel()
    return total


def unwrap_model(model: Any) -> Any:
    """The model inside DistributedDataParallel / accelerate / torch.compile wrappers."""
    while getattr(model, "tldrlab_name", None) is None:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            break
        model = inner
    return model


def model_name_of(model: Any) -> str:
    """The registry name of a built or loaded model (wrappers are looked through)."""
    model = unwrap_model(model)
    name = getattr(model, "tldrlab_name", None)
    if isinstance(name, str) and name in MODELS:
        return name
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in ("t5", "gpt2"):
        return str(model_type)
    if type(model).__name__.endswith("ForCausalLM"):  # any other transformers causal LM
        return "causal_lm"
    raise ConfigError(f"cannot tell which tldrlab model {type(model).__name__} is; pass name= explicitly")
