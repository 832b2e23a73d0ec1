"""Any kind over HTTP: `GET /kinds` documents them, `POST /runs` validates at submit (422 naming the field)
and a real worker executes what was queued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import record

from tldrlab.kinds import KINDS
from tldrlab.models.registry import MODELS
from tldrlab.runs import RunStatus, open_registry
from tldrlab.service.app import create_app
from tldrlab.service.worker import WorkerConfig, build_worker

BURST = WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05)


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


def test_kinds_lists_every_submittable_kind_with_its_schema(client: TestClient) -> None:
    kinds = {k["name"]: k for k in client.get("/kinds").json()["kinds"]}
    assert set(kinds) == {k.name for k in KINDS.values() if k.submittable}
    assert {"train", "sweep", "experiment", "lvm_index", "elm_optimize", "ingest", "evaluate"} <= set(kinds)
    smoke = kinds["smoke"]
    assert smoke["help"] and smoke["resumable"] is True
    assert smoke["schema"]["properties"]["steps"]["description"] == "Optimisation steps."
    assert client.get("/kinds/eval").json()["name"] == "evaluate"
    assert client.get("/kinds/nope").status_code == 422
    # the field docstrings reach OpenAPI too
    openapi = client.get("/openapi.json").json()
    assert "/kinds" in openapi["paths"]


def test_kinds_describes_each_config_as_openapi_does_model_settings_included(client: TestClient) -> None:
    # GET /kinds showed model_settings as a bare object while /openapi.json showed the classes it takes
    kinds = {k["name"]: k["schema"] for k in client.get("/kinds").json()["kinds"]}
    components = client.get("/openapi.json").json()["components"]["schemas"]
    train = kinds["train"]["properties"]["model_settings"]
    families = [ref["$ref"].removeprefix("#/$defs/") for ref in train["anyOf"]]
    assert families == [spec.config_cls.__name__ for spec in MODELS.values()]
    assert kinds["lvm_train"]["properties"]["model_settings"]["anyOf"] == [{"$ref": "#/$defs/LVMConfig"}]
    for name, schema in kinds.items():
        as_openapi = json.loads(json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/'))
        defs = as_openapi.pop("$defs", {})
        assert as_openapi == components[KINDS[name].config.__name__], name
        assert all(components[c] == d for c, d in defs.items()), name


def test_invalid_configs_are_a_422_naming_the_field_and_create_no_run(client: TestClient) -> None:
    bad = client.post("/runs", json={"kind": "train", "config": {"data": {"path": "x"}, "train": {"lr": 0}}})
    assert bad.status_code == 422, bad.text
    body = bad.json()
    assert body["code"] == "invalid_config" and body["request_id"]
    assert "train.lr" in body["message"] and body["errors"] == [
        {"loc": ["train", "lr"], "msg": "Input should be greater than 0"}
    ]
    missing = client.post("/runs", json={"kind": "lvm_index", "config": {"ivf_treshold": 5}})
    assert missing.status_code == 422 and missing.json()["errors"][0]["loc"] == ["ivf_treshold"]
    old_route = client.post("/runs/train", json={"config": {"data": {}}})
    assert old_route.status_code == 422 and old_route.json()["errors"][0]["loc"] == ["data", "path"]
    sweep = client.post("/runs", json={"kind": "sweep", "config": {"sweep": {"method": "sideways"}}})
    assert sweep.status_code == 422 and "method" in sweep.json()["message"]
    assert open_registry().list() == []


def test_a_tokenizer_run_submitted_over_http_is_executed_by_a_worker(
    client: TestClient, tldrlab_home: Path
) -> None:
    corpus = tldrlab_home / "data" / "corpus.txt"  # API runs read inside the data roots
    corpus.parent.mkdir(parents=True)
    corpus.write_text("to be or not to be, that is the question\n" * 40)
    config = {"method": "char", "vocab_size": 60, "corpus": ["corpus.txt"], "holdout": 0.1}
    created = client.post("/runs", json={"kind": "tokenizer", "config": config})
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]
    build_worker(config=BURST).run()
    done = record(run_id)
    assert done.status == RunStatus.COMPLETED, done.message
    assert done.config["corpus"] == [str(corpus.resolve())] and done.config["min_frequency"] == 2
    assert (Path(done.run_dir) / "tokenizer" / "tokenizer.json").is_file()
    result = client.get(f"/runs/{run_id}").json()
    assert result["metrics"]["vocab_size"] <= 60
