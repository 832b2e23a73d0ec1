"""Compression of a pretrained causal LM, on tiny Llamas built in the test (tests/tinylm.py)."""

from __future__ import annotations

import json

import pytest
import torch

from tinylm import CORPUS, tiny_chat_tokenizer, tiny_llama
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import ConfigError
from tldrlab.experiments.config import LMCompressionSpec
from tldrlab.experiments.lm_compression import (
    PLAN_FILE,
    calibration_batches,
    choose_shape,
    compress_causal_lm,
    count_parameters,
    evenly_spaced,
    export_compressed,
    importance_scores,
    kept_heads,
    original_shape,
    parameter_count,
)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_chat_tokenizer()


def _model(tokenizer, **kwargs):
    """A tiny Llama with GQA (6 heads in 2 key/value groups of 3), 6 layers, MLP 64, untied head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(kwargs.pop("seed", 0))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=256,
        tie_word_embeddings=kwargs.pop("tie", False),
        initializer_range=0.5,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    return LlamaForCausalLM(config).eval()


def _records(n: int = 6) -> list[SummaryRecord]:
    return [
        SummaryRecord(
            id=str(i),
            document=CORPUS[i % len(CORPUS)] + " " + CORPUS[(i + 3) % len(CORPUS)],
            summaries=[CORPUS[(i + 5) % len(CORPUS)]],
        )
        for i in range(n)
    ]


def test_parameter_formula_matches_real_counts(tokenizer):
    for kwargs in ({}, {"tie": True}, {"attention_bias": True, "mlp_bias": True}):
        model = _model(tokenizer, **kwargs)
        assert parameter_count(model.config) == count_parameters(model)
    tied = tiny_llama(tokenizer)
    assert parameter_count(tied.config) == count_parameters(tied)


@pytest.mark.parametrize(("ratio", "num_layers"), [(0.75, None), (0.5, 4)])
def test_ratio_compression_copies_kept_units_exactly(tokenizer, ratio, num_layers):
    model = _model(tokenizer)
    batches = calibration_batches(tokenizer, _records(), max_source_tokens=32)
    scores = importance_scores(model, batches, "activation")
    small, plan = compress_causal_lm(model, LMCompressionSpec(ratio=ratio, num_layers=num_layers), scores)
    total = count_parameters(model)
    # the parameter count is within 1.5 points of the target, and the formula agrees with the real model
    assert abs(count_parameters(small) / total - ratio) < 0.015
    assert count_parameters(small) == plan.parameters
    shape = plan.shape
    # width is cut first; depth only as asked (evenly spaced, first and last kept)
    assert shape.intermediate_size < 64 or shape.num_heads < 6
    assert plan.layers == ([0, 2, 3, 5] if num_layers else list(range(6)))
    assert small.config.num_hidden_layers == shape.num_layers
    assert small.config.head_dim == 8
    src, dst = model.state_dict(), small.state_dict()
    assert torch.equal(dst["model.embed_tokens.weight"], src["model.embed_tokens.weight"])
    assert torch.equal(dst["lm_head.weight"], src["lm_head.weight"])
    assert torch.equal(dst["model.norm.weight"], src["model.norm.weight"])
    for position, layer in enumerate(plan.layers):
        old, new = f"model.layers.{layer}.", f"model.layers.{position}."
        neurons = torch.tensor(plan.neurons[position])
        # the kept neurons are the top-scored ones, copied row for row / column for column
        top = set(torch.topk(scores.mlp[layer], shape.intermediate_size).indices.tolist())
        assert set(plan.neurons[position]) == top
        assert torch.equal(dst[new + "mlp.gate_proj.weight"], src[old + "mlp.gate_proj.weight"][neurons])
        assert torch.equal(dst[new + "mlp.up_proj.weight"], src[old + "mlp.up_proj.weight"][neurons])
        assert torch.equal(dst[new + "mlp.down_proj.weight"], src[old + "mlp.down_proj.weight"][:, neurons])
        heads, groups = plan.heads[position], plan.kv_groups[position]
        assert len(groups) == shape.num_key_value_heads and len(heads) == shape.num_heads
        # each kept query head still reads its own key/value head: heads come grouped by kept group
        for j, head in enumerate(heads):
            assert head // 3 == groups[j // shape.heads_per_group]
        for j, head in enumerate(heads):
            rows = slice(j * 8, (j + 1) * 8)
            assert torch.equal(
                dst[new + "self_attn.q_proj.weight"][rows],
                src[old + "self_attn.q_proj.weight"][head * 8 : head * 8 + 8],
            )
            assert torch.equal(
                dst[new + "self_attn.o_proj.weight"][:, rows],
                src[old + "self_attn.o_proj.weight"][:, head * 8 : head * 8 + 8],
            )
        for j, group in enumerate(groups):
            for name in ("k_proj", "v_proj"):
                assert torch.equal(
                    dst[new + f"self_attn.{name}.weight"][j * 8 : j * 8 + 8],
                    src[old + f"self_attn.{name}.weight"][group * 8 : group * 8 + 8],
                )
        for name in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            assert torch.equal(dst[new + name], src[old + name])
    ids = batches[0]["input_ids"]
    assert small(input_ids=ids).logits.shape == model(input_ids=ids).logits.shape


def test_unchanged_widths_keep_whole_layers_and_outputs(tokenizer):
    """Keeping every layer and unit reproduces the model; depth-only keeps whole layers."""
    model = _model(tokenizer)
    ids = torch.tensor([tokenizer.encode(CORPUS[1])])
    same, _ = compress_causal_lm(model, LMCompressionSpec(ratio=None, num_layers=6))
    assert torch.allclose(same(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    shallow, plan = compress_causal_lm(model, LMCompressionSpec(ratio=None, num_layers=3))
    assert plan.layers == evenly_spaced(6, 3) == [0, 2, 5]
    for position, layer in enumerate(plan.layers):
        for name, value in model.model.layers[layer].state_dict().items():
            assert torch.equal(shallow.model.layers[position].state_dict()[name], value)


def test_gqa_groups_are_kept_whole_by_summed_score(tokenizer):
    base = original_shape(_model(tokenizer).config)
    scores = torch.tensor([0.1, 0.2, 0.3, 5.0, 0.0, 0.0])  # group 1 sums higher though group 0 has more heads
    shape = choose_shape(
        _model(tokenizer).config, LMCompressionSpec(ratio=None, num_key_value_heads=1, heads_per_group=2)
    )
    groups, heads = kept_heads(scores, shape, base)
    assert groups == [1] and heads == [3, 4]


def test_importance_methods_differ_and_random_init(tokenizer):
    model = _model(tokenizer)
    batches = calibration_batches(tokenizer, _records(4), max_source_tokens=32)
    activation = importance_scores(model, batches, "activation")
    taylor = importance_scores(model, batches, "taylor")
    weight = importance_scores(model, batches, "weight")
    assert all(s.shape == (64,) for s in taylor.mlp) and all(s.shape == (6,) for s in taylor.heads)
    assert all(float(s.min()) >= 0 for s in [*activation.mlp, *taylor.mlp, *taylor.heads])
    assert not torch.equal(activation.mlp[0].argsort(), taylor.mlp[0].argsort())
    assert not torch.equal(activation.mlp[0].argsort(), weight.mlp[0].argsort())
    assert all(p.grad is None for p in model.parameters())  # calibration leaves no gradients behind
    spec = LMCompressionSpec(ratio=0.5, init="random")
    fresh, _ = compress_causal_lm(model, spec, seed=3)
    cut, _ = compress_causal_lm(model, LMCompressionSpec(ratio=0.5), activation)
    assert count_parameters(fresh) == count_parameters(cut)
    assert not torch.equal(fresh.model.layers[0].mlp.up_proj.weight, cut.model.layers[0].mlp.up_proj.weight)


def test_export_is_a_plain_transformers_directory(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = _model(tokenizer, tie=True)
    small, plan = compress_causal_lm(model, LMCompressionSpec(ratio=0.5))
    out = export_compressed(small, tokenizer, plan, tmp_path / "small")
    loaded = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([tokenizer.encode(CORPUS[2])])
    assert torch.allclose(loaded(input_ids=ids).logits, small(input_ids=ids).logits, atol=1e-6)
    assert AutoTokenizer.from_pretrained(out).chat_template
    written = json.loads((out / PLAN_FILE).read_text())
    assert written["shape"] == plan.shape.__dict__ and written["layers"] == plan.layers
    generated = loaded.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 3


def test_bad_specs_are_clear_errors(tokenizer):
    config = _model(tokenizer).config
    with pytest.raises(ConfigError, match="only shrinks"):
        choose_shape(config, LMCompressionSpec(ratio=None, num_layers=9))
    with pytest.raises(ConfigError, match="explicit size"):
        choose_shape(config, LMCompressionSpec(ratio=None))
    with pytest.raises(ConfigError, match="importance method"):
        importance_scores(_model(tokenizer), [], "magic")
