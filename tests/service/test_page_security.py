"""The digest page cannot be turned against its user: non-http(s) links are refused at ingest, a `javascript:`
URL already in the store never becomes a link nor runs (real Chromium, real uvicorn, real store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from netutil import serve_app
from tldrlab.runs.db import connect
from tldrlab.service.app import create_app
from tldrlab.store import store_location

PAYLOAD = "javascript:alert(document.domain)//"
THREAD = {
    "id": "links-1",
    "title": "Which glass for a stout?",
    "url": "https://forum.example/t/links-1",
    "posts": [
        {"id": "q", "number": 1, "kind": "question", "text": "Which glass suits a stout best?"},
        {
            "id": "a",
            "number": 2,
            "kind": "answer",
            "text": "A tulip glass keeps the head. A nonic pint is fine too.",
            "url": "https://forum.example/t/links-1/2",
        },
    ],
}


@pytest.fixture
def server_url() -> Iterator[str]:
    with serve_app(create_app()) as url:
        yield url


def _with_url(url: str, where: str = "post") -> dict[str, Any]:
    thread = json.loads(json.dumps(THREAD))
    if where == "post":
        thread["posts"][1]["url"] = url
    else:
        thread["url"] = url
    return thread


@pytest.mark.parametrize(
    "url",
    [
        PAYLOAD,
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/x",
        "/relative/path",
        "file:///etc/passwd",
    ],
)
def test_only_http_links_are_stored(server_url: str, url: str) -> None:
    for where in ("post", "thread"):
        response = httpx.post(f"{server_url}/threads", json=_with_url(url, where), timeout=120)
        assert response.status_code == 422, (where, url, response.text[:200])  # an invalid body, not 400
        assert "http" in response.json()["message"]


@pytest.mark.slow
def test_a_stored_javascript_url_never_runs(browser: Any, server_url: str) -> None:
    assert httpx.post(f"{server_url}/threads", json=THREAD, timeout=120).status_code == 201
    # A link stored before links were checked (written straight into the store, as an older version could).
    db = connect(f"sqlite:///{store_location()[1]}")
    (row,) = db.query("SELECT data FROM store_threads WHERE id = ?", ("links-1",))
    data = json.loads(row["data"])
    data["posts"][1]["url"] = PAYLOAD
    data["url"] = PAYLOAD
    db.execute("UPDATE store_threads SET data = ? WHERE id = ?", (json.dumps(data), "links-1"))
    db.execute("UPDATE store_sentences SET url = ? WHERE thread_id = ?", (PAYLOAD, "links-1"))

    api = httpx.get(f"{server_url}/threads/links-1").json()
    assert api["url"] is None and all(p["url"] is None for p in api["posts"])

    page = browser.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server_url + "/")
        page.wait_for_selector('#thread-select option[value="links-1"]', state="attached")
        page.select_option("#thread-select", "links-1")
        page.click("#digest-button")
        page.wait_for_function("() => document.body.dataset.digestDone === '1'", timeout=60_000)
        hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
        assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")], hrefs
        # Even a javascript: link put into the page by hand does not run under the page's CSP.
        page.evaluate(
            """(payload) => { const a = document.createElement('a'); a.id = 'planted'; a.href = payload;
                 a.textContent = 'planted'; document.body.append(a); }""",
            PAYLOAD,
        )
        page.click("#planted")
        for link in page.query_selector_all("#posts a, #bullets a"):
            link.click()
        page.wait_for_timeout(500)
        assert dialogs == [] and errors == []
        assert page.evaluate("document.title").startswith("tldrlab")
    finally:
        page.close()
