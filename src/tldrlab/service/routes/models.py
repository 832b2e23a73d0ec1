"""`GET /models`: the models a client may name (installed, bundled) and the aliases of trained runs' models,
each with its history of promotions. Any of these names works as `model` of `POST /summarize` and as
`model_run` of evaluate / generate / score. No server paths."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tldrlab.models.store import list_models
from tldrlab.runs.aliases import alias_history
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.state import settings_of

router = APIRouter(tags=["models"], route_class=StrictJSONRoute)


class ModelInfo(BaseModel):
    name: str
    kind: str = Field(description="`installed` (tldrlab models import) or `bundled`.")
    parameters: int | None = None
    dtype: str | None = None
    chat_template: bool | None = None
    bytes: int | None = None


class Promotion(BaseModel):
    run_id: str
    promoted_at: float
    previous_run_id: str | None = None
    note: str | None = None


class AliasInfo(Promotion):
    alias: str
    history: list[Promotion] = Field(description="Every promotion of this alias, newest first.")


class ModelList(BaseModel):
    models: list[ModelInfo]
    aliases: list[AliasInfo]


def _listing(request: Request) -> dict[str, Any]:
    settings = settings_of(request)
    models = [
        {k: row.get(k) for k in ModelInfo.model_fields}
        for row in list_models(settings)
        if not row.get("shadowed")
    ]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for entry in alias_history(None, settings):
        grouped.setdefault(entry.alias, []).append(entry.public())
    aliases = [{**history[0], "history": history} for _, history in sorted(grouped.items())]
    return {"models": models, "aliases": aliases}


@router.get("/models", response_model=ModelList)
async def get_models(request: Request) -> dict[str, Any]:
    """Installed and bundled models, and every alias with where it points and its history."""
    return await run_in_threadpool(_listing, request)
