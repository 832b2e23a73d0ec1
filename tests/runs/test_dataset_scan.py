"""Lookups over every data set read every data set: a data set registered before 10,000 newer ones (uploads)
was outside the API's read roots (its path refused, 403), not traced in a run's manifest by path, and past
`data list`'s 1000 rows. Filler rows are inserted through the registry in one transaction; both backends."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.runs.datasets import DatasetRecord, dataset_refs, open_datasets, register_dataset
from tldrlab.service.app import create_app

FILLER = 10_000
"""Newer data sets than the lookups read before (10,000)."""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_data_set_registered_before_ten_thousand_newer_ones_is_still_found(
    backend: str,
    tldrlab_home: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if backend == "postgres":
        monkeypatch.setenv("TLDRLAB_DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
    corpus = tmp_path / "elsewhere" / "corpus.txt"  # outside every data root: readable once registered
    corpus.parent.mkdir(parents=True)
    corpus.write_text("To be, or not to be, that is the question.\n" * 20)
    record, _ = register_dataset(corpus)
    datasets = open_datasets()
    with datasets.db.transaction():  # one commit: seconds, not minutes
        for i in range(FILLER):
            datasets.insert(
                DatasetRecord(
                    id=f"ds-filler-{i:05d}",
                    name="filler.txt",
                    path=f"datasets/ds-filler-{i:05d}/filler.txt",
                    sha256=f"{i:064x}",
                    size_bytes=1,
                    source="upload",
                    created_at=time.time() + 1 + i,
                )
            )

    refs = dataset_refs({"corpus": [str(corpus)]})
    assert [(d["id"], d["field"]) for d in refs] == [(record.id, "corpus.0")]
    client = TestClient(create_app())
    submitted = client.post("/runs", json={"kind": "tokenizer", "config": {"corpus": str(corpus)}})
    assert submitted.status_code == 202, submitted.text
    code, out, err = run_captured(["data", "list", "--json"], capsys)
    listed = [json.loads(line)["id"] for line in out.splitlines()]
    assert code == 0 and len(listed) == FILLER + 1 and listed[-1] == record.id, err
