"""The pretrained backbone: a causal LM's decoder layers between the LVM's input and output projections."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tldrlab.errors import ConfigError
from tldrlab.lvm.models import LVMConfig, build_lvm, load_lvm, save_lvm


def _config(lm: Path, **settings: object) -> LVMConfig:
    return LVMConfig.model_validate({"dim": 8, "context": 4, "pretrained": str(lm), **settings})


def _lm_weights(lm: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(lm / "model.safetensors"))


def test_layers_are_the_lm_s_and_adaptation_decides_what_trains(tiny_causal_lm: Path) -> None:
    weights = _lm_weights(tiny_causal_lm)
    frozen = build_lvm("pretrained", _config(tiny_causal_lm, adaptation="frozen"))
    # the LM's own weights, its hidden size, and no token embeddings or vocabulary head
    assert frozen.config.hidden == 32 and frozen.in_proj.out_features == 32 and frozen.head.in_features == 32
    assert torch.equal(
        frozen.backbone.layers[1].mlp.down_proj.weight, weights["model.layers.1.mlp.down_proj.weight"]
    )
    assert not any(isinstance(m, torch.nn.Embedding) for m in frozen.modules())

    def trainable(model: torch.nn.Module) -> set[str]:
        return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}

    assert trainable(frozen) == {"in_proj", "head"}
    lora = build_lvm("pretrained", _config(tiny_causal_lm, adaptation="lora", lora_rank=2))
    lora_names = [n for n, p in lora.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    assert lora_names and all("lora_" in n for n in lora_names)
    assert any("q_proj.lora_A" in n for n in lora_names) and any("down_proj.lora_B" in n for n in lora_names)
    full = build_lvm("pretrained", _config(tiny_causal_lm, adaptation="full"))
    assert all(p.requires_grad for p in full.parameters())
    # only the first K layers are kept
    assert len(build_lvm("pretrained", _config(tiny_causal_lm, pretrained_layers=1)).backbone.layers) == 1
    with pytest.raises(ConfigError, match="has 2 layers"):
        build_lvm("pretrained", _config(tiny_causal_lm, pretrained_layers=3))


def test_left_padding_is_invisible_and_the_model_round_trips(tiny_causal_lm: Path, tmp_path: Path) -> None:
    model = build_lvm("pretrained", _config(tiny_causal_lm, adaptation="lora", lora_rank=2, skip="last"))
    torch.manual_seed(1)
    for param in model.parameters():  # a trained-looking model: adapters and head no longer zero
        param.data.add_(0.05 * torch.randn_like(param))
    model.eval()
    real = torch.nn.functional.normalize(torch.randn(1, 2, 8), dim=-1)
    padded = torch.cat([torch.randn(1, 2, 8), real], dim=1)  # garbage where the mask says padding
    mask = torch.tensor([[False, False, True, True]])
    short = model(real, torch.ones(1, 2, dtype=torch.bool))
    assert torch.allclose(model(padded, mask), short, atol=1e-5)
    assert not torch.allclose(model(padded, torch.ones(1, 4, dtype=torch.bool)), short, atol=1e-3)

    loaded = load_lvm(save_lvm(model, tmp_path / "model"))
    assert loaded.config.adaptation == "lora" and loaded.config.hidden == 32
    assert torch.allclose(loaded(padded, mask), short, atol=1e-5)


def test_a_backbone_named_by_a_relative_path_is_found_from_any_directory(
    tiny_causal_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The saved LVM names its backbone (lvm_model.json) and loading it builds the backbone from there: a
    `--pretrained` path relative to where it trained was kept as typed, and `lvm generate` / `lvm evaluate`
    from any other directory refused it ("no model named ...")."""
    import json

    from lvm_synthetic import rotating_table

    from cliutil import run_captured
    from tldrlab.lvm.sequences import build_sequences

    sequences = build_sequences(rotating_table(n_articles=6, length=8, dim=8), context=3, seed=0)
    path = sequences.save(tmp_path / "sequences.npz")
    monkeypatch.chdir(tiny_causal_lm.parent)
    argv = ["lvm", "train", "--sequences", str(path), "--model", "pretrained", "--pretrained",
            tiny_causal_lm.name, "--pretrained-layers", "1", "--adaptation", "frozen", "--steps", "2",
            "--batch-size", "4", "--eval-every", "2", "--json"]  # fmt: skip
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    monkeypatch.chdir(tmp_path)
    model = load_lvm(Path(json.loads(out)["model_dir"]))
    assert Path(model.config.pretrained) == tiny_causal_lm.resolve()
