"""`lvm ingest` of a data-set directory with held-out split files (`data.splits.held_out_files`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.runs import open_registry
from tldrlab.service.app import create_app


def _articles(path: Path, names: list[str]) -> None:
    rows = [
        {"id": f"{path.stem}:{name}", "title": name, "text": f"{name} is a topic. It has a second sentence."}
        for name in names
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_ingest_refuses_a_directory_holding_a_test_file_before_a_run_exists(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory of train.jsonl + test.jsonl was ingested as one source, and `lvm sequences` split its
    articles train / val / test by a seeded shuffle: most of the test file's articles were trained on. The
    command line and `POST /runs` refuse it before a run exists, saying what to ingest instead; the training
    file alone, and the test file alone, are ingested as named."""
    data = tldrlab_home / "data" / "wiki"  # inside the API's data root
    data.mkdir(parents=True)
    _articles(data / "train.jsonl", ["Bees", "Volcanoes", "Chess"])
    _articles(data / "test.jsonl", ["Bread"])

    code, _, err = run_captured(["lvm", "ingest", str(data), "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)
    assert "holds held-out split files (test.jsonl)" in err and "--test-source SOURCE" in err, err
    refused = TestClient(create_app()).post("/runs", json={"kind": "lvm_ingest", "config": {"path": "wiki"}})
    assert refused.status_code == 422 and "held-out split files (test.jsonl)" in refused.json()["message"]
    assert open_registry().list() == []

    assert run_captured(["lvm", "ingest", str(data / "train.jsonl"), "-q"], capsys)[0] == 0
    held_out = ["lvm", "ingest", str(data / "test.jsonl"), "--source", "held", "-q"]
    assert run_captured(held_out, capsys)[0] == 0
    assert [r.status.value for r in open_registry().list(kind="lvm_ingest")] == ["completed"] * 2


def test_ingest_refuses_an_article_id_read_twice_naming_both_places(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory whose files share article ids (two files of records without an `id` field: both are
    numbered by line) was ingested with each later article replacing the earlier one of its id in the store:
    4 articles read, 2 stored, nothing said. It is refused before a run exists, naming the id and both
    places; articles with their own ids are all stored."""
    from tldrlab.lvm.store import open_concept_store

    data = tldrlab_home / "arts"
    data.mkdir(parents=True)
    for name in ("a", "b"):
        rows = [{"document": f"{name}{i} is a topic. It has another.", "summary": "s"} for i in range(2)]
        (data / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, _, err = run_captured(["lvm", "ingest", str(data), "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)
    assert "article id '1' is given twice (a.jsonl line 1; b.jsonl line 1)" in err, err
    assert open_registry().list() == []
    once = tldrlab_home / "once.jsonl"  # within one file too
    rows = [{"id": "x", "document": text, "summary": "s"} for text in ("One.", "Two.")]
    once.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, _, err = run_captured(["lvm", "ingest", str(once), "-q"], capsys)
    assert code == 2 and "article id 'x' is given twice (once.jsonl line 1; once.jsonl line 2)" in err, err

    for name in ("a", "b"):
        rows = [{"id": f"{name}{i}", "document": f"{name}{i} is a topic.", "summary": "s"} for i in range(2)]
        (data / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, out, err = run_captured(["lvm", "ingest", str(data), "--source", "arts", "--json", "-q"], capsys)
    assert code == 0, err
    store = open_concept_store(None)
    try:
        assert json.loads(out)["articles"] == 4
        assert [a.article_id for a in store.articles("arts")] == ["a0", "a1", "b0", "b1"]
    finally:
        store.close()
