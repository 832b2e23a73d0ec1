"""Tokenizers train for real on a slice of tinyshakespeare, round-trip, and report sane holdout stats."""

from __future__ import annotations

import json
import random
from itertools import islice
from pathlib import Path

import pytest
import sentencepiece as spm
import yaml

from cliutil import run_captured
from tldrlab.errors import ConfigError, InvalidInputError, NotFoundError
from tldrlab.runs import open_registry, start_run
from tldrlab.runs.atomic import sha256_file
from tldrlab.tokenizers import TOKENIZERS, holdout_stats, load_tokenizer, train_tokenizer
from tldrlab.tokenizers.config import SPECIAL_TOKENS, TokenizerJobConfig
from tldrlab.tokenizers.corpus import load_corpus
from tldrlab.tokenizers.job import tokenizer_job
from tldrlab.tokenizers.plain import plain, plain_encodings, plain_ids, text_only

UNICODE_TEXT = "  Héllo,\twörld!\n日本語 — ﬁne 🙂  end "


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:40_000]
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(text, encoding="utf-8")
    return path


CASES = [
    ("bpe", 400, {}),
    ("char", 100, {}),
    ("sentencepiece", 400, {"model_type": "unigram"}),
    ("sentencepiece", 400, {"model_type": "bpe"}),
]


@pytest.mark.parametrize(("method", "vocab_size", "options"), CASES)
def test_train_roundtrip_and_stats(
    method: str, vocab_size: int, options: dict[str, str], corpus: Path, tmp_path: Path
) -> None:
    manifest = train_tokenizer(method, [corpus], vocab_size, tmp_path, seed=1, holdout=0.1, **options)

    assert (tmp_path / "tokenizer.json").is_file()
    assert (tmp_path / "tokenizer.model").is_file() == (method == "sentencepiece")
    on_disk = json.loads((tmp_path / "tokenizer_manifest.json").read_text())
    assert on_disk["method"] == method
    assert on_disk["corpus"][0]["sha256"] == sha256_file(corpus)
    assert {k: v["id"] for k, v in on_disk["special_tokens"].items()} == {
        "pad_token": 0,
        "unk_token": 1,
        "bos_token": 2,
        "eos_token": 3,
    }
    assert manifest["actual_vocab_size"] <= vocab_size

    stats = manifest["stats"]
    assert stats["lines"] == manifest["holdout_lines"] > 0
    assert 0.9 <= stats["coverage"] <= 1.0
    assert 0.0 <= stats["unk_rate"] < 0.01
    assert stats["roundtrip_rate"] == 1.0
    if method == "char":
        assert stats["tokens_per_char"] == 1.0
    else:  # subword units compress: fewer tokens than characters, more than one per word on average
        assert 0.2 < stats["tokens_per_char"] < 1.0
        assert 1.0 < stats["tokens_per_word"] < 5.0

    tokenizer = load_tokenizer(tmp_path)
    assert (
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    ) == (
        0,
        1,
        2,
        3,
    )
    holdout = load_corpus([corpus], holdout=0.1, seed=1).holdout
    for line in holdout[:50]:
        assert tokenizer.decode(tokenizer.encode(line, add_special_tokens=False)) == line


def test_bpe_and_identity_sentencepiece_roundtrip_any_text(corpus: Path, tmp_path: Path) -> None:
    train_tokenizer("bpe", [corpus], 300, tmp_path / "bpe")
    train_tokenizer("sentencepiece", [corpus], 400, tmp_path / "spm")
    for directory in ("bpe", "spm"):
        tokenizer = load_tokenizer(tmp_path / directory)
        ids = tokenizer.encode(UNICODE_TEXT, add_special_tokens=False)
        assert tokenizer.unk_token_id not in ids  # bytes / byte fallback cover everything
        assert tokenizer.decode(ids) == UNICODE_TEXT


def test_special_token_strings_are_text_to_a_bpe_tokenizer_and_its_stats(
    corpus: Path, tmp_path: Path
) -> None:
    """tldrlab's own tokenizers carry <pad> <unk> <s> </s>: a line holding those strings was encoded (and
    measured by the holdout stats) as the control tokens. Encoded as user text they are text."""
    train_tokenizer("bpe", [corpus], 300, tmp_path / "bpe")
    tokenizer = load_tokenizer(tmp_path / "bpe")
    text = "To be</s> or <pad>not<s>"
    stats = holdout_stats(tokenizer.backend_tokenizer, [text])
    assert tokenizer.backend_tokenizer.encode_special_tokens is False  # left as it was
    ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)  # as training reads it
    assert not set(ids) & set(tokenizer.all_special_ids) and tokenizer.decode(ids) == text
    assert stats["tokens_per_char"] == pytest.approx(len(ids) / len(text))


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_special_token_strings_are_text_to_a_sentencepiece_tokenizer(
    model_type: str, corpus: Path, tmp_path: Path
) -> None:
    """A SentencePiece unigram model keeps <pad> <unk> <s> </s> as pieces of its vocabulary, and the fast
    tokenizer's model reached them from text: "</s>" in a document encoded as text was the eos id all the
    same (split_special_tokens only stops the added-token match in front of the model), "<pad>" the padding
    id, so a training document carried an eos in its middle. The SentencePiece library never makes a control
    piece of text, and plain.py does not either now (its bpe models never did). The tokenizer is left as it
    was: encoded as a control token where nobody asks for text, "</s>" is still the eos."""
    train_tokenizer("sentencepiece", [corpus], 400, tmp_path, model_type=model_type)
    tokenizer = load_tokenizer(tmp_path)
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    specials = set(tokenizer.all_special_ids)
    text = "To be</s> or <pad>not<s>, <unk> be"
    ids = plain_ids(tokenizer, text)
    assert not set(ids) & specials and tokenizer.decode(ids) == text, tokenizer.convert_ids_to_tokens(ids)
    assert ids == processor.encode(text)  # as the SentencePiece library reads it
    (encoding,) = plain_encodings(tokenizer.backend_tokenizer, [text])
    assert encoding.ids == ids
    batch = plain(tokenizer, [text, "</s>"], add_special_tokens=False)["input_ids"]
    assert batch[0] == ids and tokenizer.eos_token_id not in batch[1]
    assert tokenizer.encode("</s>", add_special_tokens=False) == [tokenizer.eos_token_id]
    assert tokenizer.backend_tokenizer.pre_tokenizer is None  # put back
    lines = load_corpus([corpus]).train[:100]
    for line in lines:  # text without such strings encodes as before
        assert plain_ids(tokenizer, line) == tokenizer.encode(line, add_special_tokens=False)
    # a tokenizer given only user text (an embedder's) is made to read it as text for good
    from tokenizers import Tokenizer

    backend = text_only(Tokenizer.from_file(str(tmp_path / "tokenizer.json")))
    assert backend.encode(text, add_special_tokens=False).ids == ids
    assert [e.ids for e in backend.encode_batch(lines, add_special_tokens=False)] == [
        tokenizer.encode(line, add_special_tokens=False) for line in lines
    ]
    wrapped = text_only(load_tokenizer(tmp_path))
    assert wrapped(text, add_special_tokens=False)["input_ids"] == ids == plain_ids(wrapped, text)


def test_char_tokenizer_unknown_characters(corpus: Path, tmp_path: Path) -> None:
    train_tokenizer("char", [corpus], 200, tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    known = "To be, or not to be:\nthat is the question."
    assert tokenizer.decode(tokenizer.encode(known, add_special_tokens=False)) == known
    ids = tokenizer.encode("a日b", add_special_tokens=False)
    assert ids[1] == tokenizer.unk_token_id and len(ids) == 3
    stats = holdout_stats(tokenizer.backend_tokenizer, ["ab 日本", "abc"])
    assert stats["unk_rate"] == pytest.approx(2 / 8)
    assert stats["coverage"] == pytest.approx(2 / 3)  # "日本" is the one word with unknown tokens


def test_char_vocab_size_caps_the_alphabet(corpus: Path, tmp_path: Path) -> None:
    manifest = train_tokenizer("char", [corpus], 20, tmp_path)
    assert manifest["actual_vocab_size"] == 20
    assert manifest["stats"]["unk_rate"] > 0  # rare characters now fall back to <unk>


def test_char_refuses_a_vocabulary_of_only_special_tokens(tmp_path: Path) -> None:
    # every character rarer than min_frequency: the vocabulary would be the 4 specials (+ newline) alone
    rare = tmp_path / "rare.txt"
    rare.write_text("abc\ndef\nghi\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"min_frequency=2 .* use min_frequency 1 or less"):
        train_tokenizer("char", [rare], 50, tmp_path / "tok", holdout=0.0)
    manifest = train_tokenizer("char", [rare], 50, tmp_path / "tok", holdout=0.0, min_frequency=1)
    assert manifest["actual_vocab_size"] == 4 + 9 + 1 and manifest["stats"]["unk_rate"] == 0.0


def test_sentencepiece_fast_matches_library(corpus: Path, tmp_path: Path) -> None:
    train_tokenizer("sentencepiece", [corpus], 400, tmp_path, model_type="unigram")
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    tokenizer = load_tokenizer(tmp_path)
    lines = load_corpus([corpus]).train[:200]
    for line in lines:
        assert tokenizer.encode(line, add_special_tokens=False) == processor.encode(line)


def test_sentencepiece_nfkc_normalisation_caveat(corpus: Path, tmp_path: Path) -> None:
    """With NFKC normalisation decode(encode(x)) gives the normalised text, not x (documented caveat)."""
    train_tokenizer("sentencepiece", [corpus], 400, tmp_path, normalization="nmt_nfkc")
    tokenizer = load_tokenizer(tmp_path)
    text = "ﬁne ＡＢＣ"
    decoded = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False))
    assert decoded != text
    assert decoded == "fine ABC"


def test_holdout_split_is_seeded(corpus: Path) -> None:
    first = load_corpus([corpus], holdout=0.1, seed=3)
    again = load_corpus([corpus], holdout=0.1, seed=3)
    other = load_corpus([corpus], holdout=0.1, seed=4)
    assert first.holdout == again.holdout
    assert first.holdout != other.holdout
    assert len(first.train) + len(first.holdout) == first.files[0]["lines"]
    assert not set(first.holdout) - set(load_corpus([corpus], holdout=0.0).train)


def test_saved_tokenizer_loads_with_plain_transformers(corpus: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    train_tokenizer("bpe", [corpus], 300, tmp_path / "tok")
    load_tokenizer(tmp_path / "tok").save_pretrained(tmp_path / "saved")
    plain = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert plain.pad_token == "<pad>" and plain.eos_token == "</s>"
    assert plain.decode(plain.encode(UNICODE_TEXT, add_special_tokens=False)) == UNICODE_TEXT


def test_structured_corpus_uses_documents_and_summaries(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"
    sample = tmp_path / "debian_descriptions.sample.jsonl"
    sample.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:40]))
    first = json.loads(sample.read_text().splitlines()[0])
    split = load_corpus([sample], holdout=0.0)
    assert split.files[0]["format"] == "debian"
    assert first["summary"] in split.train
    manifest = train_tokenizer("bpe", [sample], 300, tmp_path / "tok")
    assert manifest["train_lines"] > 40


def test_bad_inputs_raise_clear_errors(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown tokenizer method 'wordpiece'"):
        train_tokenizer("wordpiece", [corpus], 300, tmp_path)
    with pytest.raises(ConfigError, match="too small"):
        train_tokenizer("bpe", [corpus], 100, tmp_path)
    with pytest.raises(NotFoundError, match="not found"):
        train_tokenizer("bpe", [tmp_path / "missing.txt"], 300, tmp_path)
    with pytest.raises(ConfigError, match="does not fit this corpus"):
        train_tokenizer("sentencepiece", [corpus], 200_000, tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InvalidInputError, match="no text"):
        train_tokenizer("char", [empty], 50, tmp_path)
    with pytest.raises(NotFoundError):
        load_tokenizer(tmp_path / "nowhere")
    assert set(TOKENIZERS) == {"bpe", "sentencepiece", "char"}


def test_sentencepiece_says_the_vocab_size_this_corpus_needs(corpus: Path, tmp_path: Path) -> None:
    # 261 is only the floor (a one-character corpus): each distinct character takes a piece too, so the
    # refusal names the number to use, and that number trains
    with pytest.raises(
        ConfigError, match=r"too small, it needs (\d+) .* use vocab_size \1 or more"
    ) as refused:
        train_tokenizer("sentencepiece", [corpus], 261, tmp_path / "floor")
    assert "\n" not in refused.value.message and "trainer_interface" not in refused.value.message
    needed = int(refused.value.message.split("it needs ")[1].split()[0])
    assert needed > 261
    manifest = train_tokenizer("sentencepiece", [corpus], needed, tmp_path / "needed")
    assert manifest["actual_vocab_size"] == needed
    with pytest.raises(ConfigError, match=r"too large, it makes at most \d+ pieces"):
        train_tokenizer("sentencepiece", [corpus], 200_000, tmp_path / "large")


def test_tokenizer_job_trains_into_the_run_dir(corpus: Path) -> None:
    config = {"method": "char", "vocab_size": 80, "corpus": [str(corpus)], "holdout": 0.1}
    with start_run("tokenizer", config) as run:
        manifest = tokenizer_job(run, TokenizerJobConfig.model_validate(config))
    record = open_registry().get(run.id)
    assert record.status.value == "completed"
    assert record.metrics["vocab_size"] == manifest["actual_vocab_size"]
    assert (run.dir / "tokenizer" / "tokenizer.json").is_file()
    assert load_tokenizer(run.id).decode(load_tokenizer(run.id).encode("to be")) == "to be"


def test_the_tokenizer_never_sees_its_holdout_lines(tmp_path: Path) -> None:
    """Each line carries a letter of its own: the held-out lines' letters are not in the trained vocabulary,
    so the holdout stats measure text the tokenizer was not fitted on."""
    corpus = tmp_path / "letters.txt"
    corpus.write_text("".join(f"line {chr(0x430 + i)} here\n" for i in range(30)), encoding="utf-8")
    split = load_corpus([corpus], holdout=0.2, seed=5)
    manifest = train_tokenizer("char", [corpus], 200, tmp_path / "tok", seed=5, holdout=0.2, min_frequency=1)
    vocab = set(load_tokenizer(tmp_path / "tok").get_vocab())
    held = {line.split()[1] for line in split.holdout}
    assert len(held) == manifest["holdout_lines"] == 6
    assert not held & vocab and {line.split()[1] for line in split.train} <= vocab


@pytest.mark.parametrize("method", ["bpe", "char", "sentencepiece"])
def test_a_holdout_that_takes_every_line_is_refused(method: str, tmp_path: Path) -> None:
    """Two lines at holdout 0.9: both held out. bpe trained on nothing and completed; char and sentencepiece
    failed on an empty training set with messages about min_frequency or sentencepiece internals."""
    corpus = tmp_path / "two.txt"
    corpus.write_text("line one\nline two\n", encoding="utf-8")
    options = {} if method == "sentencepiece" else {"min_frequency": 1}
    refused = r"holdout 0.9 keeps all 2 line\(s\) .* leaving none to train"
    with pytest.raises(InvalidInputError, match=refused):
        train_tokenizer(method, [corpus], 300, tmp_path / "tok", holdout=0.9, **options)
    assert not (tmp_path / "tok" / "tokenizer.json").exists()
    assert len(load_corpus([corpus], holdout=0.5).train) == 1  # one line of two held out: one trains


def test_a_byte_order_mark_is_not_trained_into_the_vocabulary(tmp_path: Path) -> None:
    """A plain-text corpus saved with a BOM: U+FEFF was read as the first line's first character and got an
    id of its own (the data readers drop it)."""
    corpus = tmp_path / "bom.txt"
    corpus.write_bytes("\ufeffab\nab\n".encode())
    train_tokenizer("char", [corpus], 50, tmp_path / "tok", holdout=0.0, min_frequency=1)
    vocab = load_tokenizer(tmp_path / "tok").get_vocab()
    assert "\ufeff" not in vocab and {"a", "b"} <= set(vocab)
    assert load_corpus([corpus], holdout=0.0).train == ["ab", "ab"]


def test_a_training_that_fails_leaves_the_out_directory_as_it_was(corpus: Path, tmp_path: Path) -> None:
    """Replacing a sentencepiece tokenizer with a bpe one whose corpus could not train deleted its
    tokenizer.model first (the tokenizer left without its model); a sentencepiece vocabulary that did not
    fit the corpus left the new, empty out directory behind."""
    kept = tmp_path / "kept"
    train_tokenizer("sentencepiece", [corpus], 400, kept)
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    two = tmp_path / "two.txt"
    two.write_text("line one\nline two\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="leaving none to train"):
        train_tokenizer("bpe", [two], 300, kept, holdout=0.9)
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before
    assert load_tokenizer(kept).decode(load_tokenizer(kept).encode("to be")) == "to be"

    fresh = tmp_path / "fresh"
    with pytest.raises(ConfigError, match="does not fit this corpus"):
        train_tokenizer("sentencepiece", [corpus], 200_000, fresh)
    assert not fresh.exists()


def test_the_char_vocabulary_advice_names_what_each_command_can_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tldrlab train` trains its tokenizer with the default min_frequency, which it cannot set, yet its error
    # said "use min_frequency 1 or less" (only `tldrlab tokenizer train` can)
    rare = tmp_path / "rare.txt"
    rare.write_text("abc\ndef\nghi\n", encoding="utf-8")
    code, _, err = run_captured(
        [
            "train",
            "--model",
            "char_lstm",
            "--data",
            str(rare),
            "--tokenizer-method",
            "char",
            "--max-steps",
            "1",
        ],
        capsys,
    )
    assert code == ConfigError.exit_code and "Traceback" not in err, err
    assert "no character of the corpus occurs min_frequency=2 times" in err and "use min_frequency" not in err
    assert "tldrlab tokenizer train --method char --min-frequency 1" in err and "--tokenizer DIR" in err, err
    code, _, err = run_captured(
        ["tokenizer", "train", "--method", "char", "--holdout", "0", str(rare)], capsys
    )
    assert code == ConfigError.exit_code and "use min_frequency 1 or less, or a larger corpus" in err, err


def test_a_recipes_tokenizer_advice_names_only_what_its_command_can_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `experiment dendrites` and a sweep train their tokenizer with min_frequency's and character_coverage's
    # defaults, which they cannot set, yet said "use min_frequency 1 or less" (char) and "or a lower
    # character_coverage" (sentencepiece), as `tldrlab train` said the second
    # every character once: none reaches min_frequency 2, and more distinct ones than 261 - 260 leaves room
    unique = iter(chr(code) for code in range(0x4E00, 0x4F00))
    records = tmp_path / "rare.jsonl"
    rows = [
        {"id": str(i), "document": "".join(islice(unique, 3)), "summary": next(unique)} for i in range(30)
    ]
    records.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    lines = tmp_path / "rare.txt"
    lines.write_text("".join("".join(islice(unique, 3)) + "\n" for _ in range(40)), encoding="utf-8")
    experiment = ["experiment", "dendrites", "--data", str(records), "--eval-size", "1", "--test-size", "1"]
    experiment += ["--arms", "baseline", "--budget-steps", "1"]
    sweep = tmp_path / "rare.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "rare",
                "program": "tldrlab.train",
                "method": "grid",
                "metric": {"name": "eval_loss", "goal": "minimize"},
                "parameters": {"train.lr": {"values": [0.01]}},
                "config": {
                    "model": "char_lstm",
                    "data": {"path": str(lines), "block_size": 8},
                    "tokenizer": {"method": "char", "vocab_size": 100},
                    "train": {"max_steps": 1, "batch_size": 2, "device": "cpu"},
                },
            }
        ),
        encoding="utf-8",
    )
    train = ["train", "--model", "char_lstm", "--data", str(lines), "--max-steps", "1"]
    for argv, advice in [
        ([*experiment, "--tokenizer-method", "char", "--vocab-size", "64"], "use another tokenizer method"),
        ([*experiment, "--tokenizer-method", "sentencepiece", "--vocab-size", "261"], "or more"),
        (["sweep", "run", str(sweep)], "and give it as tokenizer.path in the sweep's config"),
        ([*train, "--tokenizer-method", "sentencepiece", "--vocab-size", "261"], "or more"),
    ]:
        code, _, err = run_captured(argv, capsys)
        assert code == ConfigError.exit_code and "Traceback" not in err, err
        assert advice in err, err
        assert "use min_frequency" not in err and "lower character_coverage" not in err, err


def test_sentencepiece_trains_on_lines_longer_than_64_kib(tmp_path: Path) -> None:
    """SentencePiece skips a line longer than its max_sentence_length (64 KiB here) without a word: a corpus
    of long paragraphs was trained on its short lines only, and a vocabulary its words fill was refused
    as 'too large: it makes at most 271 pieces of it ... or a larger corpus'."""
    rng = random.Random(0)
    words = ["hops", "malt", "yeast", "water", "barley", "wheat", "lager", "stout", "porter", "cask", "keg"]
    paragraphs = [" ".join(rng.choice(words) for _ in range(12_000)) for _ in range(2)]  # ~70 KB each
    corpus = tmp_path / "paragraphs.txt"
    corpus.write_text("\n".join([*paragraphs, "a short line"]) + "\n", encoding="utf-8")
    manifest = train_tokenizer("sentencepiece", [corpus], 285, tmp_path / "spm", holdout=0.0)
    assert manifest["actual_vocab_size"] == 285 and manifest["train_lines"] == 3


LINE_BREAKS_BESIDES_NEWLINE = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""What str.splitlines also splits at: vertical tab, form feed, the file/group/record separators, NEL and the
Unicode line and paragraph separators."""


def test_a_char_vocabulary_holds_the_line_breaks_splitlines_would_drop(tmp_path: Path) -> None:
    """The corpus was split into lines with str.splitlines, so the characters above never reached a char
    vocabulary (nor any line a tokenizer trained on) and a text holding them encoded as <unk>."""
    text = "".join(f"page {i}{sep}more\n" for i, sep in enumerate(LINE_BREAKS_BESIDES_NEWLINE))
    corpus = tmp_path / "breaks.txt"
    corpus.write_text(text + "\x0c\nlast page\n", encoding="utf-8")  # a form feed alone on its line too
    assert load_corpus([corpus], holdout=0.0).train[-2:] == ["\x0c", "last page"]
    train_tokenizer("char", [corpus], 100, tmp_path / "tok", holdout=0.0, min_frequency=1)
    tokenizer = load_tokenizer(tmp_path / "tok")
    assert set(LINE_BREAKS_BESIDES_NEWLINE) <= set(tokenizer.get_vocab())
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text


@pytest.mark.parametrize("text", ["ab\nab\nab\n", "a\nb\nc\na\n"])
def test_the_one_free_slot_of_the_smallest_char_vocabulary_goes_to_the_most_frequent_character(
    text: str, tmp_path: Path
) -> None:
    """At vocab_size 5 (the 4 specials and one character, the smallest char vocabulary) the newline, counted
    once per line, took the free slot when it tied with the most frequent character (ties go by code point,
    and "\\n" comes first) or outnumbered it: every text was <unk>, the vocabulary the char trainer refuses
    as useless when min_frequency would make it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    train_tokenizer("char", [corpus], 5, tmp_path / "tok", holdout=0.0, min_frequency=1)
    tokenizer = load_tokenizer(tmp_path / "tok")
    assert set(tokenizer.get_vocab()) - set(SPECIAL_TOKENS.values()) == {"a"}
    assert tokenizer.decode(tokenizer.encode("a", add_special_tokens=False)) == "a"
    # one slot more: the newline gets its id too
    train_tokenizer("char", [corpus], 6, tmp_path / "six", holdout=0.0, min_frequency=1)
    assert set(load_tokenizer(tmp_path / "six").get_vocab()) - set(SPECIAL_TOKENS.values()) == {"a", "\n"}
