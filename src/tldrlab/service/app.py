"""The FastAPI application: middleware (request ids, body limits, API key, security headers), error bodies,
routers.

Every error leaves as `{code, message, request_id}` with a 4xx/5xx status; a traceback never reaches a client.
Routers live in `tldrlab.service.routes.*`, one module per resource, each exposing `router` (route class
`tldrlab.service.limits.StrictJSONRoute`).
"""

from __future__ import annotations

import hmac
import importlib
import itertools
import logging
import math
import uuid
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tldrlab.config import Settings, get_settings
from tldrlab.errors import ConfigError, TldrlabError, error_message, refused_write
from tldrlab.service.limits import BodyLimitMiddleware
from tldrlab.service.openapi import openapi_with_kind_configs
from tldrlab.service.periodic import check_retention_setting
from tldrlab.service.state import client_message

log = logging.getLogger("tldrlab.service")

ROUTER_MODULES = [
    "tldrlab.service.routes.health",
    "tldrlab.service.routes.threads",  # digest: threads, highlights, stream_summary
    "tldrlab.service.routes.runs",  # trainer service: runs, logs, events
    "tldrlab.service.routes.tokenizers",
    "tldrlab.service.routes.datasets",  # uploads API runs may read (dataset:<id>)
    "tldrlab.service.routes.files",  # the sha256-addressed file store (run archives)
    "tldrlab.service.routes.models",  # installed models and aliases
    "tldrlab.service.routes.cleanup",  # DELETE /runs/{id}, retention passes, cleanup events
    "tldrlab.service.routes.summarize",  # POST /summarize: plain summaries for a front end
    "tldrlab.service.routes.compare",  # runs side by side, regressions against a baseline
    "tldrlab.service.routes.artifacts",
    "tldrlab.service.routes.lvm",  # LVM concepts: chunk, ingest, predict, stats
    "tldrlab.service.routes.pages",  # the web pages at / and /runs
    "tldrlab.service.routes.docs",  # /docs and /redoc, with their assets served here (no CDN)
]
PLACEHOLDER_KEYS = {"changeme", "change-me", "secret", "password", "your-api-key", "xxx", "test", "apikey"}
PLACEHOLDER_WORDS = ("changeme", "change-me", "password", "secret", "apikey", "api-key", "example", "default")
MIN_KEY_BITS = 64.0
OPEN_PATHS = ("/healthz", "/readyz")
PAGE_PATHS = ("/", "/runs-page", "/favicon.ico")  # the pages and their icon: open, as /static is
UPLOAD_PATHS = ("/datasets",)
FILE_PATHS = ("/files",)
# The pages load only their own files and talk only to this server: no inline script or style, no plugins,
# no framing. Swagger UI's /docs page is the exception (its bootstrap is an inline script).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CONTENT_SECURITY_POLICY = (  # Swagger UI and ReDoc come from this server; they set inline styles
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def error_body(code: str, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": request_id, **extra}


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "")) or "-"


def key_strength_bits(key: str) -> float:
    """Rough strength of a key: its length times the entropy of its own character distribution (bits), zero
    for keys made of placeholder words or mostly of runs and sequences (aaaa, 1234, abcd)."""
    if not key or any(word in key.lower() for word in PLACEHOLDER_WORDS):
        return 0.0
    steps = [ord(b) - ord(a) for a, b in itertools.pairwise(key)]
    if steps and sum(1 for d in steps if abs(d) <= 1) / len(steps) >= 0.5:
        return 0.0
    counts = Counter(key)
    entropy = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    return entropy * len(key)


def check_api_key_setting(settings: Settings) -> str | None:
    """The configured API key, refusing placeholders, short and low-entropy keys at start-up."""
    if settings.api_key is None:
        return None
    key = settings.api_key.get_secret_value()
    if key.strip().lower() in PLACEHOLDER_KEYS or len(key) < 16:
        raise ConfigError("TLDRLAB_API_KEY looks like a placeholder: use a random key of 16+ characters")
    if key_strength_bits(key) < MIN_KEY_BITS:
        raise ConfigError(
            "TLDRLAB_API_KEY is too easy to guess (repeated or sequential characters, or a placeholder "
            "word): use a random key, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return key


JSON_TYPE_NAMES = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def body_not_an_object(content_type: str | None, value: Any) -> str:
    """What a client is told of a request body that did not give a route's JSON object: sent with a
    Content-Type other than JSON (FastAPI then parses nothing), or JSON of another type."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        sent = f"this request's is {media_type}" if media_type else "this request has none"
        return f"the request body is read as JSON only: send it with Content-Type: application/json ({sent})"
    what = "null" if value is None else JSON_TYPE_NAMES.get(type(value), "not an object")
    return f"the request body must be a JSON object (the route's fields, {{}} for defaults), not {what}"


class GuardMiddleware:
    """Request ids (echoed, generated when absent), the API key, and security headers on every response."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        incoming = headers.get("x-request-id", "")
        request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        extra = [
            ("X-Request-ID", request_id),
            *SECURITY_HEADERS.items(),
            (
                "Content-Security-Policy",
                DOCS_CONTENT_SECURITY_POLICY if path in DOCS_PATHS else CONTENT_SECURITY_POLICY,
            ),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in extra:
                    response_headers[name] = value
            await send(message)

        if (
            self.api_key
            and path not in OPEN_PATHS
            and not path.startswith("/static")
            and path not in PAGE_PATHS
            and not hmac.compare_digest(headers.get("x-api-key", "").encode(), self.api_key.encode())
        ):
            response = JSONResponse(
                error_body("unauthorized", "missing or wrong X-Api-Key header", request_id), status_code=401
            )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings | None = None, *, local_workers: int = 0) -> FastAPI:
    """The API. `local_workers`: how many workers the process serving it started (`tldrlab serve --workers`);
    with any, killed command-line runs are left to their reconcile (`state.settle_orphans_here`)."""
    settings = settings or get_settings()
    api_key = check_api_key_setting(settings)
    settings = check_retention_setting(settings)  # the prune endpoint's policy; refused at start-up
    app = FastAPI(
        title="tldrlab",
        version="0.1.0",
        description="TL;DR digests and a trainer service.",
        docs_url=None,  # routes/docs.py serves /docs and /redoc with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.local_workers = local_workers

    def body_limit(scope: Any) -> int:
        if scope.get("method") == "POST" and scope.get("path") in UPLOAD_PATHS:
            return settings.max_upload_bytes
        if scope.get("method") == "POST" and scope.get("path") in FILE_PATHS:
            return settings.max_file_bytes
        return settings.max_body_bytes

    # Pure ASGI middleware (no BaseHTTPMiddleware: its task group would wrap the body limit's 413 into an
    # ExceptionGroup that FastAPI answers with 400). Added last = outermost: the guard runs first.
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(GuardMiddleware, api_key=api_key)

    @app.exception_handler(TldrlabError)
    async def tldrlab_error(request: Request, exc: TldrlabError) -> JSONResponse:
        message = client_message(exc, request_id=_request_id(request), code=exc.code)
        body = error_body(exc.code, message, _request_id(request))
        if isinstance(exc.details.get("errors"), list):  # per-field problems of an invalid config
            body["errors"] = exc.details["errors"]
        return JSONResponse(body, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {error_message(first)}" if where else error_message(first)
        if first.get("type") == "json_invalid":
            message = "request body is not valid JSON"
        elif first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
            message = "the request body is missing: send a JSON object (the route's fields, {} for defaults)"
        elif first.get("type") == "model_attributes_type" and tuple(first.get("loc", ())) == ("body",):
            # the whole body is not an object; pydantic's "Input should be a valid dictionary or object to
            # extract fields from" named nothing, and told a client whose body was JSON sent as text/plain
            # (or as curl -d sends it, form-encoded) nothing of the header it had to fix
            message = body_not_an_object(request.headers.get("content-type"), first.get("input"))
        body = error_body("invalid_input", message, _request_id(request))
        return JSONResponse(body, status_code=422 if first.get("type") != "json_invalid" else 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "invalid_input",
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            416: "range_not_satisfiable",
            422: "invalid_input",
        }.get(exc.status_code, "http_error")
        return JSONResponse(  # the exception's headers too (a 416's Content-Range, a 405's Allow)
            error_body(code, str(exc.detail), _request_id(request)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        refused = refused_write(exc)
        if refused is not None:
            # The server's disk refused a write (full, a file-size limit, mounted read-only): not a bug and
            # not the client's fault, and it was a 500 "internal error". The cause's code and HTTP status; the
            # operator gets the path and the traceback in the log, the client no server path.
            log.error(
                f"a write was refused: {refused.what}",
                exc_info=exc,
                extra={"fields": {"request_id": _request_id(request), "code": refused.code}},
            )
            return JSONResponse(
                error_body(refused.code, refused.for_clients(), _request_id(request)),
                status_code=refused.http_status,
            )
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
    app.openapi = lambda: openapi_with_kind_configs(app)  # type: ignore[method-assign]
    return app
