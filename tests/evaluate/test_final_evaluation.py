"""A training run's final evaluation: it shows a progress bar only when the training does, and a later
`tldrlab eval RUN` leaves it intact (what `tldrlab runs compare` reads as the run's `eval.*`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured, run_cli
from tldrlab.config import get_settings
from tldrlab.evaluate.artifacts import FINAL_EVAL_TAG
from tldrlab.runs import open_registry
from tldrlab.runs.registry import RunRecord, RunStatus
from tldrlab.service.app import create_app


def _train(tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[str, str]:
    """A two-step char_lstm training run ending with its final evaluation: (run id, its stderr)."""
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question. Whether tis nobler in the mind.\n" * 60)
    argv = ["train", "--model", "char_lstm", "--data", str(text), "--train.max-steps", "2"]
    argv += ["--train.batch-size", "2", "--final-eval.max-samples", "2", "--wandb", "disabled", *flags]
    code, _, err = run_captured(argv, capsys)
    assert code == 0, err
    record = open_registry().list(kind="train")[0]  # the newest
    return record.id, err


@pytest.fixture(scope="module")
def _trained_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """One `_train(..., "--train.no-progress")` for the module: (the home it was trained in, a pristine copy
    of that home, the run id). The home holds absolute paths (registry rows, manifests), so each test gets
    the copy back at the very path it was trained at (`trained_run`); tests of one process run one at a
    time, so no two share it."""
    root = tmp_path_factory.mktemp("final-eval")
    home, pristine = root / "home", root / "pristine"
    with pytest.MonkeyPatch.context() as patch:
        # what conftest's tldrlab_home gives a test, for this module-wide home
        patch.setenv("TLDRLAB_HOME", str(home))
        for name in ("TLDRLAB_DATABASE_URL", "TLDRLAB_QUEUE_URL", "TLDRLAB_API_KEY", "TLDRLAB_CONFIG"):
            patch.delenv(name, raising=False)
        for name, value in (
            ("WANDB_MODE", "disabled"),
            ("HF_HUB_OFFLINE", "1"),
            ("TLDRLAB_DIGEST_MODEL", "none"),
        ):
            patch.setenv(name, value)
        get_settings.cache_clear()
        text = root / "text.txt"
        text.write_text("To be, or not to be, that is the question. Whether tis nobler in the mind.\n" * 60)
        argv = ["train", "--model", "char_lstm", "--data", str(text), "--train.max-steps", "2"]
        argv += ["--train.batch-size", "2", "--final-eval.max-samples", "2", "--wandb", "disabled"]
        code = run_cli([*argv, "--train.no-progress"])
        assert code == 0
        run_id = open_registry().list(kind="train")[0].id
    get_settings.cache_clear()
    shutil.copytree(home, pristine, symlinks=True)
    yield home, pristine, run_id


@pytest.fixture
def trained_run(_trained_once: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's own copy of the module's trained run (its home made the test's): the run id."""
    home, pristine, run_id = _trained_once
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(pristine, home, symlinks=True)
    monkeypatch.setenv("TLDRLAB_HOME", str(home))
    get_settings.cache_clear()
    return run_id


def test_train_no_progress_hides_the_final_evaluations_bar_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--train.no-progress` hid the training's bar while its final evaluation still drew `eval blocks`;
    only `-q` hid both."""
    run_id, err = _train(tmp_path, capsys, "--train.no-progress")
    assert "eval blocks" not in err and "step/s" not in err, err
    # the bar this looks for is there when asked for: an evaluation of the run draws it, --no-progress not
    code, _, err = run_captured(["eval", run_id, "--max-samples", "2"], capsys)
    assert code == 0 and "eval blocks" in err, err
    code, _, err = run_captured(["eval", run_id, "--max-samples", "2", "--no-progress"], capsys)
    assert code == 0 and "eval blocks" not in err, err


def test_the_final_evaluation_follows_the_trainings_wandb_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --wandb disabled` ended with a final evaluation that started W&B anyway, in the mode of the
    environment (offline by default): a `wandb/` directory in its run and wandb imported and started in
    the training's process. The final evaluation now takes the training's mode."""
    monkeypatch.setenv("WANDB_MODE", "offline")  # what the final evaluation fell back to
    run_id, _ = _train(tmp_path, capsys, "--train.no-progress")  # with --wandb disabled
    training = open_registry().get(run_id).config
    assert training["wandb"] == "disabled", training
    (final,) = open_registry().list(kind="evaluate", parent_id=run_id)
    assert not (Path(final.run_dir) / "wandb").exists(), sorted(p.name for p in Path(final.run_dir).iterdir())
    assert final.config.get("wandb") == "disabled", final.config


FINAL_FILES = ("eval.json", "eval_summary.json", "samples.jsonl", "eval.png")


def test_an_lm_final_evaluation_lists_no_empty_table(trained_run: str) -> None:
    """An LM's final evaluation generates no continuations (`num_lm_samples` 0): it wrote an eval_table.csv
    with no rows and listed it in eval_summary.json. Its loss and perplexity are what it reports."""
    run_dir = Path(open_registry().get(trained_run).run_dir)
    (final,) = open_registry().list(kind="evaluate", parent_id=trained_run)
    for directory in (run_dir, Path(final.run_dir)):
        summary = json.loads((directory / "eval_summary.json").read_text())
        assert summary["files"] == [] and "perplexity" in summary["metrics"], summary
        assert not (directory / "eval_table.csv").exists()
    assert "eval_table.csv" not in [
        a["path"] for a in json.loads((Path(final.run_dir) / "manifest.json").read_text())["artifacts"]
    ]


def test_a_later_eval_leaves_the_final_evaluation_that_runs_compare_reads(
    trained_run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab eval RUN` wrote its files next to the model over the final evaluation's, so `runs compare`
    showed as the run's `eval.*` whichever evaluation ran last. A later evaluation now writes under
    `evaluations/<its run id>/`; compare reads the final one and names it."""
    run_id = trained_run
    run_dir = Path(open_registry().get(run_id).run_dir)
    final_run = json.loads((run_dir / "manifest.json").read_text())["final_eval_run"]
    final = {name: (run_dir / name).read_bytes() for name in FINAL_FILES}
    assert json.loads(final["eval_summary.json"])["run_id"] == final_run
    code, out, err = run_captured(["eval", run_id, "--max-samples", "1", "--no-progress", "--json"], capsys)
    assert code == 0, err
    later = json.loads(out)
    assert {name: (run_dir / name).read_bytes() for name in FINAL_FILES} == final
    assert Path(later["out_dir"]) == run_dir / "evaluations" / later["run_id"]
    later_summary = json.loads((Path(later["out_dir"]) / "eval_summary.json").read_text())
    assert later_summary["run_id"] == later["run_id"] and later_summary["evaluated_run"] == run_id
    plot = str(tmp_path / "compare.png")
    code, out, err = run_captured(["runs", "compare", run_id, "--plot", plot, "--json"], capsys)
    assert code == 0, err
    (row,) = json.loads(out)["runs"]
    final_metrics = json.loads(final["eval_summary.json"])["metrics"]
    assert row["evaluation"] == final_run and row["metrics"]["eval.loss"] == final_metrics["loss"], row
    code, out, err = run_captured(["runs", "compare", run_id, "--plot", plot], capsys)
    assert code == 0 and f"eval.* from each run's final evaluation ({run_id}: {final_run})" in out, out


def test_get_eval_answers_the_final_evaluation_unless_asked_for_another(
    trained_run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GET /runs/{id}/eval answered the newest completed evaluation of a run, so after a later `tldrlab eval
    RUN` on one sample it showed that one's figures, not the final evaluation docs/training.md says it finds
    (and `runs compare` reads). The final one is now the default; `latest` or an id asks for another."""
    run_id = trained_run
    run_dir = Path(open_registry().get(run_id).run_dir)
    final_run = json.loads((run_dir / "manifest.json").read_text())["final_eval_run"]
    code, out, err = run_captured(["eval", run_id, "--max-samples", "1", "--no-progress", "--json"], capsys)
    assert code == 0, err
    later = json.loads(out)["run_id"]
    client = TestClient(create_app())

    def asked(**params: str) -> dict[str, Any]:
        response = client.get(f"/runs/{run_id}/eval", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    final = asked()
    assert final["request_id"] == final_run and final["status"] == "completed", final
    assert (
        final["result"]["metrics"]["loss"]
        == json.loads((run_dir / "eval.json").read_text())["metrics"]["loss"]
    )
    assert asked(evaluation="final")["request_id"] == final_run
    assert asked(evaluation="latest")["request_id"] == later
    assert asked(evaluation=later)["request_id"] == later
    assert asked(evaluation=final_run)["request_id"] == final_run
    other = client.get(f"/runs/{run_id}/eval", params={"evaluation": run_id})  # not an evaluation of it
    assert other.status_code == 404 and other.json()["code"] == "not_found", other.text
    # a run directory retention cleaned keeps its registry row: the final evaluation is found by its tag
    (run_dir / "manifest.json").rename(run_dir / "manifest.moved")
    assert asked()["request_id"] == final_run

    # a training that ended without a final evaluation: no other evaluation stands in for it
    second, _ = _train(tmp_path, capsys, "--train.no-progress", "--final-eval.no-enabled")
    none_yet = client.get(f"/runs/{second}/eval")
    assert none_yet.status_code == 404 and "no evaluation yet" in none_yet.json()["message"], none_yet.text
    code, out, err = run_captured(["eval", second, "--max-samples", "1", "--no-progress", "--json"], capsys)
    assert code == 0, err
    only = json.loads(out)["run_id"]
    missing = client.get(f"/runs/{second}/eval")
    error = missing.json()
    assert missing.status_code == 404 and error["code"] == "not_found" and error["request_id"], error
    assert "no final evaluation" in error["message"] and only in error["message"], error
    assert "?evaluation=latest" in error["message"], error
    response = client.get(f"/runs/{second}/eval", params={"evaluation": "latest"})
    assert response.status_code == 200 and response.json()["request_id"] == only, response.text


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_old_runs_evaluations_are_found_behind_a_thousand_newer_ones(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /runs/{id}/eval looked for a run's evaluations among the 1000 newest evaluate runs of the whole
    registry: once 1000 newer evaluations (of other runs) existed, an old run's read as "no evaluation
    yet". The registry now filters by parent in its query, on SQLite and PostgreSQL alike."""
    if backend == "postgres":
        monkeypatch.setenv("TLDRLAB_DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
    runs = open_registry()

    def row(run_id: str, kind: str, created_at: float, parent: str | None, **tags: str) -> RunRecord:
        # registry rows only: the route reads the registry (a run directory may be gone, retention cleans
        # them), so the filler needs no real evaluation behind it
        return RunRecord(
            id=run_id,
            kind=kind,
            status=RunStatus.COMPLETED,
            config={},
            run_dir=str(tmp_path / "gone" / run_id),
            created_at=created_at,
            parent_id=parent,
            tags=dict(tags),
        )

    with runs.db.transaction():  # one commit for the 1000 filler rows: seconds, not minutes
        runs.insert(row("train-old", "train", 1.0, None))
        runs.insert(row("evaluate-old-final", "evaluate", 2.0, "train-old", **{FINAL_EVAL_TAG: "1"}))
        runs.insert(row("evaluate-old-later", "evaluate", 3.0, "train-old"))
        runs.insert(row("train-new", "train", 4.0, None))
        for i in range(1000):
            runs.insert(row(f"evaluate-new-{i:04d}", "evaluate", 10.0 + i, "train-new"))
    found = runs.list(kind="evaluate", parent_id="train-old", limit=None, with_config=False)
    assert [r.id for r in found] == ["evaluate-old-later", "evaluate-old-final"]
    assert len(runs.list(kind="evaluate", parent_id="train-new", limit=None)) == 1000
    assert [r.id for r in runs.list(parent_id="train-new", limit=2, offset=1)] == [
        "evaluate-new-0998",
        "evaluate-new-0997",
    ]

    client = TestClient(create_app())
    final = client.get("/runs/train-old/eval")
    assert final.status_code == 200, final.text
    assert final.json()["request_id"] == "evaluate-old-final"
    latest = client.get("/runs/train-old/eval", params={"evaluation": "latest"})
    assert latest.status_code == 200 and latest.json()["request_id"] == "evaluate-old-later", latest.text
    newest = client.get("/runs/train-new/eval", params={"evaluation": "latest"})
    assert newest.status_code == 200 and newest.json()["request_id"] == "evaluate-new-0999", newest.text


def test_deleting_a_later_evaluation_removes_its_files_from_the_evaluated_run(
    trained_run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab runs delete EVAL` of a later evaluation removed its run directory and registry row but left
    its files under the evaluated run's `evaluations/<its id>/`: a deleted run's results stayed for good
    (carried by that run's export, never counted or freed). They now go with it; the final evaluation's
    stay."""
    run_id = trained_run
    run_dir = Path(open_registry().get(run_id).run_dir)
    final = {name: (run_dir / name).read_bytes() for name in FINAL_FILES}
    later = []
    for _ in range(2):
        argv = ["eval", run_id, "--max-samples", "1", "--no-progress", "--json"]
        code, out, err = run_captured(argv, capsys)
        assert code == 0, err
        later.append(json.loads(out)["run_id"])
    assert sorted(p.name for p in (run_dir / "evaluations").iterdir()) == sorted(later)
    code, out, err = run_captured(["runs", "delete", later[0], "--dry-run"], capsys)
    assert code == 0 and (run_dir / "evaluations" / later[0]).is_dir(), err
    code, out, err = run_captured(["runs", "delete", later[0]], capsys)
    assert code == 0, err
    assert [p.name for p in (run_dir / "evaluations").iterdir()] == [later[1]]
    assert {name: (run_dir / name).read_bytes() for name in FINAL_FILES} == final
    code, out, err = run_captured(["runs", "list", "--parent", run_id, "--json"], capsys)
    assert code == 0 and later[0] not in out and later[1] in out, out


def test_runs_compare_says_when_the_final_evaluation_it_read_was_deleted(
    trained_run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once a training run's final evaluation run was deleted, `runs compare` still read its files beside the
    model (they are the training run's) and named it as if it were there: a run id no command could show.
    It now says that run is not recorded (text and --json); the figures it read are unchanged."""
    run_id = trained_run
    run_dir = Path(open_registry().get(run_id).run_dir)
    final_run = json.loads((run_dir / "manifest.json").read_text())["final_eval_run"]
    plot = str(tmp_path / "compare.png")
    code, out, err = run_captured(["runs", "compare", run_id, "--plot", plot], capsys)
    assert code == 0 and f"({run_id}: {final_run})" in out, out
    code, _, err = run_captured(["runs", "delete", final_run], capsys)
    assert code == 0, err
    code, out, err = run_captured(["runs", "compare", run_id, "--plot", plot], capsys)
    assert code == 0 and f"({run_id}: {final_run}, not recorded here)" in out, out
    code, out, err = run_captured(["runs", "compare", run_id, "--plot", plot, "--json"], capsys)
    (row,) = json.loads(out)["runs"]
    assert row["evaluation"] == final_run and row["evaluation_recorded"] is False, row
    final_metrics = json.loads((run_dir / "eval_summary.json").read_text())["metrics"]
    assert row["metrics"]["eval.loss"] == final_metrics["loss"], row


def test_get_eval_says_the_final_evaluation_was_deleted_not_that_there_is_none_yet(
    trained_run: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a training run's final evaluation run was deleted, GET /runs/{id}/eval answered 'has no
    evaluation yet', as if the run had never been evaluated (its figures are still beside its model, what
    `runs compare` reads). It now names the evaluation no longer recorded; with a later one, points at it."""
    run_id = trained_run
    run_dir = Path(open_registry().get(run_id).run_dir)
    final_run = json.loads((run_dir / "manifest.json").read_text())["final_eval_run"]
    code, _, err = run_captured(["runs", "delete", final_run], capsys)
    assert code == 0, err
    client = TestClient(create_app())
    response = client.get(f"/runs/{run_id}/eval")
    error = response.json()
    assert response.status_code == 404 and error["code"] == "not_found" and error["request_id"], error
    assert f"final evaluation {final_run} is not recorded here (deleted" in error["message"], error
    assert "no evaluation yet" not in error["message"], error
    code, out, err = run_captured(["eval", run_id, "--max-samples", "1", "--no-progress", "--json"], capsys)
    assert code == 0, err
    later = json.loads(out)["run_id"]
    response = client.get(f"/runs/{run_id}/eval")
    assert response.status_code == 404 and "is not recorded here" in response.json()["message"], response.text
    assert "?evaluation=latest" in response.json()["message"], response.text
    assert client.get(f"/runs/{run_id}/eval", params={"evaluation": "latest"}).json()["request_id"] == later


def test_an_evaluation_asked_for_on_the_command_line_is_not_settled_as_its_trainings_own(
    trained_run: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab eval RUN` makes the run it evaluates its parent, and a view took it for a run only that
    parent runs: left queued (its process killed before it started), `runs list` cancelled it as "which
    alone would run it, completed without it". It was asked for on its own, and stays as it is."""
    code, _, err = run_captured(["eval", trained_run, "--max-samples", "2", "--no-progress"], capsys)
    assert code == 0, err
    evaluations = open_registry().list(kind="evaluate", parent_id=trained_run)
    (asked,) = [r for r in evaluations if not r.tags.get(FINAL_EVAL_TAG)]
    open_registry().update(asked.id, status=RunStatus.QUEUED)  # as a process killed before it started left it
    code, _, err = run_captured(["runs", "list"], capsys)
    assert code == 0, err
    after = open_registry().get(asked.id)
    assert after.status is RunStatus.QUEUED, after.message
