"""A sweep whose study was made by another sweep (another search, or the other goal) is refused before a run
exists, on the command line (one line, exit 4) and at `POST /runs` (409 JSON), as the other kinds' checks
are: `tldrlab sweep run` used to create a sweep run that then failed on the conflict, leaving a failed run
in the registry (and over the API a queued run a worker would fail)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.elm.search import sweep_mapping
from tldrlab.runs import open_registry
from tldrlab.service.app import create_app
from tldrlab.sweep.spec import parse_sweep
from tldrlab.sweep.storage import SPEC_ATTR, open_storage

TOY = Path(__file__).with_name("toy_program.py")


def _toy(goal: str = "minimize", values: list[float] | None = None) -> dict[str, Any]:
    return {
        "name": "toy",
        "program": str(TOY),
        "method": "grid",
        "metric": {"name": "loss", "goal": goal},
        "parameters": {"x": {"values": values or [0.2, 0.7]}, "steps": {"value": 2}},
    }


def _made_by(sweep: dict[str, Any], name: str) -> None:
    """The study `name` as a run of `sweep` leaves it (its goal, the sweep's mapping), no trial run."""
    spec = parse_sweep(sweep)
    study = optuna.create_study(storage=open_storage(None), study_name=name, direction=spec.goal)
    study.set_user_attr(SPEC_ATTR, sweep)


def test_sweep_run_on_another_sweeps_study_is_a_one_line_error_and_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _made_by(_toy(values=[0.1, 0.9]), "toy")
    for other in (_toy(), _toy(goal="maximize", values=[0.1, 0.9])):
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(other))
        code, out, err = run_captured(["sweep", "run", str(path), "--trials", "1"], capsys)
        assert code == 4 and err.startswith("error [conflict] study 'toy'"), (code, out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert open_registry().list() == []
    # the sweep that made it resumes it as before (the check refuses only another sweep's study)
    path = tmp_path / "same.yaml"
    path.write_text(yaml.safe_dump(_toy(values=[0.1, 0.9])))
    code, out, err = run_captured(["sweep", "run", str(path), "--trials", "1"], capsys)
    assert code == 0, (out, err)
    assert [r.kind for r in open_registry().list() if r.kind == "sweep"] == ["sweep"]


def test_an_api_sweep_on_another_sweeps_study_is_a_409_and_no_run(tldrlab_home: Path) -> None:
    data = tldrlab_home / "data"
    data.mkdir(parents=True)
    (data / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    sweep = {
        "name": "api-study",
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"train.lr": {"values": [1e-3, 2e-3]}},
        "config": {"model": "char_lstm", "data": {"path": "text.txt"}, "train": {"max_steps": 2}},
    }
    _made_by({**sweep, "parameters": {"train.lr": {"values": [5e-3]}}}, "api-study")
    client = TestClient(create_app())
    response = client.post(
        "/runs", json={"kind": "sweep", "config": {"sweep": sweep}}, headers={"X-Request-ID": "req-study"}
    )
    error = response.json()
    assert response.status_code == 409 and error["code"] == "conflict", response.text
    assert error["request_id"] == "req-study" and "study 'api-study'" in error["message"], error
    assert open_registry().list() == []
    renamed = client.post("/runs", json={"kind": "sweep", "config": {"sweep": sweep, "study": "api-study-2"}})
    assert renamed.status_code == 202, renamed.text


def test_an_elm_optimization_on_another_searchs_study_or_no_data_is_refused_before_a_run(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm_optimize` checked its data and opened its study inside its run: a data directory with no prepared
    layout, or a study another search made (other hidden sizes), left a failed run from the command line
    and a queued run over the API."""
    import torch

    from tldrlab.elm.prepare import write_split

    _made_by(sweep_mapping("elm-study", hidden_dims=[16, 32]), "elm-study")
    data = tldrlab_home / "data" / "elm"
    data.mkdir(parents=True)
    argv = ["elm", "optimize", "--data", str(data), "--study", "elm-study"]
    code, out, err = run_captured(argv, capsys)
    assert code == 3 and "prepare the data first" in err and len(err.strip().splitlines()) == 1, (code, err)
    assert open_registry().list() == []
    # 16 records: a batch of every searched size (a smaller train split narrows the search)
    records = [{"task_type": "summary", "embedding_index": i, "target_text": "a summary"} for i in range(16)]
    for split in ("train", "val"):  # what its trials train on (elm_train's check)
        write_split(data, split, records, torch.zeros(16, 4))
    code, out, err = run_captured(argv, capsys)
    assert code == 4 and err.startswith("error [conflict] study 'elm-study'"), (code, out, err)
    assert len(err.strip().splitlines()) == 1, err
    client = TestClient(create_app())
    config: dict[str, Any] = {"base": {"data": "elm"}, "study": "elm-study"}
    response = client.post("/runs", json={"kind": "elm_optimize", "config": config})
    assert response.status_code == 409 and response.json()["code"] == "conflict", response.text
    assert open_registry().list() == []
    config["hidden_dims"] = [16, 32]  # the search that made it resumes it
    assert client.post("/runs", json={"kind": "elm_optimize", "config": config}).status_code == 202


def _train_sweep(data: Path, goal: str = "minimize", lrs: list[float] | None = None) -> dict[str, Any]:
    return {
        "name": "queued-study",
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_loss", "goal": goal},
        "parameters": {"train.lr": {"values": lrs or [1e-3, 2e-3]}},
        "config": {"model": "char_lstm", "data": {"path": str(data)}, "train": {"max_steps": 2}},
    }


def test_a_sweep_named_like_a_queued_sweep_of_another_search_is_refused_at_submit(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A queued sweep has not created its study yet, so the study check found nothing and a second sweep of
    the same name with another search space was accepted: whichever started second failed on the clash.
    The queued sweep's search is known at submit (its config), so the second one is refused there."""
    data = tldrlab_home / "data" / "text.txt"
    data.parent.mkdir(parents=True)
    data.write_text("To be, or not to be, that is the question.\n" * 20)
    client = TestClient(create_app())
    first = {"sweep": _train_sweep(data, lrs=[5e-3])}
    queued = client.post("/runs", json={"kind": "sweep", "config": first})
    assert queued.status_code == 202, queued.text
    assert open_registry().get(queued.json()["id"]).status.value == "queued"
    response = client.post(
        "/runs",
        json={"kind": "sweep", "config": {"sweep": _train_sweep(data)}},
        headers={"X-Request-ID": "req-queued"},
    )
    error = response.json()
    assert response.status_code == 409 and error["code"] == "conflict", response.text
    assert error["request_id"] == "req-queued" and "study 'queued-study'" in error["message"], error
    assert queued.json()["id"] in error["message"], error
    assert len(open_registry().list()) == 1
    # the other goal clashes too, on the command line as one line with exit 4 and no run
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(_train_sweep(data, goal="maximize", lrs=[5e-3])))
    code, out, err = run_captured(["sweep", "run", str(path), "--trials", "1"], capsys)
    assert code == 4 and err.startswith("error [conflict] study 'queued-study'"), (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert len(open_registry().list()) == 1
    # the same sweep again, or another name, is accepted (it shares, or does not touch, the queued study)
    assert client.post("/runs", json={"kind": "sweep", "config": first}).status_code == 202
    renamed = {"sweep": _train_sweep(data), "study": "queued-study-2"}
    assert client.post("/runs", json={"kind": "sweep", "config": renamed}).status_code == 202


def test_an_elm_search_named_like_a_queued_search_of_other_sizes_is_refused_at_submit(
    tldrlab_home: Path,
) -> None:
    """The same for the ELM search (kind `elm_optimize`, a sweep of the adapter's settings): a queued search
    holds its study name for its search space, here its hidden sizes."""
    import torch

    from tldrlab.elm.prepare import write_split

    data = tldrlab_home / "data" / "elm"
    # 16 records: a batch of every searched size (a smaller train split narrows the search)
    records = [{"task_type": "summary", "embedding_index": i, "target_text": "a summary"} for i in range(16)]
    for split in ("train", "val"):  # what its trials train on (elm_train's check)
        write_split(data, split, records, torch.zeros(16, 4))
    client = TestClient(create_app())
    config: dict[str, Any] = {"base": {"data": "elm"}, "study": "elm-queued", "hidden_dims": [16]}
    queued = client.post("/runs", json={"kind": "elm_optimize", "config": config})
    assert queued.status_code == 202, queued.text
    other = client.post("/runs", json={"kind": "elm_optimize", "config": {**config, "hidden_dims": [32]}})
    error = other.json()
    assert other.status_code == 409 and error["code"] == "conflict", other.text
    assert f"queued elm_optimize run {queued.json()['id']}" in error["message"], error
    assert len(open_registry().list()) == 1
    assert client.post("/runs", json={"kind": "elm_optimize", "config": config}).status_code == 202
    assert {r.study for r in open_registry().list()} == {"elm-queued"}  # recorded when each was created


def test_the_queued_clash_check_reads_only_the_queued_runs_of_the_same_study(tldrlab_home: Path) -> None:
    """At each submit the check parsed the config of every queued sweep and search (a study name lives in
    the config). The registry now records the study a run opens (`study`), so the check asks it for the
    queued runs of that study; a row recorded before the column has its study read once and recorded."""
    data = tldrlab_home / "data" / "text.txt"
    data.parent.mkdir(parents=True)
    data.write_text("To be, or not to be, that is the question.\n" * 20)
    client = TestClient(create_app())
    ids = []
    for study in ("queued-study", "other-a", "other-b"):
        sweep = {**_train_sweep(data, lrs=[5e-3]), "name": study}
        created = client.post("/runs", json={"kind": "sweep", "config": {"sweep": sweep}})
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    registry = open_registry()
    assert [registry.get(i).study for i in ids] == ["queued-study", "other-a", "other-b"]
    named = registry.list(kind="sweep", status="queued", limit=None, study="queued-study")
    assert [r.id for r in named] == [ids[0]]
    # a row from before the column: its study is not recorded; the check still finds the clash, and records it
    registry.update(ids[0], study=None)
    assert [r.id for r in registry.list(kind="sweep", limit=None, study_recorded=False)] == [ids[0]]
    clash = client.post("/runs", json={"kind": "sweep", "config": {"sweep": _train_sweep(data)}})
    assert clash.status_code == 409 and ids[0] in clash.json()["message"], clash.text
    assert registry.get(ids[0]).study == "queued-study"
    assert registry.list(kind="sweep", limit=None, study_recorded=False) == []


def test_a_storage_url_of_no_known_scheme_names_where_it_was_given(
    tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # TLDRLAB_SWEEP_STORAGE=garbage was refused as "--storage: unknown URL scheme ...", an option the user
    # never gave
    from tldrlab.config import get_settings

    code, _, err = run_captured(["sweep", "status", "tiny", "--storage", "garbage://x"], capsys)
    assert code == 2 and "--storage: unknown URL scheme 'garbage'" in err, err
    monkeypatch.setenv("TLDRLAB_SWEEP_STORAGE", "garbage://x")
    get_settings.cache_clear()
    try:
        code, _, err = run_captured(["sweep", "status", "tiny"], capsys)
    finally:
        monkeypatch.delenv("TLDRLAB_SWEEP_STORAGE")
        get_settings.cache_clear()
    assert code == 2 and "--storage" not in err, err
    assert "sweep_storage (TLDRLAB_SWEEP_STORAGE or tldrlab.toml): unknown URL scheme 'garbage'" in err, err


def test_a_sweep_whose_base_config_changed_is_refused_naming_the_key(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep file whose `config` was edited (`train.max_steps` 2 -> 3) added trials of another training to
    its study, ranked against the earlier ones as alike; `elm optimize --max-steps 4` on a study begun with
    `--max-steps 2` trained 2 steps without a word (the stored base replaced the one given)."""
    from tldrlab.elm.config import ElmOptimizeConfig
    from tldrlab.elm.search import check_optimize_study, elm_sweep_config
    from tldrlab.errors import ConflictError

    data = tldrlab_home / "data" / "text.txt"
    data.parent.mkdir(parents=True)
    data.write_text("To be, or not to be, that is the question.\n" * 20)
    _made_by(_train_sweep(data), "queued-study")
    edited = _train_sweep(data)
    edited["config"]["train"]["max_steps"] = 3
    path = tldrlab_home / "sweep.yaml"
    path.write_text(yaml.safe_dump(edited))
    code, out, err = run_captured(["sweep", "run", str(path), "--trials", "1"], capsys)
    assert code == 4 and "config.train.max_steps differs" in err, (code, out, err)
    assert open_registry().list() == []
    response = TestClient(create_app()).post("/runs", json={"kind": "sweep", "config": {"sweep": edited}})
    assert response.status_code == 409 and "config.train.max_steps differs" in response.json()["message"]

    first = ElmOptimizeConfig.model_validate({"base": {"data": "elm", "max_steps": 2}, "study": "elm-base"})
    _made_by(elm_sweep_config(first).sweep, "elm-base")
    check_optimize_study(first)  # the same search and base resumes it
    again = ElmOptimizeConfig.model_validate({"base": {"data": "elm", "max_steps": 4}, "study": "elm-base"})
    with pytest.raises(ConflictError, match=r"config\.max_steps differs"):
        check_optimize_study(again)


def test_a_sweep_whose_early_terminate_changed_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A study resumed from its file with `early_terminate` edited (median pruning removed, or another
    pruner) was accepted, and its trials went on being pruned by the first file's pruner: a trial run builds
    its pruner from the sweep the study stored, whatever the file says now."""
    median = {**_toy(), "early_terminate": {"type": "median", "min_iter": 1, "n_startup_trials": 1}}
    _made_by(median, "toy")
    hyperband = {**_toy(), "early_terminate": {"type": "hyperband", "min_iter": 1}}
    for edited in (_toy(), hyperband):
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(edited))
        code, out, err = run_captured(["sweep", "run", str(path), "--trials", "1"], capsys)
        assert code == 4 and "(early_terminate differs)" in err, (code, out, err)
    assert open_registry().list() == []
