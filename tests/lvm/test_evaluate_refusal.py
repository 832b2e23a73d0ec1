"""An LVM evaluation naming an unknown baseline, or an ingest an unknown chunking, is refused before a run
exists, as every other config-level mistake is (docs/architecture.md): the names were checked only when the
run ran, so `tldrlab lvm evaluate RUN --baselines nope` left a failed run behind and `POST /runs` answered
202 for a run bound to fail."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.errors import InvalidConfigError
from tldrlab.launch import execute
from tldrlab.lvm.index import build_index
from tldrlab.lvm.models import LVMConfig, build_lvm, save_lvm
from tldrlab.runs import RunStatus, create_run, open_registry
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


def test_a_refusal_for_want_of_concepts_creates_no_store(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lvm index` / `lvm sequences` before any ingest were refused, but opening the store to find that out
    created an empty <home>/lvm/concepts.db (and its directory)."""
    for argv in (["lvm", "index"], ["lvm", "sequences"]):
        code, _, err = run_captured(argv, capsys)
        assert code == 3 and "no concepts stored in sqlite:///" in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tldrlab_home / "lvm").exists()
    assert open_registry().list() == []


def test_evaluate_and_generate_of_a_run_that_is_no_lvm_leave_no_failed_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A mistyped run id, or a run of another kind, was found out inside the lvm_evaluate / lvm_generate run,
    which stayed behind as a failed run."""
    other = create_run("lvm_index", {}).id  # a run that made no model
    not_lvm = f"run {other} is an lvm_index run, not an lvm_train run: give the id of an lvm_train run"
    for argv, code_said, said in (
        (["lvm", "evaluate", "nope"], (3, "not_found"), "no run with id 'nope'"),
        (["lvm", "evaluate", other], (2, "invalid_config"), f"runs.0: {not_lvm}"),
        (["lvm", "generate", other, "--text", "One sentence."], (2, "invalid_config"), f"run: {not_lvm}"),
    ):
        code, _, err = run_captured(argv, capsys)
        assert (code, code_said[1] in err, said in err) == (code_said[0], True, True), (argv, err)
    assert [r.id for r in open_registry().list()] == [other]  # no failed lvm_evaluate / lvm_generate run


def test_a_transformer_on_sequences_of_a_longer_context_is_refused_before_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A transformer LVM learns one position per context concept: on sequences built again with a longer
    `--context`, lvm evaluate and lvm generate --measure failed inside their run ("context of 4 exceeds the
    model's 2 positions", naming no run) and left it behind as a failed run."""
    from lvm_synthetic import rotating_table

    from tldrlab.lvm.sequences import build_sequences

    transformer = build_lvm("transformer", LVMConfig(dim=16, context=2, hidden=8, heads=2))
    model = save_lvm(transformer, tmp_path / "model")
    sequences = build_sequences(rotating_table(n_articles=6, length=8), context=4, seed=0)
    path = sequences.save(tmp_path / "sequences.npz")
    said = f"{model} is a transformer LVM of 2 context positions; the sequences {path} have contexts of 4"
    for argv, field in (
        (["lvm", "evaluate", str(model), "--sequences", str(path)], "runs.0"),
        (["lvm", "generate", str(model), "--measure", "2", "--sequences", str(path)], "run"),
    ):
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and f"[invalid_config] {field}: {said}" in err, (argv, err)
    assert open_registry().list() == []  # no failed lvm_evaluate / lvm_generate run


def test_evaluate_and_generate_of_a_training_not_done_say_it_has_not_saved_its_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An lvm_train run that is queued or running has no model yet: the refusal named a path, "is not a
    trained LVM: no lvm_model.json in <run>/model", as if the id were wrong."""
    lvm = create_run("lvm_train", {"sequences": "sequences.npz"}).id
    said = f"run {lvm} (lvm_train, queued) has saved no LVM: an lvm_train run saves it when it completes"
    for argv in (["lvm", "evaluate", lvm], ["lvm", "generate", lvm, "--text", "One."]):
        code, _, err = run_captured(argv, capsys)
        assert code == 3 and f"[not_found] {said}" in err, (argv, err)


def _smoke_run(capsys: pytest.CaptureFixture[str]) -> str:
    """A real 2-step smoke run: a training run of another kind, with a best checkpoint as an LVM's has."""
    code, out, err = run_captured(["smoke", "--steps", "2", "--checkpoint-every", "1", "--json"], capsys)
    assert code == 0, err
    smoke: str = json.loads(out)["run_id"]
    assert (Path(open_registry().get(smoke).run_dir) / "checkpoints" / "best").is_dir()
    return smoke


def _not_an_lvm(run_id: str) -> str:
    return f"run {run_id} is a smoke run, not an lvm_train run: give the id of an lvm_train run"


def test_generate_of_a_training_run_of_another_kind_is_refused_naming_its_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A training run of another kind keeps a best checkpoint too (`checkpoints/best`): `lvm generate` took it
    for an LVM's and read the run's config as an LVM's, ending in a KeyError traceback."""
    smoke = _smoke_run(capsys)
    for command in ("generate", "decode"):
        code, _, err = run_captured(["lvm", command, smoke, "--text", "One sentence."], capsys)
        assert code == 2 and "invalid_config" in err and f"run: {_not_an_lvm(smoke)}" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert [r.id for r in open_registry().list()] == [smoke]  # no failed lvm_generate run either


def test_lvm_generate_and_evaluate_of_a_run_of_another_kind_are_refused_at_submit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`POST /runs {"kind": "lvm_generate", "config": {"run": "run:<smoke run>"}}` (lvm_evaluate's `runs`
    too) was accepted, and the run failed with "KeyError: 'sequences'"; the command lines said "not found"
    (exit 3) of a run that is there. The kind of a run that exists is known at submit: refused there, naming
    the field (422; one line and exit 2), and nothing is created. A queued lvm_train run is still taken: its
    model comes when it completes."""
    smoke = _smoke_run(capsys)
    client = TestClient(create_app())
    for kind, config, loc in (
        ("lvm_generate", {"run": f"run:{smoke}"}, ["run"]),
        ("lvm_generate", {"run": f"run:{smoke}/checkpoints/best"}, ["run"]),
        ("lvm_evaluate", {"runs": [f"run:{smoke}"]}, ["runs", "0"]),
    ):
        body = {"kind": kind, "config": config}
        response = client.post("/runs", json=body, headers={"X-Request-ID": "r-1"})
        answer = response.json()
        assert response.status_code == 422 and answer["code"] == "invalid_config", (config, response.text)
        assert answer["request_id"] == "r-1" and answer["errors"][0]["loc"] == loc, answer
        assert answer["message"] == f"{'.'.join(loc)}: {_not_an_lvm(smoke)}", answer
    for argv, field in (
        (["lvm", "evaluate", smoke], "runs.0"),
        (["lvm", "generate", smoke, "--measure", "2"], "run"),
    ):
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and f"[invalid_config] {field}: {_not_an_lvm(smoke)}" in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert [r.id for r in open_registry().list()] == [smoke]  # nothing created
    queued = create_run("lvm_train", {}).id
    for kind, config in (
        ("lvm_generate", {"run": f"run:{queued}"}),
        ("lvm_evaluate", {"runs": [f"run:{queued}"]}),
    ):
        response = client.post("/runs", json={"kind": kind, "config": config})
        assert response.status_code == 202, response.text


def test_a_run_naming_a_run_of_another_kind_at_run_time_fails_naming_the_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What was an lvm_train run at submit may have been replaced before the run starts: the run still
    refuses a run of another kind in one line naming the field, not with a KeyError."""
    smoke = _smoke_run(capsys)
    smoke_dir = open_registry().get(smoke).run_dir  # what the API stores for `run:<id>`
    for kind, config, field in (
        ("lvm_generate", {"run": smoke_dir, "smooth": False}, "run"),
        ("lvm_evaluate", {"runs": [smoke_dir]}, "runs.0"),
    ):
        record = create_run(kind, config)  # queued as if checked at submit
        with pytest.raises(InvalidConfigError):
            execute(record.id)
        failed = open_registry().get(record.id)
        message = failed.message or ""
        assert failed.status == RunStatus.FAILED and f"{field}: {_not_an_lvm(smoke)}" in message, failed
        assert "KeyError" not in message and "\n" not in message


def test_a_store_named_that_is_not_a_concept_store_is_refused_and_left_as_it_was(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lvm stats`, `lvm tmd` and `lvm generate` (of a saved model) opened the store `--db` named, which
    created it: a typo left an empty database behind, and `--db <home>/tldrlab.db` added the concept tables
    to the run registry (as did `lvm index`, `lvm sequences` and `lvm ingest`); a file of another kind was
    met by SQLite's error. Ingest still makes a store that is not there yet."""
    registry = tldrlab_home / "tldrlab.db"
    assert open_registry().list() == []  # the registry is there
    registry_tables = _tables(registry)
    typo = tmp_path / "typo" / "concepts.db"
    articles = tmp_path / "articles.txt"
    articles.write_text("Bees make honey in hives. Honey keeps for years.\n")
    model = save_lvm(build_lvm("gru", LVMConfig(dim=4, hidden=4, context=2)), tmp_path / "model")
    index = tmp_path / "index"
    build_index(np.eye(4, dtype=np.float32), np.arange(4)).save(index)
    commands = (
        ["lvm", "stats"],
        ["lvm", "tmd"],
        ["lvm", "generate", str(model), "--text", "Bees make honey.", "--index", str(index)],
        ["lvm", "generate", str(model), "--measure", "2"],
        ["lvm", "index"],
        ["lvm", "sequences"],
    )
    for argv in commands:
        code, _, err = run_captured([*argv, "--db", f"sqlite:///{typo}"], capsys)
        assert code == 3 and f"no concepts stored in sqlite:///{typo}" in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    for argv in (*commands, ["lvm", "ingest", str(articles)]):
        code, _, err = run_captured([*argv, "--db", f"sqlite:///{registry}"], capsys)
        assert code == 2 and f"--db: {registry} is the tldrlab run registry, not a concept store" in err, (
            argv,
            err,
        )
        assert len(err.strip().splitlines()) == 1, err
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    for db, said in (
        (other, "is a database of other tables (notes)"),
        (articles, "is not a SQLite database"),
    ):
        before = db.read_bytes()
        for argv in (["lvm", "stats"], ["lvm", "ingest", str(articles)]):
            code, _, err = run_captured([*argv, "--db", f"sqlite:///{db}"], capsys)
            assert code == 2 and f"--db: {db} {said}, not a concept store" in err, (argv, err)
        assert db.read_bytes() == before
    assert not typo.parent.exists()
    assert _tables(registry) == registry_tables  # no concept tables added
    assert open_registry().list() == []
    # a store not there yet is made by an ingest, and read by the others
    store = f"sqlite:///{tmp_path / 'new' / 'concepts.db'}"
    code, _, err = run_captured(["lvm", "ingest", str(articles), "--db", store, "-q"], capsys)
    assert code == 0, err
    code, out, err = run_captured(["lvm", "stats", "--db", store, "--json"], capsys)
    assert code == 0 and json.loads(out)["concepts"] == 2, err


def _tables(path: Path) -> set[str]:
    """The tables of the SQLite database at `path`, read without writing it."""
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
