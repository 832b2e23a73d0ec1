"""The digest's model cache follows what a reference resolves to: promoting an alias to another run loads the
new run's weights (a cache keyed by the alias's name served the old model under the new target)."""

from __future__ import annotations

import torch

from tinylm import model_run, save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.digest.local_model import load_local_model
from tldrlab.runs.aliases import promote


def test_an_alias_promoted_to_another_run_loads_that_runs_weights() -> None:
    tokenizer = tiny_chat_tokenizer()
    first, second = (
        model_run(lambda d, seed=seed: save_tiny_model(tiny_llama(tokenizer, seed=seed), tokenizer, d))
        for seed in (1, 2)
    )
    promote(first.id, "production")
    before = load_local_model("production")
    assert load_local_model("production") is before  # loaded once while the alias stands
    assert load_local_model(first.id) is before  # the run id names the same files: the same load
    promote(second.id, "production")
    after = load_local_model("production")
    assert after is not before
    assert after.source != before.source and second.id in after.source
    weights = [next(m.model.parameters()).detach() for m in (before, after)]
    assert not torch.equal(*weights)
