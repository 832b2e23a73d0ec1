"""The digest API: POST /threads, GET /threads[/{id}[/highlights]], POST /stream_summary (SSE), bad input."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from digest.digest_helpers import FakeChat, fake_openai_server
from tinylm import model_run, save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.config import get_settings
from tldrlab.data.readers import read_threads
from tldrlab.errors import InvalidInputError
from tldrlab.samples import sample_path
from tldrlab.service.app import create_app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client


def beer_thread() -> dict[str, Any]:
    return dict(json.loads(sample_path("beer_thread").read_text(encoding="utf-8")))


def sse_events(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        events.append((name, "\n".join(data)))
    return events


def assert_error(response: Any, status: int, code: str, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and text in body["message"]
    assert body["request_id"] and response.headers["x-request-id"] == body["request_id"]


def test_ingest_list_get_and_highlights(client: TestClient) -> None:
    thread = beer_thread()
    created = client.post("/threads", json=thread)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["thread_ids"] == [thread["id"]]
    assert body["stats"]["embedded"] == len(thread["posts"]) and body["stats"]["sentences"] > 5

    again = client.post("/threads", json=thread).json()
    assert again["stats"]["embedded"] == 0 and again["stats"]["skipped_unchanged"] == len(thread["posts"])

    listed = client.get("/threads").json()["threads"]
    assert [t["id"] for t in listed] == [thread["id"]] and listed[0]["posts"] == len(thread["posts"])
    got = client.get(f"/threads/{thread['id']}").json()
    assert got["title"] == thread["title"] and len(got["posts"]) == len(thread["posts"])

    highlights = client.get(f"/threads/{thread['id']}/highlights", params={"k": 3}).json()["highlights"]
    assert len(highlights) == 3
    texts = {p["id"]: p["text"] for p in thread["posts"]}
    for h in highlights:
        assert texts[h["post_id"]][h["start"] : h["end"]] == h["text"]
        assert h["url"].startswith("https://beer.stackexchange.com/")
    focused = client.get(f"/threads/{thread['id']}/highlights", params={"k": 1, "q": "roasted barley"}).json()
    assert "roast" in focused["highlights"][0]["text"].lower() and focused["q"] == "roasted barley"
    scores = {}
    for scorer in ("heuristic", "learned_v1"):
        response = client.get(f"/threads/{thread['id']}/highlights", params={"k": 3, "scorer": scorer})
        assert response.status_code == 200, response.text
        scores[scorer] = [h["score"] for h in response.json()["highlights"]]
    assert scores["heuristic"] != scores["learned_v1"]  # the named scorer really ranked them
    wrong = client.get(f"/threads/{thread['id']}/highlights", params={"scorer": "magic"})
    assert 400 <= wrong.status_code < 500 and "Traceback" not in wrong.text


def test_stream_summary_sends_tokens_then_digest_then_done(client: TestClient) -> None:
    thread = beer_thread()
    client.post("/threads", json=thread)
    with client.stream(
        "POST", "/stream_summary", json={"thread_id": thread["id"], "k": 6, "max_bullets": 3}
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = sse_events(text)
    names = [name for name, _ in events]
    assert names == ["notice", "token", "token", "token", "digest", "done"]  # no model here: extractive
    assert "the digest model is turned off" in json.loads(events[0][1])["message"]
    digest = json.loads(events[-2][1])
    assert digest["notices"] == [json.loads(events[0][1])["message"]] and digest["draft"] == []
    assert len(digest["bullets"]) == 3 and len(digest["highlights"]) == 6
    ids = {h["id"] for h in digest["highlights"]}
    assert all(set(b["citations"]) <= ids and b["citations"] for b in digest["bullets"])
    assert "".join(data for name, data in events if name == "token") == digest["text"]
    cached = client.post("/stream_summary", json={"thread_id": thread["id"], "k": 6, "max_bullets": 3})
    assert json.loads(sse_events(cached.text)[-2][1])["cached"] is True


def test_highlights_and_the_tldr_stream_name_the_thread_version_they_index_into(client: TestClient) -> None:
    # the page reads a thread and its highlights (or TL;DR) in two requests: a re-ingest committing between
    # them marked one version's offsets in the other's text, and no answer said which version it was of
    thread = beer_thread()
    two_stage = {"draft": "extractive", "final": "extractive"}  # a draft event too, with no model
    digest_request = {"thread_id": thread["id"], "summarizer": "two_stage", "params": two_stage}

    def versions() -> list[str]:
        """The content hashes of GET /threads/{id}, its highlights, and the stream's draft and digest."""
        shown = client.get(f"/threads/{thread['id']}").json()["content_hash"]
        highlights = client.get(f"/threads/{thread['id']}/highlights").json()["content_hash"]
        events = dict(sse_events(client.post("/stream_summary", json=digest_request).text))
        return [
            shown,
            highlights,
            *(json.loads(events[name])["content_hash"] for name in ("draft", "digest")),
        ]

    assert client.post("/threads", json=thread).status_code == 201
    first = versions()
    assert len(set(first)) == 1 and first[0]
    thread["posts"][1]["text"] = "Edited since: " + thread["posts"][1]["text"]
    assert client.post("/threads", json=thread).status_code == 201  # a real re-ingest of a changed thread
    now = versions()
    assert len(set(now)) == 1 and now[0] != first[0]

    # a client may ask for the highlights of the version it shows: 409 once the thread has moved on
    path = f"/threads/{thread['id']}/highlights"
    assert_error(client.get(path, params={"version": first[0]}), 409, "thread_changed", now[0])
    assert client.get(path, params={"version": now[0]}).json()["content_hash"] == now[0]


def test_a_tldr_stream_of_a_version_the_thread_moved_on_from_is_a_409_before_it_streams(
    client: TestClient,
) -> None:
    # the page shows version A and asks for a TL;DR: without a version to check, the stream answered with
    # citations (offsets) into version B when the thread was re-ingested in between
    thread = beer_thread()
    assert client.post("/threads", json=thread).status_code == 201
    first = client.get(f"/threads/{thread['id']}").json()["content_hash"]
    request = {"thread_id": thread["id"], "summarizer": "extractive", "version": first}
    events = dict(sse_events(client.post("/stream_summary", json=request).text))
    assert json.loads(events["digest"])["content_hash"] == first and "done" in events

    thread["title"] = "Retitled since"  # a change no span shows
    assert client.post("/threads", json=thread).status_code == 201  # a real re-ingest
    now = client.get(f"/threads/{thread['id']}").json()["content_hash"]
    assert now != first
    refused = client.post("/stream_summary", json=request)
    assert refused.headers["content-type"].startswith("application/json")  # no stream started
    assert_error(refused, 409, "thread_changed", now)
    assert first in refused.json()["message"]
    events = dict(sse_events(client.post("/stream_summary", json={**request, "version": now}).text))
    assert json.loads(events["digest"])["content_hash"] == now and "done" in events


class ReingestAfterSnapshot:
    """The app's real store, with `reingest` run once right after its next `thread_snapshot` has been read: a
    re-ingest committing between the stream's version check and its digest, made certain."""

    def __init__(self, store: Any, reingest: Any) -> None:
        self.store, self.pending = store, [reingest]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def thread_snapshot(self, thread_id: str) -> Any:
        snapshot = self.store.thread_snapshot(thread_id)
        if self.pending:
            self.pending.pop()()
        return snapshot


def test_a_tldr_stream_is_of_the_version_it_checked_while_the_thread_is_reingested(
    client: TestClient,
) -> None:
    # a re-ingest committing after the stream checked `version` must not give a digest of the new version:
    # its citations would index into text the client does not show, after the check said it did
    thread = beer_thread()
    assert client.post("/threads", json=thread).status_code == 201
    shown = client.get(f"/threads/{thread['id']}").json()
    edited = {**thread, "posts": [{**p, "text": "Edited since: " + p["text"]} for p in thread["posts"]]}

    def reingest() -> None:  # a real POST /threads, committed while the stream's request is in the app
        assert client.post("/threads", json=edited).status_code == 201

    resources = client.app.state.digest  # type: ignore[attr-defined]  # opened by the POST above
    resources.store = ReingestAfterSnapshot(resources.store, reingest)
    two_stage = {"draft": "extractive", "final": "extractive"}  # a draft event too, with no model
    request = {
        "thread_id": thread["id"],
        "summarizer": "two_stage",
        "params": two_stage,
        "version": shown["content_hash"],
    }
    events = dict(sse_events(client.post("/stream_summary", json=request).text))
    assert not resources.store.pending and "done" in events, events
    now = client.get(f"/threads/{thread['id']}").json()
    assert now["content_hash"] != shown["content_hash"]  # the re-ingest did commit
    digest = json.loads(events["digest"])
    assert digest["content_hash"] == json.loads(events["draft"])["content_hash"] == shown["content_hash"]
    texts = {p["id"]: p["text"] for p in shown["posts"]}
    assert digest["highlights"]
    for h in digest["highlights"]:  # the citations index into the version the client shows
        assert texts[h["post_id"]][h["start"] : h["end"]] == h["text"]


def test_stack_exchange_xml_content(client: TestClient, shared_data: Path) -> None:
    rows = (shared_data / "stackexchange_beer" / "Posts.xml").read_text(encoding="utf-8-sig").splitlines()
    wanted = [
        r for r in rows if r.lstrip().startswith(('<row Id="1" ', '<row Id="4" '))
    ]  # question 1, answer 4
    assert len(wanted) == 2
    xml = '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(wanted) + "\n</posts>\n"
    created = client.post("/threads", json={"format": "stackexchange", "content": xml})
    assert created.status_code == 201, created.text
    assert created.json()["thread_ids"] == ["1"]
    thread = client.get("/threads/1").json()
    assert [p["id"] for p in thread["posts"]] == ["1", "4"] and thread["posts"][1]["accepted"] is True


def test_native_threads_take_the_formats_defaults(client: TestClient) -> None:
    # docs/formats.md: a post's `number` is optional (its position) and `html` stands in for `text`; the file
    # reader applied both, but POST /threads answered 400 "posts.0.number: Field required"
    thread = {
        "id": "defaults",
        "title": "Cold brew",
        "posts": [
            {"id": "q", "text": "How long should cold brew steep before it tastes right?"},
            {"id": "a", "html": "<p>Steep it for <b>sixteen hours</b> in the fridge. Filter it twice.</p>"},
        ],
    }
    created = client.post("/threads", json=thread)
    assert created.status_code == 201, created.text
    got = client.get("/threads/defaults").json()
    assert [p["number"] for p in got["posts"]] == [1, 2] and got["source"] == "native"
    assert got["posts"][1]["text"].startswith("Steep it for sixteen hours in the fridge.")


def test_bad_input_gets_clear_4xx(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_error(
        client.post("/threads", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "invalid_input",
        "not valid JSON",
    )
    # a well-formed body that is no valid thread is a 422, as on every route that declares its body
    assert_error(client.post("/threads", content=b""), 422, "invalid_input", "body is missing")
    assert_error(
        client.post("/threads", json={"id": "x", "posts": [{"id": "1"}]}), 422, "invalid_input", "posts.0"
    )
    assert_error(
        client.post("/threads", json={"format": "yaml", "content": "a"}), 422, "invalid_input", "format"
    )
    assert_error(
        client.post("/threads", json={"format": "stackexchange", "content": "<posts><row"}),
        422,
        "invalid_input",
        "",
    )
    dup = {"id": "d", "posts": [{"id": "1", "number": 1, "text": "a"}, {"id": "1", "number": 2, "text": "b"}]}
    assert_error(client.post("/threads", json=dup), 422, "invalid_input", "duplicate post id")
    assert_error(client.get("/threads/nope"), 404, "not_found", "nope")
    assert_error(client.get("/threads/nope/highlights"), 404, "not_found", "nope")
    assert_error(client.get("/threads/x/highlights", params={"k": 0}), 422, "invalid_input", "k")
    assert_error(client.get("/threads/x/highlights", params={"k": 101}), 422, "invalid_input", "k")
    assert_error(client.post("/stream_summary", json={"thread_id": "nope"}), 404, "not_found", "nope")
    client.post("/threads", json=beer_thread())
    tid = beer_thread()["id"]
    # an invalid body is a 422, as every route that declares its body answers one (these were 400s)
    assert_error(
        client.post("/stream_summary", json={"thread_id": tid, "summarizer": "magic"}),
        422,
        "invalid_input",
        "unknown summarizer",
    )
    assert_error(client.post("/stream_summary", json={"thread_id": tid, "k": 500}), 422, "invalid_input", "k")
    too_many = {"thread_id": tid, "max_bullets": 21}
    assert_error(client.post("/stream_summary", json=too_many), 422, "invalid_input", "max_bullets")
    both = client.post("/stream_summary", json={**too_many, "k": 500}).json()["message"]
    assert both.startswith("k: ") and "; max_bullets: " in both  # every bad field, as the CLI names them
    assert_error(client.post("/stream_summary", json=[1]), 422, "invalid_input", "")
    assert_error(client.post("/stream_summary", json={}), 422, "invalid_input", "thread_id")
    assert_error(client.post("/stream_summary", content=b""), 422, "invalid_input", "body is missing")
    bad_param = {"thread_id": tid, "summarizer": "extractive", "params": {"max_chars": "abc"}}  # was a 500
    assert_error(client.post("/stream_summary", json=bad_param), 422, "invalid_config", "max_chars")
    assert_error(client.post("/stream_summary", content=b"{"), 400, "invalid_input", "not valid JSON")
    # nothing stored was lost by the bad requests
    assert [t["id"] for t in client.get("/threads").json()["threads"]] == [tid]


def test_oversized_bodies_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLDRLAB_MAX_BODY_BYTES", "2000")
    get_settings.cache_clear()
    with TestClient(create_app()) as small:
        big = beer_thread()
        assert_error(small.post("/threads", json=big), 413, "payload_too_large", "2000")


def test_a_stream_error_names_no_server_path(client: TestClient) -> None:
    # a local model that cannot summarize was an `error` event naming "<the server's home>/runs/<id>/model"
    tokenizer = tiny_chat_tokenizer()
    model = tiny_llama(tokenizer, seed=3)
    tokenizer.chat_template = None
    run = model_run(lambda d: save_tiny_model(model, tokenizer, d))
    client.post("/threads", json=beer_thread())
    request = {"thread_id": beer_thread()["id"], "summarizer": "local", "params": {"model_path": run.id}}
    with client.stream("POST", "/stream_summary", json=request) as response:
        events = sse_events(response.read().decode())
    name, data = events[-1]
    message = json.loads(data)["message"]
    assert name == "error" and f"run:{run.id}/model" in message, events
    assert str(get_settings().home) not in message, message


def test_a_thread_whose_id_holds_a_slash_is_reachable(client: TestClient) -> None:
    # POST /threads took {"id": "forum/7"}, but GET /threads/forum%2F7 (what the page asks) answered 404
    post = {"id": "p", "number": 1, "text": "Serve lagers cold. Serve ales a little warmer."}
    thread = {"id": "forum/7", "title": "Slashes", "posts": [post]}
    assert client.post("/threads", json=thread).status_code == 201
    got = client.get("/threads/forum%2F7")
    assert got.status_code == 200 and got.json()["id"] == "forum/7", got.text
    found = client.get("/threads/forum%2F7/highlights", params={"k": 1})
    assert found.status_code == 200 and found.json()["thread_id"] == "forum/7", found.text
    assert client.get("/threads/forum%2F8").status_code == 404


def test_a_deleted_thread_is_gone_with_its_sentences_and_cached_digests(
    client: TestClient, tmp_path: Path
) -> None:
    # there was no way to delete a thread: its text, vectors and digests stayed for good
    from tldrlab.digest.cache import open_cache

    thread = beer_thread()
    other = {
        "id": "forum/7",
        "title": "Slashes",
        "posts": [{"id": "p", "number": 1, "text": "Serve lagers cold."}],
    }
    assert client.post("/threads", json=[thread, other]).status_code == 201
    summary = {"thread_id": thread["id"], "k": 3, "max_bullets": 2}
    assert client.post("/stream_summary", json=summary).status_code == 200  # a cached digest of it
    cache = open_cache()
    key_rows = "SELECT COUNT(*) AS n FROM digest_cache WHERE thread_id = ?"
    assert cache.db.query_one(key_rows, (thread["id"],))["n"] == 1  # type: ignore[index]

    deleted = client.delete(f"/threads/{thread['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["thread_id"] == thread["id"] and deleted.json()["sentences"] > 5
    assert cache.db.query_one(key_rows, (thread["id"],))["n"] == 0  # type: ignore[index]
    cache.close()
    assert_error(client.get(f"/threads/{thread['id']}"), 404, "not_found", "not in the store")
    assert_error(client.get(f"/threads/{thread['id']}/highlights"), 404, "not_found", "not in the store")
    assert_error(client.post("/stream_summary", json=summary), 404, "not_found", "not in the store")
    assert_error(client.delete(f"/threads/{thread['id']}"), 404, "not_found", "not in the store")
    assert [t["id"] for t in client.get("/threads").json()["threads"]] == ["forum/7"]
    assert client.delete("/threads/forum%2F7").json()["thread_id"] == "forum/7"  # an id holding "/"
    assert client.get("/threads").json()["threads"] == []
    assert_error(client.delete("/threads/a%0Ab"), 422, "invalid_input", "thread id")

    again = client.post("/threads", json=thread).json()  # ingested afresh: every post embedded again
    assert again["stats"]["embedded"] == len(thread["posts"])


def test_a_thread_id_ending_in_slash_highlights_is_read_back_over_http() -> None:
    """Thread "x/highlights" and thread "x" both stored: over a real server, GET /threads/x%2Fhighlights is
    the thread "x/highlights" (it was the highlights of "x"), /threads/x%2Fhighlights/highlights its
    highlights, and the documented /threads/x and /threads/x/highlights stay the thread "x" and its
    highlights."""
    import httpx

    from netutil import serve_app

    def thread(thread_id: str, text: str) -> dict[str, Any]:
        return {"id": thread_id, "title": thread_id, "posts": [{"id": "p", "number": 1, "text": text}]}

    plain, slashed = thread("x", "Serve lagers cold. Ales warmer."), thread("x/highlights", "Hops fade fast.")
    with serve_app(create_app()) as url, httpx.Client(base_url=url, timeout=60) as client:
        for body in (plain, slashed):
            assert client.post("/threads", json=body).status_code == 201
        got = client.get("/threads/x%2Fhighlights")
        assert got.status_code == 200 and got.json()["id"] == "x/highlights", got.text
        assert client.get("/threads/x%2fhighlights").json()["id"] == "x/highlights"  # lower-case escape
        found = client.get("/threads/x%2Fhighlights/highlights", params={"k": 1})
        assert found.status_code == 200 and found.json()["thread_id"] == "x/highlights", found.text
        assert [h["text"] for h in found.json()["highlights"]] == ["Hops fade fast."]
        assert client.get("/threads/x").json()["id"] == "x"
        mine = client.get("/threads/x/highlights", params={"k": 1})
        assert mine.status_code == 200 and mine.json()["thread_id"] == "x", mine.text
        assert client.get("/threads/y%2Fhighlights").status_code == 404
        assert client.get("/threads/x%2Fhighlights/highlights", params={"k": 0}).status_code == 422


def test_a_post_number_no_store_can_hold_is_refused_and_the_thread_kept(client: TestClient) -> None:
    # a post number past the stores' INTEGER columns was a 500 after the thread's row had been rewritten: the
    # thread then showed the new text while its sentences (and highlight offsets) were the old post's
    post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
    before = {"id": "n", "title": "Numbers", "posts": [post]}
    assert client.post("/threads", json=before).status_code == 201
    huge = {"id": "n", "title": "Numbers", "posts": [{"id": "a", "number": 2**63, "text": "Changed. Text."}]}
    assert_error(client.post("/threads", json=huge), 422, "invalid_input", "posts.0.number")
    assert_error(
        client.post("/threads", json={**huge, "posts": [{**huge["posts"][0], "number": 2**31}]}),
        422,
        "invalid_input",
        "posts.0.number",
    )
    kept = client.get("/threads/n").json()
    assert kept["posts"][0]["text"] == "Serve lagers cold. Ales warmer.", kept
    found = client.get("/threads/n/highlights", params={"k": 2}).json()["highlights"]
    assert {h["text"] for h in found} == {"Serve lagers cold.", "Ales warmer."}


def test_a_thread_without_sentences_says_so_instead_of_blaming_a_model(client: TestClient) -> None:
    # the extractive digest of a thread whose posts are empty told the reader its "untrained or too small
    # model" generated no text, and to use another model_path or the extractive summarizer it was using
    empty = {
        "id": "blank",
        "title": "Only a photo",
        "posts": [{"id": "a", "text": "  "}, {"id": "b", "text": ""}],
    }
    assert client.post("/threads", json=empty).status_code == 201
    response = client.post("/stream_summary", json={"thread_id": "blank", "summarizer": "extractive"})
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["notice", "digest", "done"], events
    notice = json.loads(events[0][1])["message"]
    assert "no sentences" in notice and "model" not in notice, notice
    assert json.loads(events[1][1])["notices"] == [notice]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs once on each database the app keeps threads in: SQLite, then PostgreSQL."""
    if request.param == "postgres":
        monkeypatch.setenv("TLDRLAB_DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
    return str(request.param)


@pytest.mark.usefixtures("database")
def test_nul_characters_are_refused_before_anything_is_stored() -> None:
    # PostgreSQL's text cannot hold U+0000: a post holding one was a 500 after the thread's row had been
    # rewritten (the new text shown over the old sentences), and looking up such an id was a 500 too
    with TestClient(create_app()) as client:
        post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
        assert client.post("/threads", json={"id": "t", "title": "T", "posts": [post]}).status_code == 201
        for field, thread in [
            ("posts.0.text", {"id": "t", "posts": [{"id": "a", "text": "Changed\u0000. Text."}]}),
            ("posts.0.author", {"id": "t", "posts": [{**post, "author": "x\u0000"}]}),
            ("title", {"id": "t", "title": "T\u0000", "posts": [post]}),
            ("id", {"id": "t\u0000", "posts": [post]}),
        ]:
            assert_error(client.post("/threads", json=thread), 422, "invalid_input", f"{field}: ")
        kept = client.get("/threads/t").json()
        assert kept["title"] == "T" and kept["posts"][0]["text"] == post["text"], kept
        found = client.get("/threads/t/highlights").json()["highlights"]
        assert {h["text"] for h in found} == {"Serve lagers cold.", "Ales warmer."}
        # an id no thread may have, named in the URL: refused as the same id in a body is (422)
        assert_error(client.get("/threads/t%00"), 422, "invalid_input", "must not contain control characters")
        # a NUL in the listing's filter is a bad query value: 422 naming it, as every query refusal is
        assert_error(client.get("/threads", params={"q": "t\u0000"}), 422, "invalid_input", "query.q: ")
        asked = client.post("/stream_summary", json={"thread_id": "t\u0000", "summarizer": "extractive"})
        assert_error(asked, 422, "invalid_input", "thread_id: must not contain NUL")


@pytest.mark.usefixtures("database")
def test_ids_too_long_to_store_or_digest_are_refused_before_anything_is_stored() -> None:
    # POST /threads took ids of any length: on PostgreSQL an id its B-tree index cannot hold (over 2,704
    # bytes) was a 500 after the request's earlier threads had been stored, and on either store a thread id
    # over 512 characters was stored but refused by POST /stream_summary (a thread that cannot be digested)
    # CJK Extension B letters (4 bytes each in UTF-8), in an order that does not compress: the worst case
    astral = [chr(0x20000 + (i * 7919) % 40000) for i in range(800)]
    post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
    with TestClient(create_app()) as client:
        assert client.post("/threads", json={"id": "t", "title": "T", "posts": [post]}).status_code == 201
        fine = {"id": "fine", "posts": [post]}
        too_long = {"id": "".join(astral[:700]), "posts": [post]}  # 2,800 bytes: too long for PostgreSQL
        refused = client.post("/threads", json=[fine, too_long])
        assert_error(refused, 422, "invalid_input", "thread 1: id: must be at most 512 characters")
        digestible = {"id": "".join(astral[:513]), "posts": [post]}  # stored, but no stream took its id
        refused = client.post("/threads", json=digestible)
        assert_error(refused, 422, "invalid_input", "id: must be at most 512 characters")
        long_post = {"id": "p", "posts": [{**post, "id": "".join(astral[:129])}]}
        refused = client.post("/threads", json=long_post)
        assert_error(refused, 422, "invalid_input", "posts.0.id: must be at most 128 characters")
        row = f"<row Id='{'9' * 600}' PostTypeId='1' Title='T' Body='Serve lagers cold.'/>"
        content = {"format": "stackexchange", "content": f"<posts>{row}</posts>"}
        refused = client.post("/threads", json=content)
        assert_error(refused, 422, "invalid_input", "field 'Id': must be at most")
        assert [t["id"] for t in client.get("/threads").json()["threads"]] == ["t"]  # nothing else stored
        # the longest ids both stores hold, and the stream takes
        longest = "".join(astral[:512])
        thread = {"id": longest, "posts": [{**post, "id": "".join(astral[512:640])}]}
        assert client.post("/threads", json=thread).status_code == 201
        asked = client.post("/stream_summary", json={"thread_id": longest, "summarizer": "extractive"})
        digest = json.loads(dict(sse_events(asked.text))["digest"])
        assert digest["thread_id"] == longest and len(digest["bullets"]) == 2, asked.text


@pytest.mark.parametrize("thread_id", [" ", "t\n", "\t"])
def test_a_stream_summary_thread_id_no_thread_may_have_is_a_422_as_in_a_url(
    client: TestClient, thread_id: str
) -> None:
    # a blank id was the store's 400 ("a thread id must be a non-empty string"), one with a line break a 404,
    # where the same id in a URL is a 422 (thread_id_problem) and an invalid body is a 422 on every route
    asked = client.post("/stream_summary", json={"thread_id": thread_id, "summarizer": "extractive"})
    assert_error(asked, 422, "invalid_input", "thread_id: ")
    assert "Traceback" not in asked.text


def test_a_stream_summary_query_is_as_long_as_a_highlights_query_at_most(client: TestClient) -> None:
    # GET /threads/{id}/highlights refused a q over 2,000 characters; POST /stream_summary took any (a 2 MB
    # query ranked for 18 s, BM25 reading every word of it)
    assert client.post("/threads", json=beer_thread()).status_code == 201
    long = "glass " * 400  # 2,400 characters
    assert_error(client.get("/threads/33/highlights", params={"q": long}), 422, "invalid_input", "query.q: ")
    asked = client.post("/stream_summary", json={"thread_id": "33", "summarizer": "extractive", "q": long})
    assert_error(asked, 422, "invalid_input", "q: String should have at most 2000 characters")
    body = {"thread_id": "33", "summarizer": "extractive", "q": long[:1990]}
    fits = client.post("/stream_summary", json=body)
    assert fits.status_code == 200 and "event: digest" in fits.text


def test_posts_of_one_number_are_refused_as_posts_of_one_id_are(client: TestClient, tmp_path: Path) -> None:
    # two posts of one number were stored: the store reads sentences in number order, so theirs came
    # interleaved (post a's first, post b's first, post a's second...), and query-aware highlights (which
    # mix in a sentence's neighbours in its post) and the bullets' reading order changed with it
    posts = [
        {"id": "a", "number": 1, "text": "Serve lagers cold. Ales warmer."},
        {"id": "b", "number": 1, "text": "Stouts at twelve degrees. Tulip glasses help."},
    ]
    refused = client.post("/threads", json={"id": "n", "posts": posts})
    assert_error(refused, 422, "invalid_input", "thread n: posts.1.number: post number 1 appears twice")
    twice = client.post("/threads", json={"id": "n", "posts": [posts[0], posts[0]]})
    assert_error(twice, 422, "invalid_input", "thread n: posts.1.id: duplicate post id 'a'")
    native = tmp_path / "thread.json"
    native.write_text(json.dumps({"id": "n", "posts": posts}), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"field 'posts\[1\]\.number': post number 1 appears twice"):
        read_threads(native)
    assert_error(client.get("/threads/n"), 404, "not_found", "'n'")


def test_a_boolean_for_a_number_is_refused_in_digest_bodies(client: TestClient) -> None:
    # pydantic's lax mode took `"k": true` for one key sentence and a post's `"score": true` for one vote
    # (`"number": true` for post 1), where the project refuses a boolean given for a number
    assert client.post("/threads", json=beer_thread()).status_code == 201
    for field, value in (("k", True), ("max_bullets", False)):
        asked = client.post(
            "/stream_summary", json={"thread_id": "33", "summarizer": "extractive", field: value}
        )
        assert_error(asked, 422, "invalid_input", f"{field}: expected a number, got the boolean")
    post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
    for field in ("score", "number"):
        thread = {"id": "b", "posts": [{**post, field: True}]}
        refused = client.post("/threads", json=thread)
        expected = f"posts.0.{field}: expected a number, got the boolean true"
        assert_error(refused, 422, "invalid_input", expected)
        as_file = client.post("/threads", json={"format": "native", "content": json.dumps(thread)})
        assert_error(as_file, 422, "invalid_input", f"field 'posts[0].{field}': expected a number")
    assert [t["id"] for t in client.get("/threads").json()["threads"]] == ["33"]  # nothing else stored


def test_a_stream_summary_field_it_does_not_know_is_refused(client: TestClient) -> None:
    # every other request body refuses fields it does not know; this one ignored them, so a typo
    # ("max_bullet": 1, "query": ...) gave the default digest without a word
    assert client.post("/threads", json=beer_thread()).status_code == 201
    for field, value in (("max_bullet", 1), ("query", "glassware")):
        body = {"thread_id": "33", "summarizer": "extractive", field: value}
        asked = client.post("/stream_summary", json=body)
        assert_error(asked, 422, "invalid_input", f"{field}: Extra inputs are not permitted")


def test_a_thread_sent_twice_in_one_request_is_refused_and_nothing_stored(client: TestClient) -> None:
    # both copies were ingested: the thread ended as the second with the first copy's sentences still stored,
    # so its highlights cited a post the thread does not have
    first = {"id": "d", "title": "A", "posts": [{"id": "1", "text": "First version here. Two sentences."}]}
    second = {"id": "d", "title": "B", "posts": [{"id": "2", "text": "Second version. Different post."}]}
    assert_error(client.post("/threads", json=[first, second]), 422, "invalid_input", "'d' appears twice")
    assert_error(client.get("/threads/d"), 404, "not_found", "'d'")


def test_a_thread_id_no_url_can_name_is_refused_before_anything_is_stored(client: TestClient) -> None:
    # "." and ".." were stored (201), but no URL reaches them: a client resolves /threads/.. to / before
    # sending it (the page then read the index page as the thread: "thread.posts is not iterable")
    post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
    for thread_id in (".", ".."):
        response = client.post("/threads", json={"id": thread_id, "title": "T", "posts": [post]})
        assert_error(response, 422, "invalid_input", f"thread id {thread_id!r}: no URL can name it")
    assert client.get("/threads").json()["threads"] == []
    for fine in ("...", ".hidden", "a/.."):
        assert client.post("/threads", json={"id": fine, "posts": [post]}).status_code == 201, fine


def test_a_thread_id_with_a_control_character_is_refused_in_a_body_and_in_a_url(client: TestClient) -> None:
    # an id holding a line break was stored (201), and GET /threads/t%0A answered thread "t" (the route's
    # match stops at the line break); GET /threads/t%00 was a 400 where the same id in a body is a 422
    post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
    assert client.post("/threads", json={"id": "t", "title": "T", "posts": [post]}).status_code == 201
    for thread_id, code in (("t\n", "U+000A"), ("t\x01", "U+0001"), ("t\x7f\r", "U+000D, U+007F")):
        response = client.post("/threads", json={"id": thread_id, "posts": [post]})
        assert_error(response, 422, "invalid_input", f"thread id {thread_id!r}: must not contain control")
        assert code in response.json()["message"]
    for path in ("t%0A", "t%00", "t%01", "t%0A/highlights", "t%00/highlights", "%2E%2E", "%2E/highlights"):
        assert_error(client.get(f"/threads/{path}"), 422, "invalid_input", "in the URL: ")
    assert [t["id"] for t in client.get("/threads").json()["threads"]] == ["t"]
    assert client.get("/threads/t").status_code == 200
    assert client.get("/threads/t/highlights").status_code == 200
    assert_error(client.get("/threads/t%09x"), 422, "invalid_input", "U+0009")


def test_an_invalid_thread_body_is_a_422_as_on_routes_that_declare_their_body(client: TestClient) -> None:
    # POST /threads reads and validates its body itself and answered every invalid body 400, while a route
    # whose body FastAPI validates (POST /summarize here) answers 422: a client could not tell an invalid
    # body from malformed JSON the same way on both. Malformed JSON stays 400 on both.
    post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
    headers = {"content-type": "application/json"}
    declared = {
        "missing body": client.post("/summarize", content=b"", headers=headers),
        "deep JSON": client.post("/summarize", content=b"[" * 100 + b"]" * 100, headers=headers),
        "lone surrogate": client.post("/summarize", content=b'{"document": "\\ud800"}', headers=headers),
        "out-of-range field": client.post("/summarize", json={"document": "x", "num_beams": 99}),
    }
    own = {
        "missing body": client.post("/threads", content=b"", headers=headers),
        "deep JSON": client.post("/threads", content=b"[" * 100 + b"]" * 100, headers=headers),
        "lone surrogate": client.post(
            "/threads", content=b'{"id": "t", "posts": [{"id": "a", "text": "\\ud800"}]}', headers=headers
        ),
        "out-of-range field": client.post("/threads", json={"id": "t", "posts": [{**post, "number": 2**40}]}),
        "duplicate post ids": client.post("/threads", json={"id": "t", "posts": [post, post]}),
        "a link that is no web URL": client.post("/threads", json={"id": "t", "posts": [post], "url": "x:y"}),
        "unknown text format": client.post("/threads", json={"format": "yaml", "content": "a: b"}),
    }
    for what, response in [*declared.items(), *own.items()]:
        assert_error(response, 422, "invalid_input", "")
        assert set(response.json()) == {"code", "message", "request_id"}, (what, response.text)
    for path in ("/summarize", "/threads", "/stream_summary"):
        malformed = client.post(path, content=b'{"id": ', headers=headers)
        assert_error(malformed, 400, "invalid_input", "not valid JSON")
    assert client.get("/threads").json()["threads"] == []  # nothing of the refused bodies was stored


def discourse_topic() -> dict[str, Any]:
    """A Discourse topic as its /t/{id}.json answers it (numeric ids, posts under post_stream)."""
    return {
        "id": 51,
        "title": "Pale ale hops",
        "slug": "pale-ale-hops",
        "post_stream": {
            "posts": [
                {
                    "id": 511,
                    "post_number": 1,
                    "username": "ann",
                    "cooked": "<p>Which hops suit a pale ale?</p>",
                },
                {
                    "id": 512,
                    "post_number": 2,
                    "username": "bob",
                    "cooked": "<p>Cascade gives grapefruit.</p>",
                },
            ]
        },
    }


def test_a_discourse_topic_sent_as_native_is_refused_with_a_hint_to_send_it_as_discourse(
    client: TestClient,
) -> None:
    # The refusal named only the first field a native thread could not hold ("id: Input should be a valid
    # string"), not that the body is a valid thread in another format the route takes.
    topic = discourse_topic()
    hint = "this looks like a Discourse topic; send format: discourse"
    as_native = client.post("/threads", json={"format": "native", "content": json.dumps(topic)})
    assert_error(as_native, 422, "invalid_input", hint)
    bare = client.post("/threads", json=topic)  # a bare body is read as native
    assert_error(bare, 422, "invalid_input", "id: Input should be a valid string")
    assert "this looks like a Discourse topic" in bare.json()["message"]
    assert '"format": "discourse"' in bare.json()["message"]
    # the hint is honest: sent as it says, the same topic is ingested
    created = client.post("/threads", json={"format": "discourse", "content": json.dumps(topic)})
    assert created.status_code == 201, created.text
    # a body that is no known format gets no hint
    bad = client.post("/threads", json={"id": "x", "posts": [{"id": "1"}]})
    assert bad.status_code == 422 and "looks like" not in bad.json()["message"]


def spec_sse_events(text: str) -> list[tuple[str, str]]:
    """Events as the SSE standard (WHATWG) reads a stream: a line ends at CRLF, LF or a lone CR."""
    events, name, data = [], "message", []
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return events


def test_a_token_holding_a_carriage_return_reaches_a_standard_sse_client_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # token events carry the model's text raw, split into data lines at "\n" only: a lone "\r" (an endpoint's
    # or a model's line break) ends a line for a standard SSE client, which then read what followed it as a
    # field name of its own and dropped it
    chat = FakeChat(reply="- Lagers want cold\rglasses [1]\n- Ales want warmer ones [2]\n", chunk_chars=40)
    with fake_openai_server(chat) as base_url:
        monkeypatch.setenv("TLDRLAB_OPENAI_BASE_URL", base_url)
        get_settings.cache_clear()
        with TestClient(create_app()) as client:
            post = {"id": "1", "text": "Serve lagers cold. Ales a little warmer."}
            assert client.post("/threads", json={"id": "cold", "posts": [post]}).status_code == 201
            request = {"thread_id": "cold", "summarizer": "openai", "use_cache": False}
            events = spec_sse_events(client.post("/stream_summary", json=request).text)
    tokens = "".join(data for name, data in events if name == "token")
    digest = json.loads(next(data for name, data in events if name == "digest"))
    assert tokens == digest["text"].replace("\r", "\n") and "glasses [1]" in tokens
