"""/openapi.json documents every run kind's config class, with the fields' docstrings as descriptions."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tldrlab.kinds import KINDS
from tldrlab.models.registry import MODELS
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


def test_model_settings_is_documented_as_the_classes_whose_fields_it_takes() -> None:
    # model_settings showed as a bare object: nothing in /openapi.json said what it accepts
    components: dict[str, Any] = TestClient(create_app()).get("/openapi.json").json()["components"]["schemas"]
    train = components["TrainJobConfig"]["properties"]["model_settings"]
    families = [ref["$ref"].rsplit("/", 1)[1] for ref in train["anyOf"]]
    assert families == [spec.config_cls.__name__ for spec in MODELS.values()]
    for family, spec in MODELS.items():
        assert f"{family}: {spec.config_cls.__name__}" in train["description"]
        assert set(components[spec.config_cls.__name__]["properties"]) == set(spec.config_cls.model_fields)
    lora = components["CausalLMConfig"]["properties"]["lora"]["anyOf"][0]["$ref"].rsplit("/", 1)[1]
    target_modules = components[lora]["properties"]["target_modules"]["description"]
    assert "None: the model's attention and MLP projections" in target_modules
    lvm = components["LVMTrainJobConfig"]["properties"]["model_settings"]
    assert lvm["anyOf"] == [{"$ref": "#/components/schemas/LVMConfig"}]
    assert "The fields of LVMConfig." in lvm["description"]
