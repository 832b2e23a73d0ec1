"""Saving and loading models in Hugging Face layout.

    save_model(model, tokenizer, "out/model")  # safetensors, config.json, tokenizer, tldrlab_model.json
    model, tokenizer, name = load_model("out/model")   # or any model reference (models.resolve): a run id,
                                                       # an installed name, `smollm2`, a .gguf file

t5 and gpt2 go through `save_pretrained`, so plain `transformers.AutoModelForSeq2SeqLM / AutoModelForCausalLM`
and `AutoTokenizer` load the directory. char_lstm writes safetensors + its own config.json (never pickle).
causal_lm exports through its family (LoRA merged, adapters kept in `adapter/`) with its tokenizer and chat
template.
The directory is written next to its destination and swapped in, so a crash never leaves half a model where
a good one was.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from tldrlab.errors import CheckpointError, InvalidInputError
from tldrlab.models.char_lstm import CharLSTM
from tldrlab.models.char_lstm_config import CharLSTMConfig
from tldrlab.models.registry import MODELS, get_spec, model_name_of, unwrap_model
from tldrlab.models.resolve import ResolvedModel, resolve_model_ref
from tldrlab.runs.atomic import atomic_write_json
from tldrlab.runs.weights import save_module_safetensors, save_pretrained
from tldrlab.tokenizers.load import load_tokenizer

MODEL_MANIFEST = "tldrlab_model.json"


def save_model(
    model: Any, tokenizer: Any, out_dir: Path | str, *, name: str | None = None, **extra: Any
) -> None:
    """Write the model and its tokenizer to `out_dir` (replacing what was there only once complete)."""
    model = unwrap_model(model)
    name = name or model_name_of(model)
    spec = get_spec(name)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if name == "char_lstm":
            tmp.mkdir()
            save_module_safetensors(model, tmp / "model.safetensors")
            atomic_write_json(tmp / "config.json", {"model_type": "char_lstm", **model.config.model_dump()})
        elif spec.export is not None:
            tmp.mkdir()
            spec.export(model, tmp)
        else:
            save_pretrained(model, tmp, safe_serialization=True)
        if tokenizer is not None:
            save_pretrained(tokenizer, tmp)
        atomic_write_json(tmp / MODEL_MANIFEST, {"name": name, "task": spec.task, **extra})
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, out: Path) -> None:
    if not out.exists():
        new.rename(out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def resolve_model_dir(path_or_run: Path | str) -> Path:
    """A model directory (Hugging Face layout) named by any model reference (see `models.resolve`)."""
    resolved = resolve_model_ref(str(path_or_run))
    if resolved.kind != "directory":
        raise InvalidInputError(
            f"{path_or_run} is a GGUF file; convert it once with `tldrlab models import {resolved.path}`"
        )
    return resolved.path


def model_name_in(directory: Path) -> str:
    manifest = directory / MODEL_MANIFEST
    if manifest.is_file():
        return str(json.loads(manifest.read_text(encoding="utf-8"))["name"])
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {directory / 'config.json'}: {exc}") from exc
    model_type = config.get("model_type")
    if model_type in MODELS:
        return str(model_type)
    if any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or []):
        return "causal_lm"  # a Llama / Qwen2 / Mistral / ... directory written by transformers
    raise InvalidInputError(f"{directory} holds a {model_type!r} model; tldrlab loads {', '.join(MODELS)}")


def load_model(path_or_name: Path | str, *, device: str | None = None) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer or None, registry name) from any model reference (`models.resolve`):
    a model directory, a run id, an installed model, the bundled `smollm2`, a .gguf file."""

    resolved = resolve_model_ref(str(path_or_name))
    if resolved.kind == "gguf":
        return _load_causal_lm(resolved, device)
    directory = resolved.path
    name = model_name_in(directory)
    if name == "causal_lm":
        return _load_causal_lm(resolved, device)
    try:
        if name == "char_lstm":
            from safetensors.torch import load_model as load_safetensors

            raw = json.loads((directory / "config.json").read_text(encoding="utf-8"))
            raw.pop("model_type", None)
            model: Any = CharLSTM(CharLSTMConfig.model_validate(raw))
            load_safetensors(model, str(directory / "model.safetensors"))
        elif name == "t5":
            from transformers import T5ForConditionalGeneration

            model = T5ForConditionalGeneration.from_pretrained(str(directory))
        else:
            from transformers import GPT2LMHeadModel

            model = GPT2LMHeadModel.from_pretrained(str(directory))
    except Exception as exc:  # safetensors raises its own SafetensorError for truncated files
        raise CheckpointError(f"cannot load the {name} model in {directory}: {exc}") from exc
    model.tldrlab_name = name
    tokenizer = None
    if (directory / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(directory)
    elif (directory / "tokenizer_config.json").is_file():  # a plain transformers dir with a slow tokenizer
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer, name


def _load_causal_lm(resolved: ResolvedModel, device: str | None) -> tuple[Any, Any, str]:
    # lazy: that submodule needs this package initialised (a cycle at the top)
    from tldrlab.models.causal_lm import load_causal_lm, load_tokenizer

    model = load_causal_lm(resolved)
    model.tldrlab_name = "causal_lm"
    tokenizer = load_tokenizer(resolved)
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer, "causal_lm"
