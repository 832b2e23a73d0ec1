"""SentencePiece (unigram or BPE) trained with the `sentencepiece` library, also exported as tokenizer.json.

The `.model` file is the SentencePiece artifact; `tokenizer.json` is the same vocabulary as a Hugging Face
fast tokenizer so every tldrlab model loads tokenizers the same way.

Round-trip caveats (tested): we train with `add_dummy_prefix=False`, `remove_extra_whitespaces=False` and
`byte_fallback=True`, so with `normalization="identity"` decode(encode(x)) == x for any text (characters
outside the vocabulary become byte pieces). With `nmt_nfkc` or `nfkc` the text is NFKC-normalised first
(e.g. "ﬁ" -> "fi", full-width letters -> ASCII; nmt_nfkc also maps some control characters), so decode gives
the normalised text back, not the original.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

from tldrlab.errors import ConfigError
from tldrlab.runs.atomic import atomic_write_bytes
from tldrlab.tokenizers.config import (
    BOS,
    BYTE_ALPHABET,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    SPM_FILE,
    UNK,
    TokenizerConfig,
)
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers


def train_model(lines: Sequence[str], config: TokenizerConfig) -> bytes:
    """Train a SentencePiece model and return the serialized `.model` bytes."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.set_random_generator_seed(config.seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=config.vocab_size,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            normalization_rule_name=config.normalization,
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            byte_fallback=True,
            split_digits=False,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece=PAD,
            unk_piece=UNK,
            bos_piece=BOS,
            eos_piece=EOS,
            # The whole corpus was already read; never let spm sample it down silently, nor skip a line for
            # its length (its default, 4192 bytes, and 64 KiB here before, dropped every longer line without
            # a word: a corpus of long paragraphs was trained on its short lines only)
            input_sentence_size=0,
            max_sentence_length=max([1 << 16, *(len(line.encode("utf-8")) + 1 for line in lines)]),
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise _training_refusal(str(exc), config) from exc
    return model.getvalue()


def _training_refusal(message: str, config: TokenizerConfig) -> ConfigError:
    """One line saying what vocab_size this corpus takes, from SentencePiece's own numbers: at least the 4
    special tokens, 256 byte pieces and one piece per distinct character of the corpus (so 261 is only the
    floor, for a corpus of a single character), at most what the corpus can be cut into."""
    too_small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_small:
        needed = int(too_small.group(2))
        characters = needed - len(SPECIAL_TOKENS) - BYTE_ALPHABET
        problem = (
            f"vocab size {config.vocab_size} does not fit this corpus for sentencepiece: too small, it needs "
            f"{needed} ({len(SPECIAL_TOKENS)} special tokens, {BYTE_ALPHABET} byte pieces and {characters} "
            f"distinct characters at character_coverage {config.character_coverage})"
        )
        # `problem` and `fitting_vocab_size` let a command that cannot set character_coverage advise its way
        return ConfigError(
            f"{problem}; use vocab_size {needed} or more, or a lower character_coverage",
            problem=problem,
            fitting_vocab_size=needed,
        )
    too_large = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", message)
    if too_large:
        return ConfigError(
            f"vocab size {config.vocab_size} does not fit this corpus for sentencepiece: too large, it makes "
            f"at most {too_large.group(2)} pieces of it; use vocab_size {too_large.group(2)} or less, or a "
            "larger corpus"
        )
    detail = " ".join(message.split())  # one line, whatever SentencePiece said
    if "Vocabulary size" in message or "vocab_size" in message:
        return ConfigError(
            f"vocab size {config.vocab_size} does not fit this corpus for sentencepiece: {detail}"
        )
    return ConfigError(f"sentencepiece training failed: {detail}")


def to_fast_tokenizer(model_bytes: bytes) -> Tokenizer:
    """The same SentencePiece vocabulary as a `tokenizers.Tokenizer` (what tokenizer.json holds)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(model_bytes)
    pieces = [(p.piece, p.score) for p in proto.pieces]
    model: models.Model
    if proto.trainer_spec.model_type == 1:  # unigram
        model = models.Unigram(pieces, unk_id=proto.trainer_spec.unk_id, byte_fallback=True)
    else:  # bpe: merges are implied by the piece order
        from transformers.tokenization_utils_base import generate_merges

        vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
        merges = generate_merges(vocab)
        model = models.BPE(vocab=vocab, merges=merges, unk_token=UNK, fuse_unk=True, byte_fallback=True)
    tokenizer = Tokenizer(model)
    steps: list[normalizers.Normalizer] = [normalizers.Replace(" ", "▁")]
    charsmap = proto.normalizer_spec.precompiled_charsmap
    if charsmap:
        steps.insert(0, normalizers.Precompiled(charsmap))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS.values()])
    return tokenizer


def train(lines: Sequence[str], config: TokenizerConfig, out_dir: Path) -> Tokenizer:

    model_bytes = train_model(lines, config)
    atomic_write_bytes(out_dir / SPM_FILE, model_bytes)
    return to_fast_tokenizer(model_bytes)
