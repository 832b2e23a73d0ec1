"""Character tokenizer: one id per character seen in the corpus, everything else is `<unk>`.

Stored as a plain `tokenizer.json` (a BPE model with no merges splits text into characters, and a Fuse
decoder joins them back), so transformers loads it like any other fast tokenizer. Text made only of known
characters round-trips exactly.

The vocabulary keeps the most frequent characters (ties by code point) up to `vocab_size`; the newline,
counted once per corpus line, ranks among them, except that it never takes the one free slot of the
smallest vocabulary (the specials and one character): that goes to the text's most frequent character.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from tldrlab.errors import ConfigError
from tldrlab.tokenizers.config import SPECIAL_TOKENS, UNK, TokenizerConfig
from tokenizers import AddedToken, Tokenizer, decoders, models


def train(lines: Sequence[str], config: TokenizerConfig) -> Tokenizer:
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(line)
    counts["\n"] += len(lines)  # lines were split on newlines; generated text needs them back
    room = config.vocab_size - len(SPECIAL_TOKENS)
    # Most frequent first, ties by code point, so the vocabulary is deterministic.
    kept = [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= config.min_frequency]
    if not set(kept) - {"\n"}:  # only the specials (and the newline we add per line): every text is <unk>
        char, times = max(
            ((c, n) for c, n in counts.items() if c != "\n"), key=lambda kv: kv[1], default=("", 0)
        )
        problem = (
            f"no character of the corpus occurs min_frequency={config.min_frequency} times (the most "
            f"frequent, {char!r}, occurs {times}), so the char vocabulary would be only the special tokens "
            "and every text <unk>"
        )
        # `problem` and `fitting_min_frequency` let a command that cannot set min_frequency advise its own way
        raise ConfigError(
            f"{problem}; use min_frequency {max(times, 1)} or less, or a larger corpus",
            problem=problem,
            fitting_min_frequency=max(times, 1),
        )
    chars = kept[:room]
    if chars == ["\n"]:
        # the one free slot of the smallest vocabulary: the newline (counted once per line, first in a tie by
        # code point) took it from the most frequent character, and every text was <unk>
        chars = [c for c in kept if c != "\n"][:1]
    chars = sorted(chars)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS.values())}
    for char in chars:
        vocab[char] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, fuse_unk=False))
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS.values()])
    return tokenizer
