"""Device, precision, seeding and data-loader defaults.

- device `auto` is CUDA when available, else CPU; `cuda` without CUDA is an error; `cpu` forces the CPU.
- precision `auto` is fp16 on CUDA and fp32 on CPU; fp16 and bf16 are CUDA-only mixed precision (fp16 with
  loss scaling). bf16 on CPU is allowed only when asked for explicitly (torch supports it; it is slow).
- data loaders: on CUDA `num_workers = min(4, cpu_count)` and pinned memory; on CPU no workers.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from tldrlab.choices import unknown_choice
from tldrlab.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda"]
PrecisionName = Literal["auto", "fp32", "fp16", "bf16"]
DEVICES: tuple[str, ...] = get_args(DeviceName)
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str = "auto") -> str:
    """`auto` -> `cuda` when available else `cpu`; `cuda` without CUDA raises ConfigError."""
    if device not in DEVICES:
        raise ConfigError(unknown_choice("device", device, DEVICES))
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ConfigError("device 'cuda' was requested but CUDA is not available on this machine")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """`auto` -> fp16 on CUDA, fp32 on CPU. fp16 on CPU is refused (no loss-scaled CPU autocast)."""
    if precision not in PRECISIONS:
        raise ConfigError(unknown_choice("precision", precision, PRECISIONS))
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    if precision == "fp16" and device != "cuda":
        raise ConfigError("precision 'fp16' needs CUDA; use fp32 (or bf16) on the CPU")
    return precision


@dataclass(frozen=True)
class LoaderSettings:
    num_workers: int
    pin_memory: bool


def loader_settings(device: str) -> LoaderSettings:
    if device == "cuda":
        return LoaderSettings(num_workers=min(4, os.cpu_count() or 1), pin_memory=True)
    return LoaderSettings(num_workers=0, pin_memory=False)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) in one call."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
