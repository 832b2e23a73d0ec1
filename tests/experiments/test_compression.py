"""Compression: shapes from a ratio or explicit sizes, exact weight transfer, clear errors."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from transformers import T5Config, T5ForConditionalGeneration

from tldrlab.errors import ConfigError
from tldrlab.experiments.compression import (
    CompressionSpec,
    compress_t5,
    compression_plan,
    count_parameters,
    evenly_spaced,
    t5_parameter_count,
)


def baseline(**overrides: int) -> T5ForConditionalGeneration:
    dims = {"d_model": 48, "d_ff": 96, "num_layers": 4, "num_decoder_layers": 4, "num_heads": 4, "d_kv": 12}
    dims.update(overrides)
    torch.manual_seed(0)
    config = T5Config(vocab_size=80, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **dims)
    return T5ForConditionalGeneration(config)


def test_parameter_count_formula_matches_real_models() -> None:
    for overrides in ({}, {"num_layers": 1, "num_decoder_layers": 3}, {"d_model": 24, "num_heads": 2}):
        model = baseline(**overrides)
        assert t5_parameter_count(model.config) == count_parameters(model)


def test_evenly_spaced_keeps_first_and_last() -> None:
    assert evenly_spaced(6, 3) == [0, 2, 5]
    assert evenly_spaced(4, 1) == [0]
    assert evenly_spaced(4, 4) == [0, 1, 2, 3]


def test_layer_selection_copies_the_selected_blocks_exactly() -> None:
    base = baseline()
    small = compress_t5(base, CompressionSpec(enc_num_layers=2, dec_num_layers=3))
    plan = compression_plan(base.config, small.config)
    assert plan["encoder_layers"] == [0, 3]
    assert len(small.encoder.block) == 2 and len(small.decoder.block) == 3
    for stack, kept in (("encoder", plan["encoder_layers"]), ("decoder", plan["decoder_layers"])):
        for new_index, old_index in enumerate(kept):
            new_block = getattr(small, stack).block[new_index].state_dict()
            old_block = getattr(base, stack).block[old_index].state_dict()
            assert new_block.keys() <= old_block.keys()
            for name, tensor in new_block.items():
                assert torch.equal(tensor, old_block[name]), f"{stack}.block.{new_index}.{name}"
    assert torch.equal(small.shared.weight, base.shared.weight)
    assert count_parameters(small) < count_parameters(base)


def test_narrower_widths_are_slices_of_the_baseline() -> None:
    base = baseline()
    small = compress_t5(base, CompressionSpec(d_model=24, d_ff=40, num_heads=2))
    assert (small.config.d_model, small.config.d_ff, small.config.num_heads) == (24, 40, 2)
    # every kept embedding column is one of the baseline's columns, in order
    columns = [
        int(torch.nonzero((base.shared.weight == col[:, None]).all(0))[0]) for col in small.shared.weight.T
    ]
    assert columns == sorted(columns) and len(set(columns)) == 24
    wi = small.encoder.block[0].layer[1].DenseReluDense.wi.weight
    base_wi = base.encoder.block[0].layer[1].DenseReluDense.wi.weight[:, columns]
    assert all(any(torch.equal(row, base_row) for base_row in base_wi) for row in wi)
    x = torch.randint(2, 80, (2, 7))
    loss = small(input_ids=x, labels=x).loss
    assert torch.isfinite(loss)


def test_ratio_hits_the_target_and_random_init_differs() -> None:
    base = baseline()
    for ratio in (0.75, 0.5, 0.3):
        small = compress_t5(base, CompressionSpec(compression_ratio=ratio))
        kept = count_parameters(small) / count_parameters(base)
        assert abs(kept - ratio) < 0.08, (ratio, kept)
    from_base = compress_t5(base, CompressionSpec(compression_ratio=0.5))
    random = compress_t5(base, CompressionSpec(compression_ratio=0.5, init="random"))
    assert count_parameters(from_base) == count_parameters(random)
    assert not torch.equal(from_base.shared.weight, random.shared.weight)


def test_bad_specs_are_clear_errors() -> None:
    base = baseline()
    with pytest.raises(ValidationError, match="dec_d_model"):  # refused by the spec itself
        CompressionSpec(d_model=24, dec_d_model=32)
    with pytest.raises(ConfigError, match="larger than the baseline"):
        compress_t5(base, CompressionSpec(enc_num_layers=9))
    with pytest.raises(ConfigError, match="compression_ratio"):
        compress_t5(base, CompressionSpec())
