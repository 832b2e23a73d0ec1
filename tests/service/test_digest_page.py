"""The digest page in real headless Chromium against a real uvicorn server: paste a thread, pick one, watch
the TL;DR stream in, see highlights marked at their exact spans, click a citation and land on the sentence."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from netutil import serve_app
from tldrlab.config import get_settings
from tldrlab.samples import sample_path
from tldrlab.service.app import create_app

REPO = Path(__file__).resolve().parents[2]
# The docs screenshot is refreshed only on request (TLDRLAB_UPDATE_SCREENSHOTS=1): a test run must leave the
# checkout as it found it.
SCREENSHOT_ENV = "TLDRLAB_UPDATE_SCREENSHOTS"


@pytest.fixture
def server_url() -> Iterator[str]:
    with serve_app(create_app()) as url:
        yield url


PASTED = {
    "id": "pasted-1",
    "title": "Bottle or can?",
    "posts": [
        {
            "id": "a",
            "number": 1,
            "kind": "question",
            "text": "Does beer taste better from a bottle or a can?",
        },
        {
            "id": "b",
            "number": 2,
            "kind": "answer",
            "score": 4,
            "text": "Cans keep light out completely, so the hops stay fresh. Bottles let some light in.",
        },
        {
            "id": "c",
            "number": 3,
            "kind": "answer",
            "score": 1,
            "text": "Pour it into a glass and you will not taste the difference.",
        },
    ],
}


def digest_in_page(page: Any, server_url: str, thread_id: str) -> None:
    """Open the digest page, pick the thread `thread_id` and wait until its digest is done."""
    page.goto(server_url + "/")
    page.select_option("#thread-select", thread_id)
    page.click("#digest-button")
    page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)


def in_viewport(page: Any, selector: str) -> bool:
    return bool(
        page.evaluate(
            """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                 return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0; }""",
            selector,
        )
    )


@pytest.mark.slow
def test_page_streams_cited_tldr_and_jumps_to_sentences(browser: Any, server_url: str) -> None:
    beer = json.loads(sample_path("beer_thread").read_text(encoding="utf-8"))
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=beer).status_code == 201
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server_url + "/")
        assert page.title().startswith("tldrlab")

        # paste a native thread: it is ingested and digested
        page.fill("#thread-input", json.dumps(PASTED))
        page.click("#ingest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        # one per answer sentence of this short thread: the question is never a bullet
        assert page.locator("#bullets li").count() == 3
        assert page.locator("#thread-title").inner_text() == "Bottle or can?"
        assert page.eval_on_selector("#thread-select", "s => s.value") == "pasted-1"

        # pick the ingested beer thread: tokens stream in before the final digest
        page.evaluate("document.body.dataset.digestDone = ''")
        page.evaluate(
            """() => { window.streamUpdates = 0;
                 new MutationObserver(() => window.streamUpdates++).observe(
                   document.getElementById('stream'),
                   {childList: true, characterData: true, subtree: true}); }"""
        )
        page.select_option("#thread-select", beer["id"])
        page.click("#digest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        assert page.evaluate("window.streamUpdates") >= 3  # five bullets arrived one by one
        bullets = page.locator("#bullets li")
        assert bullets.count() == 5

        # every highlight is marked at its exact span in its post
        response = httpx.post(server_url + "/stream_summary", json={"thread_id": beer["id"]}, timeout=60)
        digest = json.loads(response.text.split("event: digest\ndata: ")[1].split("\n")[0])
        marks = page.locator("mark.hl")
        assert marks.count() == len(digest["highlights"]) == 8
        for h in digest["highlights"]:
            mark = page.locator(f"mark.hl[data-hid='{h['id']}']")
            assert mark.inner_text() == h["text"]

        # click the citation of the last bullet: its sentence scrolls into view and flashes
        page.evaluate("window.scrollTo(0, 0)")
        citation = bullets.last.locator("a.cite").first
        target = citation.get_attribute("data-hid")
        assert target
        selector = f"mark.hl[data-hid='{target}']"
        page.set_viewport_size({"width": 1280, "height": 420})  # small window: the sentence starts off-screen
        page.evaluate("window.scrollTo(0, 0)")
        citation.click()
        page.wait_for_function(
            "(sel) => document.querySelector(sel).classList.contains('flash')", arg=selector, timeout=5000
        )
        assert in_viewport(page, selector)
        page.set_viewport_size({"width": 1280, "height": 860})
        citation.click()
        page.evaluate("document.getElementById('controls').scrollTop = 0")  # the TL;DR at the top of the shot
        shot = page.screenshot(full_page=False)
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get(SCREENSHOT_ENV) == "1":
            (REPO / "docs" / "img" / "digest_page.png").write_bytes(shot)
        assert not errors, errors
    finally:
        page.close()


def test_highlights_after_astral_characters_are_marked_at_their_spans(browser: Any, server_url: str) -> None:
    # the server's spans count code points (Python's str); the page sliced post.text by UTF-16 units, so
    # every highlight after an emoji was marked one unit off per emoji before it
    thread = {
        "id": "emoji-1",
        "title": "Cheers",
        "posts": [
            {"id": "a", "text": "🍺🍺 Which glass suits a stout? I like a tulip glass for the head."},
            {"id": "b", "text": "𝔗𝔥𝔦𝔰 one is fancy. A nonic pint glass is the classic choice for stouts."},
        ],
    }
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=thread).status_code == 201
        found = client.get("/threads/emoji-1/highlights", params={"k": 8}).json()["highlights"]
    page = browser.new_page()
    try:
        digest_in_page(page, server_url, "emoji-1")
        marked = page.eval_on_selector_all("mark.hl", "ms => ms.map(m => [m.dataset.hid, m.textContent])")
        assert marked and len(marked) == len(found), marked
        texts = {h["id"]: h["text"] for h in found}
        assert all(text == texts[hid] for hid, text in marked), (marked, texts)
    finally:
        page.close()


def test_a_thread_deleted_from_the_page_leaves_the_list_and_the_page(browser: Any, server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=PASTED).status_code == 201
    page = browser.new_page()
    try:
        digest_in_page(page, server_url, "pasted-1")
        page.once("dialog", lambda dialog: dialog.dismiss())  # asked, and said no: nothing happens
        page.click("#delete-button")
        assert page.eval_on_selector("#thread-select", "s => s.value") == "pasted-1"
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#delete-button")
        page.locator("#status", has_text="deleted thread").wait_for(timeout=30_000)
        assert page.text_content("#status") == "deleted thread pasted-1 (4 sentences)"
        assert page.is_hidden("#thread") and page.is_hidden("#tldr")
        options = page.eval_on_selector_all("#thread-select option", "os => os.map(o => o.value)")
        assert "pasted-1" not in options
    finally:
        page.close()
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.get("/threads/pasted-1").status_code == 404


def test_a_stored_thread_is_shown_on_load_and_digested_only_when_asked(browser: Any, server_url: str) -> None:
    # with threads stored the page opened on the first one picked and the whole thread pane blank until Digest
    # was pressed; now its posts show at once (a GET, no model) and the TL;DR box says to press Digest
    other = {**PASTED, "id": "pasted-2", "title": "Glass or bottle?"}
    with httpx.Client(base_url=server_url, timeout=60) as client:
        for thread in (PASTED, other):
            assert client.post("/threads", json=thread).status_code == 201
    page = browser.new_page()
    digests: list[str] = []
    page.on(
        "request", lambda request: digests.append(request.url) if "stream_summary" in request.url else None
    )
    try:
        page.goto(server_url + "/")
        page.wait_for_selector("#posts .post", timeout=5000)
        picked = page.eval_on_selector("#thread-select", "s => s.value")
        shown = other if picked == other["id"] else PASTED
        assert page.inner_text("#thread-title") == shown["title"]
        posts = page.eval_on_selector_all(".post .body", "bodies => bodies.map((b) => b.textContent)")
        assert posts == [p["text"] for p in shown["posts"]]
        assert page.is_visible("#tldr-hint") and "Press Digest" in page.inner_text("#tldr-hint")
        assert page.locator("mark.hl").count() == 0 and page.locator("#bullets li").count() == 0
        # another pick shows that thread at once too
        unpicked = PASTED if shown is other else other
        page.select_option("#thread-select", unpicked["id"])
        page.wait_for_function(
            "(t) => document.getElementById('thread-title').textContent === t", arg=unpicked["title"]
        )
        assert digests == []  # no digest was started by opening the page or picking a thread
        page.select_option("#summarizer-select", "extractive")
        page.click("#digest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        assert page.locator("#bullets li").count() == 3 and page.locator("mark.hl").count() >= 3
        assert page.is_hidden("#tldr-hint")
        assert len(digests) == 1
    finally:
        page.close()


def test_an_empty_store_says_how_to_add_a_thread(browser: Any, server_url: str) -> None:
    # with no thread ingested the page showed an empty list and a Digest button that only answered "pick a
    # thread first": now it says where threads come from, and Digest and Delete wait for one
    page = browser.new_page()
    try:
        page.goto(server_url + "/")
        page.wait_for_selector("#threads-empty", state="visible", timeout=5000)
        message = page.inner_text("#threads-empty")
        for says in ("Paste or upload a thread", "tldrlab demo", "tldrlab ingest FILE"):
            assert says in message, message
        assert page.is_disabled("#digest-button") and page.is_disabled("#delete-button")
        assert page.is_hidden("#thread-select")
        # a pasted thread ends the empty state: it is listed, picked and digested
        page.select_option("#summarizer-select", "extractive")
        page.fill("#thread-input", json.dumps(PASTED))
        page.click("#ingest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        assert page.is_hidden("#threads-empty") and page.is_visible("#thread-select")
        assert page.is_enabled("#digest-button") and page.is_enabled("#delete-button")
        assert page.eval_on_selector("#thread-select", "s => s.value") == PASTED["id"]
    finally:
        page.close()


def test_an_api_key_typed_into_the_page_loads_the_thread_list(
    browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with TLDRLAB_API_KEY set, the first load of the thread list is a 401; typing the key changed nothing
    # (the list stayed "(loading…)" and no control reloaded it), so only an ingest made the page usable
    key = "pg-" + "7f3a9c1e5b" * 3
    monkeypatch.setenv("TLDRLAB_API_KEY", key)
    get_settings.cache_clear()
    with serve_app(create_app()) as url:
        with httpx.Client(base_url=url, timeout=60, headers={"X-Api-Key": key}) as client:
            assert client.post("/threads", json=PASTED).status_code == 201
        page = browser.new_page()
        try:
            page.goto(url + "/")
            page.wait_for_function("() => document.getElementById('status').className === 'error'")
            assert "unauthorized" in page.inner_text("#status")
            assert page.eval_on_selector("#thread-select", "s => s.options[0].textContent") != "(loading…)"
            page.fill("#key-input", key)
            page.press("#key-input", "Tab")  # a change event, as leaving the field after typing makes
            page.wait_for_function("() => document.getElementById('thread-select').value === 'pasted-1'")
            assert page.inner_text("#status") == ""  # the 401's message is gone with its cause
            page.click("#digest-button")
            page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
            assert page.locator("#bullets li").count() == 3
            page.reload()  # the key is remembered, as on the runs page
            page.wait_for_function("() => document.getElementById('thread-select').value === 'pasted-1'")
        finally:
            page.close()


def test_a_stream_cut_before_its_digest_says_so(browser: Any, server_url: str) -> None:
    # a connection lost mid-stream (a proxy's timeout, the server restarting) ended the page's read loop
    # quietly: the status stayed "summarizing…" for ever, as if the TL;DR were still coming
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=PASTED).status_code == 201
        stream = client.post("/stream_summary", json={"thread_id": "pasted-1"}).text
    assert "event: digest" in stream
    cut = stream.split("event: digest")[0]  # what the server sent up to the digest, then nothing
    page = browser.new_page()
    try:
        page.route(
            "**/stream_summary",
            lambda route: route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=cut),
        )
        page.goto(server_url + "/")
        page.wait_for_function("() => document.getElementById('thread-select').value === 'pasted-1'")
        page.click("#digest-button")
        page.wait_for_function("() => document.getElementById('status').className === 'error'", timeout=30000)
        assert "the stream ended before the TL;DR was complete" in page.inner_text("#status")
    finally:
        page.close()


def test_an_uploaded_file_sets_the_format_it_is_in(browser: Any, server_url: str, tmp_path: Path) -> None:
    # only a .xml file changed the format selector: a Discourse topic .json went in as a native thread
    # ("invalid_input: id: Input should be a valid string"), and a native .json uploaded after a Posts.xml
    # went in as XML ("not valid XML")
    topic = {
        "id": 5,
        "title": "Pale ale hops",
        "post_stream": {
            "posts": [
                {
                    "id": 51,
                    "post_number": 1,
                    "username": "ann",
                    "cooked": "<p>Which hops suit a pale ale?</p>",
                },
                {
                    "id": 52,
                    "post_number": 2,
                    "username": "bob",
                    "cooked": "<p>Cascade gives grapefruit notes.</p>",
                },
            ]
        },
    }
    discourse, native = tmp_path / "topic.json", tmp_path / "thread.json"
    discourse.write_text(json.dumps(topic), encoding="utf-8")
    native.write_text(json.dumps(PASTED), encoding="utf-8")
    page = browser.new_page()
    try:
        page.goto(server_url + "/")
        for path, fmt, title in [
            (discourse, "discourse", "Pale ale hops"),
            (native, "native", "Bottle or can?"),
        ]:
            page.select_option("#format-select", "stackexchange")
            page.evaluate("document.body.dataset.digestDone = ''")
            page.set_input_files("#file-input", str(path))
            page.wait_for_function("(f) => document.getElementById('format-select').value === f", arg=fmt)
            page.wait_for_function("() => document.getElementById('thread-input').value.length > 0")
            page.click("#ingest-button")
            page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
            assert page.inner_text("#thread-title") == title
            page.fill("#thread-input", "")
    finally:
        page.close()


def test_long_unbroken_text_wraps_inside_the_page(browser: Any, server_url: str) -> None:
    # a post holding a long URL (or any long run without spaces) and a long title stretched the thread column
    # to the text's width: the page scrolled sideways 22 screens wide, the TL;DR still beside its first one
    url = "https://example.org/recipes/" + "a" * 3000
    thread = {
        "id": "wide-1",
        "title": "T" * 400,
        "posts": [
            {"id": "a", "text": f"See {url} for the recipe. Lagers want cold water."},
            {"id": "b", "text": "Use the key " + "b" * 2000 + " to log in. Ales like warmth."},
        ],
    }
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=thread).status_code == 201
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        digest_in_page(page, server_url, "wide-1")
        widths = page.evaluate(
            """() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,
                      document.getElementById('thread').getBoundingClientRect().right]"""
        )
        assert widths[0] <= widths[1] and widths[2] <= widths[1], widths
        assert page.locator("mark.hl").count() >= 2  # the marks are still there, wrapped
    finally:
        page.close()


def test_a_phone_sized_window_shows_the_page_without_sideways_scrolling(
    browser: Any, server_url: str
) -> None:
    # the page declares width=device-width but its grid had a fixed 420 px controls column beside the
    # thread: on a 390 px phone the thread started off-screen and the page scrolled sideways
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=PASTED).status_code == 201
    page = browser.new_page(viewport={"width": 390, "height": 800})
    try:
        page.goto(server_url + "/")
        page.wait_for_function("() => document.getElementById('thread-select').value === 'pasted-1'")
        page.click("#digest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        widths = page.evaluate(
            """() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,
                      document.getElementById('thread').getBoundingClientRect().left,
                      document.getElementById('thread').getBoundingClientRect().right]"""
        )
        assert widths[0] <= widths[1] and widths[2] >= 0 and widths[3] <= widths[1], widths
    finally:
        page.close()


def test_right_to_left_posts_and_bullets_are_laid_out_right_to_left(browser: Any, server_url: str) -> None:
    # every post, bullet and title was laid out in the page's left-to-right direction: an Arabic or Hebrew
    # sentence's final period stood at its left end and a mixed sentence's words came out of order
    thread = {
        "id": "rtl-1",
        "title": "בירה קרה או חמה?",
        "posts": [
            {"id": "a", "text": "האם להגיש בירה קרה? אני לא בטוח."},
            {"id": "b", "text": "يجب تقديم البيرة باردة قليلا. الجعة الداكنة أدفأ قليلا."},
            {"id": "c", "text": "Serve lagers cold. Ales are better a little warmer."},
        ],
    }
    hebrew = {
        "id": "rtl-2",
        "title": "כוסות",
        "posts": [
            {"id": "a", "text": "באיזו כוס להגיש סטאוט?"},
            {"id": "b", "text": "כוס טוליפ שומרת על הקצף. כוס פיינט רגילה מתאימה גם היא."},
        ],
    }
    with httpx.Client(base_url=server_url, timeout=60) as client:
        for body in (thread, hebrew):
            assert client.post("/threads", json=body).status_code == 201
    page = browser.new_page()
    try:
        digest_in_page(page, server_url, "rtl-1")
        direction = "(els) => els.map((el) => getComputedStyle(el).direction)"
        assert page.eval_on_selector_all(".post .body", direction) == ["rtl", "rtl", "ltr"]
        assert page.eval_on_selector_all("#thread-title", direction) == ["rtl"]
        # a thread in Hebrew only: its bullets are Hebrew sentences
        page.evaluate("document.body.dataset.digestDone = ''")
        page.select_option("#thread-select", "rtl-2")
        page.click("#digest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        assert (
            page.eval_on_selector_all("#bullets li", direction)
            == ["rtl"] * page.locator("#bullets li").count()
        )
        assert page.locator("#bullets li").count() >= 1
    finally:
        page.close()


def test_page_filter_reaches_a_thread_past_the_newest_thousand(browser: Any, server_url: str) -> None:
    """A store with more threads than the list shows: the API's `q` finds an old one by its title, and typing
    in the page's filter box lists it, so it can be picked and digested."""
    from tldrlab.data.threads import Post, Thread
    from tldrlab.store import open_store, tables

    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=PASTED).status_code == 201  # the oldest thread, really ingested
        store: Any = open_store(get_settings())  # 1001 newer rows written cheaply (no sentences)
        try:
            with store.db.transaction() as db:
                for i in range(1001):
                    post = Post(id="p", number=1, text="Hi.")
                    tables.write_thread_row(db, Thread(id=f"filler-{i}", title=f"Filler {i}", posts=[post]))
        finally:
            store.close()
        newest = client.get("/threads", params={"limit": 1000}).json()
        assert PASTED["id"] not in {t["id"] for t in newest["threads"]}
        assert newest["next_offset"] == 1000
        found = client.get("/threads", params={"q": "bottle OR"}).json()
        assert [t["id"] for t in found["threads"]] == [PASTED["id"]]
        assert found["next_offset"] is None

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server_url + "/")
        page.wait_for_selector("#thread-select option[value='filler-1000']", state="attached")
        assert page.locator(f"#thread-select option[value='{PASTED['id']}']").count() == 0
        page.select_option("#summarizer-select", "extractive")
        page.locator("#thread-filter").press_sequentially("bottle or")
        page.wait_for_selector("#thread-select[data-filter='bottle or']", state="attached")
        listed = page.eval_on_selector("#thread-select", "s => [...s.options].map(o => o.value)")
        assert listed == [PASTED["id"]]
        page.click("#digest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        assert page.locator("#thread-title").inner_text() == PASTED["title"]
        assert page.locator("#bullets li").count() >= 1
        assert errors == []
    finally:
        page.close()


def test_a_digest_asked_for_while_another_loads_its_thread_keeps_the_page(
    browser: Any, server_url: str
) -> None:
    # a second digest aborted only the first one's stream: the first's GET /threads/{id} still answered, late,
    # and its handler then showed the first thread's posts and cleared the TL;DR the second digest had made
    other = {**PASTED, "id": "pasted-2", "title": "Glass or bottle?"}
    with httpx.Client(base_url=server_url, timeout=60) as client:
        for thread in (PASTED, other):
            assert client.post("/threads", json=thread).status_code == 201
    held: list[Any] = []
    page = browser.new_page()
    try:
        page.route("**/threads/pasted-1", lambda route: held.append(route))  # answered only when let go below
        page.goto(server_url + "/")
        page.wait_for_function("() => document.getElementById('thread-select').options.length === 2")
        page.select_option("#thread-select", "pasted-1")
        page.click("#digest-button")
        page.wait_for_function("() => document.getElementById('status').textContent === 'loading thread…'")
        page.select_option("#thread-select", "pasted-2")
        page.click("#digest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        assert held, "the first digest's thread was never asked for"
        with contextlib.suppress(Exception):  # the page may have given up on it already
            held[0].continue_()
        page.wait_for_timeout(1000)  # time for a late answer to be handled
        assert page.inner_text("#thread-title") == "Glass or bottle?"
        assert page.locator("#bullets li").count() == 3
        assert page.inner_text("#status") == "done"
    finally:
        page.close()


def reingested(change: str) -> dict[str, Any]:
    """PASTED as re-ingested by `change`: its highlights' spans shift, or only what they cannot show."""
    thread = json.loads(json.dumps(PASTED))
    if change == "text shifted":
        thread["posts"][1]["text"] = "These days: " + thread["posts"][1]["text"]
    else:  # every highlight still slices the old text to its own: only the version tells them apart
        thread["title"] = "Bottle, can or glass?"
        thread["posts"][1]["accepted"] = True
    return thread


def shown_and_current(page: Any, server_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the page shows (title, post texts, marks) and the same of the stored thread and its digest."""
    shown = page.evaluate(
        """() => ({
             title: document.getElementById('thread-title').textContent,
             posts: [...document.querySelectorAll('.post .body')].map((b) => b.textContent),
             marks: [...document.querySelectorAll('mark.hl')].map((m) => [m.dataset.hid, m.textContent]),
             accepted: document.querySelectorAll('.post .accepted').length })"""
    )
    thread = httpx.get(server_url + "/threads/pasted-1").json()
    stream = httpx.post(server_url + "/stream_summary", json={"thread_id": "pasted-1"}, timeout=60).text
    digest = json.loads(stream.split("event: digest\ndata: ")[1].split("\n")[0])
    current = {
        "title": thread["title"],
        "posts": [p["text"] for p in thread["posts"]],
        "marks": sorted([h["id"], h["text"]] for h in digest["highlights"]),
        "accepted": sum(p["accepted"] for p in thread["posts"]),
    }
    return {**shown, "marks": sorted(shown["marks"])}, current


@pytest.mark.parametrize("change", ["text shifted", "retitled and accepted"])
def test_a_thread_reingested_between_the_pages_reads_is_shown_as_the_version_digested(
    browser: Any, server_url: str, change: str
) -> None:
    # the page reads the thread, then streams its digest: a re-ingest in between (another tab, a script) gave
    # highlights whose spans are offsets into the new text, and posts, title and flags of the old version.
    # The re-ingest is real, committed while the page's stream request is held.
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=PASTED).status_code == 201

    def reingest_first(route: Any) -> None:
        if not held:
            held.append(route.request.url)
            assert httpx.post(server_url + "/threads", json=reingested(change), timeout=60).status_code == 201
        route.continue_()

    held: list[str] = []
    page = browser.new_page()
    try:
        page.route("**/stream_summary", reingest_first)
        page.goto(server_url + "/")
        page.wait_for_function("() => document.getElementById('thread-select').value === 'pasted-1'")
        page.click("#digest-button")
        page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
        assert held, "the stream was not held"
        shown, current = shown_and_current(page, server_url)
        assert shown == current and current["marks"]
        assert current["title"] == reingested(change)["title"]
        assert current["posts"] == [p["text"] for p in reingested(change)["posts"]]
    finally:
        page.close()


def test_a_thread_reingested_again_while_the_page_reads_it_anew_is_shown_unmarked_and_said_so(
    browser: Any, server_url: str
) -> None:
    # the page reads the thread again for the digest's version, and that read meets a still newer one: no
    # highlight of the digest's version is marked in it, and the page says to digest again
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=PASTED).status_code == 201
    newest = {**reingested("retitled and accepted"), "title": "Glass, always"}
    requests: list[str] = []

    def reingest_before(route: Any) -> None:
        # the page's requests: the thread, the stream, the thread again (the digest is of another version)
        requests.append(route.request.url)
        version = {2: reingested("text shifted"), 3: newest}.get(len(requests))
        if version is not None:
            assert httpx.post(server_url + "/threads", json=version, timeout=60).status_code == 201
        route.continue_()

    page = browser.new_page()
    try:
        page.route("**/stream_summary", reingest_before)
        page.route("**/threads/pasted-1", reingest_before)
        page.goto(server_url + "/")
        page.wait_for_function("() => document.getElementById('thread-select').value === 'pasted-1'")
        page.click("#digest-button")
        page.wait_for_function(  # or done: the page showed the thread as if it were the digest's
            "() => document.getElementById('status').className === 'error'"
            " || document.body.dataset.digestDone === '1'",
            timeout=60_000,
        )
        assert "changed while it was being digested" in page.inner_text("#status")
        assert page.inner_text("#thread-title") == "Glass, always"
        assert page.locator("mark.hl").count() == 0
        assert [url.rsplit("/", 1)[1] for url in requests] == ["pasted-1", "stream_summary", "pasted-1"]
    finally:
        page.close()


# The screen box of the first occurrence of `needle` in the text under the element `selector`.
TEXT_BOX = """([selector, needle]) => {
  const walker = document.createTreeWalker(document.querySelector(selector), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(needle);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + needle.length);
    const box = range.getBoundingClientRect();
    return { left: box.left, right: box.right };
  }
  return null;
}"""


def test_a_right_to_left_override_in_an_author_or_post_stays_inside_it(browser: Any, server_url: str) -> None:
    # an author name (or a sentence) holding U+202E RIGHT-TO-LEFT OVERRIDE reversed what the page wrote after
    # it on the same line: the post's meta read "#2 · answer · live · 4 erocs" and a bullet's citation "]1["
    # stood left of the bullet, so a name could make a post look accepted or scored as it was not
    thread = {
        "id": "rlo-1",
        "title": "Override",
        "posts": [
            {"id": "a", "kind": "question", "text": "Which glass suits a stout?"},
            {
                "id": "b",
                "kind": "answer",
                "author": "\u202eevil",
                "score": 4,
                "text": "A tulip \u202eglass keeps the head.",
            },
        ],
    }
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=thread).status_code == 201
    page = browser.new_page()
    try:
        digest_in_page(page, server_url, "rlo-1")
        meta = ".post[data-post-id='b'] .meta"
        author = page.evaluate(TEXT_BOX, [meta, "evil"])
        score = page.evaluate(TEXT_BOX, [meta, "score 4"])
        assert author and score and score["left"] >= author["right"], (author, score)
        assert page.locator("#bullets li").count() == 1
        words = page.evaluate(TEXT_BOX, ["#bullets li", "glass"])
        citation = page.locator("#bullets li a.cite").bounding_box()
        assert words and citation and citation["x"] >= words["right"], (words, citation)
    finally:
        page.close()


def test_a_digest_asked_of_a_server_that_is_down_says_so(browser: Any) -> None:
    # with the server stopped (or restarting), Digest said only the browser's "Failed to fetch", which names
    # neither what failed nor what to check
    page = browser.new_page()
    try:
        with serve_app(create_app()) as url:
            with httpx.Client(base_url=url, timeout=60) as client:
                assert client.post("/threads", json=PASTED).status_code == 201
            page.goto(url + "/")
            page.wait_for_selector(".post[data-post-id='a']")
        page.click("#digest-button")
        page.wait_for_function(
            "() => document.getElementById('status').className === 'error'", timeout=10_000
        )
        assert page.inner_text("#status").startswith("could not reach the server")
    finally:
        page.close()


def test_a_right_to_left_override_in_a_title_stays_inside_it_in_the_thread_picker(
    browser: Any, server_url: str
) -> None:
    # a title holding U+202E reversed the "(N posts)" the picker writes after it ("(stsop 2) ..."); an option
    # is drawn by the browser, not laid out in the page, so its label is measured as the same text in a span
    thread = {
        "id": "rlo-title",
        "title": "\u202eBest glass",
        "posts": [
            {"id": "a", "kind": "question", "text": "Which glass suits a stout?"},
            {"id": "b", "kind": "answer", "text": "A tulip glass keeps the head."},
        ],
    }
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=thread).status_code == 201
    page = browser.new_page()
    try:
        page.goto(server_url + "/")
        page.wait_for_selector("#thread-select option[value='rlo-title']", state="attached")
        page.evaluate(
            """() => {
              const label = document.createElement("span");
              label.id = "picker-label";
              const option = document.querySelector("#thread-select option[value='rlo-title']");
              label.textContent = option.textContent;
              document.body.append(label);
            }"""
        )
        title = page.evaluate(TEXT_BOX, ["#picker-label", "glass"])
        count = page.evaluate(TEXT_BOX, ["#picker-label", "2 posts"])
        assert title and count and count["left"] >= title["right"], (title, count)
    finally:
        page.close()


def test_a_server_dying_mid_stream_is_said_so(browser: Any, server_url: str) -> None:
    # a server that died (or a network that went) after the stream began left the page saying only the
    # browser's "network error"; the stream here is served by a socket that sends a token and then closes
    # without ending its chunked body, as a killed server process does
    with httpx.Client(base_url=server_url, timeout=60) as client:
        assert client.post("/threads", json=PASTED).status_code == 201
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_half_a_stream() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"1e\r\nevent: token\ndata: Cans keep\n\n\r\n"
            )
            token_shown.wait(timeout=30)  # the page has read the token: the stream had begun when it dies

    token_shown = threading.Event()
    serving = threading.Thread(target=serve_half_a_stream, daemon=True)
    serving.start()
    page = browser.new_page()
    try:
        page.route(
            "**/stream_summary", lambda route: route.continue_(url=f"http://127.0.0.1:{port}/stream_summary")
        )
        page.goto(server_url + "/")
        page.wait_for_function("() => document.getElementById('thread-select').value === 'pasted-1'")
        page.click("#digest-button")
        page.wait_for_function("() => document.getElementById('stream').textContent === 'Cans keep'")
        token_shown.set()
        page.wait_for_function("() => document.getElementById('status').className === 'error'", timeout=30000)
        assert page.inner_text("#status").startswith("the connection to the server was lost mid-stream")
    finally:
        page.close()
        token_shown.set()
        serving.join(timeout=10)
        listener.close()


def test_the_thread_shown_is_kept_in_the_address_and_a_link_opens_it(browser: Any, server_url: str) -> None:
    # the page kept nothing in its address: a reload or a link shared showed the newest thread, not the one
    # being read, and a thread past the list's first page could not be linked to at all
    other = {**PASTED, "id": "pasted-2", "title": "Glass or can?"}
    with httpx.Client(base_url=server_url, timeout=60) as client:
        for thread in (PASTED, other):
            assert client.post("/threads", json=thread).status_code == 201
    page = browser.new_page()
    try:
        page.goto(server_url + "/#thread=pasted-1")  # not the newest: the list picks pasted-2 first
        expect(page.locator("#thread-title")).to_have_text("Bottle or can?", timeout=10_000)
        assert page.input_value("#thread-select") == "pasted-1"
        page.select_option("#thread-select", "pasted-2")
        expect(page.locator("#thread-title")).to_have_text("Glass or can?")
        assert page.evaluate("location.hash") == "#thread=pasted-2"
        page.reload()
        expect(page.locator("#thread-title")).to_have_text("Glass or can?", timeout=10_000)
        page.evaluate("location.hash = '#thread=pasted-1'")  # a link pasted into the open page's address
        expect(page.locator("#thread-title")).to_have_text("Bottle or can?", timeout=10_000)
        page.goto(server_url + "/#thread=no-such-thread")  # not in the list: read, and said not to exist
        page.wait_for_function("() => document.getElementById('status').className === 'error'")
        assert "no-such-thread" in page.inner_text("#status")
        assert page.input_value("#thread-select") == "no-such-thread"
    finally:
        page.close()
