"""The LVM routes of the one FastAPI app, on a real uvicorn server: chunk, ingest (a queued run a real worker
executes), predict (vector, nearest concepts with provenance, smoothed text), stats, and their readiness."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from cliutil import run_cli
from netutil import serve_app
from tldrlab.service.app import create_app

ARTICLES = [
    {
        "id": "bees",
        "title": "Bee",
        "text": "Bees are flying insects closely related to wasps and ants. Bees collect nectar and pollen "
        "from flowers. A honey bee colony has one queen and many workers. Worker bees build wax combs.",
    },
    {  # no title: the route's ArticleIn makes it optional (the ingest run failed "field 'title': missing")
        "id": "volcanoes",
        "text": "A volcano is a rupture in the crust of a planet. Magma rises from the mantle. When magma "
        "reaches the surface it is called lava. Explosive eruptions throw ash into the air.",
    },
]


def _error(response: httpx.Response, status: int, code: str, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and text in body["message"] and body["request_id"], body


@pytest.fixture
def server() -> Any:
    with serve_app(create_app()) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client


def test_chunk_and_readiness(server: httpx.Client) -> None:
    ready = server.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["lvm"] == "ok"
    text = ARTICLES[0]["text"]
    body = server.post("/lvm/chunk", json={"text": text, "tmd": True}).json()
    assert body["count"] == 4 and body["chunking"] == "sentence"
    for concept in body["concepts"]:
        assert text[concept["start"] : concept["end"]] == concept["text"]
        assert concept["tmd"].count("/") == 2  # domain/task/modifier
    semantic = server.post("/lvm/chunk", json={"text": text, "chunking": "semantic", "threshold": 0.2}).json()
    assert 1 <= semantic["count"] < 4 and semantic["concepts"][0]["tmd"] is None
    _error(
        server.post("/lvm/chunk", json={"text": text, "chunking": "paragraph"}),
        422,
        "invalid_input",
        "chunking",
    )
    _error(server.post("/lvm/chunk", json={"text": ""}), 422, "invalid_input", "text")


def test_ingest_predict_and_stats(server: httpx.Client, tiny_causal_lm: Path, tldrlab_home: Path) -> None:
    queued = server.post("/lvm/ingest", json={"articles": ARTICLES, "source": "demo", "domain": "nature"})
    assert queued.status_code == 202, queued.text
    run = queued.json()
    assert run["kind"] == "lvm_ingest" and run["status"] == "queued"
    _error(server.post("/lvm/ingest", json={"articles": ARTICLES[:1] * 2}), 422, "invalid_input", "unique")
    _error(
        server.post("/lvm/ingest", json={"articles": ARTICLES, "source": "../x"}),
        422,
        "invalid_input",
        "source",
    )
    assert run_cli(["worker", "--burst", "--poll-s", "0.1"]) == 0  # a real worker takes the queued run
    done = server.get(f"/runs/{run['id']}").json()
    assert done["status"] == "completed", done
    stats = server.get("/lvm/stats", params={"samples": 2}).json()
    assert stats["concepts"] == 8 and stats["articles"] == 2 and len(stats["samples"]) == 2
    assert stats["sources"][0]["source"] == "demo" and stats["sources"][0]["dim"] == 384
    assert sum(stats["tmd"]["domain"].values()) == 8 and stats["samples"][0]["tmd"].count("/") == 2

    # predict needs the index and a trained LVM (here one whose prediction is the last sentence's vector)
    _error(
        server.post("/lvm/predict", json={"sentences": ["Bees."], "model": "nope"}), 404, "not_found", "nope"
    )
    assert run_cli(["lvm", "index"]) == 0
    from tldrlab.lvm.models import LVMConfig, build_lvm, save_lvm

    data = tldrlab_home / "data"  # what API requests may read (the default data root)
    save_lvm(
        build_lvm("gru", LVMConfig(dim=384, hidden=8, context=3, skip="last")), data / "models" / "copy-last"
    )
    shutil.copytree(tiny_causal_lm, data / "lms" / "tiny")
    outside = {"sentences": ["Bees."], "model": str(tiny_causal_lm)}  # a path outside the data roots
    _error(server.post("/lvm/predict", json=outside), 403, "path_not_allowed", "data roots")
    request = {"sentences": ["Bees collect nectar from flowers."], "model": "models/copy-last", "k": 3}
    response = server.post("/lvm/predict", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["vector"]) == 384 and body["smoothed"] is None and len(body["nearest"]) == 3
    best = body["nearest"][0]
    assert best["text"] == "Bees collect nectar and pollen from flowers." and best["source"] == "demo"
    assert best["article_id"] == "bees" and best["position"] == 1 and best["score"] > 0.8
    assert set(body["seconds"]) == {"embed", "predict", "decode"}
    response = server.post("/lvm/predict", json={**request, "smooth": True, "lm": "lms/tiny"})
    assert response.status_code == 200, response.text
    smoothed = response.json()
    assert isinstance(smoothed["smoothed"], str) and "smooth" in smoothed["seconds"]
    _error(server.post("/lvm/predict", json={**request, "sentences": []}), 422, "invalid_input", "sentences")
    _error(
        server.post("/lvm/predict", json={**request, "sentences": [" "]}), 422, "invalid_input", "non-empty"
    )
    not_lvm = {**request, "model": "lms/tiny"}  # a causal LM, not an LVM
    _error(server.post("/lvm/predict", json=not_lvm), 404, "not_found", "not a trained LVM")
    _error(server.post("/lvm/predict", json={**request, "model": "../x"}), 403, "path_not_allowed", "..")


def test_predict_by_name_loads_no_model_from_the_servers_working_directory(
    server: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name without a slash is a run id. It was also tried as a path relative to the server process's
    # working directory, so `"model": "foo"` loaded ./foo, outside the data roots API requests may read.
    from tldrlab.lvm.models import LVMConfig, build_lvm, save_lvm

    save_lvm(build_lvm("gru", LVMConfig(dim=384, hidden=8, context=3, skip="last")), tmp_path / "foo")
    monkeypatch.chdir(tmp_path)
    response = server.post("/lvm/predict", json={"sentences": ["Bees."], "model": "foo"})
    _error(response, 404, "not_found", "'foo' is not a trained LVM: no lvm_train run's model")


def test_reading_routes_on_a_fresh_server_create_no_concept_store(
    server: httpx.Client, tldrlab_home: Path
) -> None:
    # The routes opened the default store with open_concept_store, which creates it: a GET /lvm/stats (or a
    # chunk, a readiness check) on a fresh server wrote <home>/lvm/concepts.db. Nothing ingested yet reads
    # as an empty collection (200, zero counts, as a store without the asked source answers), creates nothing.
    store = tldrlab_home / "lvm" / "concepts.db"
    response = server.get("/lvm/stats", params={"samples": 2})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "concepts": 0,
        "articles": 0,
        "sources": [],
        "tmd": {"domain": {}, "task": {}, "modifier": {}},
        "samples": [],
    }
    assert server.post("/lvm/chunk", json={"text": ARTICLES[0]["text"]}).json()["count"] == 4
    assert server.get("/readyz").json()["checks"]["lvm"] == "ok"
    _error(
        server.post("/lvm/predict", json={"sentences": ["Bees."], "model": "nope"}), 404, "not_found", "nope"
    )
    assert not store.exists() and not store.parent.exists()
