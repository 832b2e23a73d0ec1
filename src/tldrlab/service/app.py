"""The FastAPI application: middleware (request ids, body limits, API key), error bodies, routers.

Every error leaves as `{code, message, request_id}` with a 4xx/5xx status; a traceback never reaches a client.
Routers live in `tldrlab.service.routes.*`, one module per resource, each exposing `router`.
"""

from __future__ import annotations

import hmac
import importlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tldrlab.config import Settings, get_settings
from tldrlab.errors import ConfigError, TldrlabError

log = logging.getLogger("tldrlab.service")

ROUTER_MODULES = [
    "tldrlab.service.routes.health",
    "tldrlab.service.routes.threads",  # digest: threads, highlights, stream_summary
    "tldrlab.service.routes.runs",  # trainer service: runs, logs, events
    "tldrlab.service.routes.tokenizers",
    "tldrlab.service.routes.artifacts",
    "tldrlab.service.routes.pages",  # the web pages at / and /runs
]
PLACEHOLDER_KEYS = {"changeme", "change-me", "secret", "password", "your-api-key", "xxx", "test", "apikey"}
OPEN_PATHS = ("/healthz", "/readyz")


def error_body(code: str, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": request_id, **extra}


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "")) or "-"


def check_api_key_setting(settings: Settings) -> str | None:
    """The configured API key, refusing placeholders and short keys at start-up."""
    if settings.api_key is None:
        return None
    key = settings.api_key.get_secret_value()
    if key.strip().lower() in PLACEHOLDER_KEYS or len(key) < 16:
        raise ConfigError("TLDRLAB_API_KEY looks like a placeholder: use a random key of 16+ characters")
    return key


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    api_key = check_api_key_setting(settings)
    app = FastAPI(title="tldrlab", version="0.1.0", description="TL;DR digests and a trainer service.")
    app.state.settings = settings

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        incoming = request.headers.get("x-request-id", "")
        request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        request.state.request_id = request_id
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            response: Response = JSONResponse(
                error_body(
                    "payload_too_large", f"request body over {settings.max_body_bytes} bytes", request_id
                ),
                status_code=413,
            )
        elif (
            api_key
            and request.url.path not in OPEN_PATHS
            and not request.url.path.startswith("/static")
            and request.url.path not in ("/", "/runs-page")
            and not hmac.compare_digest(request.headers.get("x-api-key", "").encode(), api_key.encode())
        ):
            response = JSONResponse(
                error_body("unauthorized", "missing or wrong X-Api-Key header", request_id), status_code=401
            )
        else:
            response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        return response

    @app.exception_handler(TldrlabError)
    async def tldrlab_error(request: Request, exc: TldrlabError) -> JSONResponse:
        body = error_body(exc.code, exc.message, _request_id(request))
        return JSONResponse(body, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = (
            f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))
        )
        if first.get("type") == "json_invalid":
            message = "request body is not valid JSON"
        body = error_body("invalid_input", message, _request_id(request))
        return JSONResponse(body, status_code=422 if first.get("type") != "json_invalid" else 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail), _request_id(request)), status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"fields": {"request_id": _request_id(request)}})
        return JSONResponse(
            error_body("internal_error", "internal error; see the server log", _request_id(request)),
            status_code=500,
        )

    for name in ROUTER_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that resource is not built yet
                continue
            raise
        app.include_router(module.router)
    return app
