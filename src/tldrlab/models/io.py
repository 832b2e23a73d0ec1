"""Saving and loading models in Hugging Face layout.

    save_model(model, tokenizer, "out/model")  # safetensors, config.json, tokenizer, tldrlab_model.json
    model, tokenizer, name = load_model("out/model")   # or any model reference (models.resolve): a run id,
                                                       # an installed name, `smollm2`, a .gguf file

t5 and gpt2 go through `save_pretrained`, so plain `transformers.AutoModelForSeq2SeqLM / AutoModelForCausalLM`
and `AutoTokenizer` load the directory. char_lstm writes safetensors + its own config.json (never pickle).
causal_lm exports through its family (LoRA merged, adapters kept in `adapter/`) with its tokenizer and chat
template.
The directory is written next to its destination and swapped in, so a crash never leaves half a model where
a good one was. A killed writer leaves its temporary directory behind (`.NAME.tmp-TOKEN`, ~0.5 GB for an
imported SmolLM2); the writer holds a lock on `.NAME.tmp-TOKEN.lock` while it writes, so
`remove_abandoned_writes` can tell those whose writer is gone from one still being written (and removes a
lock file a writer killed before making its directory left alone); every
`save_model` runs it on the directory it writes into (a run directory, the models store) first.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tldrlab.errors import CheckpointError, InvalidInputError
from tldrlab.models.char_lstm_config import CharLSTMConfig
from tldrlab.models.registry import MODELS, get_spec, model_name_of, unwrap_model
from tldrlab.models.resolve import ResolvedModel, resolve_model_ref
from tldrlab.runs.atomic import atomic_write_json
from tldrlab.runs.weights import save_module_safetensors, save_pretrained
from tldrlab.tokenizers.load import load_tokenizer

MODEL_MANIFEST = "tldrlab_model.json"
log = logging.getLogger("tldrlab.models.io")

ABANDONED_WRITE = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<token>[0-9a-f]{8})$")
"""`save_model`'s temporary directory (`.NAME.tmp-TOKEN`) and the replaced model it is removing
(`.NAME.old-TOKEN`), both named by the writer's token."""
WRITER_LOCK = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<token>[0-9a-f]{8})\.lock$")
"""A writer's lock file (`_writer_lock`)."""
UNLOCKED_WRITE_AGE_S = 3600.0
"""A temporary directory without a lock file (written before writers took one) counts as abandoned once
nothing in it changed for this long: an import of the bundled model takes well under a minute."""


def _writer_lock(directory: Path, name: str, token: str) -> Path:
    return directory / f".{name}.tmp-{token}.lock"


@contextmanager
def _writing(lock_path: Path) -> Iterator[None]:
    """Hold `lock_path` locked while a model is written: the kernel drops the lock when the writer dies
    (even by SIGKILL), which is how `remove_abandoned_writes` knows its directory is abandoned."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)


def _newest_change(path: Path) -> float:
    newest = path.lstat().st_mtime
    for root, dirs, files in os.walk(path):
        for entry in (*dirs, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(root, entry)).st_mtime)
            except OSError:  # removed meanwhile
                continue
    return newest


def _tree_bytes(path: Path) -> int:
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def remove_abandoned_writes(directory: Path, *, unlocked_age_s: float = UNLOCKED_WRITE_AGE_S) -> list[Path]:
    """Remove the temporary directories `save_model` left in `directory` when its writer was killed; returns
    those removed. A directory whose writer still holds its lock is never touched; one without a lock file
    only once nothing in it changed for `unlocked_age_s` seconds."""
    removed: list[Path] = []
    try:
        entries = sorted(directory.iterdir())
    except OSError:  # no store yet
        return removed
    for entry in entries:
        if (lone := WRITER_LOCK.match(entry.name)) is not None:
            _remove_lone_lock(directory, entry, lone["name"], lone["token"])
            continue
        match = ABANDONED_WRITE.match(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        lock_path = _writer_lock(directory, match["name"], match["token"])
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            fd = None
        except OSError:  # not ours to judge (another user's lock file): leave it
            continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its writer is alive and still writing
                    continue
            elif time.time() - _newest_change(entry) < unlocked_age_s:
                continue
            size = _tree_bytes(entry)
            shutil.rmtree(entry, ignore_errors=True)
            if entry.exists():  # not ours to remove (permissions): keep its lock file too
                continue
            lock_path.unlink(missing_ok=True)
            log.info("removed %s, left by a model write that never finished (%.0f MB)", entry, size / 1e6)
            removed.append(entry)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _remove_lone_lock(directory: Path, lock_path: Path, name: str, token: str) -> None:
    """Remove a writer's lock file left without its directories: its writer was killed after taking the
    lock and before making its temporary directory (or after removing the model it replaced, before
    removing the lock). Kept while its writer holds it, or while a directory of its write exists (the
    directory's own cleanup removes both)."""
    writes = [directory / f".{name}.{state}-{token}" for state in ("tmp", "old")]
    if lock_path.is_symlink() or any(os.path.lexists(path) for path in writes):
        return
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:  # gone meanwhile, or not ours to judge
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is alive
            return
        if not any(os.path.lexists(path) for path in writes):  # made just before it locked
            lock_path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def save_model(
    model: Any, tokenizer: Any, out_dir: Path | str, *, name: str | None = None, **extra: Any
) -> None:
    """Write the model and its tokenizer to `out_dir` (replacing what was there only once complete)."""
    model = unwrap_model(model)
    name = name or model_name_of(model)
    spec = get_spec(name)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # what an earlier writer of this directory left when it was killed (a run's export, ~0.5 GB for a causal
    # LM): nothing else cleans a run directory, and a write still in progress keeps its lock, so is kept
    remove_abandoned_writes(out.parent)
    token = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{token}"
    # the lock first, the directory second: a directory that exists always has its writer's lock taken
    with _writing(_writer_lock(out.parent, out.name, token)):
        try:
            if name == "char_lstm":
                tmp.mkdir()
                save_module_safetensors(model, tmp / "model.safetensors")
                config = {"model_type": "char_lstm", **model.config.model_dump()}
                atomic_write_json(tmp / "config.json", config)
            elif spec.export is not None:
                tmp.mkdir()
                spec.export(model, tmp)
            else:
                save_pretrained(model, tmp, safe_serialization=True)
            if tokenizer is not None:
                save_pretrained(tokenizer, tmp)
            atomic_write_json(tmp / MODEL_MANIFEST, {"name": name, "task": spec.task, **extra})
            _swap_in(tmp, out, token)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, out: Path, token: str) -> None:
    if not out.exists():
        new.rename(out)
        return
    old = out.parent / f".{out.name}.old-{token}"  # the writer's token: its lock covers this one too
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
    architectures = config.get("architectures") or []
    if any(str(a).endswith("ForCausalLM") for a in architectures):
        return "causal_lm"  # a Llama / Qwen2 / Mistral / ... directory written by transformers
    families = ", ".join(name for name in MODELS if name != "causal_lm")
    if not architectures:
        # "holds a 'llama' model; tldrlab loads ..., causal_lm" (or "a None model") named no fault: a causal
        # LM is told by `architectures`, which a config written by hand or an old exporter may lack
        kind = f"model_type {model_type!r}" if model_type else "no model_type either"
        raise InvalidInputError(
            f"{directory / 'config.json'} has no `architectures` field ({kind}), so tldrlab cannot tell "
            f"which model it holds: for a causal LM add its class, e.g. "
            f'"architectures": ["LlamaForCausalLM"], to config.json (or save the model again with '
            f"transformers' save_pretrained); tldrlab's own {families} directories name their model_type"
        )
    shown = ", ".join(str(a) for a in architectures)
    raise InvalidInputError(
        f"{directory} holds a {shown} model ({model_type!r}), not a causal LM (*ForCausalLM) or one of "
        f"tldrlab's {families}"
    )


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

            # lazy (as the other families): the model store imports this module, and the API server (its
            # models routes) loaded torch through it at every start, ~2 CPU-s it never used
            from tldrlab.models.char_lstm import CharLSTM

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
