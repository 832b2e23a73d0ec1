"""Saving and loading models in Hugging Face layout.

    save_model(model, tokenizer, "out/model")  # safetensors, config.json, tokenizer, tldrlab_model.json
    model, tokenizer, name = load_model("out/model")   # or a run id: its <run_dir>/model

t5 and gpt2 go through `save_pretrained`, so plain `transformers.AutoModelForSeq2SeqLM / AutoModelForCausalLM`
and `AutoTokenizer` load the directory. char_lstm writes safetensors + its own config.json (never pickle).
The directory is written next to its destination and swapped in, so a crash never leaves half a model where
a good one was.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from tldrlab.errors import CheckpointError, InvalidInputError, NotFoundError
from tldrlab.models.char_lstm import CharLSTM, CharLSTMConfig
from tldrlab.models.registry import MODELS, get_spec, model_name_of, unwrap_model
from tldrlab.models.resolve import MODEL_SUBDIR, resolve_model_ref
from tldrlab.runs.atomic import atomic_write_json

MODEL_MANIFEST = "tldrlab_model.json"


def save_model(
    model: Any, tokenizer: Any, out_dir: Path | str, *, name: str | None = None, **extra: Any
) -> None:
    """Write the model and its tokenizer to `out_dir` (replacing what was there only once complete)."""
    from safetensors.torch import save_model as save_safetensors

    model = unwrap_model(model)
    name = name or model_name_of(model)
    spec = get_spec(name)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if name == "char_lstm":
            tmp.mkdir()
            save_safetensors(model, str(tmp / "model.safetensors"))
            atomic_write_json(tmp / "config.json", {"model_type": "char_lstm", **model.config.model_dump()})
        else:
            model.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
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
    """A saved model's directory from any model reference (`tldrlab.models.resolve.resolve_model_ref`):
    a path, a path under the home, a run id; the directory must hold `config.json`."""
    path = resolve_model_ref(path_or_run)
    for candidate in (path, path / MODEL_SUBDIR):
        if (candidate / "config.json").is_file():
            return candidate
    raise NotFoundError(f"no saved model in {path} (expected config.json there or in {MODEL_SUBDIR}/)")


def model_name_in(directory: Path) -> str:
    manifest = directory / MODEL_MANIFEST
    if manifest.is_file():
        return str(json.loads(manifest.read_text(encoding="utf-8"))["name"])
    try:
        model_type = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {directory / 'config.json'}: {exc}") from exc
    if model_type in MODELS:
        return str(model_type)
    raise InvalidInputError(f"{directory} holds a {model_type!r} model; tldrlab loads {', '.join(MODELS)}")


def load_model(path_or_name: Path | str, *, device: str | None = None) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer or None, registry name) from a model directory or a run."""
    from tldrlab.tokenizers.load import load_tokenizer

    directory = resolve_model_dir(path_or_name)
    name = model_name_in(directory)
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
