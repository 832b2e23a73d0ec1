"""The digest API under load it should shrug off, against a real uvicorn server, the real MiniLM embedder and
store: a huge post does not hold up ingest of other threads, and a slow summary stream keeps sending SSE
keep-alive comments."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from digest.digest_helpers import FakeChat, fake_openai_server
from netutil import serve_app
from tldrlab.config import get_settings
from tldrlab.service.app import create_app


@pytest.fixture
def server_url() -> Iterator[str]:
    with serve_app(create_app()) as url:
        yield url


def _thread(thread_id: str, sentences: int) -> dict[str, Any]:
    text = " ".join(
        f"Sentence {i} of thread {thread_id} says something about beer number {i}." for i in range(sentences)
    )
    return {"id": thread_id, "title": thread_id, "posts": [{"id": "1", "number": 1, "text": text}]}


@pytest.mark.slow
def test_one_huge_post_does_not_hold_up_other_threads(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=300) as client:
        assert client.post("/threads", json=_thread("warm-up", 2)).status_code == 201  # the embedder loads
        started = time.monotonic()
        assert client.post("/threads", json=_thread("calibration", 100)).status_code == 201
        per_sentence = (time.monotonic() - started) / 100
        sentences = max(200, min(3000, int(4.0 / per_sentence)))  # about 4 s of embedding on this machine
        huge: dict[str, Any] = {}

        def post_huge() -> None:
            begun = time.monotonic()
            huge["response"] = client.post("/threads", json=_thread("huge", sentences))
            huge["seconds"] = time.monotonic() - begun
            huge["done_at"] = time.monotonic()

        poster = threading.Thread(target=post_huge)
        poster.start()
        time.sleep(0.5)  # the huge post is being embedded now
        assert poster.is_alive(), "the huge post was too quick to test anything"
        started = time.monotonic()
        small = client.post("/threads", json=_thread("small", 2))
        small_done_at = time.monotonic()
        poster.join()
    assert small.status_code == 201 and huge["response"].status_code == 201
    assert huge["response"].json()["stats"]["sentences"] == sentences, huge["response"].json()
    # The small thread was ingested while the huge one was still embedding, not after it.
    waited = small_done_at - started
    assert small_done_at < huge["done_at"] and waited < huge["seconds"] / 2, (waited, huge["seconds"])


def test_a_slow_summary_stream_sends_keep_alive_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    chat = FakeChat(reply="- Lagers want cold glasses [1]\n", chunk_chars=12, delay_s=0.8)
    with fake_openai_server(chat) as base_url:
        monkeypatch.setenv("TLDRLAB_OPENAI_BASE_URL", base_url)
        monkeypatch.setenv("TLDRLAB_SSE_KEEPALIVE_S", "0.3")
        get_settings.cache_clear()
        with serve_app(create_app()) as url, httpx.Client(base_url=url, timeout=120) as client:
            thread = {
                "id": "cold",
                "posts": [{"id": "1", "number": 1, "text": "Serve lagers cold. Ales a little warmer."}],
            }
            assert client.post("/threads", json=thread).status_code == 201
            request = {"thread_id": "cold", "summarizer": "openai", "use_cache": False}
            with client.stream("POST", "/stream_summary", json=request) as response:
                assert response.status_code == 200
                body = response.read().decode()
    assert ": keep-alive" in body
    assert "event: digest" in body and "event: done" in body
    lines = [line for line in body.split("\n\n") if line.strip()]
    assert lines.index(": keep-alive") < next(i for i, b in enumerate(lines) if b.startswith("event: digest"))


def test_sentences_split_the_same_from_many_threads() -> None:
    """Concurrent ingests split sentences at once (pysbd segmenters must not be shared between threads)."""
    from concurrent.futures import ThreadPoolExecutor

    from tldrlab.data.sentences import split_sentences

    texts = [_thread(f"t{i}", 60)["posts"][0]["text"] for i in range(4)]
    expected = [[(s.start, s.end) for s in split_sentences(text)] for text in texts]
    assert all(len(spans) == 60 for spans in expected)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            found = list(pool.map(lambda t: [(s.start, s.end) for s in split_sentences(t)], texts))
            assert found == expected
