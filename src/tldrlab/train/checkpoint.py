"""Resumable checkpoints, written atomically and verified on load.

A checkpoint is a directory `checkpoints/step-00000120/`:
    model.safetensors   model weights (safetensors; shared / tied tensors handled)
    optimizer.pt        optimizer state, grad-scaler state and torch RNG states (torch.save; loaded with
                        weights_only=True, so nothing but tensors and plain containers is ever unpickled)
    state.json          step, data position (epoch, batch index), best metric, early-stopping counter,
                        Python and NumPy RNG states, anything else small
    index.json          written last: step and the sha256 + size of every file above

It is written in a temporary sibling directory, every file fsynced, then renamed into place, so a crash
leaves either a complete checkpoint or a `.tmp-*` directory that is ignored. On load every file's sha256 is
checked against the index: a truncated or corrupt checkpoint raises CheckpointError, and `load_latest` falls
back to the previous good one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tldrlab.errors import CheckpointError
from tldrlab.runs.atomic import sha256_file
from tldrlab.runs.weights import save_module_safetensors

logger = logging.getLogger(__name__)

INDEX = "index.json"
MODEL = "model.safetensors"
OPTIMIZER = "optimizer.pt"
STATE = "state.json"
PREFIX = "step-"
BEST = "best"
"""The named checkpoint of the best evaluation so far (kept apart from pruning)."""


@dataclass
class Checkpoint:
    """What a loaded checkpoint gives back (the model's weights are loaded into the model in place)."""

    path: Path
    step: int
    state: dict[str, Any]
    optimizer_state: dict[str, Any]
    scaler_state: dict[str, Any] | None


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint directories (those with an index), oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: p.name)


def checkpoint_step(path: Path) -> int | None:
    """The step a complete checkpoint's index names, without hashing its files; None when unreadable."""
    try:
        return int(json.loads((path / INDEX).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- RNG ----------------------------------------------------------------------------------------------------
def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Python + NumPy RNG states as JSON, torch CPU (+ CUDA) RNG states as tensors."""
    py_version, py_state, py_gauss = random.getstate()
    np_state: Any = np.random.get_state()
    as_json = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *[_plain(x) for x in np_state[2:]]],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    return as_json, tensors


def restore_rng(as_json: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, state, gauss = as_json["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, *rest = as_json["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if len(cuda) == torch.cuda.device_count():
            # A resumed process has seeded (seed_everything) but not yet used CUDA, so torch queues both
            # the seed and this state for CUDA's lazy start, and runs queued seeds last: the seed would win
            # and the resumed run would replay the first steps' dropout masks. Starting CUDA here runs the
            # seed now, and the state below is set at once.
            torch.cuda.init()
            torch.cuda.set_rng_state_all(cuda)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# -- writing ------------------------------------------------------------------------------------------------
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    directory: Path,
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    scaler: Any | None = None,
    name: str | None = None,
) -> Path:
    """Write a complete checkpoint atomically and return its directory.

    `state` is small JSON-able training state (data position, best metric, ...); RNG states are added here.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / (name or checkpoint_name(step))
    tmp = directory / f".tmp-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        rng_json, rng_tensors = capture_rng()
        save_module_safetensors(model, tmp / MODEL)
        # through a Python file: torch's own writer turns a full disk into "unexpected pos 576 vs 534", the
        # file's write raises the system's error (No space left on device), which the run reports as such
        with (tmp / OPTIMIZER).open("wb") as handle:
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rng_tensors,
                },
                handle,
            )
        (tmp / STATE).write_text(json.dumps({**state, "step": step, "rng": rng_json}), encoding="utf-8")
        files = {}
        for file in (MODEL, OPTIMIZER, STATE):
            _fsync(tmp / file)
            files[file] = {"sha256": sha256_file(tmp / file), "size": (tmp / file).stat().st_size}
        index = {"step": step, "created_at": time.time(), "files": files}
        (tmp / INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
        _fsync(tmp / INDEX)
        if final.exists():  # re-saving the same step (e.g. a final checkpoint after a periodic one)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Keep the newest `keep` step checkpoints; also remove leftovers of interrupted writes."""
    for leftover in directory.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------------------
def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check the index and every file's size and sha256; return the index or raise CheckpointError."""
    index_path = path / INDEX
    if not index_path.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: {INDEX} is missing")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        files = index["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unreadable {INDEX}: {exc}") from exc
    for name, meta in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is missing {name}")
        size = file.stat().st_size
        if size != meta["size"]:
            raise CheckpointError(
                f"checkpoint {path}: {name} is truncated or changed ({size} bytes, expected {meta['size']})"
            )
        if sha256_file(file) != meta["sha256"]:
            raise CheckpointError(f"checkpoint {path}: {name} is corrupt (sha256 mismatch)")
    return dict(index)


def load_checkpoint(
    path: Path, model: torch.nn.Module, *, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Verify a checkpoint, load its weights into `model` and return the rest of its state."""
    from safetensors.torch import load_model

    index = verify_checkpoint(path)
    try:
        missing, unexpected = load_model(model, str(path / MODEL), strict=False, device=str(map_location))
    except RuntimeError as exc:  # shape mismatches
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"checkpoint {path} does not fit this model: {detail}") from exc
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    try:
        blob = torch.load(path / OPTIMIZER, map_location="cpu", weights_only=True)
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    restore_rng(state.pop("rng"), blob["rng"])
    return Checkpoint(
        path=path,
        step=int(index["step"]),
        state=state,
        optimizer_state=blob["optimizer"],
        scaler_state=blob["scaler"],
    )


def load_latest(
    directory: Path, model: torch.nn.Module, *, map_location: str | torch.device = "cpu"
) -> Checkpoint | None:
    """Load the newest good checkpoint, falling back past corrupt ones (each is logged); None if none.

    Raises CheckpointError only when checkpoints exist but none of them is usable.
    """
    candidates = list_checkpoints(directory)
    errors = []
    for path in reversed(candidates):
        try:
            return load_checkpoint(path, model, map_location=map_location)
        except CheckpointError as exc:
            logger.warning("skipping checkpoint: %s", exc.message)
            errors.append(exc.message)
    if errors:
        raise CheckpointError("no usable checkpoint: " + "; ".join(errors))
    return None
