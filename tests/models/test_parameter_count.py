"""`parameter_count`, the analytic size the parameter budget checks, equals what the built model has (tied
weights counted once), for every family whose size its settings decide."""

from __future__ import annotations

from typing import Any

import pytest

from tldrlab.models.registry import build_model, count_parameters, parameter_count


class Vocabulary:
    """As much of a tokenizer as building a model asks for: its length and special ids."""

    pad_token_id, bos_token_id, eos_token_id = 0, 2, 3

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


@pytest.mark.parametrize(
    ("family", "settings"),
    [
        ("t5", {"size": "tiny"}),
        ("t5", {"size": "tiny", "feed_forward_proj": "gated-gelu", "d_kv": 8, "num_decoder_layers": 1}),
        ("gpt2", {"size": "tiny"}),
        ("gpt2", {"size": "tiny", "tie_word_embeddings": False, "n_positions": 32}),
        ("char_lstm", {"embedding_dim": 16, "hidden_dim": 32}),
        ("char_lstm", {"embedding_dim": 16, "hidden_dim": 32, "num_layers": 3, "tie_weights": True}),
        ("char_lstm", {"embedding_dim": 32, "hidden_dim": 32, "tie_weights": True, "vocab_size": 77}),
    ],
)
def test_the_count_is_the_built_models(family: str, settings: dict[str, Any]) -> None:
    built = count_parameters(build_model(family, settings, Vocabulary(300)))
    assert parameter_count(family, settings, vocab_size=300) == built


def test_pretrained_models_are_not_counted_from_settings() -> None:
    assert parameter_count("causal_lm", {}, vocab_size=300) is None
    assert parameter_count("gpt2", {"from_pretrained": "some/dir"}, vocab_size=300) is None
