"""`tldrlab runs compare`, `GET /compare` and the runs page: metrics side by side (summaries and evaluations),
regressions against a baseline by each metric's direction, a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cliutil import run_captured
from netutil import serve_app
from tldrlab.errors import InvalidInputError
from tldrlab.runs import open_registry, start_run
from tldrlab.runs.compare import compare_runs, direction

PNG = b"\x89PNG\r\n\x1a\n"


def _run(val_loss: float, rouge: float, length: float) -> str:
    with start_run("train", {}) as run:
        run.set_summary(best_val_loss=val_loss, model_step=10)
        evaluation = {"run_id": "evaluate-elsewhere", "metrics": {"rougeL": rouge, "pred_len_mean": length}}
        (run.dir / "eval_summary.json").write_text(json.dumps(evaluation))
    return run.id


@pytest.fixture
def runs() -> dict[str, str]:
    return {
        "base": _run(1.0, 0.30, 12.0),
        "better": _run(0.9, 0.32, 30.0),
        "worse": _run(1.2, 0.25, 5.0),
    }


def test_regressions_follow_each_metrics_direction(runs: dict[str, str]) -> None:
    assert direction("best_val_loss") == "lower" and direction("eval.rougeL") == "higher"
    assert direction("eval.pred_len_mean") is None and direction("model_step") is None
    comparison = compare_runs([runs["base"], runs["better"], runs["worse"]])
    assert comparison.baseline == runs["base"]
    assert comparison.metrics[:2] == ["best_val_loss", "eval.rougeL"]  # metrics with a direction first
    assert {(r.run_id, r.metric) for r in comparison.regressions} == {
        (runs["worse"], "best_val_loss"),
        (runs["worse"], "eval.rougeL"),
    }
    loss = next(r for r in comparison.regressions if r.metric == "best_val_loss")
    assert loss.change == pytest.approx(0.2) and loss.baseline == 1.0 and loss.value == 1.2
    against_worse = compare_runs([runs["base"], runs["worse"]], baseline=runs["worse"])
    assert {r.run_id for r in against_worse.regressions} == set()  # the base is better than the worse run
    assert compare_runs(list(runs.values()), tolerance=0.5).regressions == []
    only = compare_runs(list(runs.values()), metrics=["eval.rougeL"])
    assert only.metrics == ["eval.rougeL"] and len(only.regressions) == 1
    with pytest.raises(InvalidInputError):
        compare_runs([runs["base"], runs["base"]])
    with pytest.raises(InvalidInputError, match="baseline"):
        compare_runs([runs["base"], runs["better"]], baseline=runs["worse"])
    # a misspelt metric compared nothing and reported "no regressions" (so --fail-on-regression passed)
    with pytest.raises(
        InvalidInputError, match=r"no compared run has the metric\(s\) eval.rougel; they have: "
    ):
        compare_runs(list(runs.values()), metrics=["eval.rougeL", "eval.rougel"])


def test_negative_baselines_and_the_tolerance_edge() -> None:
    """A change is relative to the baseline's magnitude, so a negative baseline keeps the metric's direction;
    a change of exactly the tolerance is not a regression."""
    base, worse, better = _run(-2.0, 0.5, 1.0), _run(-1.0, 0.5, 1.0), _run(-3.0, 0.5, 1.0)
    comparison = compare_runs([base, worse, better], metrics=["best_val_loss"])
    assert [(r.run_id, r.change) for r in comparison.regressions] == [(worse, pytest.approx(0.5))]
    edge = _run(-2.0 * 0.75, 0.5, 1.0)  # 25% higher loss than the baseline
    assert compare_runs([base, edge], metrics=["best_val_loss"], tolerance=0.25).regressions == []
    assert len(compare_runs([base, edge], metrics=["best_val_loss"], tolerance=0.2).regressions) == 1


def test_a_query_naming_what_no_run_has_is_a_422_like_the_schemas_refusals(runs: dict[str, str]) -> None:
    """`GET /compare?metric=unknown` (or a run named twice, a baseline not compared) answered 400 where the
    query's other mistakes (a negative tolerance, an unknown parameter) answer 422."""
    from fastapi.testclient import TestClient

    from tldrlab.service.app import create_app

    client = TestClient(create_app())
    base, better, worse = runs["base"], runs["better"], runs["worse"]
    for params, message in (
        ([("ids", base), ("ids", better), ("metric", "eval.rougel")], "no compared run has the metric(s)"),
        ([("ids", base), ("ids", base)], "a run is named twice"),
        ([("ids", base), ("ids", better), ("baseline", worse)], "is not among the compared runs"),
        ([("ids", base), ("tolerance", "-1")], "query.tolerance"),
    ):
        for route in ("/compare", "/compare/plot"):
            response = client.get(route, params=params)
            error = response.json()
            assert response.status_code == 422 and error["code"] == "invalid_input", (route, error)
            assert message in error["message"] and error["request_id"], error


def test_cli_api_and_runs_page_show_the_same_comparison(
    runs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: object
) -> None:
    from tldrlab.service.app import create_app

    ids = [runs["base"], runs["better"], runs["worse"]]
    plot = tmp_path / "compare.png"
    code, out, err = run_captured(
        ["runs", "compare", *ids, "--plot", str(plot), "--fail-on-regression"], capsys
    )
    assert code == 1, err
    assert out.count("regression:") == 2 and "REGRESSION" in out and plot.read_bytes().startswith(PNG)
    code, out, _ = run_captured(["runs", "compare", *ids[:2], "--plot", str(plot), "--json"], capsys)
    assert code == 0 and json.loads(out)["regressions"] == []

    with serve_app(create_app()) as url:
        params = [("ids", i) for i in ids]
        answer = httpx.get(f"{url}/compare", params=params).json()
        assert answer["baseline"] == runs["base"] and len(answer["regressions"]) == 2
        assert answer["directions"]["best_val_loss"] == "lower"
        # rendering took past httpx's default 5 s on a loaded 2-core machine: this test is not of its speed
        chart = httpx.get(f"{url}/compare/plot", params=params, timeout=60)
        assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
        assert chart.content.startswith(PNG)
        assert httpx.get(f"{url}/compare", params=[("ids", "nope")]).status_code == 404
        many = [("ids", f"run-{i}") for i in range(21)]
        assert httpx.get(f"{url}/compare", params=many).status_code == 422
        typo = httpx.get(f"{url}/compare", params=[*params, ("metrics", "x")])  # CompareQuery forbids extras
        assert typo.status_code == 422 and "metrics" in typo.json()["message"]

        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.fill("#compare-ids", ", ".join(ids))
        page.click("#compare-run")
        page.wait_for_selector("#compare-table td.regression")
        worse_row = page.locator(f"#compare-table tr[data-run-id='{runs['worse']}']")
        assert worse_row.locator("td.regression").count() == 2
        assert page.locator(f"#compare-table tr[data-run-id='{runs['better']}'] td.regression").count() == 0
        page.wait_for_function("() => !document.getElementById('compare-plot').hidden")
        assert page.get_attribute("#compare-plot", "src").startswith("data:image/png")  # type: ignore[union-attr]
        assert page.locator("#compare-regressions li").count() == 2
        page.close()


def test_a_plot_path_that_cannot_be_a_file_is_a_clear_error(
    runs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --plot DIRECTORY was an IsADirectoryError traceback (exit 1) from the atomic rename; a path under a
    # file a NotADirectoryError one. Every atomic write (elm evaluate/generate --output too) says so now
    ids = [runs["base"], runs["worse"]]
    code, _, err = run_captured(["runs", "compare", *ids, "--plot", str(tmp_path)], capsys)
    assert code == InvalidInputError.exit_code and "is a directory: give a file path" in err
    (tmp_path / "file").write_text("x")
    code, _, err = run_captured(["runs", "compare", *ids, "--plot", str(tmp_path / "file" / "c.png")], capsys)
    assert code == InvalidInputError.exit_code and "a file stands where a directory" in err
    assert "Traceback" not in err and (tmp_path / "file").read_text() == "x"


def test_an_output_file_never_replaces_what_the_home_stores(
    runs: dict[str, str], tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `runs compare --plot <home>/tldrlab.db` and `elm evaluate --output <home>/tldrlab.db` replaced the run
    # registry with a PNG / JSON (every later command failed); a run's file named so was replaced too
    registry_db = tldrlab_home / "tldrlab.db"
    manifest = tldrlab_home / "runs" / runs["base"] / "manifest.json"
    kept = manifest.read_bytes()
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        json.dumps({"prediction": "a short summary", "reference": "a short summary"}) + "\n"
    )
    for out, said in (
        (registry_db, "is a database of the tldrlab home"),
        (manifest, f"of run {runs['base']}"),
    ):
        for argv in (
            ["runs", "compare", runs["base"], runs["worse"], "--plot", str(out)],
            ["elm", "evaluate", "--predictions", str(predictions), "--output", str(out)],
        ):
            code, _, err = run_captured(argv, capsys)
            assert code == InvalidInputError.exit_code and said in err and "Traceback" not in err, (argv, err)
    assert registry_db.read_bytes().startswith(b"SQLite format 3") and manifest.read_bytes() == kept
    assert {r.id for r in open_registry().list()} == set(runs.values())  # no elm_evaluate run either


def test_a_run_with_none_of_the_baseline_s_metrics_fails_the_gate(
    runs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a failed (or cancelled, or running) run has no summary metrics: it shared none with the baseline, so
    # nothing was compared and `--fail-on-regression` passed, printing "no regressions"
    with pytest.raises(RuntimeError), start_run("train", {}) as failed:
        raise RuntimeError("out of memory")
    plot = str(tmp_path / "compare.png")
    code, out, err = run_captured(
        ["runs", "compare", runs["base"], failed.id, "--plot", plot, "--fail-on-regression"], capsys
    )
    assert code == 1, err
    text = " ".join(out.split())
    assert f"not checked: {failed.id} (failed) lacks the baseline's best_val_loss, eval.rougeL" in text
    assert "no regressions among the runs checked" in text
    comparison = compare_runs([runs["base"], failed.id])
    assert [(u.run_id, u.metrics) for u in comparison.unchecked] == [
        (failed.id, ["best_val_loss", "eval.rougeL"])
    ]
    # a metric asked for by name is checked on every run; the runs that have them all pass as before
    assert compare_runs([runs["base"], runs["better"]]).unchecked == []
    named = compare_runs([runs["base"], runs["better"], failed.id], metrics=["eval.rougeL"])
    assert [u.run_id for u in named.unchecked] == [failed.id]
    # a baseline with nothing to compare by checks nothing
    assert [u.run_id for u in compare_runs([failed.id, runs["base"]]).unchecked] == [failed.id]
    code, _, _ = run_captured(
        ["runs", "compare", failed.id, runs["base"], "--plot", plot, "--fail-on-regression"], capsys
    )
    assert code == 1


def test_the_api_and_runs_page_show_the_runs_not_checked(runs: dict[str, str], browser: object) -> None:
    # GET /compare dropped `unchecked` (its response model lacked it), so over HTTP, and on the runs page, a
    # failed NEW run compared against a baseline looked clean: no regressions, nothing else said
    from tldrlab.service.app import create_app

    with pytest.raises(RuntimeError), start_run("train", {}) as failed:
        raise RuntimeError("out of memory")
    with serve_app(create_app()) as url:
        answer = httpx.get(f"{url}/compare", params=[("ids", runs["base"]), ("ids", failed.id)]).json()
        assert answer["regressions"] == []
        assert answer["unchecked"] == [
            {"run_id": failed.id, "status": "failed", "metrics": ["best_val_loss", "eval.rougeL"]}
        ]
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.fill("#compare-ids", f"{runs['base']}, {failed.id}")
        page.click("#compare-run")
        page.wait_for_selector("#compare-unchecked li")
        assert page.locator("#compare-unchecked li").all_inner_texts() == [
            f"not checked: {failed.id} (failed) lacks the baseline's best_val_loss, eval.rougeL"
        ]
        page.close()


def test_the_api_and_runs_page_say_which_times_are_not_gated(browser: object) -> None:
    from tldrlab.service.app import create_app

    def timed(train_s: float) -> str:
        with start_run("train", {}) as run:
            run.set_summary(best_val_loss=1.0, train_s=train_s)
        return run.id

    base, slower = timed(10.0), timed(20.0)
    with serve_app(create_app()) as url:
        answer = httpx.get(f"{url}/compare", params=[("ids", base), ("ids", slower)]).json()
        assert answer["regressions"] == [] and answer["ungated"] == ["train_s"]
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.fill("#compare-ids", f"{base}, {slower}")
        page.click("#compare-run")
        page.wait_for_selector("#compare-unchecked li")
        assert page.locator("#compare-unchecked li").all_inner_texts() == [
            "not gated: train_s (times and throughputs move with the machine's load; name one as a metric to"
            " gate it)"
        ]
        page.close()


def test_the_chart_draws_every_regressed_metric_and_says_what_it_leaves_out(tmp_path: Path) -> None:
    # the chart drew the first 12 metrics (those with a direction, by name) and dropped the rest unsaid: a
    # training run's final evaluation has some 40, and a regression on eval.rougeLsum or final_eval_loss was
    # neither a red bar nor mentioned, so the chart read "no regression" where the table said one
    from tldrlab.track.plots import comparison_panels, plot_comparison

    names = [f"m{i:02d}_loss" for i in range(15)]
    with start_run("train", {}) as base:
        base.set_summary(**dict.fromkeys(names, 1.0))
    with start_run("train", {}) as worse:
        worse.set_summary(**{**dict.fromkeys(names, 1.0), "m14_loss": 2.0})
    comparison = compare_runs([base.id, worse.id])
    assert [r.metric for r in comparison.regressions] == ["m14_loss"]
    panels = comparison_panels(comparison)
    assert len(panels.shown) == 12 and "m14_loss" in panels.shown and panels.total == 15
    assert panels.shown == [name for name in comparison.metrics if name in panels.shown]  # the table's order
    assert panels.note == "12 of 15 metrics shown, those with a regression first; the table lists all"
    assert comparison_panels(compare_runs([base.id, worse.id], metrics=names[:3])).note == ""
    assert plot_comparison(comparison, tmp_path / "c.png").read_bytes().startswith(PNG)


def test_a_change_from_a_zero_baseline_is_not_called_a_percentage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], browser: object
) -> None:
    # from a baseline of 0 the change is the difference, but the report and the runs page printed it as a
    # fraction: 2 empty predictions where the baseline had none read "+200.0%"
    from tldrlab.service.app import create_app

    base, worse = _run(0.0, 0.3, 1.0), _run(2.0, 0.3, 1.0)
    code, out, _ = run_captured(["runs", "compare", base, worse, "--plot", str(tmp_path / "c.png")], capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("regression:"))
    assert line == f"regression: {worse} best_val_loss 2 vs 0 (+2 from 0; lower is better)", line
    with serve_app(create_app()) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.fill("#compare-ids", f"{base}, {worse}")
        page.click("#compare-run")
        page.wait_for_selector("#compare-regressions li")
        assert page.locator("#compare-regressions li").all_inner_texts() == [
            f"{worse}: best_val_loss 2.000 vs 0.000 (+2.000 from 0, lower is better)"
        ]
        page.close()


def test_tokenizer_runs_are_compared_by_their_coverage_and_unknown_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # docs/service.md calls coverage higher-better, but only `coverage_labelled` was: two tokenizer runs,
    # one covering no word and emitting <unk> for most characters, read "the baseline has no metric that
    # says better or worse", and --fail-on-regression failed either way
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i}: the quick brown fox jumps" for i in range(200)), encoding="utf-8")
    ids = []
    for vocab in ("60", "5"):  # every character, then the special tokens and one character
        argv = ["tokenizer", "train", "--method", "char", "--vocab-size", vocab, str(corpus), "--json"]
        code, out, err = run_captured(argv, capsys)
        assert code == 0, err
        ids.append(json.loads(out)["run_id"])
    assert direction("coverage") == "higher" and direction("unk_rate") == "lower"
    assert direction("eval.highlight_coverage_other") is None  # coverage of unlabelled sentences: neither
    # the training time (`train_s`, lower-better too) varies from run to run: these two only are gated
    comparison = compare_runs(ids, metrics=["coverage", "unk_rate"])
    assert {r.metric for r in comparison.regressions} == {"coverage", "unk_rate"}
    assert comparison.unchecked == []
    gate = ["runs", "compare", "--plot", str(tmp_path / "c.png"), "--fail-on-regression"]
    gate += ["--metric", "coverage", "--metric", "unk_rate"]
    assert run_captured([*gate, *ids], capsys)[0] == 1
    assert run_captured([*gate, *reversed(ids)], capsys)[0] == 0  # the other way round, nothing got worse


def test_a_refused_comparison_clears_the_one_shown_before(runs: dict[str, str], browser: object) -> None:
    # the Compare panel kept the previous comparison's table, regressions and chart under the notice of a
    # refused one (a misspelt run id), as if they answered it
    from tldrlab.service.app import create_app

    with serve_app(create_app()) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        page.fill("#compare-ids", f"{runs['base']}, {runs['worse']}")
        page.click("#compare-run")
        page.wait_for_function("() => !document.getElementById('compare-plot').hidden")
        assert page.locator("#compare-regressions li").count() == 2
        page.fill("#compare-ids", f"{runs['base']}, nope")
        page.click("#compare-run")
        page.wait_for_function("() => document.getElementById('notice').textContent.startsWith('not_found')")
        assert page.locator("#compare-table tr").count() == 0
        assert page.locator("#compare-regressions li, #compare-unchecked li").count() == 0
        assert page.eval_on_selector("#compare-plot", "e => e.hidden")
        page.close()


def test_the_chart_states_the_tolerance_as_the_report_does(runs: dict[str, str]) -> None:
    # the chart's title rounded the tolerance to a whole percent: --tolerance 0.004 read "worse than it by
    # more than 0%", where the report says 0.4%
    from tldrlab.track.plots import comparison_panels

    title = comparison_panels(compare_runs([runs["base"], runs["worse"]], tolerance=0.004)).title
    assert title == f"baseline {runs['base']} (dark); red: worse than it by more than 0.4%"


def test_lvm_metrics_and_times_are_judged_as_the_best_checkpoint_is() -> None:
    # compare had its own table, without cosine, top-k, p@k or MSE, and took `train_s` for no time: an LVM run
    # whose top-1 fell and whose training took twice as long passed --fail-on-regression, while the loop
    # kept its best checkpoint by that same val_top1 as higher-better
    from tldrlab.train.config import better_mode

    def lvm(top1: float, cosine: float, mse: float, train_s: float) -> str:
        with start_run("lvm_train", {}) as run:
            run.set_summary(val_top1_excl=top1, val_cosine=cosine, val_mse=mse, train_s=train_s)
        return run.id

    base, worse = lvm(0.40, 0.80, 0.10, 10.0), lvm(0.30, 0.70, 0.20, 20.0)
    comparison = compare_runs([base, worse])
    assert {r.metric for r in comparison.regressions} == {"val_top1_excl", "val_cosine", "val_mse"}
    assert comparison.unchecked == [] and comparison.ungated == ["train_s"]  # a time: gated when named
    assert [r.metric for r in compare_runs([base, worse], metrics=["train_s"]).regressions] == ["train_s"]
    higher = ("val_top1_excl", "val_cosine", "p_at_5", "eval_drift_similarity", "eval.auc", "tokens_per_s")
    for name in higher:
        assert (direction(name), better_mode(name)) == ("higher", "max"), name
    for name in ("val_mse", "eval_loss", "generate_s", "train_seconds", "unk_rate", "top1_error"):
        assert (direction(name), better_mode(name)) == ("lower", "min"), name
    # unknown: compare shows it only, the loop keeps its historical default
    assert (direction("pred_len_mean"), better_mode("pred_len_mean")) == (None, "min")


def test_times_and_throughputs_are_gated_only_when_named() -> None:
    # train_s and tokens_per_s move with the machine's load between two runs of one config: gating them by
    # default failed `--fail-on-regression` on a run that was only slower, though its loss was the same
    def timed(loss: float, train_s: float, tokens_per_s: float) -> str:
        with start_run("train", {}) as run:
            run.set_summary(best_val_loss=loss, train_s=train_s, tokens_per_s=tokens_per_s)
        return run.id

    base, slower = timed(1.0, 10.0, 1000.0), timed(1.0, 15.0, 700.0)
    comparison = compare_runs([base, slower])
    assert comparison.regressions == [] and comparison.unchecked == []
    assert comparison.ungated == ["tokens_per_s", "train_s"]
    assert comparison.directions["train_s"] == "lower"  # shown with its direction
    text = comparison.report().markdown()
    assert "not gated: tokens_per_s, train_s" in text and "no regressions" in text
    named = compare_runs([base, slower], metrics=["best_val_loss", "train_s"])
    assert [(r.metric, r.change) for r in named.regressions] == [("train_s", pytest.approx(0.5))]
    assert named.ungated == []


@pytest.mark.parametrize(
    "summary",
    [{"run_id": "evaluate-x", "metrics": [0.3]}, {"run_id": ["evaluate-x"], "metrics": {"rougeL": 0.3}}, [1]],
)
def test_an_evaluation_file_of_another_shape_is_no_evaluation(
    summary: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-edited eval_summary.json whose metrics are a list was an AttributeError traceback, and one
    whose run id is a list the database's ProgrammingError; unreadable JSON was already read as none."""
    base, other = _run(1.0, 0.3, 10.0), _run(1.2, 0.3, 10.0)
    (Path(open_registry().get(base).run_dir) / "eval_summary.json").write_text(json.dumps(summary))
    comparison = compare_runs([base, other])
    assert comparison.runs[0]["evaluation"] is None and comparison.runs[0]["metrics"] == {
        "best_val_loss": 1.0,
        "model_step": 10.0,
    }
    code, out, err = run_captured(
        ["runs", "compare", base, other, "--plot", str(tmp_path / "c.png"), "--fail-on-regression"], capsys
    )
    assert code == 1 and f"regression: {other} best_val_loss 1.2 vs 1" in out and "Traceback" not in err
