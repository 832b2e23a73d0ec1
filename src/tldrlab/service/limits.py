"""Request limits: bodies counted as they arrive, strict JSON, bounded configs and tags.

- `BodyLimitMiddleware` (pure ASGI) refuses a body over the limit with 413 whether it was announced by
  `Content-Length` or sent chunked: it counts the bytes the application actually receives, so a chunked
  50 MB body stops being read at the limit instead of being buffered and stored. (FastAPI's own
  `max_body_size` counts the same way, but answers a declared-too-large body with a plain-text 413 and takes
  per-route limits at import time; this one keeps the `{code, message, request_id}` error body and reads the
  limits from the app's settings, larger for uploads.)
  A body sent with a `Content-Encoding` (gzip, ...) is refused with 415 before it is read: nothing here
  decodes one, so it reached the routes as its compressed bytes (a JSON route answered "not valid JSON: can't
  decode byte 0x8b", an upload was stored compressed under its given name).
- `StrictJSONRoute` is the route class of every router: request bodies are parsed by `parse_json`, which
  refuses (422) JSON nested deeper than `MAX_JSON_DEPTH`, a key given twice in one object, and strings holding
  lone UTF-16 surrogates (which JSON allows as `\\ud800` escapes but no database, file or UTF-8 response can
  store); malformed JSON is a 400, as FastAPI answers it. A route reading its body itself (`read_json_body`)
  answers the same.
- `check_config` / `check_tags` bound what a run stores in the registry: every list endpoint returns small
  rows, and one request cannot make every later `GET /runs` slow.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tldrlab.errors import InvalidInputError, InvalidRequestError, PayloadTooLargeError

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects accepted in a JSON body (deeper is refused before it is used)."""
MAX_TAGS = 32
"""Most tags on one run."""
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 256
_SURROGATE = re.compile("[\ud800-\udfff]")


LimitFor = Callable[[Scope], int]


class BodyLimitMiddleware:
    """413 for any request body over `limit_for(scope)` bytes, counted as received (chunked bodies too)."""

    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        headers = dict(scope.get("headers") or [])
        encoding = headers.get(b"content-encoding", b"").strip().lower()
        has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        if encoding not in (b"", b"identity") and has_body:
            shown = encoding.decode("latin-1")[:40]
            message = f"request body: Content-Encoding {shown!r} is not read here: send the body uncompressed"
            await _send_error(scope, send, 415, "unsupported_media_type", message)
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _send_413(scope, send, limit)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # fastapi.HTTPException passes through FastAPI's body parsing (which turns other errors
                    # into 400) to the app's error handler: the client gets a 413 error body.
                    raise HTTPException(413, detail=f"request body over {limit} bytes")
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await _send_413(scope, send, limit)


async def _send_413(scope: Scope, send: Send, limit: int) -> None:
    await _send_error(scope, send, 413, "payload_too_large", f"request body over {limit} bytes")


async def _send_error(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    """Answer `status` with the API's error body, before the application (and the request body) is reached;
    the connection is closed, as the unread body may still be on its way."""
    request_id = _request_id_header(scope)
    body = json.dumps({"code": code, "message": message, "request_id": request_id}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _request_id_header(scope: Scope) -> str:
    """The id the guard gave this request (it runs first), else a new one."""
    return str(scope.get("state", {}).get("request_id") or uuid.uuid4().hex)


# -- JSON --------------------------------------------------------------------------------------------------
class _DuplicateKeyError(Exception):
    """A key given twice in one JSON object. Not a ValueError, which `parse_json` answers as malformed
    JSON (400): the body is well-formed, only ambiguous."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's dict, refusing a key given twice: `json` keeps the last value silently, so a body with
    two `config` members ran the second and dropped the first (YAML config files refuse them too)."""
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise _DuplicateKeyError(key)
        value[key] = item
    return value


def parse_json(raw: bytes) -> Any:
    """Parse a request body: InvalidInputError (400) for malformed JSON; InvalidRequestError (422) for JSON
    nested too deep, giving a key twice in one object or holding lone surrogates, well-formed JSON that no
    route accepts, as a declared body's validation answers."""
    try:
        value = json.loads(raw, object_pairs_hook=_without_duplicate_keys)
    except _DuplicateKeyError as exc:
        raise InvalidRequestError(f"request body: the key {exc.key!r} is given twice in one object") from None
    except RecursionError as exc:
        raise InvalidRequestError(f"request body is nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    check_json_value(value, "body")
    return value


async def read_json_body(request: Request, missing: str) -> Any:
    """The JSON body of a route that reads and validates its body itself, answered as FastAPI answers a
    declared one: no body is a 422 (`missing` says what to send), malformed JSON a 400, anything else
    `parse_json` refuses a 422. The route raises InvalidRequestError (422) for a body it finds invalid."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequestError(f"the request body is missing: {missing}")
    return parse_json(raw)


def check_json_value(value: Any, where: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Walk a parsed JSON value (iteratively): depth and lone surrogates in keys and strings (422)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise InvalidRequestError(
                    f"{where}: strings must be valid Unicode (a lone surrogate was sent)"
                )
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise InvalidRequestError(f"{where}: JSON nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body())
            except InvalidInputError as exc:
                # fastapi.HTTPException, not TldrlabError: FastAPI's body parsing passes only those through.
                raise HTTPException(exc.http_status, exc.message) from exc
        return self._json


class StrictJSONRoute(APIRoute):
    """Route class of every router: JSON bodies are parsed by `parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


# -- what a run stores -------------------------------------------------------------------------------------
def check_config(config: dict[str, Any], max_bytes: int) -> None:
    """A run config must serialise to at most `max_bytes` of JSON (413) and be storable (422)."""
    check_json_value(config, "config")
    size = len(json.dumps(config, default=str).encode("utf-8"))
    if size > max_bytes:
        raise PayloadTooLargeError(f"config is {size} bytes of JSON; the limit is {max_bytes}")


def check_tags(tags: dict[str, Any]) -> None:
    """The tags of a submit request's body: a body field out of bounds, so a 422 as its schema's would be."""
    if len(tags) > MAX_TAGS:
        raise InvalidRequestError(f"tags: at most {MAX_TAGS} tags per run")
    for key, value in tags.items():
        if not isinstance(value, str):
            raise InvalidRequestError(f"tags.{key}: tag values are strings")
        if not 0 < len(key) <= MAX_TAG_KEY_CHARS:
            raise InvalidRequestError(f"tags: tag names are 1 to {MAX_TAG_KEY_CHARS} characters")
        if len(value) > MAX_TAG_VALUE_CHARS:
            raise InvalidRequestError(f"tags.{key}: tag values are at most {MAX_TAG_VALUE_CHARS} characters")
    check_json_value(tags, "tags")
