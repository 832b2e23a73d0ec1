"""`tldrlab runs logs | export | delete | import | upload | restore` on a real (tiny) run and `tldrlab models
promote | aliases` on runs that saved a (tiny) model: each prints one line of text, or with --json what the
library returned."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tinylm import model_run, save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.config import get_settings
from tldrlab.launch import launch_run
from tldrlab.runs import open_registry, start_run
from tldrlab.runs.registry import RunRecord, RunStatus
from tldrlab.service.app import create_app


def test_runs_archive_commands_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = launch_run("smoke", {"steps": 2, "checkpoint_every": 2}).record
    run_dir = Path(record.run_dir)

    code, out, _ = run_captured(["runs", "logs", record.id[:-1], "--tail", "2"], capsys)
    assert code == 0 and len(out.splitlines()) == 2 and " INFO " in out
    code, out, _ = run_captured(["runs", "logs", record.id, "--raw", "--tail", "0"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) > 2 and all("message" in row for row in rows)

    code, out, _ = run_captured(["runs", "export", record.id, "--out", str(tmp_path), "--json"], capsys)
    exported = json.loads(out)
    archive = tmp_path / f"{record.id}.tar.gz"
    assert code == 0 and exported["path"] == str(archive) and exported["files"] > 0 and archive.is_file()
    code, out, _ = run_captured(["runs", "export", record.id, "--out", str(tmp_path / "b.tar.gz")], capsys)
    assert code == 0 and out.startswith(f"{tmp_path / 'b.tar.gz'}: run {record.id}, ") and "sha256" in out

    code, out, _ = run_captured(["runs", "delete", record.id, "--dry-run"], capsys)
    assert code == 0 and out.startswith(f"would delete run {record.id}: ") and run_dir.is_dir()
    code, out, _ = run_captured(["runs", "delete", record.id, "--json"], capsys)
    assert code == 0 and json.loads(out)["status"] == "done" and not run_dir.exists()
    code, _, err = run_captured(["runs", "delete", record.id], capsys)
    assert code != 0 and "not_found" in err

    code, out, _ = run_captured(["runs", "import", str(archive)], capsys)
    assert code == 0 and out.strip() == f"imported run {record.id} (smoke, completed) into {run_dir}"
    code, out, _ = run_captured(["runs", "upload", record.id, "--json"], capsys)
    stored = json.loads(out)
    assert code == 0 and len(stored["sha256"]) == 64 and stored["size"] > 0
    assert open_registry().get(record.id).archive_sha256 == stored["sha256"]

    shutil.rmtree(run_dir)  # cleaned: the directory comes back from the file store
    code, out, _ = run_captured(["runs", "restore", record.id], capsys)
    assert code == 0 and out.strip() == f"run {record.id} is in {run_dir}" and run_dir.is_dir()
    code, out, _ = run_captured(["runs", "restore", record.id, "--json"], capsys)
    assert code == 0 and json.loads(out)["id"] == record.id


def test_models_promote_and_aliases_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = tiny_chat_tokenizer()
    first, second = (
        model_run(lambda d, seed=seed: save_tiny_model(tiny_llama(tokenizer, seed=seed), tokenizer, d))
        for seed in (0, 1)
    )
    code, out, _ = run_captured(["models", "promote", first.id, "--alias", "production"], capsys)
    assert code == 0 and out.strip() == f"production -> {first.id}"
    code, out, _ = run_captured(["models", "promote", second.id, "--alias", "production", "--json"], capsys)
    entry = json.loads(out)
    assert code == 0 and (entry["run_id"], entry["previous_run_id"]) == (second.id, first.id)
    code, out, _ = run_captured(["models", "promote", second.id, "--alias", "production"], capsys)
    assert code == 0 and out.strip() == f"production -> {second.id} (was {second.id})"
    code, out, _ = run_captured(["models", "aliases", "--history", "--json"], capsys)
    assert code == 0 and [json.loads(line)["run_id"] for line in out.splitlines()] == [second.id] * 2 + [
        first.id
    ]


def test_runs_by_kind_match_runs_under_the_old_and_the_new_name(capsys: pytest.CaptureFixture[str]) -> None:
    # runs made before `eval` was renamed `evaluate` are recorded as `eval`: `runs list/prune --kind`,
    # GET /runs and GET /runs/{id}/eval showed only those under the current name, whichever name was given,
    # and so disagreed with the server's retention, which matched both; a typo (--kind trian) stays an error
    with start_run("train", {}) as parent:
        pass
    with start_run("eval", {}, parent_id=parent.id) as old:  # as the registry recorded it before the rename
        pass
    with start_run("evaluate", {}) as new:
        pass
    both = [new.id, old.id]  # newest first
    client = TestClient(create_app())
    for name in ("eval", "evaluate"):
        code, out, err = run_captured(["runs", "list", "--kind", name, "--json"], capsys)
        assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == both, (name, err)
        listed = client.get("/runs", params={"kind": name})
        assert listed.status_code == 200 and [r["id"] for r in listed.json()["runs"]] == both, name
    # (the route answers a run's final evaluation by default; these runs have none, `latest` finds the newest)
    evaluation = client.get(f"/runs/{parent.id}/eval", params={"evaluation": "latest"})
    assert evaluation.status_code == 200 and evaluation.json()["request_id"] == old.id
    by_id = client.get(f"/runs/{parent.id}/eval", params={"evaluation": old.id})
    assert by_id.status_code == 200 and by_id.json()["request_id"] == old.id
    code, out, err = run_captured(["runs", "list", "--kind", "trian"], capsys)
    assert code == 2 and "unknown run kind 'trian'" in err and "train" in err
    typo = client.get("/runs", params={"kind": "trian"})
    assert typo.status_code == 422 and typo.json()["code"] == "unknown_kind"
    assert "unknown run kind 'trian'" in typo.json()["message"] and typo.json()["request_id"]
    prune = ["runs", "prune", "--dry-run", "--older-than-days", "0", "--keep-best", "0", "--json"]
    for name in ("eval", "evaluate"):
        code, out, err = run_captured([*prune, "--kind", name], capsys)
        assert code == 0 and sorted(a["target"] for a in json.loads(out)["pending"]) == sorted(both), err
    code, out, err = run_captured([*prune, "--kind", "trian"], capsys)
    assert code == 2 and "unknown run kind 'trian'" in err


def test_artifacts_are_found_under_a_kinds_old_and_new_name() -> None:
    # GET /runs?kind=evaluate lists a run recorded as `eval`, but /artifacts/evaluate/<that run> was a 404
    # ("no evaluate run"), and /artifacts/eval/<an evaluate run> too: the routes matched names exactly
    with start_run("eval", {}) as old:
        old.log("made before the rename")
    with start_run("evaluate", {}) as new:
        new.log("made after it")
    client = TestClient(create_app())
    for run in (old, new):
        for name in ("eval", "evaluate"):
            listing = client.get(f"/artifacts/{name}/{run.id}")
            assert listing.status_code == 200, (name, listing.text)
            assert "log.jsonl" in [f["path"] for f in listing.json()["files"]]
            log = client.get(f"/artifacts/{name}/{run.id}/log.jsonl")
            assert log.status_code == 200 and b"made" in log.content, log.text
    wrong = client.get(f"/artifacts/train/{old.id}")
    assert wrong.status_code == 404 and wrong.json()["code"] == "not_found"
    typo = client.get(f"/artifacts/evaluat/{old.id}")
    assert typo.status_code == 404 and typo.json()["code"] == "not_found"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_runs_list_by_parent_lists_a_runs_children(
    backend: str,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`tldrlab runs list --parent RUN` and GET /runs?parent_id=RUN list the runs RUN started (its
    evaluations, a sweep's trials), the parent given by id or unique prefix; an unknown or ambiguous parent
    is an error, not an empty list."""
    if backend == "postgres":
        monkeypatch.setenv("TLDRLAB_DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
    with start_run("train", {}, run_id="train-parent-aaa") as parent:
        pass
    with start_run("train", {}, run_id="train-parent-bbb") as other:
        pass
    children = []
    for i in range(3):
        with start_run("evaluate", {}, run_id=f"evaluate-child-{i}", parent_id=parent.id) as child:
            children.append(child.id)
        time.sleep(0.01)  # created one after the other: newest first is a defined order
    with start_run("evaluate", {}, run_id="evaluate-other", parent_id=other.id):
        pass
    newest_first = children[::-1]
    client = TestClient(create_app())
    for given in (parent.id, "train-parent-a"):
        code, out, err = run_captured(["runs", "list", "--parent", given, "--json"], capsys)
        assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == newest_first, err
        listed = client.get("/runs", params={"parent_id": given})
        assert listed.status_code == 200, listed.text
        assert [r["id"] for r in listed.json()["runs"]] == newest_first
    code, out, err = run_captured(
        ["runs", "list", "--parent", parent.id, "--limit", "1", "--offset", "1"], capsys
    )
    assert code == 0 and children[1] in out and children[0] not in out and children[2] not in out, err
    paged = client.get("/runs", params={"parent_id": parent.id, "limit": 1, "offset": 1})
    assert [r["id"] for r in paged.json()["runs"]] == [children[1]]
    code, out, err = run_captured(
        ["runs", "list", "--parent", other.id, "--kind", "evaluate", "--json"], capsys
    )
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == ["evaluate-other"], err
    assert client.get("/runs", params={"parent_id": other.id, "kind": "train"}).json()["runs"] == []

    code, _, err = run_captured(["runs", "list", "--parent", "train-nope"], capsys)
    assert code == 3 and "no run with id 'train-nope'" in err
    missing = client.get("/runs", params={"parent_id": "train-nope"})
    assert (
        missing.status_code == 404 and missing.json()["code"] == "not_found" and missing.json()["request_id"]
    )
    code, _, err = run_captured(["runs", "list", "--parent", "train-parent"], capsys)
    assert code == 3 and "ambiguous" in err
    ambiguous = client.get("/runs", params={"parent_id": "train-parent"})
    assert ambiguous.status_code == 404 and ambiguous.json()["code"] == "ambiguous_run_id"
    empty = client.get("/runs", params={"parent_id": ""})
    assert empty.status_code == 422 and empty.json()["request_id"]


def test_runs_export_and_import_carry_a_runs_evaluations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an export carried the files of a run's evaluations (under its evaluations/) but not their registry
    # rows: after an import `runs list --parent RUN` listed nothing and GET /runs/{id}/eval found none
    with start_run("train", {}, run_id="train-exported") as trained:
        (trained.dir / "model").mkdir()
        (trained.dir / "model" / "config.json").write_text("{}")
    evaluations = []
    for i, tags in enumerate(({"final_eval": True}, {})):
        with start_run(
            "evaluate",
            {"model_run": trained.id},
            run_id=f"evaluate-exported-{i}",
            parent_id=trained.id,
            tags=tags,
        ) as evaluation:
            (evaluation.artifacts_dir / "result.json").write_text(json.dumps({"metrics": {"loss": 1.0 + i}}))
            beside = trained.dir / "evaluations" / evaluation.id
            beside.mkdir(parents=True)
            (beside / "eval_summary.json").write_text("{}")
        evaluations.append(evaluation.id)
        time.sleep(0.01)  # newest first is a defined order
    archive = tmp_path / "train-exported.tar.gz"
    code, out, err = run_captured(["runs", "export", trained.id, "--out", str(archive)], capsys)
    assert code == 0 and f"run {trained.id} with its 2 evaluations, " in out, (out, err)
    code, out, err = run_captured(["runs", "delete", trained.id], capsys)
    assert code == 0 and open_registry().list(parent_id=trained.id) == [], err

    code, out, err = run_captured(["runs", "import", str(archive), "--json"], capsys)
    imported = json.loads(out)
    assert code == 0 and imported["id"] == trained.id and imported["evaluations"] == evaluations, err
    code, out, err = run_captured(["runs", "list", "--parent", trained.id, "--json"], capsys)
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == evaluations[::-1], err
    client = TestClient(create_app())
    final = client.get(f"/runs/{trained.id}/eval")
    assert final.status_code == 200 and final.json()["request_id"] == evaluations[0], final.text
    later = client.get(f"/runs/{trained.id}/eval", params={"evaluation": "evaluate-exported-1"}).json()
    assert later["status"] == "completed" and later["result"] == {"metrics": {"loss": 2.0}}, later
    assert (trained.dir / "evaluations" / evaluations[1] / "eval_summary.json").is_file()
    code, out, err = run_captured(["runs", "show", evaluations[1]], capsys)
    assert code == 0 and json.loads(out)["manifest"]["id"] == evaluations[1], err


def test_an_empty_runs_list_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    # `runs list` with no runs printed a bare table header, where `models list` and `data list` say there is
    # nothing; --json stays JSON lines (one object per run, so none for no run: `jq .id` and line-by-line
    # parsers keep working, which a `[]` line would break)
    code, out, err = run_captured(["runs", "list"], capsys)
    assert code == 0 and "no runs yet" in out, (out, err)
    code, out, err = run_captured(["runs", "list", "--json"], capsys)
    assert code == 0 and out == "", (out, err)
    with start_run("train", {}) as trained:
        pass
    code, out, err = run_captured(["runs", "list", "--kind", "evaluate"], capsys)
    assert code == 0 and "no runs match" in out and trained.id not in out, (out, err)
    code, out, err = run_captured(["runs", "list"], capsys)
    assert code == 0 and trained.id in out and "no runs" not in out, (out, err)


def test_runs_delete_takes_the_whole_run_id_not_a_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reads take a unique prefix, and so did `runs delete`: `runs delete s` deleted the one run whose id
    starts with s. Deleting takes the whole id; a prefix is refused in one line naming the runs it starts
    (so the user can retype one), and nothing is deleted."""
    registry = open_registry()
    ids = ["smoke-20260101-000000-aaaaaa", "train-20260101-000000-bbbbbb", "train-20260102-000000-cccccc"]
    for i, run_id in enumerate(ids):
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "manifest.json").write_text("{}")
        registry.insert(
            RunRecord(
                id=run_id,
                kind=run_id.split("-")[0],
                status=RunStatus.COMPLETED,
                config={},
                run_dir=str(tmp_path / run_id),
                created_at=float(i),
            )
        )
    for argv in (["runs", "delete", "s"], ["runs", "delete", ids[0][:-1], "--dry-run"]):
        code, out, err = run_captured(argv, capsys)
        (line,) = err.strip().splitlines()
        assert code == 2 and out == ""
        refused = f"deleting a run takes a run's whole id, not a prefix: {argv[2]!r} starts {ids[0]}"
        assert line.endswith(refused)
    code, _, err = run_captured(["runs", "delete", "train-2026"], capsys)
    assert code == 2 and err.strip().endswith(f"'train-2026' starts {ids[1]}, {ids[2]}")
    code, _, err = run_captured(["runs", "delete", "x"], capsys)
    assert code == 3 and "no run with id 'x'" in err
    assert [r.id for r in registry.list(limit=None)] == ids[::-1]
    assert all((tmp_path / run_id).is_dir() for run_id in ids)
    # reads keep taking a unique prefix
    code, out, _ = run_captured(["runs", "show", "s"], capsys)
    assert code == 0 and json.loads(out)["run"]["id"] == ids[0]
    code, out, _ = run_captured(["runs", "delete", ids[0]], capsys)
    assert code == 0 and out.startswith(f"deleted run {ids[0]}: ") and not (tmp_path / ids[0]).exists()


def test_importing_a_file_that_is_no_archive_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tarfile's message for a file none of its compressions opens has a line per method it tried
    # ("- method gz: ReadError('not a gzip file')", bz2, xz, tar): five lines of error for one mistake
    for name, content in (("notes.txt", b"plain text, not an archive\n"), ("empty.tar.gz", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        code, _, err = run_captured(["runs", "import", str(path)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{path} is not a readable tldrlab run archive: not a tar archive" in err, err
    # a directory (where the archives are) answered "[not_found] no archive at DIR": it is there
    code, _, err = run_captured(["runs", "import", str(tmp_path)], capsys)
    assert code == 2 and f"{tmp_path} is a directory: give the archive file in it" in err, err
    assert open_registry().list() == []


def test_an_export_never_writes_over_stored_state_or_a_file_that_is_no_archive(
    tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `runs export RUN --out <home>/tldrlab.db` replaced the run registry with the archive (every later
    # command a traceback); `--out <the run's directory>` wrote the archive into the run it packs
    record = launch_run("smoke", {"steps": 2, "checkpoint_every": 2}).record
    run_dir = Path(record.run_dir)
    registry_db = tldrlab_home / "tldrlab.db"
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    run_files = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    for out, said in (
        (registry_db, "is already there and is not a tldrlab run archive"),
        (notes, "is already there and is not a tldrlab run archive"),
        (run_dir, "is inside the runs directory"),
        (run_dir / "copy.tar.gz", "is inside the runs directory"),
    ):
        code, _, err = run_captured(["runs", "export", record.id, "--out", str(out)], capsys)
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1, (out, err)
    assert notes.read_text() == "mine\n"
    # the registry is still the database the commands write to (its bytes change: the commands record)
    assert registry_db.read_bytes().startswith(b"SQLite format 3")
    assert [r.id for r in open_registry().list()] == [record.id]
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == run_files
    archive = tmp_path / "run.tar.gz"
    for _ in range(2):  # an earlier archive at --out is replaced, as before
        code, _, err = run_captured(["runs", "export", record.id, "--out", str(archive)], capsys)
        assert code == 0 and archive.is_file(), err


def test_runs_show_shows_the_row_of_a_run_whose_manifest_is_unreadable_or_gone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A manifest cut short was a JSONDecodeError traceback, and a run whose directory is gone (cleaned by
    retention, by design) was `[os_error] No such file`, exit 1: the registry row was not shown either."""
    with start_run("train", {}) as run:
        run.set_summary(best_val_loss=1.5)
    (run.dir / "manifest.json").write_text('{"id": "tr', encoding="utf-8")
    code, out, err = run_captured(["runs", "show", run.id], capsys)
    shown = json.loads(out)
    assert code == 0 and shown["run"]["metrics"] == {"best_val_loss": 1.5} and shown["manifest"] is None
    assert err.startswith(f"warning run {run.id}: its manifest {run.dir / 'manifest.json'} cannot be read")
    assert "Traceback" not in err

    shutil.rmtree(run.dir)
    code, out, err = run_captured(["runs", "show", run.id], capsys)
    assert code == 0 and json.loads(out)["run"]["id"] == run.id and json.loads(out)["manifest"] is None
    said = f"no manifest: its directory {run.dir} is gone, and it has no archive in the file store"
    assert said in " ".join(err.split())


def test_runs_logs_of_a_run_whose_directory_is_gone_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """It printed nothing and exited 0, as for a run that had logged nothing yet."""
    with start_run("train", {}) as run:
        run.log("a line")
    shutil.rmtree(run.dir)
    code, out, err = run_captured(["runs", "logs", run.id], capsys)
    said = f"run {run.id} has no log here: its directory {run.dir} is gone, and it has no archive"
    assert code == 3 and out == "" and said in " ".join(err.split())


def test_a_manifest_that_is_no_json_object_is_read_as_an_unreadable_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A manifest holding a JSON list was a TypeError from dict(): a traceback from `runs show` and a 500
    from GET /runs/{id}, where an unreadable manifest is shown without it."""
    with start_run("train", {}) as run:
        run.set_summary(best_val_loss=1.5)
    (run.dir / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    code, out, err = run_captured(["runs", "show", run.id], capsys)
    assert code == 0 and json.loads(out)["manifest"] is None and "Traceback" not in err
    assert f"its manifest {run.dir / 'manifest.json'} cannot be read" in " ".join(err.split())
    answer = TestClient(create_app()).get(f"/runs/{run.id}")
    assert answer.status_code == 200 and answer.json()["artifacts"] == []


def test_runs_logs_skips_a_log_line_that_is_no_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    """A log line `42` or `["x"]` (valid JSON, no object) was an AttributeError traceback; a line that is
    not JSON at all was already skipped."""
    with start_run("train", {}) as run:
        run.log("first line")
    with (run.dir / "log.jsonl").open("a", encoding="utf-8") as log:
        log.write('42\n["x"]\nnot json\n{"message": "last line"}\n')
    code, out, err = run_captured(["runs", "logs", run.id, "--tail", "0"], capsys)
    assert code == 0 and "first line" in out and "last line" in out and "Traceback" not in err, err
    code, out, _ = run_captured(["runs", "logs", run.id, "--raw", "--tail", "0"], capsys)
    assert code == 0 and all(isinstance(json.loads(line), dict) for line in out.splitlines())


def test_runs_logs_shows_a_log_line_whose_level_is_null_or_no_string(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`"level": null` (or a number, a list) was a TypeError traceback from the width of the level column."""
    with start_run("train", {}) as run:
        run.log("first line")
    with (run.dir / "log.jsonl").open("a", encoding="utf-8") as log:
        log.write('{"level": null, "message": "no level"}\n{"level": 30, "message": "numeric"}\n')
        log.write('{"time": null, "level": ["x"], "message": null}\n')
    code, out, err = run_captured(["runs", "logs", run.id, "--tail", "0"], capsys)
    assert code == 0 and "Traceback" not in err, err
    lines = out.splitlines()
    assert "first line" in lines[0] and lines[-3].endswith("no level") and " 30      numeric" in lines[-2]
    assert lines[-1].strip() == "['x']"


def _strict_json(text: str) -> object:
    """JSON as `jq` reads it: NaN and Infinity are no JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_of_a_run_with_a_metric_that_is_not_finite_is_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--json` (and `runs show`) wrote a diverged run's NaN and inf metrics as NaN and Infinity, which jq and
    strict parsers refuse: the API answers them as null."""
    with start_run("train", {}) as run:
        run.set_summary(best_val_loss=float("nan"), perplexity=float("inf"), model_step=3)
    code, out, _ = run_captured(["runs", "list", "--json"], capsys)
    listed = _strict_json(out)
    assert code == 0 and isinstance(listed, dict)
    assert listed["metrics"] == {"best_val_loss": None, "perplexity": None, "model_step": 3}
    code, out, _ = run_captured(["runs", "show", run.id], capsys)
    shown = _strict_json(out)
    assert code == 0 and isinstance(shown, dict) and shown["run"]["metrics"] == listed["metrics"]
