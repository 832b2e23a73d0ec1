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
from pydantic.json_schema import models_json_schema

from tldrlab.kinds import KINDS, settings_fields

REF = "#/components/schemas/{model}"


def kind_config_schemas() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(kind -> {"$ref": ...} of its config class, the classes' schemas by component name). A settings field
    (`model_settings`) is documented as one of the classes whose fields it takes (a training's: one per
    model family), its description naming which field picks which; submit validates it as before."""
    configs = list({id(k.config): k.config for k in KINDS.values()}.values())
    settings = [field for config in configs for field in settings_fields(config)]
    classes = [*configs, *(f.holder for f in settings), *(c for f in settings for c in f.classes.values())]
    unique = list({id(c): c for c in classes}.values())
    refs, schema = models_json_schema([(c, "validation") for c in unique], ref_template=REF)
    definitions: dict[str, Any] = schema.get("$defs", {})
    for field in settings:
        component = refs[(field.holder, "validation")]["$ref"].rsplit("/", 1)[1]
        documented = definitions[component]["properties"][field.name]
        documented.pop("type", None)
        documented.pop("additionalProperties", None)
        documented["anyOf"] = [dict(refs[(cls, "validation")]) for cls in field.classes.values()]
        named = [
            f"{choice}: {cls.__name__}" if choice else cls.__name__ for choice, cls in field.classes.items()
        ]
        which = f"the class its `{field.by}` picks ({'; '.join(named)})" if field.by else ", ".join(named)
        documented["description"] += f" The fields of {which}."
    by_kind = {kind.name: dict(refs[(kind.config, "validation")]) for kind in KINDS.values()}
    return by_kind, definitions


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
