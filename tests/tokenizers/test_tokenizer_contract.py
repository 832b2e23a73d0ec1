"""The tokenizer contract: every entry of TOKENIZERS trains on a small corpus, fixes the special token ids,
round-trips text made of the corpus' characters and loads back from its directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tldrlab.tokenizers import TOKENIZERS, load_tokenizer, train_tokenizer
from tldrlab.tokenizers.config import MIN_VOCAB_SIZES


@pytest.mark.parametrize("method", list(TOKENIZERS))
def test_tokenizer_trains_and_round_trips(method: str, shared_data: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000])
    spec = TOKENIZERS[method]
    assert spec.description
    # sentencepiece needs its 256 byte pieces plus every character of the corpus (about 60 here)
    vocab_size = max(400, MIN_VOCAB_SIZES[method])
    manifest = train_tokenizer(method, [corpus], vocab_size, tmp_path / "tok")
    assert manifest["method"] == method and 4 < manifest["actual_vocab_size"] <= vocab_size
    tokenizer = load_tokenizer(tmp_path / "tok")
    ids = (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    assert ids == (0, 1, 2, 3)
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
