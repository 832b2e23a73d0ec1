"""Vector-native sequence models ("LVMs"): concept vectors in, the next concept vector out.

No token embeddings and no vocabulary head: a linear map lifts each d-dim concept vector to the hidden size,
a sequence backbone reads the context left to right, and a linear map from the last position's state gives the
prediction. Backbones (registry `LVM_MODELS`): `lstm`, `gru`, `transformer` (causal, pre-norm), `mamba`
(selective state-space blocks in pure PyTorch; the `mamba_ssm` CUDA kernel is used when importable on CUDA)
and `pretrained` (a pretrained causal LM's decoder layers, frozen, LoRA-adapted or fully trained; see
tldrlab.lvm.pretrained).

The prediction is `skip(context) + head(state)`, where `skip` is the masked mean of the context by default:
the mean is already a strong guess of the next concept (see tldrlab.lvm.baselines), so the network learns what
the mean misses. The head is zero-initialised, so an untrained model starts exactly at that baseline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tldrlab.choices import unknown_choice
from tldrlab.config import expand_user
from tldrlab.errors import AmbiguousRunIdError, CheckpointError, ConfigError, NotFoundError
from tldrlab.lvm.config import LVMConfig
from tldrlab.lvm.pretrained import PretrainedBackbone
from tldrlab.lvm.tmd import TMD_DIM
from tldrlab.runs import open_registry
from tldrlab.runs.atomic import atomic_write_json
from tldrlab.runs.weights import save_safetensors

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "lvm_model.json"


# -- backbones: (batch, length, hidden) + mask (batch, length) -> (batch, length, hidden) -------------------


class RecurrentBackbone(nn.Module):
    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU], config: LVMConfig) -> None:
        super().__init__()
        self.rnn = cell(
            config.hidden,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Contexts are left-padded with zero inputs, so real concepts are always read last: no packing needed.
        out, _ = self.rnn(x)
        return out


class TransformerBackbone(nn.Module):
    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        if config.hidden % config.heads:  # kept: LVMConfig alone (built directly or loaded) does not check it
            raise ConfigError(f"hidden ({config.hidden}) must be divisible by heads ({config.heads})")
        self.positions = nn.Parameter(torch.zeros(config.context, config.hidden))
        nn.init.normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(
            config.hidden,
            config.heads,
            dim_feedforward=4 * config.hidden,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.positions.shape[0]:
            raise ConfigError(f"context of {length} exceeds the model's {self.positions.shape[0]} positions")
        # right-align positions: the last context concept always gets the last position
        x = x + self.positions[-length:]
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        # query i may see key j when j <= i and j is real; every query also sees itself so that rows of padded
        # positions are never fully masked (they would give NaN; their outputs are ignored anyway).
        allowed = causal[None] & mask[:, None, :]
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=x.device)[None]
        heads = self.encoder.layers[0].self_attn.num_heads
        attn_mask = (~allowed).repeat_interleave(heads, dim=0)
        return self.norm(self.encoder(x, mask=attn_mask))


def selective_scan(
    u: torch.Tensor, delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor
) -> torch.Tensor:
    """Mamba's selective scan in PyTorch: h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t ; y_t = C_t h_t + D u_t.

    u, delta: (batch, length, inner); a: (inner, state); b, c: (batch, length, state); d: (inner,).
    Sequential over time (contexts are a handful of concepts, so a parallel scan would not pay off on CPU).
    """
    if u.is_cuda:
        kernel = _mamba_kernel()
        if kernel is not None:
            y = kernel(
                u.transpose(1, 2).contiguous(),
                delta.transpose(1, 2).contiguous(),
                a.contiguous(),
                b.transpose(1, 2).contiguous(),
                c.transpose(1, 2).contiguous(),
                d.float(),
            )
            return y.transpose(1, 2)
    decay = torch.exp(delta.unsqueeze(-1) * a)  # (batch, length, inner, state)
    drive = delta.unsqueeze(-1) * b.unsqueeze(2) * u.unsqueeze(-1)
    state = torch.zeros_like(decay[:, 0])
    outputs = []
    for t in range(u.shape[1]):
        state = decay[:, t] * state + drive[:, t]
        outputs.append((state * c[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(outputs, dim=1) + u * d


def _mamba_kernel() -> Callable[..., torch.Tensor] | None:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn  # type: ignore[no-any-return]


class MambaBlock(nn.Module):
    """One Mamba (S6) block: gated, conv-mixed input driving a selective state-space scan."""

    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        inner = config.expand * config.hidden
        self.dt_rank = max(1, math.ceil(config.hidden / 16))
        self.d_conv = config.d_conv
        self.norm = nn.LayerNorm(config.hidden)
        self.in_proj = nn.Linear(config.hidden, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, config.d_conv, groups=inner, padding=config.d_conv - 1)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * config.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        a = torch.arange(1, config.d_state + 1, dtype=torch.float32).repeat(inner, 1)
        self.a_log = nn.Parameter(torch.log(a))  # A = -exp(a_log): negative real, as in S4D-real init
        self.d = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.d_state = config.d_state

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, gate = self.in_proj(self.norm(x)).chunk(2, dim=-1)
        u = self.conv(u.transpose(1, 2))[..., :length].transpose(1, 2)
        u = F.silu(u) * mask.unsqueeze(-1)
        dt, b, c = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        y = selective_scan(u, delta, -torch.exp(self.a_log.float()), b, c, self.d)
        return x + self.dropout(self.out_proj(y * F.silu(gate)))


class MambaBackbone(nn.Module):
    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MambaBlock(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


def pretrained_backbone(config: LVMConfig) -> nn.Module:

    return PretrainedBackbone(config)


LVM_MODELS: dict[str, Callable[[LVMConfig], nn.Module]] = {
    "lstm": lambda config: RecurrentBackbone(nn.LSTM, config),
    "gru": lambda config: RecurrentBackbone(nn.GRU, config),
    "transformer": TransformerBackbone,
    "mamba": MambaBackbone,
    "pretrained": pretrained_backbone,
}
"""Backbones: (batch, N, hidden) + mask -> (batch, N, hidden). A backbone with a `hidden_size` attribute
sets the width itself (the pretrained LM's), overriding `LVMConfig.hidden`."""


class LVM(nn.Module):
    """Concept vectors (batch, N, dim) + mask (batch, N) -> predicted next concept (batch, dim)."""

    def __init__(self, name: str, config: LVMConfig) -> None:
        super().__init__()
        if name not in LVM_MODELS:
            raise ConfigError(unknown_choice("LVM", name, LVM_MODELS))
        self.name = name
        self.backbone = LVM_MODELS[name](config)
        width = getattr(self.backbone, "hidden_size", config.hidden)
        self.config = config.model_copy(update={"hidden": width})
        self.in_proj = nn.Linear(config.dim + (TMD_DIM if config.tmd_inputs else 0), width)
        scale = getattr(self.backbone, "scale_input_projection", None)
        if scale is not None:  # inputs at the scale the pretrained layers were trained on
            scale(self.in_proj)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.dim)
        nn.init.zeros_(self.head.weight)  # start at the skip baseline (see the module docstring)
        nn.init.zeros_(self.head.bias)
        if config.skip == "learned":
            # one weight per (right-aligned) context position, starting as a decaying mean of a full context
            steps_back = torch.arange(config.context - 1, -1, -1, dtype=torch.float32)
            start = config.skip_decay**steps_back
            self.skip_weights = nn.Parameter(start / start.sum())

    def forward(
        self, contexts: torch.Tensor, mask: torch.Tensor, tmd: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`tmd` (batch, N, TMD_DIM): the context concepts' TMD features, required with `tmd_inputs`."""
        weights = mask.to(contexts.dtype).unsqueeze(-1)
        inputs = contexts
        if self.config.tmd_inputs:
            if tmd is None:
                raise ConfigError("this LVM reads TMD labels: build sequences from a TMD-labelled store")
            inputs = torch.cat([contexts, tmd.to(contexts.dtype)], dim=-1)
        hidden = self.in_proj(inputs) * weights
        state = self.backbone(hidden, mask)[:, -1]
        out = self.head(self.dropout(state))
        if self.config.skip == "mean":
            out = out + (contexts * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        elif self.config.skip == "last":
            out = out + contexts[:, -1]
        elif self.config.skip == "learned":
            positions = self.skip_weights[-contexts.shape[1] :].view(1, -1, 1)
            scale = contexts.shape[1] / weights.sum(1).clamp_min(1.0)  # a short context: rescaled like a mean
            out = out + (contexts * weights * positions).sum(1) * scale
        return out


def build_lvm(name: str, config: LVMConfig | dict[str, Any]) -> LVM:
    if isinstance(config, dict):
        config = LVMConfig(**config)
    return LVM(name, config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_lvm(model: LVM, directory: Path | str) -> Path:
    """safetensors weights + `lvm_model.json` (name and config): enough to rebuild it anywhere."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_safetensors(state, directory / MODEL_FILE)
    atomic_write_json(
        directory / CONFIG_FILE,
        {"name": model.name, "config": model.config.model_dump(), "parameters": count_parameters(model)},
    )
    return directory


def find_lvm(reference: str, home: Path | None = None) -> Path:
    """The model directory of a trained LVM: a model directory, a run directory (its `model/`), either of
    them relative to `home`, or an `lvm_train` run id (or unique prefix) from the run registry."""
    candidates = [expand_user(reference)]
    if home is not None and not candidates[0].is_absolute():
        candidates.append(home / reference)
    for path in candidates:
        for directory in (path, path / "model"):
            if (directory / CONFIG_FILE).is_file():
                return directory
    if "/" not in reference and (run_model := _run_model(reference)) is not None:
        return run_model
    raise NotFoundError(
        f"{reference!r} is not a trained LVM: no {CONFIG_FILE} there, nor an lvm_train run's model"
    )


def _run_model(reference: str) -> Path | None:
    try:
        record = open_registry().find(reference)
    except AmbiguousRunIdError:
        raise  # several runs match: "not a trained LVM" would hide that a longer prefix picks one
    except NotFoundError:
        return None
    model = Path(record.run_dir) / "model"
    return model if (model / CONFIG_FILE).is_file() else None


def find_lvm_run(reference: str) -> Path:
    """The model directory of the `lvm_train` run `reference` names (its id or a unique prefix), and nothing
    else: no path, so a name from an API request cannot reach a directory relative to the server's cwd."""
    if (run_model := _run_model(reference)) is None:
        raise NotFoundError(f"{reference!r} is not a trained LVM: no lvm_train run's model of that id")
    return run_model


def load_lvm(directory: Path | str) -> LVM:
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CONFIG_FILE).exists():
        raise NotFoundError(f"no LVM in {directory} (expected {CONFIG_FILE} and {MODEL_FILE})")
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        model = build_lvm(meta["name"], meta["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:  # not JSON, a field missing or of another type
        reason = f"no {exc} field" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        message = f"{directory / CONFIG_FILE} is not a saved LVM's {CONFIG_FILE}: {reason}"
        raise CheckpointError(message) from exc
    try:
        model.load_state_dict(load_file(str(directory / MODEL_FILE)))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise CheckpointError(f"cannot load LVM weights from {directory}: {exc}") from exc
    model.eval()
    return model
