"""ROUGE reads words in any script, and reads ASCII text exactly as rouge_score's default tokenizer does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tldrlab.evaluate import rouge_scores

ALL_ONE = {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}


@pytest.mark.parametrize(
    "text",
    [
        "東京は日本の首都です。人口は約千四百万人です。",
        "Москва является столицей России. Население города растёт.",
        "القاهرة هي عاصمة مصر وأكبر مدنها.",
    ],
    ids=["japanese", "russian", "arabic"],
)
def test_identical_non_latin_summaries_score_one(text: str) -> None:
    assert rouge_scores([text], [text]) == pytest.approx(ALL_ONE)


def test_partly_overlapping_japanese_scores_between_zero_and_one() -> None:
    # one character each way differs: 猫 (cat) against 犬 (dog); 6 of 7 characters match
    scores = rouge_scores(["猫が魚を食べた"], ["犬が魚を食べた"])
    assert 0.0 < scores["rouge1"] < 1.0
    assert scores["rouge1"] == pytest.approx(6 / 7)


def test_words_outside_ascii_are_kept_whole_and_unstemmed() -> None:
    from tldrlab.evaluate.metrics import RougeTokenizer

    tokens = RougeTokenizer().tokenize("Café naïve — Привет, мир! 猫が好き running_dogs")
    assert tokens == ["café", "naïve", "привет", "мир", "猫", "が", "好", "き", "run", "dog"]


def test_ascii_english_gets_rouge_scores_exact_tokens_and_scores(shared_data: Path) -> None:
    """English figures do not move: on real abstracts and TL;DRs (ASCII ones: only non-ASCII characters are
    read differently) every token and every ROUGE score equals rouge_score's default tokenizer's."""
    from rouge_score import rouge_scorer, tokenizers

    from tldrlab.evaluate.metrics import RougeTokenizer

    lines = (shared_data / "scitldr" / "scitldr_a.dev.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    pairs = [
        ("\n".join(r["source"]), r["target"][0]) for r in records if all(s.isascii() for s in r["source"])
    ]
    pairs = [(source, tldr) for source, tldr in pairs if tldr.isascii()][:300]
    assert len(pairs) == 300
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    default = rouge_scorer.RougeScorer(types, use_stemmer=True)
    ours = rouge_scorer.RougeScorer(types, tokenizer=RougeTokenizer(use_stemmer=True))
    for stemmed in (True, False):
        tokenizer = RougeTokenizer(use_stemmer=stemmed)
        default_tokenizer = tokenizers.DefaultTokenizer(use_stemmer=stemmed)
        for text in [text for pair in pairs for text in pair]:
            assert tokenizer.tokenize(text) == default_tokenizer.tokenize(text)
    for source, tldr in pairs:  # the lead-1 baseline against the author's TL;DR
        lead = source.split("\n")[0]
        assert ours.score(tldr, lead) == default.score(tldr, lead)


@pytest.mark.parametrize(
    ("pred", "ref"),
    [("ﬁne ﬁsh", "fine fish"), ("ＡＢＣ１ ｆｉｓｈ", "ABC1 fish")],
    ids=["fi_ligature", "fullwidth"],
)
def test_compatibility_characters_match_what_they_stand_for(pred: str, ref: str) -> None:
    assert rouge_scores([pred], [ref]) == pytest.approx(ALL_ONE)


def test_ascii_tokens_stay_rouge_scores_next_to_compatibility_characters() -> None:
    from rouge_score import tokenizers

    from tldrlab.evaluate.metrics import RougeTokenizer

    tokenizer, default = RougeTokenizer(), tokenizers.DefaultTokenizer(use_stemmer=True)
    for text in ["The cats were running quickly.", "AT&T's 3.5% rise -- e-mail_me!", "  Tabs\tand\nlines  "]:
        assert tokenizer.tokenize(text) == default.tokenize(text)
    assert tokenizer.tokenize("Running ﬁsh, ＲＵＮＮＩＮＧ dogs") == ["run", "fish", "run", "dog"]


def test_rouge_lsum_splits_chinese_and_japanese_sentences_without_spaces_as_english_ones() -> None:
    # the same two sentences in the other order: rougeLsum's summary-level LCS finds each whole only when
    # both texts are split into sentences (rougeL, one sequence, does not)
    for pred, ref in [
        ("I like cats. I like dogs too.", "I like dogs too. I like cats."),
        ("猫が好きです。犬も好きです！", "犬も好きです！猫が好きです。"),
        ("今天天气很好？我们去公园。", "我们去公园。今天天气很好？"),
    ]:
        scores = rouge_scores([pred], [ref])
        assert scores["rougeLsum"] == pytest.approx(1.0)
        assert scores["rougeL"] < 1.0
