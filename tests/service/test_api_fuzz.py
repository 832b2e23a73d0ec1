"""Property-based fuzzing of every route of the app (its OpenAPI schema, plus the routes left out of it) on a
real uvicorn server: whatever the path, query and body, the answer is never a 5xx, and every error carries
`{code, message, request_id}`.

Inputs mix what the schema says (parameter types, the body's fields) with what it does not expect: huge and
negative numbers, NaN, long strings, NUL and control characters, lone surrogates (as JSON escapes and as
invalid UTF-8 in URLs), deep JSON, raw bytes. Known ids (a run, a thread) are drawn too, so the fuzzing
reaches past the first 404. Time-boxed by the examples per route (about 20 s in all here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from netutil import serve_app
from tldrlab.runs import create_run
from tldrlab.service.app import create_app

EXAMPLES = 12
DEEP = b"<JSON nested 3000 levels deep>"
KNOWN = {"run_id": "", "thread_id": "fuzz-thread"}


def _flat(routes: list[Any]) -> Iterator[Any]:
    """Routes, with included routers opened up (FastAPI keeps each included router as one entry)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat(inner.routes)
        else:
            yield route


def _routes() -> list[tuple[str, str, dict[str, Any]]]:
    app = create_app()
    schema = app.openapi()
    found = []
    for route in _flat(app.routes):
        if not isinstance(route, Route) or route.methods is None:
            continue
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            operation = schema["paths"].get(route.path, {}).get(method.lower(), {})
            found.append((method, route.path, operation))
    return found


ROUTES = _routes()
COMPONENTS = create_app().openapi().get("components", {}).get("schemas", {})

nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "..",
            "../../etc/passwd",
            "/etc/passwd",
            "%2e%2e%2f",
            "\x00",
            "a" * 300,
            "é" * 200,
            "\ud800",
            "\udfff",
            "dataset:nope",
            "run:nope/x",
            "javascript:alert(1)",
            "NaN",
            "-1",
            "1e309",
            "{}",
            "[]",
        ]
    ),
)
nasty_int = st.one_of(
    st.integers(min_value=-3, max_value=1100),
    st.sampled_from([-(2**63), 2**63, 10**20, -(10**20), 0, 2**31]),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), nasty_int, st.floats(allow_nan=True, allow_infinity=True), nasty_text
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)),
    max_leaves=12,
)


def _schema_of(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return dict(COMPONENTS.get(ref.rsplit("/", 1)[-1], {}))
    return schema


def _shaped(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Objects with (some of) the schema's own fields, holding anything: past the top-level 422."""
    properties = _schema_of(schema).get("properties", {})
    if not properties:
        return json_value
    field_values = {
        name: st.one_of(json_value, _known_value(name), _shaped(spec) if "$ref" in spec else json_value)
        for name, spec in properties.items()
    }
    return st.fixed_dictionaries({}, optional=field_values)


def _known_value(name: str) -> st.SearchStrategy[Any]:
    if name == "kind":
        return st.sampled_from(["smoke", "train", "tokenizer", "generate", "lvm_ingest", "nope"])
    if name == "config":
        return st.one_of(
            st.fixed_dictionaries({}, optional={"steps": nasty_int, "data": json_value, "model": nasty_text}),
            st.just({"model": "char_lstm", "data": {"path": "../x"}}),
        )
    if name == "thread_id":
        return st.just(KNOWN["thread_id"])
    return json_value


def _parameter(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = spec.get("schema", {}).get("type")
    if kind == "integer":
        return st.one_of(nasty_int, nasty_text)
    if kind == "number":
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True), nasty_int, nasty_text)
    if kind == "boolean":
        return st.one_of(st.booleans(), nasty_text)
    return nasty_text


def _url_part(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return quote(text, safe="", errors="surrogatepass") or "x"


@st.composite
def requests(draw: st.DrawFn, method: str, path: str, operation: dict[str, Any]) -> dict[str, Any]:
    parameters = {p["name"]: p for p in operation.get("parameters", [])}
    url = path
    for name in [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]:
        known = KNOWN.get(name) or KNOWN["run_id"]
        value = draw(st.one_of(st.just(known), nasty_text, st.just("smoke")))
        url = url.replace("{" + name + "}", _url_part(value)).replace("{" + name + ":path}", _url_part(value))
    query = []
    for name, spec in parameters.items():
        if spec.get("in") == "query" and draw(st.booleans()):
            value = draw(_parameter(spec))
            query.append(f"{quote(name)}={_url_part(value)}")
    if draw(st.booleans()):
        query.append(f"{_url_part(draw(nasty_text))}={_url_part(draw(nasty_text))}")
    if query:
        url += "?" + "&".join(query)
    body: bytes | None = None
    if method in ("POST", "PUT", "PATCH"):
        content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        choice = draw(st.integers(min_value=0, max_value=3))
        if choice == 0:
            body = draw(st.binary(max_size=64))
        elif choice == 1:
            body = json.dumps(draw(json_value)).encode()
        else:
            shaped = draw(_shaped(content.get("schema", {"properties": {"thread_id": {}, "kind": {}}})))
            body = json.dumps(shaped).encode()
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            body = DEEP  # (built when sent: a readable failing example)
    return {"method": method, "url": url, "body": body}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    # One server for every route's examples (module scope: the autouse home fixture is per test).
    home = tmp_path_factory.mktemp("fuzz-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("TLDRLAB_HOME", str(home))
    for name in ("TLDRLAB_DATABASE_URL", "TLDRLAB_QUEUE_URL", "TLDRLAB_API_KEY"):
        mp.delenv(name, raising=False)
    from tldrlab.config import get_settings

    get_settings.cache_clear()
    KNOWN["run_id"] = create_run("smoke", {"steps": 2}).id
    with serve_app(create_app()) as url, httpx.Client(base_url=url, timeout=60) as client:
        thread = {"id": KNOWN["thread_id"], "posts": [{"id": "1", "number": 1, "text": "Hello there. Bye."}]}
        assert client.post("/threads", json=thread).status_code == 201
        yield client
    mp.undo()
    get_settings.cache_clear()


def _send(client: httpx.Client, request: dict[str, Any]) -> tuple[int, bytes]:
    body = b'{"a":' * 3000 + b"1" + b"}" * 3000 if request["body"] == DEEP else request["body"]
    headers = {"content-type": "application/json"} if body is not None else {}
    with client.stream(request["method"], request["url"], content=body, headers=headers) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, b""  # a live stream: its status is the answer
        return response.status_code, response.read()


@pytest.mark.parametrize(("method", "path", "operation"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_no_route_answers_5xx(
    server: httpx.Client, method: str, path: str, operation: dict[str, Any]
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(request=requests(method, path, operation))
    def check(request: dict[str, Any]) -> None:
        status, body = _send(server, request)
        assert status < 500, (request, status, body[:300])
        if status >= 400:
            error = json.loads(body)
            assert {"code", "message", "request_id"} <= set(error), (request, body[:300])

    check()


def test_the_fuzzing_reaches_every_route() -> None:
    paths = {path for _, path, _ in ROUTES}
    assert {"/runs", "/threads", "/datasets", "/static/{name:path}", "/artifacts/{kind}/{run_id}"} <= paths
    assert len(ROUTES) >= 30
