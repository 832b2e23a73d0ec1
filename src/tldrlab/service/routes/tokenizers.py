"""Tokenizer API: `POST /tokenizers/train` queues a tokenizer run; `GET /tokenizers/{id}` shows its stats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tldrlab.errors import NotFoundError
from tldrlab.freeform import RunConfigMap
from tldrlab.runs.run import read_manifest
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.routes.runs import Artifact, RequestSeed, RunInfo, public, run_info
from tldrlab.service.state import registry, submit_run

router = APIRouter(tags=["tokenizers"], route_class=StrictJSONRoute)


class TokenizerTrainRequest(BaseModel):
    """Train a tokenizer (same config as `tldrlab tokenizer train`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    config: RunConfigMap = Field(..., description="method, corpus paths, vocab_size, holdout, seed ...")
    seed: RequestSeed = None


class TokenizerInfo(RunInfo):
    stats: dict[str, Any] = Field(default_factory=dict, description="Coverage, OOV rate, vocab size ...")
    artifacts: list[Artifact] = Field(default_factory=list)


@router.post("/tokenizers/train", status_code=202, response_model=RunInfo)
def train_tokenizer(request: Request, body: TokenizerTrainRequest) -> dict[str, Any]:
    return public(request, run_info(submit_run(request, "tokenizer", body.config, seed=body.seed)))


@router.get("/tokenizers/{tokenizer_id}", response_model=TokenizerInfo)
def get_tokenizer(request: Request, tokenizer_id: str) -> dict[str, Any]:
    record = registry(request).get(tokenizer_id)
    if record.kind != "tokenizer":
        raise NotFoundError(f"no tokenizer run with id {tokenizer_id!r}")
    data = run_info(record)
    try:
        manifest = read_manifest(record.run_dir)
    except (OSError, ValueError):
        manifest = {}
    data["stats"] = manifest.get("metrics", {}) or record.metrics
    data["artifacts"] = manifest.get("artifacts", [])
    return public(request, data)
