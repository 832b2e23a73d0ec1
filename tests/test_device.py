"""Device and precision rules, and seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tldrlab import device as device_module
from tldrlab.device import loader_settings, resolve_device, resolve_precision, seed_everything
from tldrlab.errors import ConfigError

HAS_CUDA = torch.cuda.is_available()


def test_auto_resolves_to_what_this_machine_has() -> None:
    resolved = resolve_device("auto")
    assert resolved == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_precision("auto", resolved) == ("fp16" if HAS_CUDA else "fp32")
    assert resolve_device("cpu") == "cpu"


def test_cpu_precision_rules() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"  # allowed only when asked for explicitly
    with pytest.raises(ConfigError, match=r"fp16.*needs CUDA"):
        resolve_precision("fp16", "cpu")


def test_cuda_without_cuda_is_refused() -> None:
    if HAS_CUDA:
        assert resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_cuda_rules_when_cuda_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has no GPU; the rule table itself is checked by declaring CUDA present.
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"
    assert resolve_precision("auto", "cuda") == "fp16" and resolve_precision("fp16", "cuda") == "fp16"
    assert loader_settings("cuda").pin_memory and loader_settings("cuda").num_workers >= 1


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown device 'tpu'; choose one of auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="unknown precision 'int8'; choose one of auto, fp32, fp16, bf16"):
        resolve_precision("int8", "cpu")


def test_cpu_loader_settings() -> None:
    settings = loader_settings("cpu")
    assert settings.num_workers == 0 and not settings.pin_memory


def test_seed_everything_repeats_python_numpy_and_torch() -> None:
    def draw() -> tuple[float, float, list[float]]:
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first
