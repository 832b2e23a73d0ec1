"""The OpenAPI document with every run kind's config class in it, field docstrings as descriptions.

`POST /runs` takes `{kind, config}` and validates `config` against the kind's class at submit (the registry,
not FastAPI, so that the error names the field the same way everywhere); this puts those classes into
`components.schemas` and documents `config` as one of them, so /docs and generated clients show each kind's
fields, types, bounds and docstrings; a `model_settings` as one of the classes whose fields it takes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tldrlab.kinds import KINDS, config_json_schemas

REF = "#/components/schemas/{model}"


def kind_config_schemas() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(kind -> {"$ref": ...} of its config class, the classes' schemas by component name), settings fields
    documented as `kinds.config_json_schemas` does for `GET /kinds` too."""
    configs = list({id(k.config): k.config for k in KINDS.values()}.values())
    refs, definitions = config_json_schemas(configs, REF)
    return {kind.name: dict(refs[kind.config]) for kind in KINDS.values()}, definitions


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
