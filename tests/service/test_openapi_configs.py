"""/openapi.json documents every run kind's config class, with the fields' docstrings as descriptions."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tldrlab.kinds import KINDS
from tldrlab.service.app import create_app


def test_every_kind_config_is_in_openapi_with_described_fields() -> None:
    schema = TestClient(create_app()).get("/openapi.json").json()
    components: dict[str, Any] = schema["components"]["schemas"]
    config = components["RunRequest"]["properties"]["config"]
    documented = {ref["$ref"].rsplit("/", 1)[1] for ref in config["anyOf"]}
    assert documented == {k.config.__name__ for k in KINDS.values() if k.submittable}
    assert components["TrainRequest"]["properties"]["config"]["anyOf"] == [
        {"$ref": "#/components/schemas/TrainJobConfig"}
    ]

    def check(name: str, seen: set[str]) -> None:  # the class and every section it refers to
        if name in seen:
            return
        seen.add(name)
        for field, spec in components[name].get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
            refs = [spec, *spec.get("anyOf", []), spec.get("items", {})]
            for ref in (r["$ref"].rsplit("/", 1)[1] for r in refs if isinstance(r, dict) and "$ref" in r):
                check(ref, seen)

    seen: set[str] = set()
    for name in documented:
        check(name, seen)
    lr = components["TrainConfig"]["properties"]["lr"]
    assert lr["exclusiveMinimum"] == 0 and "Peak learning rate" in lr["description"]
