"""Abuse of the HTTP surface against a real uvicorn server: body limits counted as received (chunked bodies
too), bounded configs and tags, small list rows, and bad input answered with a 4xx error body, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from svc_helpers import ServerThread, raw_get

from tldrlab.config import get_settings
from tldrlab.errors import ConfigError
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.service.app import create_app

ERROR_KEYS = {"code", "message", "request_id"}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    monkeypatch.setenv("TLDRLAB_MAX_BODY_BYTES", str(256 * 1024))
    get_settings.cache_clear()
    with ServerThread(create_app()) as running:
        yield running


def _chunks(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"kind": "smoke", "config": {"steps": 2}, "tags": {"padding": "'
    sent = 0
    while sent < total:
        yield b"y" * min(chunk, total - sent)
        sent += chunk
    yield b'"}}'


def test_chunked_body_over_the_limit_gets_413_and_stores_nothing(server: ServerThread) -> None:
    # httpx sends a generator body with Transfer-Encoding: chunked (no Content-Length to check up front).
    response = httpx.post(
        f"{server.url}/runs",
        content=_chunks(8 * 1024 * 1024),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413, response.text[:300]
    assert set(response.json()) == ERROR_KEYS and response.json()["code"] == "payload_too_large"
    announced = httpx.post(f"{server.url}/runs", content=b"x" * (300 * 1024), timeout=30)
    assert announced.status_code == 413
    assert httpx.get(f"{server.url}/runs").json()["runs"] == []  # nothing reached the registry
    small = httpx.post(
        f"{server.url}/runs", content=_chunks(200, chunk=50), headers={"content-type": "application/json"}
    )
    assert small.status_code == 202  # chunked bodies under the limit still work


def test_a_compressed_body_is_refused_saying_so_and_stores_nothing(server: ServerThread) -> None:
    # Content-Encoding was ignored: a gzipped JSON body was a 400 "not valid JSON: can't decode byte 0x8b"
    # and a gzipped upload reached the data set route as its compressed bytes
    import gzip

    run = gzip.compress(json.dumps({"kind": "smoke", "config": {"steps": 2}}).encode())
    upload = gzip.compress(b'{"document": "a", "summary": "b"}\n')
    for path, body in (("/runs", run), ("/datasets?name=pairs.jsonl", upload)):
        for encoding in ("gzip", "br", "GZIP"):
            headers = {"content-type": "application/json", "content-encoding": encoding}
            refused = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=30)
            assert refused.status_code == 415, (path, encoding, refused.text)
            assert set(refused.json()) == ERROR_KEYS and refused.json()["code"] == "unsupported_media_type"
            shown = encoding.strip().lower()
            assert refused.json()["message"] == (
                f"request body: Content-Encoding {shown!r} is not read here: send the body uncompressed"
            )
    assert httpx.get(f"{server.url}/runs").json()["runs"] == []
    assert httpx.get(f"{server.url}/datasets").json()["datasets"] == []
    plain = json.dumps({"kind": "smoke", "config": {"steps": 2}}).encode()
    identity = {"content-type": "application/json", "content-encoding": "identity"}
    assert httpx.post(f"{server.url}/runs", content=plain, headers=identity).status_code == 202


def test_config_and_tags_are_capped_and_list_rows_stay_small(
    server: ServerThread, tldrlab_home: Path
) -> None:
    too_big = httpx.post(f"{server.url}/runs", json={"kind": "smoke", "config": {"x": "y" * 100_000}})
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    many_tags = {f"t{i}": "v" for i in range(100)}
    # tags out of bounds are an invalid body: 422, as a field the body's schema refuses (they were 400s)
    refused = httpx.post(f"{server.url}/runs", json={"kind": "smoke", "tags": many_tags})
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_input"
    long_tag = {"note": "z" * 5000}
    refused = httpx.post(f"{server.url}/runs", json={"kind": "smoke", "tags": long_tag})
    assert refused.status_code == 422 and set(refused.json()) == ERROR_KEYS
    # The largest config and tags allowed: the list rows stay small all the same.
    (tldrlab_home / "data").mkdir(parents=True)
    (tldrlab_home / "data" / "text.txt").write_text("some text\n")
    config = {"model": "char_lstm", "data": {"path": "text.txt", "prefix": "n" * 60_000}}
    tags = {f"t{i}": "v" * 256 for i in range(32)}
    created = httpx.post(f"{server.url}/runs/train", json={"config": config, "tags": tags})
    assert created.status_code == 202, created.text
    listing = httpx.get(f"{server.url}/runs")
    assert len(listing.content) < 16_000 and "config" not in listing.json()["runs"][0]
    detail = httpx.get(f"{server.url}/runs/{created.json()['id']}").json()
    assert detail["config"]["data"]["prefix"] == "n" * 60_000  # the detail route still has it


def _is_4xx_error(response: httpx.Response | tuple[int, bytes], what: str) -> None:
    status, body = (
        (response.status_code, response.content) if isinstance(response, httpx.Response) else response
    )
    assert 400 <= status < 500, (what, status, body[:300])
    assert set(json.loads(body)) == ERROR_KEYS, what


def test_bad_input_gets_a_4xx_never_a_500(server: ServerThread, tldrlab_home: Path) -> None:
    url = server.url
    run_id = create_run("smoke", {"steps": 2}).id
    long_name = "a" * 300  # one path component over NAME_MAX (255 bytes)
    _is_4xx_error(raw_get(server.port, f"/static/{long_name}"), "long static name")
    _is_4xx_error(raw_get(server.port, f"/static/{long_name}/x.js"), "long static dir")
    _is_4xx_error(raw_get(server.port, f"/artifacts/smoke/{run_id}/{long_name}"), "long artifact name")
    _is_4xx_error(raw_get(server.port, f"/artifacts/smoke/{run_id}/artifacts/{long_name}"), "long artifact")
    deep_array = b"[" * 50_000 + b"]" * 50_000
    deep_object = b'{"a":' * 2_000 + b"1" + b"}" * 2_000
    headers = {"content-type": "application/json"}
    for path in ("/threads", "/runs", "/stream_summary", "/tokenizers/train"):
        for body in (deep_array, deep_object):
            _is_4xx_error(httpx.post(url + path, content=body, headers=headers), f"deep JSON on {path}")
    wrapped = b'{"kind": "smoke", "config": {"a": ' + deep_object + b"}}"
    _is_4xx_error(httpx.post(f"{url}/runs", content=wrapped, headers=headers), "deep config")
    huge = str(10**20)
    for path in ("/runs", "/threads"):
        for param in ("offset", "limit"):
            _is_4xx_error(httpx.get(url + path, params={param: huge}), f"{path}?{param}={huge}")
    _is_4xx_error(httpx.get(f"{url}/runs/{run_id}/logs", params={"tail": huge}), "huge tail")
    surrogates = [
        ("/runs", b'{"kind": "smoke", "config": {"a": "\\ud800"}}'),
        ("/runs", b'{"kind": "smoke", "config": {}, "tags": {"a": "\\udc00"}}'),
        ("/runs", b'{"kind": "smoke", "config": {"\\ud800": 1}}'),
        ("/runs/train", b'{"config": {"data": {"path": "x\\ud800"}}}'),
        ("/threads", b'{"id": "t1", "posts": [{"id": "1", "number": 1, "text": "hi \\ud800 there"}]}'),
        ("/threads", b'{"id": "t\\udfff", "posts": [{"id": "1", "number": 1, "text": "hi there"}]}'),
        ("/stream_summary", b'{"thread_id": "t1", "q": "\\ud800"}'),
    ]
    for path, body in surrogates:
        _is_4xx_error(httpx.post(url + path, content=body, headers=headers), f"lone surrogate on {path}")
    # None of it left a run behind that a client could not read back.
    runs = httpx.get(f"{url}/runs")
    assert runs.status_code == 200 and [r["id"] for r in runs.json()["runs"]] == [run_id]


def test_pages_and_api_carry_security_headers(server: ServerThread) -> None:
    for path in ("/", "/runs-page", "/static/digest.js", "/runs", "/healthz", "/runs/nope"):
        response = httpx.get(server.url + path)
        csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers.get("x-content-type-options") == "nosniff", path
        assert response.headers.get("referrer-policy") == "no-referrer", path


def test_the_pages_link_an_icon_that_is_served_even_behind_an_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # there was no icon: every page load logged a 404 for /favicon.ico in the browser's console
    monkeypatch.setenv("TLDRLAB_API_KEY", "kV8q2Zr5Lm0xT3wY7bN4hJ6")
    get_settings.cache_clear()
    with ServerThread(create_app()) as running:
        for page in ("/", "/runs-page"):
            assert '<link rel="icon" href="/static/favicon.svg"' in httpx.get(running.url + page).text, page
        for path in ("/favicon.ico", "/static/favicon.svg"):
            icon = httpx.get(running.url + path)
            assert icon.status_code == 200, path
            assert icon.headers["content-type"] == "image/svg+xml", path
            assert icon.text.startswith("<svg "), path
        assert httpx.get(running.url + "/runs").status_code == 401  # the API itself stays closed


@pytest.mark.parametrize(
    "key",
    [
        "a" * 40,  # one character
        "abababababababababababab",  # two
        "0123456789abcdefghijklmnop",  # a sequence
        "passwordpassword12345678",  # a placeholder word
        "MyApiKeyChangeme-2024-prod",
    ],
)
def test_low_entropy_api_keys_are_refused(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLDRLAB_API_KEY", key)
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="TLDRLAB_API_KEY"):
        create_app()


def test_random_api_keys_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets

    for key in (secrets.token_urlsafe(16), secrets.token_hex(16), secrets.token_urlsafe(32)):
        monkeypatch.setenv("TLDRLAB_API_KEY", key)
        get_settings.cache_clear()
        assert create_app() is not None


def test_run_rows_are_read_without_their_config(tldrlab_home: Path) -> None:
    registry = open_registry()
    record = create_run("smoke", {"steps": 2, "note": "n" * 1000})
    registry.update(record.id, status=RunStatus.COMPLETED)
    (row,) = registry.list(kind="smoke", with_config=False)
    assert row.id == record.id and row.config == {} and row.status == RunStatus.COMPLETED
    (full,) = registry.list(kind="smoke")
    assert full.config["note"] == "n" * 1000
