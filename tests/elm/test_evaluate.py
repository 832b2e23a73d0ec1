"""The ELM's summary statistics and BERTScore composite, on hand-checkable inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tldrlab.elm.evaluate import composite, quality_stats, summary_quality
from tldrlab.errors import InvalidInputError
from tldrlab.runs import open_registry


def test_quality_stats_follow_their_definitions() -> None:
    preds = ["a b a b", "", "x y", "x y"]
    refs = ["a b c", "d", "x y z w", "q"]
    stats = quality_stats(preds, refs)
    assert stats["length_ratio"] == pytest.approx((4 + 0 + 2 + 2) / (3 + 1 + 4 + 1))
    assert stats["empty_prediction_rate"] == pytest.approx(1 / 4)
    assert stats["avg_unique_token_ratio"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)  # empty ones left out
    assert stats["distinct_prediction_rate"] == pytest.approx(3 / 4)


def test_composite_weights_f1_and_penalises_only_repetition() -> None:
    bert = {"bertscore_precision": 0.6, "bertscore_recall": 0.2, "bertscore_f1": 0.3}
    weighted = 0.5 * 0.3 + 0.25 * 0.6 + 0.25 * 0.2
    assert composite(bert, 0.9) == pytest.approx(weighted)
    assert composite(bert, 0.5) == pytest.approx(weighted)
    assert composite(bert, 0.25) == pytest.approx(weighted * 0.5)


def test_summary_quality_without_bertscore_and_errors() -> None:
    metrics = summary_quality(["the cat sat"], ["the cat sat"], use_bertscore=False)
    assert metrics["rouge1"] == pytest.approx(1.0) and "bertscore_f1" not in metrics
    with pytest.raises(InvalidInputError, match="2 predictions but 1 references"):
        summary_quality(["a", "b"], ["a"], use_bertscore=False)
    with pytest.raises(InvalidInputError, match="no predictions"):
        summary_quality([], [], use_bertscore=False)


def test_evaluate_refuses_an_output_that_is_a_file_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm evaluate --predictions p.jsonl --output p.jsonl` replaced the predictions with the metrics (exit
    0), and the next evaluation of them failed on the JSON."""
    from cliutil import run_captured

    predictions = tmp_path / "preds.jsonl"
    predictions.write_text('{"prediction": "a tool", "reference": "a small tool"}\n')
    references = tmp_path / "refs.jsonl"
    references.write_text('{"reference": "a small tool"}\n')
    before = predictions.read_text()
    for field, output in (("predictions", predictions), ("references", references)):
        argv = ["elm", "evaluate", "--predictions", str(predictions), "--references", str(references)]
        code, _, err = run_captured([*argv, "--output", str(output)], capsys)
        said = f"output: {output} is the {field} file evaluated: the metrics would replace it"
        assert code == 2 and said in err, err
    assert predictions.read_text() == before and open_registry().list() == []
