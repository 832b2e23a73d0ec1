"""`tldrlab data register`: a data set recorded once (format, per-file and whole sha256, records, provenance),
named by id in run configs on the CLI and the API, and traced in run manifests and W&B."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.launch import launch_run
from tldrlab.runs import open_registry, start_run
from tldrlab.runs.datasets import dataset_refs, open_datasets, register_dataset
from tldrlab.runs.run import read_manifest


@pytest.fixture
def pairs_dir(tmp_path: Path) -> Path:
    """A pairs data set with two splits, outside every data root."""
    directory = tmp_path / "elsewhere" / "pairs"
    directory.mkdir(parents=True)
    for split, n in (("train", 5), ("validation", 2)):
        rows = [
            {"document": f"{split} document {i} about parsers", "summary": f"summary {i}"} for i in range(n)
        ]
        (directory / f"pairs.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def test_register_records_a_data_set_once_with_provenance(
    pairs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_captured(
        [
            "data",
            "register",
            str(pairs_dir),
            "--license",
            "CC-BY-4.0",
            "--source-url",
            "https://x.org/p",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    shown = json.loads(out)
    record = open_datasets().get(shown["id"])
    assert shown["new"] is True and record.source == "register" and record.format == "pairs"
    assert record.records == 7 and record.path == str(pairs_dir.resolve())
    files = {f["path"]: f for f in record.extra["files"]}
    assert {p: f["records"] for p, f in files.items()} == {
        "pairs.train.jsonl": 5,
        "pairs.validation.jsonl": 2,
    }
    assert all(len(f["sha256"]) == 64 for f in files.values())
    provenance = record.extra["provenance"]
    assert provenance["license"] == "CC-BY-4.0" and provenance["source_url"] == "https://x.org/p"
    assert provenance["registered_from"] == str(pairs_dir.resolve()) and provenance["host"]

    again, new = register_dataset(pairs_dir)
    assert again.id == record.id and new is False
    code, out, _ = run_captured(["data", "register", str(pairs_dir)], capsys)
    assert code == 0 and f"already registered as {record.id}" in out
    (pairs_dir / "pairs.train.jsonl").write_text(json.dumps({"document": "changed", "summary": "c"}) + "\n")
    changed, new = register_dataset(pairs_dir)
    assert new is True and changed.id != record.id and changed.records == 3
    code, out, err = run_captured(["data", "register", str(pairs_dir / "missing")], capsys)
    assert code != 0 and "no such file" in err


def test_a_name_an_upload_could_not_have_is_refused(
    pairs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`data register --name a/b` was recorded as given: a name reading as a path, which the API (which makes
    a plain file name of every name it takes, `safe_file_name`) never records."""
    for name, plain in (("a/b", "a_b"), ("..\\up", "up"), ("my pairs", "my_pairs"), (".hidden", "hidden")):
        code, _, err = run_captured(["data", "register", str(pairs_dir), "--name", name], capsys)
        assert code == 2 and f"name: {name!r} is not a plain name" in err and f"e.g. {plain!r}" in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert open_datasets().list(limit=None) == []
    code, _, err = run_captured(["data", "register", str(pairs_dir), "--name", "pairs-v1.2_x"], capsys)
    assert code == 0 and [r.name for r in open_datasets().list(limit=None)] == ["pairs-v1.2_x"], err


def test_the_same_bytes_under_another_split_name_are_another_data_set(
    pairs_dir: Path, tmp_path: Path
) -> None:
    """A directory's identity covers its file names, which say the split: the same bytes as a training
    file and as a validation file are two data sets, not one deduplicated into the other."""
    content = (pairs_dir / "pairs.train.jsonl").read_bytes()
    as_train, as_validation = tmp_path / "as_train", tmp_path / "as_validation"
    as_train.mkdir()
    as_validation.mkdir()
    (as_train / "pairs.train.jsonl").write_bytes(content)
    (as_validation / "pairs.validation.jsonl").write_bytes(content)
    first, _ = register_dataset(as_train)
    second, new = register_dataset(as_validation)
    assert new is True and second.id != first.id and second.path == str(as_validation.resolve())


def test_runs_name_registered_data_sets_by_id_in_manifest_and_wandb(
    pairs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tldrlab.service.app import create_app
    from tldrlab.service.worker import WorkerConfig, build_worker
    from tldrlab.track.wandb_tracker import WandbTracker

    directory, _ = register_dataset(pairs_dir)
    inside = {"data": {"path": str(pairs_dir / "pairs.train.jsonl")}}
    assert [d["id"] for d in dataset_refs(inside)] == [directory.id]  # a file of a registered directory
    corpus = pairs_dir.parent / "corpus.jsonl"
    corpus.write_text((pairs_dir / "pairs.train.jsonl").read_text())
    record, _ = register_dataset(corpus)
    by_id = launch_run(
        "tokenizer", {"corpus": [f"dataset:{record.id}"], "method": "char", "vocab_size": 60}
    ).record
    assert by_id.status.value == "completed", by_id.message
    assert by_id.config["corpus"] == [str(corpus.resolve())]  # read where it was registered
    expected = {"id": record.id, "name": "corpus.jsonl", "sha256": record.sha256, "field": "corpus.0"}
    assert read_manifest(by_id.run_dir)["datasets"] == [expected]
    by_path = launch_run("tokenizer", {"corpus": [str(corpus)], "method": "char", "vocab_size": 60}).record
    assert [d["id"] for d in read_manifest(by_path.run_dir)["datasets"]] == [record.id]

    # the API takes the id too (the data set is outside the data roots: registered by the machine's user)
    client = TestClient(create_app())
    submitted = client.post(
        "/runs", json={"kind": "tokenizer", "config": {"corpus": f"dataset:{record.id}", "method": "char"}}
    )
    assert submitted.status_code == 202, submitted.text
    build_worker(config=WorkerConfig(burst=True, heartbeat_s=0.2, poll_s=0.05)).run()
    api_run = open_registry().get(submitted.json()["id"])
    assert api_run.status.value == "completed", api_run.message
    assert read_manifest(api_run.run_dir)["datasets"][0]["id"] == record.id
    secret = pairs_dir.parent / "secret.txt"
    secret.write_text("not registered")
    outside = client.post("/runs", json={"kind": "tokenizer", "config": {"corpus": str(secret)}})
    assert outside.status_code == 403  # a path outside the registered set is still refused

    monkeypatch.setenv("WANDB_MODE", "offline")
    with start_run("train", {"data": {"path": f"dataset:{record.id}"}}) as run:
        tracker = WandbTracker.start(run, mode="offline", config={"model": "t5"})
        try:
            assert tracker.wandb_run is not None
            assert [d["id"] for d in tracker.wandb_run.config["datasets"]] == [record.id]
        finally:
            tracker.finish()


def test_the_command_line_trains_on_a_data_set_named_by_id(
    pairs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tldrlab data register` says "name it dataset:<id>", but `tldrlab train --data dataset:<id>` stopped
    # with "data not found: dataset:<id>": the command line's checks looked for a file of that name
    record, _ = register_dataset(pairs_dir)
    argv = ["train", "--model", "char_lstm", "--data", f"dataset:{record.id}", "--block-size", "16"]
    argv += ["--tokenizer-method", "char", "--vocab-size", "60", "--max-steps", "2", "--batch-size", "2"]
    argv += ["--final-eval.no-enabled", "--train.no-plot", "--wandb", "disabled", "--json"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    run = open_registry().get(json.loads(out)["run_id"])
    assert run.config["data"]["path"] == str(pairs_dir.resolve())
    assert [d["id"] for d in read_manifest(run.run_dir)["datasets"]] == [record.id]


def test_evaluate_takes_a_data_set_by_its_bare_id_as_generate_and_score_do(pairs_dir: Path) -> None:
    """`tldrlab eval RUN --data ds-...` looked for a file called ds-... (generate and score took the id)."""
    from tldrlab.kinds import validate_config
    from tldrlab.launch import resolve_dataset_refs

    record, _ = register_dataset(pairs_dir)
    config = validate_config("evaluate", {"model_run": "train-x", "data": record.id})
    assert config.data == f"dataset:{record.id}"
    resolve_dataset_refs(config)
    assert config.data == str(record.location())
    assert (
        validate_config("evaluate", {"model_run": "train-x", "data": "ds-notes.txt"}).data == "ds-notes.txt"
    )


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_an_id_holding_nul_is_not_found(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    # PostgreSQL's text cannot hold NUL: GET /datasets/a%00b was a DataError (a 500) there
    from tldrlab.errors import NotFoundError
    from tldrlab.runs.datasets import DatasetRegistry
    from tldrlab.runs.db import connect

    url = request.getfixturevalue("postgres_url") if store == "postgres" else f"sqlite:///{tmp_path / 'd.db'}"
    with pytest.raises(NotFoundError, match="no dataset with id"):
        DatasetRegistry(connect(url)).get("a\x00b")


def test_registering_known_bytes_again_keeps_the_provenance_given(
    pairs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same bytes registered again with provenance: it was dropped (the existing id came back and the
    licence, source and note given were lost). Now what the record lacks is recorded on it, and what it
    holds differently is refused as a conflict naming it, leaving it as it was."""
    first, _ = register_dataset(pairs_dir)  # no provenance given
    provenance = ["--license", "CC-BY-4.0", "--source-url", "https://x.org/p", "--note", "from x"]
    code, out, err = run_captured(["data", "register", str(pairs_dir), *provenance, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["id"] == first.id and json.loads(out)["new"] is False
    stored = open_datasets().get(first.id).extra["provenance"]
    assert (stored["license"], stored["source_url"], stored["note"]) == (
        "CC-BY-4.0",
        "https://x.org/p",
        "from x",
    )
    assert stored["registered_from"] == str(pairs_dir.resolve())  # what the first registration recorded stays

    for differing in (
        ["--license", "MIT"],
        ["--name", "other-name"],
        ["--license", "CC-BY-4.0", "--note", "y"],
    ):
        code, _, err = run_captured(["data", "register", str(pairs_dir), *differing], capsys)
        (line,) = err.strip().splitlines()
        assert code == 4 and f"already registered as {first.id}" in line, line
    assert (
        "license 'CC-BY-4.0' (given 'MIT')"
        in run_captured(["data", "register", str(pairs_dir), "--license", "MIT"], capsys)[2]
    )
    assert open_datasets().get(first.id).extra["provenance"] == stored  # nothing stored changed
    again, new = register_dataset(pairs_dir, license="CC-BY-4.0", name="pairs")  # the same: no conflict
    assert again.id == first.id and new is False


def test_registering_uploaded_bytes_records_provenance_on_the_upload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tldrlab.service.app import create_app

    body = "".join(json.dumps({"document": f"d {i}", "summary": f"s {i}"}) + "\n" for i in range(3))
    client = TestClient(create_app())
    uploads = [
        client.post(
            "/datasets",
            params={"name": "up.jsonl"},
            content=body,
            headers={"content-type": "application/octet-stream"},
        )
        for _ in range(2)
    ]
    assert [u.status_code for u in uploads] == [201, 201], uploads[0].text
    uploaded = uploads[0]
    assert uploads[1].json()["id"] != uploaded.json()["id"]  # uploads are not matched to earlier rows
    copy = tmp_path / "up.jsonl"
    copy.write_text(body)
    record, new = register_dataset(copy, license="CC0-1.0")
    assert record.id == uploaded.json()["id"] and new is False
    assert open_datasets().get(record.id).extra["provenance"] == {"license": "CC0-1.0"}
    # the row lacked provenance only: a licence it now holds is not rewritten by the next registration
    code, _, err = run_captured(["data", "register", str(copy), "--license", "MIT"], capsys)
    assert code == 4 and f"already registered as {record.id} with license 'CC0-1.0' (given 'MIT')" in err


def test_an_upload_records_the_provenance_register_takes_validated_the_same_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`POST /datasets` took no provenance, where `tldrlab data register` takes a source URL, a licence and
    a note: an uploaded data set could not say where it came from."""
    from tldrlab.service.app import create_app

    body = "".join(json.dumps({"document": f"d {i}", "summary": f"s {i}"}) + "\n" for i in range(3))
    client = TestClient(create_app())
    given = {"source_url": "https://x.org/p", "license": "CC-BY-4.0", "note": "from x\nsecond line"}

    def upload(**params: str) -> Any:
        headers = {"content-type": "application/octet-stream", "X-Request-ID": "req-ds"}
        return client.post("/datasets", params={"name": "up.jsonl", **params}, content=body, headers=headers)

    created = upload(**given)
    assert created.status_code == 201, created.text
    assert created.json()["extra"]["provenance"] == given
    assert open_datasets().get(created.json()["id"]).extra["provenance"] == given
    assert "provenance" not in upload().json()["extra"]  # none given: none recorded
    # refused as the command's options are (the same class), before anything is stored
    for params, problem in (
        ({"license": "x" * 201}, "query.license: String should have at most 200 characters"),
        ({"note": "a\x00b"}, "query.note: must not contain control characters (U+0000)"),
        ({"source_url": ""}, "query.source_url: String should have at least 1 character"),
        # blank: recorded as a licence of " " (and the same bytes registered later clashed with it)
        ({"license": " "}, "query.license: is blank: give a value or leave it out"),
        ({"note": "\n\t"}, "query.note: is blank: give a value or leave it out"),
    ):
        refused = upload(**params)
        assert refused.status_code == 422, refused.text
        assert refused.json() == {"code": "invalid_input", "message": problem, "request_id": "req-ds"}
        code, _, err = run_captured(
            ["data", "register", str(tmp_path), *[f"--{k.replace('_', '-')}={v}" for k, v in params.items()]],
            capsys,
        )
        assert code == 2 and problem.removeprefix("query.").split(":")[0] in err, err
    assert len(open_datasets().list()) == 2


def test_a_data_set_changed_on_disk_is_not_read_or_recorded_as_its_registered_bytes(
    pairs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes changed after `data register`: `dataset:<id>` read the new bytes and the run's manifest named
    the id with the sha256 registered, which the run never read. Now the id is refused saying what changed,
    and a run given the path is not traced to the id its bytes no longer are."""
    from tldrlab.errors import ConflictError
    from tldrlab.runs.datasets import resolve_dataset_ref
    from tldrlab.service.app import create_app

    corpus = pairs_dir.parent / "corpus.jsonl"
    corpus.write_text((pairs_dir / "pairs.train.jsonl").read_text())
    single, _ = register_dataset(corpus)
    directory, _ = register_dataset(pairs_dir)
    with corpus.open("a") as handle:
        handle.write(json.dumps({"document": "added later", "summary": "later"}) + "\n")
    (pairs_dir / "pairs.train.jsonl").write_text(json.dumps({"document": "edited", "summary": "e"}) + "\n")
    (pairs_dir / "pairs.test.jsonl").write_text(json.dumps({"document": "new", "summary": "n"}) + "\n")

    argv = ["tokenizer", "train", "--method", "char", "--vocab-size", "60", f"dataset:{single.id}"]
    code, _, err = run_captured(argv, capsys)
    (line,) = err.strip().splitlines()
    assert code == 4 and f"data set {single.id} (corpus.jsonl) changed since it was registered" in line, err
    assert open_registry().list() == []  # refused before a run was created
    with pytest.raises(ConflictError, match=r"pairs\.train\.jsonl changed, pairs\.test\.jsonl is new"):
        resolve_dataset_ref(f"dataset:{directory.id}")
    submitted = TestClient(create_app()).post(
        "/runs", json={"kind": "tokenizer", "config": {"corpus": f"dataset:{single.id}", "method": "char"}}
    )
    assert submitted.status_code == 409 and submitted.json()["code"] == "conflict", submitted.text

    by_path = launch_run("tokenizer", {"corpus": [str(corpus)], "method": "char", "vocab_size": 60}).record
    assert by_path.status.value == "completed", by_path.message
    assert read_manifest(by_path.run_dir)["datasets"] == []  # not the registered bytes: no id claimed
    assert dataset_refs({"data": {"path": str(pairs_dir / "pairs.train.jsonl")}}) == []
    again, new = register_dataset(pairs_dir)  # the bytes now: a new id, which the path is traced to
    assert new is True and [d["id"] for d in dataset_refs({"data": {"path": str(pairs_dir)}})] == [again.id]
    assert resolve_dataset_ref(f"dataset:{again.id}") == str(pairs_dir.resolve())


def test_registering_says_how_many_malformed_records_it_did_not_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line of invalid UTF-8 among good ones: register said '1 records' and nothing else, and a training
    run on the data set then failed on the record left out."""
    path = tmp_path / "my data.jsonl"
    path.write_bytes(b'{"document": "caf\xe9", "summary": "x"}\n{"document": "ok", "summary": "y"}\n')
    code, out, err = run_captured(["data", "register", str(path)], capsys)
    assert code == 0 and "(pairs, 1 records," in out, err
    said = " ".join(err.split())  # the console wraps a warning at its width
    assert "1 malformed record(s) not counted" in said and f"inspect '{path}' --skip-invalid" in said, err
    path.write_text(json.dumps({"document": "ok", "summary": "y"}) + "\n")
    code, _, err = run_captured(["data", "register", str(path)], capsys)
    assert code == 0 and "malformed" not in err


def test_a_data_set_no_record_of_which_reads_is_not_registered(
    pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`data register DIR -f scitldr` of pairs data registered '0 records' (every one malformed as scitldr),
    and the id then held those bytes: `data register DIR` returned it, and `-f pairs` was a conflict with
    'format scitldr'. A header-only CSV registered as 0 records too."""
    code, _, err = run_captured(["data", "register", str(pairs_dir), "-f", "scitldr"], capsys)
    said = " ".join(err.split())
    assert code == 2 and "none of its 7 record(s) reads as format 'scitldr'" in said, err
    assert "field 'source': missing" in said and "nothing registered" in said
    assert open_datasets().list() == []
    record, new = register_dataset(pairs_dir)
    assert new is True and record.format == "pairs" and record.records == 7
    header_only = tmp_path / "header.csv"
    header_only.write_text("document,summary\n")
    code, _, err = run_captured(["data", "register", str(header_only)], capsys)
    assert code == 2 and "holds no records; nothing registered" in err, err
    assert [d.id for d in open_datasets().list()] == [record.id]


def test_a_data_set_moved_since_its_registration_is_named_when_a_run_names_it(
    pairs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokenizer train dataset:<id>` (or train / eval --data) of a registered directory moved away said
    only 'corpus file not found: <path>' (or 'data not found'), a path the user never typed."""
    corpus = pairs_dir.parent / "corpus.jsonl"
    corpus.write_text((pairs_dir / "pairs.train.jsonl").read_text())
    record, _ = register_dataset(corpus)
    corpus.rename(pairs_dir.parent / "moved.jsonl")
    argv = ["tokenizer", "train", "--method", "char", "--vocab-size", "60", f"dataset:{record.id}"]
    code, _, err = run_captured(argv, capsys)
    said = " ".join(err.split())
    assert code == 3 and f"data set {record.id} (corpus.jsonl) is no longer at {corpus}" in said, err
    assert open_registry().list() == []


def test_a_file_name_of_bytes_that_are_not_utf8_is_registered_or_refused_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory holding caf\\xe9.jsonl (a Latin-1 name): hashing its name raised UnicodeEncodeError, a
    traceback; registering that file itself failed in the database insert, another."""
    import os

    from tldrlab.runs.datasets import resolve_dataset_ref

    directory = tmp_path / "latin1"
    directory.mkdir()
    latin1 = directory / os.fsdecode(b"caf\xe9.jsonl")
    latin1.write_text(json.dumps({"document": "a document", "summary": "a summary"}) + "\n")
    code, out, err = run_captured(["data", "register", str(directory), "--json"], capsys)
    assert code == 0, err
    record = open_datasets().get(json.loads(out)["id"])
    assert record.records == 1 and resolve_dataset_ref(f"dataset:{record.id}") == str(directory.resolve())
    code, _, err = run_captured(["data", "register", str(latin1)], capsys)
    said = " ".join(err.split())
    assert code == 2 and "not valid UTF-8 (a name of other bytes)" in said and "Traceback" not in err, err
    assert [d.id for d in open_datasets().list()] == [record.id]


def test_a_small_file_rewritten_at_the_same_size_and_mtime_is_seen_changed(tmp_path: Path) -> None:
    """The hashes of a data set's files were remembered by (size, mtime): a file rewritten at the same size
    within the clock's tick (the same mtime) kept its registered hash, and the change went unseen."""
    import os

    from tldrlab.runs.datasets import dataset_changes

    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"document": "first text", "summary": "a"}) + "\n")
    stat = path.stat()
    record, _ = register_dataset(path)
    path.write_text(json.dumps({"document": "other text", "summary": "b"}) + "\n")  # the same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and dataset_changes(record) is not None


def test_the_files_a_reader_reads_beside_its_data_are_part_of_the_data_set(
    shared_data: Path, tmp_path: Path
) -> None:
    """A Stack Exchange dump's Comments.xml and Users.xml are read with its Posts.xml, but a registration
    hashed Posts.xml alone: a dump with other comments was 'already registered' as the first, and comments
    edited after registration went unseen."""
    from tldrlab.errors import ConflictError
    from tldrlab.runs.datasets import resolve_dataset_ref

    head = (shared_data / "stackexchange_beer" / "Posts.xml").read_text(encoding="utf-8-sig").splitlines()
    posts = "\n".join([*head[:40], "</posts>"])
    comments = (
        '<?xml version="1.0" encoding="utf-8"?>\n<comments>\n  <row Id="900" PostId="1" Score="2" '
        'Text="{text}" CreationDate="2014-01-21T21:00:00.000" />\n</comments>\n'
    )
    with_comments, without = tmp_path / "with_comments", tmp_path / "without"
    for site in (with_comments, without):
        site.mkdir()
        (site / "Posts.xml").write_text(posts, encoding="utf-8")
    (with_comments / "Comments.xml").write_text(comments.format(text="A first comment."), encoding="utf-8")
    first, _ = register_dataset(with_comments)
    assert {f["path"] for f in first.extra["files"]} == {"Posts.xml", "Comments.xml"}
    second, new = register_dataset(without)
    assert new is True and second.id != first.id
    (with_comments / "Comments.xml").write_text(comments.format(text="An edited one."), encoding="utf-8")
    with pytest.raises(ConflictError, match=r"Comments\.xml changed"):
        resolve_dataset_ref(f"dataset:{first.id}")
    assert resolve_dataset_ref(f"dataset:{second.id}") == str(without.resolve())


def test_registering_a_moved_data_set_where_it_is_now_moves_its_id(
    pairs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registered directory moved away: its id kept the old path, and registering it where it is now (as
    the refusal says) found the same bytes and returned the id unchanged, still at the old path."""
    from tldrlab.runs.datasets import resolve_dataset_ref

    record, _ = register_dataset(pairs_dir)
    moved = tmp_path / "moved" / "pairs"
    moved.parent.mkdir()
    pairs_dir.rename(moved)
    argv = ["tokenizer", "train", "--method", "char", "--vocab-size", "60", f"dataset:{record.id}"]
    code, _, err = run_captured(argv, capsys)
    assert code == 3 and "register it where it is now" in " ".join(err.split()), err
    again, new = register_dataset(moved)
    assert again.id == record.id and new is False and again.path == str(moved.resolve())
    assert resolve_dataset_ref(f"dataset:{record.id}") == str(moved.resolve())
    assert open_datasets().get(record.id).path == str(moved.resolve())
