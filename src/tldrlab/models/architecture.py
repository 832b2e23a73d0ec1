"""A model's architecture, read from its files without loading it: `config.json`'s `model_type` for a
Hugging Face directory, the `general.architecture` metadata key for a GGUF file.

    model_architecture(resolve_model_ref("smollm2"))      # "llama" (read from the GGUF header)
    model_architecture(resolve_model_ref("train-2026..."))  # "gpt2", "t5", "llama", ...

Loading a model to learn what it is costs seconds to minutes (a GGUF file is de-quantized first); a check
that refuses a model for its architecture reads these few bytes instead. No torch here: submit-time checks
(the API's too) call it.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

from tldrlab.models.resolve import ResolvedModel

GGUF_MAGIC = b"GGUF"
ARCHITECTURE_KEY = "general.architecture"
_MAX_KEYS_READ = 64
"""`general.architecture` is among a GGUF file's first keys (writers put the general.* keys first): past
this many, the file is read no further and its architecture is unknown."""

# GGUF metadata value types -> their size in bytes (fixed-size ones); 8 is a string, 9 an array
_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_INTEGERS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}
"""GGUF's integer value types -> their struct format."""


def model_architecture(model: ResolvedModel) -> str | None:
    """The model's architecture name as its files give it (lower case), or None when they do not say."""
    if model.kind == "gguf":
        return gguf_architecture(model.path)
    try:
        config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return model_type.lower() if isinstance(model_type, str) and model_type else None


GGUF_MODEL_TYPES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
    "t5encoder": "t5",
    "gemma3": "gemma3_text",
    "gemma4": "gemma4_text",
}
"""GGUF architectures (llama.cpp's names) that transformers' GGUF loader builds under another `model_type`
(`transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint`); any other keeps its name."""


def model_type(model: ResolvedModel) -> str | None:
    """The transformers `model_type` the model loads as, from its files: a directory's `config.json`
    `model_type`, a GGUF file's architecture under the name transformers gives it (`GGUF_MODEL_TYPES`);
    None when they do not say."""
    architecture = model_architecture(model)
    if model.kind == "gguf" and architecture is not None:
        return GGUF_MODEL_TYPES.get(architecture, architecture)
    return architecture


def model_positions(model: ResolvedModel) -> int | None:
    """How many positions a Hugging Face directory's model takes when its positions are learned absolute
    embeddings (GPT-2's `n_positions`, what `models.chat.context_limit` reads from a loaded model): a
    longer input is an IndexError inside its forward. None for other models (rotary ones only degrade past
    their training length) and for GGUF files (left to the loaded model)."""
    if model.kind == "gguf":
        return None
    try:
        config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    positions = config.get("n_positions") if isinstance(config, dict) else None
    return positions if isinstance(positions, int) and not isinstance(positions, bool) else None


def _config_json(model: ResolvedModel) -> dict[str, Any] | None:
    """A model directory's `config.json` as a mapping; None when it is missing, unreadable or no object."""
    try:
        config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def model_layers(model: ResolvedModel) -> int | None:
    """How many transformer layers (blocks) the model has as its files give it: `config.json`'s
    `num_hidden_layers` (`n_layer` for GPT-2), a GGUF file's `<architecture>.block_count`; None when they do
    not say."""
    if model.kind == "gguf":
        header = gguf_header(model.path)
        architecture = header.get(ARCHITECTURE_KEY)
        count = header.get(f"{architecture}.block_count") if isinstance(architecture, str) else None
    else:
        config = _config_json(model)
        if config is None:
            return None
        count = config.get("num_hidden_layers", config.get("n_layer"))
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None


WIDTH_KEYS = ("hidden_size", "n_embd", "d_model")
"""The keys a Hugging Face config.json gives a model's width (hidden size) under, by family: most
(`hidden_size`), GPT-2's (`n_embd`), OPT's and the encoder-decoders' (`d_model`)."""


def model_width(model: ResolvedModel) -> tuple[int, str] | None:
    """The model's width (its hidden size, the width of its token embeddings) as its files give it, and the
    key it was read from: `config.json`'s `hidden_size` (`n_embd`, `d_model`: `WIDTH_KEYS`), a GGUF file's
    `<architecture>.embedding_length`; None when they do not say."""
    if model.kind == "gguf":
        header = gguf_header(model.path)
        architecture = header.get(ARCHITECTURE_KEY)
        key = f"{architecture}.embedding_length" if isinstance(architecture, str) else ""
        found: object = header.get(key)
    else:
        config = _config_json(model)
        if config is None:
            return None
        key = next((k for k in WIDTH_KEYS if k in config), "")
        found = config.get(key)
    if isinstance(found, int) and not isinstance(found, bool) and found > 0:
        return found, key
    return None


def gguf_architecture(path: Path) -> str | None:
    """`general.architecture` of a GGUF file, read from its header (None: not a readable GGUF file, or the
    key is not among its first keys)."""
    architecture = gguf_header(path).get(ARCHITECTURE_KEY)
    return architecture.lower() if isinstance(architecture, str) else None


def gguf_header(path: Path) -> dict[str, str | int]:
    """The string and integer values among a GGUF file's first `_MAX_KEYS_READ` metadata keys (the general.*
    and architecture keys: writers put them before the tokenizer's long arrays); empty for a file that is no
    readable GGUF file, what was read before a damaged part for one cut short.

    Kept per file version (path, size, modification time): skipping SmolLM2's vocabulary and merges, among
    its first keys, takes 30-80 ms, and a submit's checks ask for its architecture, layers and sizes."""
    try:
        stat = path.stat()
    except OSError:
        return {}
    return dict(_read_gguf_header(path.absolute(), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _read_gguf_header(path: Path, size: int, mtime_ns: int) -> dict[str, str | int]:
    values: dict[str, str | int] = {}
    try:
        with path.open("rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                return values
            version, _tensors, keys = struct.unpack("<IQQ", _exactly(handle, 20))
            if version < 2:  # version 1 used 32-bit counts and lengths; nothing writes it any more
                return values
            for _ in range(min(keys, _MAX_KEYS_READ)):
                key = _string(handle)
                (value_type,) = struct.unpack("<I", _exactly(handle, 4))
                if value_type == _STRING:
                    values[key] = _string(handle)
                elif value_type in _INTEGERS:
                    (values[key],) = struct.unpack(
                        _INTEGERS[value_type], _exactly(handle, _FIXED_SIZES[value_type])
                    )
                else:
                    _skip(handle, value_type)
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return values
    return values


def _exactly(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return data


def _string(handle: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _exactly(handle, 8))
    if length > 1 << 20:  # no key or architecture name is this long: not a GGUF header after all
        raise ValueError("implausible GGUF string length")
    return _exactly(handle, length).decode("utf-8")


def _skip(handle: BinaryIO, value_type: int) -> None:
    if value_type in _FIXED_SIZES:
        handle.seek(_FIXED_SIZES[value_type], 1)
    elif value_type == _STRING:
        (length,) = struct.unpack("<Q", _exactly(handle, 8))
        handle.seek(length, 1)
    elif value_type == _ARRAY:
        item_type, count = struct.unpack("<IQ", _exactly(handle, 12))
        if item_type in _FIXED_SIZES:
            handle.seek(_FIXED_SIZES[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip(handle, item_type)
    else:
        raise ValueError(f"unknown GGUF value type {value_type}")
