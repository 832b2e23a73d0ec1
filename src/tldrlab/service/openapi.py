"""The OpenAPI document with every run kind's config class in it, field docstrings as descriptions.

`POST /runs` takes `{kind, config}` and validates `config` against the kind's class at submit (the registry,
not FastAPI, so that the error names the field the same way everywhere); this puts those classes into
`components.schemas` and documents `config` as one of them, so /docs and generated clients show each kind's
fields, types, bounds and docstrings.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from tldrlab.kinds import KINDS

REF = "#/components/schemas/{model}"


def kind_config_schemas() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(kind -> {"$ref": ...} of its config class, the classes' schemas by component name)."""
    configs = list({id(k.config): k.config for k in KINDS.values()}.values())
    refs, schema = models_json_schema([(c, "validation") for c in configs], ref_template=REF)
    by_kind = {kind.name: dict(refs[(kind.config, "validation")]) for kind in KINDS.values()}
    return by_kind, schema.get("$defs", {})


def openapi_with_kind_configs(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    refs, definitions = kind_config_schemas()
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(definitions)
    for request, kinds in (
        ("RunRequest", [k for k in KINDS.values() if k.submittable]),
        ("TrainRequest", [KINDS["train"]]),
    ):
        field = components.get(request, {}).get("properties", {}).get("config")
        if field is not None:
            field.pop("additionalProperties", None)
            field.pop("type", None)
            field["anyOf"] = [refs[kind.name] for kind in kinds]
    app.openapi_schema = schema
    return schema
