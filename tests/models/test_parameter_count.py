"""`parameter_count`, the analytic size the parameter budget checks, equals what the built model has (tied
weights counted once), for every family whose size its settings decide."""

from __future__ import annotations

from typing import Any

import pytest

from tldrlab.models.registry import MODELS, build_model, count_parameters, parameter_count


class Vocabulary:
    """As much of a tokenizer as building a model asks for: its length and special ids."""

    pad_token_id, bos_token_id, eos_token_id = 0, 2, 3

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


COUNTED: list[tuple[str, dict[str, Any]]] = [
    ("t5", {"size": "tiny"}),
    ("t5", {"size": "tiny", "feed_forward_proj": "gated-gelu", "d_kv": 8, "num_decoder_layers": 1}),
    ("gpt2", {"size": "tiny"}),
    ("gpt2", {"size": "tiny", "tie_word_embeddings": False, "n_positions": 32}),
    ("char_lstm", {"embedding_dim": 16, "hidden_dim": 32}),
    ("char_lstm", {"embedding_dim": 16, "hidden_dim": 32, "num_layers": 3, "tie_weights": True}),
    ("char_lstm", {"embedding_dim": 32, "hidden_dim": 32, "tie_weights": True, "vocab_size": 77}),
]
"""Settings of every family whose registry entry counts its parameters: a new family gets a line here."""


def test_every_counting_family_is_checked() -> None:
    counting = {name for name, spec in MODELS.items() if spec.parameter_count is not None}
    missing = counting - {family for family, _ in COUNTED}
    assert not missing, f"families counting their parameters without a case in COUNTED: {sorted(missing)}"


@pytest.mark.parametrize(("family", "settings"), COUNTED)
def test_the_count_is_the_built_models(family: str, settings: dict[str, Any]) -> None:
    built = count_parameters(build_model(family, settings, Vocabulary(300)))
    assert parameter_count(family, settings, vocab_size=300) == built


def test_pretrained_models_are_not_counted_from_settings() -> None:
    assert parameter_count("causal_lm", {}, vocab_size=300) is None
    assert parameter_count("gpt2", {"from_pretrained": "some/dir"}, vocab_size=300) is None


@pytest.mark.parametrize("backbone", ["lstm", "gru", "transformer", "mamba"])
@pytest.mark.parametrize(
    "settings",
    [
        {"dim": 24, "hidden": 32, "layers": 2, "context": 4},
        {
            "dim": 24,
            "hidden": 40,
            "layers": 1,
            "context": 3,
            "skip": "learned",
            "tmd_inputs": True,
            "expand": 3,
        },
    ],
)
def test_an_lvms_count_is_the_built_models(backbone: str, settings: dict[str, Any]) -> None:
    from tldrlab.lvm.config import LVMConfig, lvm_parameter_count
    from tldrlab.lvm.models import build_lvm

    config = LVMConfig.model_validate(settings)
    assert lvm_parameter_count(backbone, config) == count_parameters(build_lvm(backbone, config))


def test_the_config_layers_names_are_the_registries() -> None:
    """The names configs check without torch are those of the registries that build with it."""
    from tldrlab.lvm.baselines import BASELINES
    from tldrlab.lvm.chunking import CHUNKERS
    from tldrlab.lvm.config import BASELINE_NAMES, CHUNKING_METHODS, LOSS_NAMES, LVM_BACKBONES, TMD_FEATURES
    from tldrlab.lvm.losses import LVM_LOSSES
    from tldrlab.lvm.models import LVM_MODELS
    from tldrlab.lvm.tmd import TMD_DIM
    from tldrlab.tokenizers.config import MIN_VOCAB_SIZES
    from tldrlab.tokenizers.train import TOKENIZERS

    assert set(LVM_BACKBONES) == set(LVM_MODELS) and set(LOSS_NAMES) == set(LVM_LOSSES)
    assert tuple(BASELINES) == BASELINE_NAMES and tuple(CHUNKERS) == CHUNKING_METHODS
    assert TMD_FEATURES == TMD_DIM and set(MIN_VOCAB_SIZES) == set(TOKENIZERS)


def test_an_elm_on_a_scratch_lm_is_counted_whole() -> None:
    from tldrlab.elm.config import ElmModelConfig, adapter_parameter_count
    from tldrlab.elm.model import build_elm

    config = ElmModelConfig(embedding_dim=16, hidden_dim=24, num_prefix_tokens=3, lm_settings={"n_layer": 1})
    elm, _ = build_elm(config, tokenizer=Vocabulary(300))
    lm = parameter_count("gpt2", {"size": "tiny", "n_layer": 1}, vocab_size=300)
    assert lm is not None and lm + adapter_parameter_count(config, width=64) == count_parameters(elm)
