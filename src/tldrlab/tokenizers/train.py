"""`train_tokenizer`: the registry of methods, holdout stats and the saved manifest.

stats = train_tokenizer("bpe", ["corpus.txt"], 8000, "out/")   # out/tokenizer.json + manifest
tokenizer = load_tokenizer("out/")                            # a transformers tokenizer
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tldrlab.errors import ConfigError, InvalidInputError, validation_problems
from tldrlab.runs.atomic import atomic_write_json, atomic_write_text
from tldrlab.tokenizers import bpe, char, spm
from tldrlab.tokenizers.config import (
    MANIFEST_FILE,
    SPECIAL_TOKENS,
    SPM_FILE,
    TOKENIZER_FILE,
    UNK,
    TokenizerConfig,
)
from tldrlab.tokenizers.corpus import load_corpus
from tldrlab.tokenizers.load import load_tokenizer
from tldrlab.tokenizers.plain import plain_encodings
from tokenizers import Tokenizer


@dataclass(frozen=True)
class TokenizerMethod:
    """One way to train a tokenizer."""

    train: Callable[[Sequence[str], TokenizerConfig, Path], Tokenizer]
    """Train on lines; may write extra files (the SentencePiece .model) into the output directory."""

    description: str


TOKENIZERS: dict[str, TokenizerMethod] = {
    "bpe": TokenizerMethod(
        train=lambda lines, cfg, out: bpe.train(lines, cfg),
        description="byte-level BPE (Hugging Face tokenizers): any text, no unknown tokens",
    ),
    "sentencepiece": TokenizerMethod(
        train=spm.train,
        description="SentencePiece unigram or BPE (model_type) with byte fallback",
    ),
    "char": TokenizerMethod(
        train=lambda lines, cfg, out: char.train(lines, cfg),
        description="one id per character seen in the corpus, <unk> for the rest",
    ),
}


def holdout_stats(tokenizer: Tokenizer, lines: Sequence[str]) -> dict[str, float | int]:
    """How well the tokenizer fits text it was not trained on.

    coverage: share of whitespace-separated words encoded without any unknown token;
    unk_rate: share of tokens that are the unknown token; tokens_per_word / tokens_per_char: compression;
    roundtrip_rate: share of lines with decode(encode(line)) == line.
    """
    unk_id = tokenizer.token_to_id(UNK)
    encodings = plain_encodings(tokenizer, list(lines))  # a "</s>" in a line is text, as a model reads it
    n_tokens = n_unk = n_chars = n_words = n_words_ok = n_roundtrip = 0
    decoded = tokenizer.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    for line, encoding, text in zip(lines, encodings, decoded, strict=True):
        ids = encoding.ids
        n_tokens += len(ids)
        n_chars += len(line)
        n_roundtrip += int(text == line)
        unk_positions = [i for i, t in enumerate(ids) if t == unk_id]
        n_unk += len(unk_positions)
        words = line.split()
        n_words += len(words)
        if not unk_positions:
            n_words_ok += len(words)
            continue
        # Which words hold an unknown token: map token offsets back to word spans.
        unk_spans = [encoding.offsets[i] for i in unk_positions]
        pos = 0
        for word in words:
            start = line.index(word, pos)
            end = start + len(word)
            pos = end
            n_words_ok += int(not any(s < end and e > start for s, e in unk_spans))
    return {
        "lines": len(lines),
        "tokens": n_tokens,
        "characters": n_chars,
        "words": n_words,
        "coverage": n_words_ok / n_words if n_words else 1.0,
        "unk_rate": n_unk / n_tokens if n_tokens else 0.0,
        "tokens_per_word": n_tokens / n_words if n_words else 0.0,
        "tokens_per_char": n_tokens / n_chars if n_chars else 0.0,
        "roundtrip_rate": n_roundtrip / len(lines) if lines else 1.0,
    }


def train_tokenizer(
    method: str,
    corpus_paths: Sequence[Path | str],
    vocab_size: int,
    out_dir: Path | str,
    *,
    seed: int = 0,
    holdout: float = 0.05,
    **options: Any,
) -> dict[str, Any]:
    """Train a tokenizer into `out_dir` (tokenizer.json [+ tokenizer.model] + tokenizer_manifest.json).

    `options` are the other TokenizerConfig fields (min_frequency, model_type, normalization, ...).
    Returns the manifest (method, vocab sizes, corpus files with sha256, holdout stats, special tokens).
    """
    try:
        config = TokenizerConfig(method=method, vocab_size=vocab_size, seed=seed, holdout=holdout, **options)
    except ValidationError as exc:  # also an unknown method or a vocabulary too small for it
        raise ConfigError(f"invalid tokenizer options: {validation_problems(exc)}") from exc
    spec = TOKENIZERS[config.method]
    out = Path(out_dir)
    started = time.perf_counter()
    # the corpus is read before anything is written: a corpus that cannot train (no text, every line held
    # out, not UTF-8) left an empty out_dir behind, or with --overwrite an old sentencepiece tokenizer
    # without its tokenizer.model
    corpus = load_corpus(corpus_paths, holdout=config.holdout, seed=config.seed)
    train_lines = corpus.train[: config.max_train_lines] if config.max_train_lines else corpus.train
    read_s = time.perf_counter() - started
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a file where the directory (or a parent) goes
        raise InvalidInputError(f"cannot write the tokenizer to {out}: a file is in the way") from exc
    try:
        tokenizer = spec.train(train_lines, config, out)
    except BaseException:
        if created:  # made for this tokenizer, which failed (a vocabulary that does not fit the corpus)
            shutil.rmtree(out, ignore_errors=True)
        raise
    train_s = time.perf_counter() - started - read_s
    if config.method != "sentencepiece":  # an overwritten sentencepiece tokenizer's model is not this one's
        (out / SPM_FILE).unlink(missing_ok=True)
    atomic_write_text(out / TOKENIZER_FILE, tokenizer.to_str(pretty=True))
    stats = holdout_stats(tokenizer, corpus.holdout or train_lines[:1000])
    files = [TOKENIZER_FILE] + (
        [SPM_FILE] if (out / SPM_FILE).exists() and config.method == "sentencepiece" else []
    )
    manifest: dict[str, Any] = {
        "method": config.method,
        "config": config.model_dump(mode="json"),
        "vocab_size": config.vocab_size,
        "actual_vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "corpus": corpus.files,
        "train_lines": len(train_lines),
        "holdout_lines": len(corpus.holdout),
        "stats": stats,
        "stats_split": "holdout" if corpus.holdout else "train (no holdout)",
        "special_tokens": {
            k: {"token": v, "id": tokenizer.token_to_id(v)} for k, v in SPECIAL_TOKENS.items()
        },
        "files": files,
        "timings_s": {"read": round(read_s, 4), "train": round(train_s, 4)},
        "created_at": time.time(),
    }
    atomic_write_json(out / MANIFEST_FILE, manifest)
    return manifest


def tokenizer_once(
    out_dir: Path | str,
    method: str,
    corpus: Sequence[Path | str] | Callable[[], Sequence[Path | str]],
    vocab_size: int,
    *,
    seed: int = 0,
    on_train: Callable[[], object] | None = None,
    given_as: str | None = None,
) -> Any:
    """The tokenizer in `out_dir`, trained there first when it is not yet (a resumed run reuses its own).

    `corpus` may be a function giving the files, so nothing is written or read when the tokenizer exists;
    `on_train` is called just before training (to report the phase). This is how every recipe gets the
    tokenizer it trains for itself. `given_as`: how the recipe's command takes a tokenizer trained
    beforehand (`--tokenizer DIR`; None: it takes none), for the advice when this one cannot be trained.
    """
    out = Path(out_dir)
    if not (out / TOKENIZER_FILE).is_file():
        if on_train is not None:
            on_train()
        files = corpus() if callable(corpus) else corpus
        try:
            train_tokenizer(method, files, vocab_size, out, seed=seed)
        except ConfigError as exc:
            raise recipe_refusal(exc, method, given_as) from exc
    return load_tokenizer(out)


def recipe_refusal(exc: ConfigError, method: str, given_as: str | None) -> ConfigError:
    """`exc` advising what a recipe's command can set. A recipe sets only the method and vocab_size of the
    tokenizer it trains, so "use min_frequency 1 or less" (char) and "or a lower character_coverage"
    (sentencepiece) named options only `tldrlab tokenizer train` has; `exc` as it is when it names neither."""
    problem = exc.details.get("problem")
    if problem is None:
        return exc
    if (needed := exc.details.get("fitting_vocab_size")) is not None:
        return ConfigError(f"{problem}; use vocab_size {needed} or more", **exc.details)
    if (fitting := exc.details.get("fitting_min_frequency")) is not None:
        ways = ["use another tokenizer method (bpe or sentencepiece: neither makes a text <unk>)"]
        if given_as:
            option = f"--method {method} --min-frequency {fitting}"
            ways.insert(
                0,
                f"train the tokenizer first (tldrlab tokenizer train {option} --out DIR CORPUS) and give it "
                f"as {given_as}",
            )
        return ConfigError(f"{problem}; {', or '.join(ways)}, or train on a larger corpus", **exc.details)
    return exc
