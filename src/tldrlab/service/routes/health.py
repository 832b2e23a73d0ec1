"""`GET /healthz` (the process is up) and `GET /readyz` (its backing services answer).

Other packages add readiness checks with `register_check(name, fn)`; fn returns None when fine or a short
reason when not.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tldrlab.runs import open_registry
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.state import readiness_problem

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)
ReadinessCheck = Callable[[Request], str | None]
CHECKS: dict[str, ReadinessCheck] = {}


def register_check(name: str, check: ReadinessCheck) -> None:
    CHECKS[name] = check


def _database(request: Request) -> str | None:

    try:
        open_registry(request.app.state.settings).db.query("SELECT 1 AS ok")
    except Exception as exc:
        return readiness_problem(exc)
    return None


register_check("database", _database)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    results = {name: check(request) for name, check in CHECKS.items()}
    ready = all(v is None for v in results.values())
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {k: ("ok" if v is None else v) for k, v in results.items()},
    }
    return JSONResponse(body, status_code=200 if ready else 503)
