"""ROUGE, BERTScore (offline MiniLM), lengths and perplexity on strings whose answers are known."""

from __future__ import annotations

import math

import pytest

from tldrlab.errors import InvalidInputError
from tldrlab.evaluate import bertscore, distinct_n, length_stats, perplexity, rouge_scores
from tldrlab.evaluate.metrics import EMPTY_OUTPUT_CAUSE, bertscore_f1_per_sample, empty_count
from tldrlab.evaluate.run_eval import empty_output_warnings


def test_rouge_identical_and_partial() -> None:
    assert rouge_scores(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(
        {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}
    )
    scores = rouge_scores(["the cat sat"], ["the cat ran"])
    assert scores["rouge1"] == pytest.approx(2 / 3)  # 2 of 3 unigrams match both ways
    assert scores["rouge2"] == pytest.approx(1 / 2)  # "the cat" of 2 bigrams
    assert rouge_scores(["dogs bark"], ["cats purr"])["rouge1"] == 0.0


def test_rouge_stems_and_averages() -> None:
    # With stemming "running" and "runs" both become "run".
    assert rouge_scores(["running dogs"], ["runs dog"])["rouge1"] == pytest.approx(1.0)
    mean = rouge_scores(["a b", "x y"], ["a b", "p q"])
    assert mean["rouge1"] == pytest.approx(0.5)


def test_rouge_lsum_uses_sentence_lines() -> None:
    pred = "The model is small. It trains fast."
    ref = "It trains fast. The model is small."
    scores = rouge_scores([pred], [ref])
    # Sentence-level LCS union finds both sentences; a single LCS over the flat text cannot.
    assert scores["rougeLsum"] == pytest.approx(1.0)
    assert scores["rougeL"] < scores["rougeLsum"]


def test_rouge_is_f1_and_lsum_splits_the_prediction_too() -> None:
    # precision 1, recall 1/3: F1 is 0.5 (recall alone would be 1/3, precision alone 1)
    assert rouge_scores(["the cat"], ["the cat sat on the mat"])["rouge1"] == pytest.approx(0.5)
    # a one-sentence reference, a prediction saying it in two sentences in the other order: with the
    # prediction's sentences on lines, the union LCS finds 7 of the 8 reference words (F1 14/15)
    scores = rouge_scores(["It trains fast. The model is small."], ["The model is small and it trains fast."])
    assert scores["rougeLsum"] == pytest.approx(14 / 15)


def test_bertscore_orders_identical_paraphrase_unrelated() -> None:
    ref = "The cat sat on the mat."
    identical = bertscore([ref], [ref])
    paraphrase = bertscore(["A cat was sitting on the rug."], [ref])
    unrelated = bertscore(["Quarterly revenue fell sharply in Europe."], [ref])
    assert identical["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)
    assert paraphrase["bertscore_f1"] > unrelated["bertscore_f1"] + 0.1
    assert set(identical) == {"bertscore_precision", "bertscore_recall", "bertscore_f1"}


def test_length_stats_perplexity_distinct() -> None:
    stats = length_stats(["one two three", "four"], prefix="pred_")
    assert stats["pred_words_mean"] == 2.0
    assert (stats["pred_words_min"], stats["pred_words_max"], stats["pred_words_median"]) == (1.0, 3.0, 2.0)
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50)) == pytest.approx(50.0)
    assert math.isfinite(perplexity(1e9))
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)


def test_mismatched_lengths_are_an_input_error() -> None:
    with pytest.raises(InvalidInputError, match="2 predictions but 1 references"):
        rouge_scores(["a", "b"], ["a"])
    with pytest.raises(InvalidInputError):
        bertscore(["a"], [])


def test_bertscore_counts_empty_predictions_as_zero() -> None:
    ref = "The cat sat on the mat."
    both = bertscore(["", ref], [ref, ref])
    assert both["bertscore_f1"] == pytest.approx(0.5, abs=1e-4)


def test_an_output_of_invisible_characters_is_counted_empty_in_tldrlabs_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a prediction of a zero-width space (or a lone accent, which the encoder's lower-casing strips) is no
    # token to BERTScore's encoder: bert_score scored it 0 but printed its own "Warning: Empty candidate
    # sentence detected" on stderr, past -q, and tldrlab's empty-output count did not count it
    ref = "The cat sat on the mat."
    preds = ["\u200b", ref, "\u0301", "\u00ad\u200b "]
    scores = bertscore(preds, [ref] * 4)
    per_sample = bertscore_f1_per_sample(preds, [ref] * 4)
    assert capsys.readouterr().err == ""
    assert scores["bertscore_f1"] == pytest.approx(0.25, abs=1e-4)
    assert per_sample[0] == per_sample[2] == per_sample[3] == 0.0 and per_sample[1] == pytest.approx(1.0)
    assert bertscore([ref], ["\u200b"])["bertscore_f1"] == 0.0  # an invisible reference: the same
    assert capsys.readouterr().err == ""
    assert empty_count(preds) == 2  # nothing visible; the lone accent is a character someone can see
    assert empty_output_warnings({"empty_predictions": 2, "examples": 4}) == [
        f"2 of 4 predictions are empty (they score zero): {EMPTY_OUTPUT_CAUSE}"
    ]
