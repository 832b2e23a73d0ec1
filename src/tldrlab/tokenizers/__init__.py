"""Tokenizers: train (bpe, sentencepiece, char), measure on a holdout, load as transformers tokenizers.

- `config`: TokenizerConfig, TokenizerJobConfig (kind `tokenizer`) and the shared special tokens (pad=0,
  unk=1, bos=2, eos=3).
- `corpus`: reading corpus files and the seeded holdout split.
- `bpe`, `spm`, `char`: one module per method; `train`: the TOKENIZERS registry and `train_tokenizer`.
- `load`: `load_tokenizer(dir | run)`; `job`: `tokenizer_job(run, config)` for runs of kind `tokenizer`.

The trainers (and the `tokenizers` library) load on first use, so validating a config stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tldrlab.tokenizers.config import SPECIAL_TOKENS, TokenizerConfig, resolve_tokenizer_dir
from tldrlab.tokenizers.load import load_tokenizer, read_tokenizer_manifest

if TYPE_CHECKING:
    from tldrlab.tokenizers.train import TOKENIZERS, holdout_stats, tokenizer_once, train_tokenizer

_LAZY = {
    name: "tldrlab.tokenizers.train"
    for name in ("TOKENIZERS", "holdout_stats", "tokenizer_once", "train_tokenizer")
}


def __getattr__(name: str) -> Any:
    """The trainers' names, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "SPECIAL_TOKENS",
    "TOKENIZERS",
    "TokenizerConfig",
    "holdout_stats",
    "load_tokenizer",
    "read_tokenizer_manifest",
    "resolve_tokenizer_dir",
    "tokenizer_once",
    "train_tokenizer",
]
