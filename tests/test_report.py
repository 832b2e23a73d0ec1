"""`tldrlab.report`: results as lines and tables, the same for the CLI and for markdown front ends."""

from __future__ import annotations

from tldrlab.report import Column, Report, Table, key_value_table
from tldrlab.runs.compare import Comparison, Regression
from tldrlab.train.recipe import training_report


def test_markdown_has_every_line_table_row_and_warning() -> None:
    table = Table([Column("run", key=True), Column("loss", justify="right")], [["a|b", "1.5"]], "runs")
    text = Report(["first line", table], ["careful"]).markdown()
    assert text.splitlines() == [
        "first line", "", "**runs**", "", "| run | loss |", "|---|---:|", "| a\\|b | 1.5 |", "",
        "**warning** careful",
    ]  # fmt: skip
    assert key_value_table({"rougeL": 0.25, "steps": 3}).rows == [["rougeL", "0.2500"], ["steps", "3"]]


def test_reports_are_built_beside_the_results() -> None:
    trained = training_report("train-1", {"steps": 5, "metrics": {"loss": 1.23456}, "model_dir": "/r/best"})
    assert trained.blocks == ["run train-1: 5 steps, loss=1.235", "model: /r/best   curves: /r/plots"]
    # a model restored from an earlier evaluation than the last step's, whose metrics the first line shows:
    # the line said only `model: DIR`, and `tldrlab eval RUN` then seemed to contradict the numbers
    earlier = {"steps": 14, "model_step": 7, "metrics": {"eval_loss": 4.08}, "model_dir": "/r/model"}
    assert training_report("train-2", earlier).blocks[1] == (
        "model (step 7's weights, the best evaluation): /r/model   curves: /r/plots"
    )
    runs = [{"id": run, "kind": "train", "metrics": {"loss": loss}} for run, loss in (("a", 2.0), ("b", 3.0))]
    regressions = [Regression("b", "loss", 2.0, 3.0, 0.5)]
    comparison = Comparison(runs, ["loss"], "a", 0.01, {"loss": "lower"}, regressions)
    table, line = comparison.report().blocks
    assert isinstance(table, Table) and table.rows == [
        ["a (baseline)", "train", "2"],
        ["b", "train", "3 +50.0% REGRESSION"],
    ]
    assert line == "regression: b loss 3 vs 2 (+50.0%; lower is better)"
