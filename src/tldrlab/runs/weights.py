"""Weights files and library-written model directories, with the file modes a plain `open()` gives.

safetensors' writer creates its file 0600 whatever the umask (it writes a temporary file and renames it), and
a rename keeps that mode: in a home shared by an API and workers running as different users (umask 002 /
022) the API could read a run's log but not its model. Every tldrlab write of tensors therefore goes through
here, so no call site has to remember the mode (tests/runs/test_weights.py fails on one that writes
safetensors, calls a library's `save_pretrained` or fixes modes by hand anywhere else):

    save_safetensors({"embeddings": tensor}, path, metadata={"rows": "12"})   # a dict of tensors
    save_module_safetensors(model, path)          # a module's state dict, shared / tied tensors stored once
    save_pretrained(model_or_tokenizer, directory, safe_serialization=True)   # transformers' / peft's writer
    with library_writes(directory): ...           # whatever a library writes there by its own means

The first two are atomic (`runs.atomic.atomic_write_with`: temporary file in the same directory, the mode,
fsync, rename, fsync the directory), so a reader (a checkpoint read mid-run, a model loaded while a run
re-exports it) never sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tldrlab.runs.atomic import atomic_write_with, honour_umask

if TYPE_CHECKING:
    import torch


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: Path | str, *, metadata: Mapping[str, str] | None = None
) -> None:
    """Write `tensors` (contiguous, no two sharing memory) to `path` as safetensors, atomically."""
    from safetensors.torch import save_file

    plain = None if metadata is None else dict(metadata)
    atomic_write_with(path, lambda tmp: save_file(dict(tensors), str(tmp), metadata=plain))


def save_module_safetensors(
    model: torch.nn.Module, path: Path | str, *, metadata: Mapping[str, str] | None = None
) -> None:
    """Write `model`'s state dict to `path` as safetensors, atomically; tensors the model shares (T5's tied
    embeddings) are stored once, as `safetensors.torch.save_model` does (`load_model` restores them).
    Weights that are different views of one buffer (an LSTM's or GRU's on CUDA: cuDNN moves them into one
    flat buffer) are written from a copy in which each has memory of its own: `save_model` can only store
    one tensor per buffer and refuses them ("None is covering the entire storage")."""
    from safetensors.torch import save_model

    plain = None if metadata is None else dict(metadata)
    saved = _with_own_memory(model)
    atomic_write_with(path, lambda tmp: save_model(saved, str(tmp), metadata=plain))


def _with_own_memory(model: torch.nn.Module) -> torch.nn.Module:
    """`model` itself, or, when some of its weights are distinct views of one buffer, a copy in which each of
    those has its own memory (the same tensor under two names, tied weights, stays one tensor)."""
    import copy

    state = model.state_dict(keep_vars=True)
    views: dict[tuple[str, int], set[tuple[int, tuple[int, ...], tuple[int, ...]]]] = {}
    names: dict[tuple[str, int], list[str]] = {}
    for name, tensor in state.items():
        if tensor.device.type == "meta" or tensor.numel() == 0:
            continue
        buffer = (str(tensor.device), tensor.untyped_storage().data_ptr())
        views.setdefault(buffer, set()).add((tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride())))
        names.setdefault(buffer, []).append(name)
    shared = [name for buffer, found in views.items() if len(found) > 1 for name in names[buffer]]
    if not shared:
        return model
    separate = copy.deepcopy(model)
    copied = separate.state_dict(keep_vars=True)
    for name in shared:
        copied[name].data = copied[name].data.clone()
    return separate


def save_pretrained(saveable: Any, directory: Path | str, **options: Any) -> None:
    """`saveable.save_pretrained(directory, **options)` (a transformers or peft model, a tokenizer), then the
    mode a plain `open()` / `mkdir` gives for what it wrote (its weights come from safetensors' writer, 0600).
    Only the files it created or rewrote and the directories it created are changed: `directory` may be a
    user's `--out` holding files of their own. Not atomic (the library writes several files): write into a
    temporary directory and rename it where a reader may look meanwhile."""
    with library_writes(directory):
        saveable.save_pretrained(str(directory), **options)


@contextmanager
def library_writes(directory: Path | str) -> Iterator[None]:
    """What a library writes into `directory` during the block, by its own means (PerforatedAI's mid-run
    models, through safetensors' writer: 0600), gets the mode a plain `open()` / `mkdir` gives: only the
    files created or rewrote and the directories created, so a directory holding a user's own files may be
    watched. Also when the block raises (what was written stays written)."""
    directory = Path(directory)
    before = _signatures(directory)
    try:
        yield
    finally:
        for path, signature in _signatures(directory).items():
            # a directory that existed changes its mtime when a file is added: only new ones are the writer's
            if path not in before or (before[path] != signature and not path.is_dir()):
                honour_umask(path)


def _signatures(directory: Path) -> dict[Path, tuple[int, int]]:
    """(inode, modification time) of `directory` and everything under it, links left alone: what a writer
    created or rewrote differs."""
    if not directory.exists():
        return {}
    found = {directory: _signature(directory)}
    for root, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            path = Path(root, name)
            if not path.is_symlink():
                found[path] = _signature(path)
    return found


def _signature(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_ino, status.st_mtime_ns
