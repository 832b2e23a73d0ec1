"""The home's model store as `tldrlab models list` and `GET /models` read it, including what they find there
that no import wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.service.app import create_app


def test_a_store_manifest_with_wrong_types_is_listed_without_them(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a tldrlab_model.json holding valid JSON of the wrong shape (hand-edited, another tool's, a list) made
    # `models list` die on f"{parameters:,}" and GET /models answer 500 on its response model
    for name, manifest in [
        ("edited", {"parameters": "lots", "dtype": 5, "chat_template": "yes", "sha256": 7, "source": []}),
        ("listed", [1, 2]),
        ("flagged", {"parameters": True, "dtype": "float32", "chat_template": False}),
    ]:
        directory = tldrlab_home / "models" / name
        directory.mkdir(parents=True)
        (directory / "config.json").write_text("{}", encoding="utf-8")
        (directory / "tldrlab_model.json").write_text(json.dumps(manifest), encoding="utf-8")
    code, out, err = run_captured(["models", "list", "--json"], capsys)
    assert code == 0, err
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert {k: rows["edited"][k] for k in ("parameters", "dtype", "chat_template", "sha256", "source")} == {
        "parameters": None,
        "dtype": None,
        "chat_template": None,
        "sha256": None,
        "source": None,
    }
    assert rows["listed"]["parameters"] is None
    assert rows["flagged"]["parameters"] is None and rows["flagged"]["dtype"] == "float32"
    assert rows["flagged"]["chat_template"] is False
    code, out, err = run_captured(["models", "list"], capsys)
    assert code == 0 and "edited" in out and "Traceback" not in err, err
    with TestClient(create_app()) as client:
        response = client.get("/models")
    assert response.status_code == 200, response.text
    listed = {m["name"]: m for m in response.json()["models"]}
    assert listed["edited"]["parameters"] is None and listed["edited"]["dtype"] is None
