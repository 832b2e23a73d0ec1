"""Byte-level BPE with Hugging Face `tokenizers`: any text round-trips exactly (no unknown tokens)."""

from __future__ import annotations

from collections.abc import Sequence

from tldrlab.tokenizers.config import SPECIAL_TOKENS, UNK, TokenizerConfig
from tldrlab.tokenizers.corpus import batched
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE tokenizer (also what the bench compares against)."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    # add_prefix_space=False and trim_offsets=False keep decode(encode(x)) == x for every string.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def new_trainer(config: TokenizerConfig) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def train(lines: Sequence[str], config: TokenizerConfig) -> Tokenizer:
    tokenizer = new_tokenizer()
    tokenizer.train_from_iterator(batched(lines), trainer=new_trainer(config), length=len(lines))
    return tokenizer
