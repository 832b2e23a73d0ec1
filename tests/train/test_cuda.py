"""What only a CUDA device shows. This CPU machine (and CI) has none, so these are skipped here; the device
check (`bench/cuda_check.sh`, its pytest stage runs tests/train) runs them on a GPU machine. Each one pins a
fault seen there, whose CPU-side cause has its own test where one can be built (tests/runs/test_weights.py
lays an LSTM's weights out as cuDNN does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SRC = Path(__file__).resolve().parents[2] / "src"

CAPTURE = """
import json, sys, torch
from safetensors.torch import save_file
from tldrlab.device import seed_everything
from tldrlab.train.checkpoint import capture_rng
seed_everything(0)
torch.rand(1000, device="cuda")  # the steps before the checkpoint
as_json, tensors = capture_rng()
save_file({**tensors, "expected": torch.rand(8, device="cuda").cpu()}, sys.argv[1])
json.dump(as_json, open(sys.argv[2], "w"))
"""

RESUME = """
import json, sys, torch
from safetensors.torch import load_file
from tldrlab.device import seed_everything
from tldrlab.train.checkpoint import restore_rng
seed_everything(0)  # as every run starts, before CUDA is used
saved = load_file(sys.argv[1])
expected = saved.pop("expected")
restore_rng(json.load(open(sys.argv[2])), saved)
print("same" if torch.equal(torch.rand(8, device="cuda").cpu(), expected) else "replayed")
"""


def _python(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-c", code, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_resumed_process_continues_the_cuda_random_stream(tmp_path: Path) -> None:
    """On an H200, a run killed after its step-150 checkpoint and resumed drew step 151's dropout masks from
    the seed's stream instead of the checkpoint's (first differing train loss at step 151): torch runs a
    seed queued before CUDA's lazy start after the queued state."""
    states = (str(tmp_path / "rng.safetensors"), str(tmp_path / "rng.json"))
    _python(CAPTURE, *states)
    assert _python(RESUME, *states) == "same"


def test_an_lstm_on_cuda_saves_and_loads_back(tmp_path: Path) -> None:
    """char_lstm training on an H200 failed at its first save: cuDNN's flat weight buffer."""
    from safetensors.torch import load_model

    from tldrlab.runs.weights import save_module_safetensors

    model = torch.nn.LSTM(8, 8, num_layers=2).cuda()
    save_module_safetensors(model, tmp_path / "model.safetensors")
    fresh = torch.nn.LSTM(8, 8, num_layers=2)
    load_model(fresh, str(tmp_path / "model.safetensors"))
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name].cpu()), name
