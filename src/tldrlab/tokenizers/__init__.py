"""Tokenizers: train (bpe, sentencepiece, char), measure on a holdout, load as transformers tokenizers.

- `config`: TokenizerConfig and the shared special tokens (pad=0, unk=1, bos=2, eos=3).
- `corpus`: reading corpus files and the seeded holdout split.
- `bpe`, `spm`, `char`: one module per method; `train`: the TOKENIZERS registry and `train_tokenizer`.
- `load`: `load_tokenizer(dir | run)`; `job`: `tokenizer_job(run)` for workers.
"""

from tldrlab.tokenizers.config import SPECIAL_TOKENS, TokenizerConfig
from tldrlab.tokenizers.load import load_tokenizer, read_tokenizer_manifest, resolve_tokenizer_dir
from tldrlab.tokenizers.train import TOKENIZERS, holdout_stats, train_tokenizer

__all__ = [
    "SPECIAL_TOKENS",
    "TOKENIZERS",
    "TokenizerConfig",
    "holdout_stats",
    "load_tokenizer",
    "read_tokenizer_manifest",
    "resolve_tokenizer_dir",
    "train_tokenizer",
]
