"""An LVM evaluation naming an unknown baseline, or an ingest an unknown chunking, is refused before a run
exists, as every other config-level mistake is (docs/architecture.md): the names were checked only when the
run ran, so `tldrlab lvm evaluate RUN --baselines nope` left a failed run behind and `POST /runs` answered
202 for a run bound to fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.runs import create_run, open_registry
from tldrlab.service.app import create_app


def test_an_unknown_baseline_is_refused_before_a_run_exists(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_captured(["lvm", "evaluate", "some-run", "--baselines", "mean,nope"], capsys)
    assert code == 2 and "invalid_config" in err and "unknown baseline 'nope'" in err, err
    assert "copy_last, mean, ridge" in err  # the names to choose from
    response = TestClient(create_app()).post(
        "/runs", json={"kind": "lvm_evaluate", "config": {"baselines": ["mean", "nope"]}}
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_config", response.text
    assert response.json()["errors"][0]["loc"] == ["baselines"]
    assert open_registry().list() == []  # neither left a run


def test_an_unknown_chunking_is_refused_before_a_run_exists(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    articles = tmp_path / "articles.txt"
    articles.write_text("One sentence. Another one.\n")
    code, _, err = run_captured(["lvm", "ingest", str(articles), "--chunking", "paragraph"], capsys)
    assert code == 2 and "invalid_config" in err and "unknown chunking 'paragraph'" in err, err
    response = TestClient(create_app()).post(
        "/runs", json={"kind": "lvm_ingest", "config": {"path": "articles.txt", "chunking": "paragraph"}}
    )
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["chunking"], response.text
    assert open_registry().list() == []


def test_the_pipeline_run_out_of_order_leaves_no_failed_run(capsys: pytest.CaptureFixture[str]) -> None:
    """`lvm index` or `lvm sequences` before any ingest and `lvm train` before `lvm sequences` each failed
    inside a run and left it behind as a failed run."""
    for argv, said in (
        (["lvm", "index"], "no concepts stored"),
        (["lvm", "sequences"], "no concepts stored"),
        (
            ["lvm", "train", "--train.max-steps", "2", "--train.warmup-steps", "1"],
            "run `tldrlab lvm sequences`",
        ),
    ):
        code, _, err = run_captured(argv, capsys)
        assert code == 3 and "not_found" in err and said in err, (argv, err)
    assert open_registry().list() == []


def test_evaluate_and_generate_of_a_run_that_is_no_lvm_leave_no_failed_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A mistyped run id, or a run of another kind, was found out inside the lvm_evaluate / lvm_generate run,
    which stayed behind as a failed run."""
    other = create_run("lvm_index", {}).id  # a run that made no model
    for argv, said in (
        (["lvm", "evaluate", "nope"], "no run with id 'nope'"),
        (["lvm", "evaluate", other], "LVM"),
        (["lvm", "generate", other, "--text", "One sentence."], "LVM"),
    ):
        code, _, err = run_captured(argv, capsys)
        assert code == 3 and "not_found" in err and said in err, (argv, err)
    assert [r.id for r in open_registry().list()] == [other]  # no failed lvm_evaluate / lvm_generate run


def test_generate_of_a_training_run_of_another_kind_is_refused_naming_its_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A training run of another kind keeps a best checkpoint too (`checkpoints/best`): `lvm generate` took it
    for an LVM's and read the run's config as an LVM's, ending in a KeyError traceback."""
    code, out, err = run_captured(["smoke", "--steps", "2", "--checkpoint-every", "1", "--json"], capsys)
    assert code == 0, err
    smoke = json.loads(out)["run_id"]
    assert (Path(open_registry().get(smoke).run_dir) / "checkpoints" / "best").is_dir()
    for command in ("generate", "decode"):
        code, _, err = run_captured(["lvm", command, smoke, "--text", "One sentence."], capsys)
        assert code == 3 and "not_found" in err and f"run {smoke} is a smoke run, not lvm_train" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert [r.id for r in open_registry().list()] == [smoke]  # no failed lvm_generate run either
