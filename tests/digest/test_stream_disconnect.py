"""A client that goes away mid-stream stops generation: a real uvicorn server, a real socket close, and a
fake chat endpoint that notices when nobody reads its tokens any more."""

from __future__ import annotations

import time

import httpx
import pytest
from digest_helpers import FakeChat, fake_openai_server, sample_thread

from netutil import serve_app
from tldrlab.service.app import create_app


@pytest.mark.slow
def test_client_disconnect_stops_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    chat = FakeChat(reply="- word [1]\n" * 100, chunk_chars=4, delay_s=0.03)  # ~275 chunks, ~8 s
    total_chunks = -(-len(chat.reply) // chat.chunk_chars)
    with fake_openai_server(chat) as base_url:
        monkeypatch.setenv("TLDRLAB_OPENAI_BASE_URL", base_url)
        with serve_app(create_app()) as url, httpx.Client(base_url=url, timeout=60) as client:
            thread = sample_thread()
            assert client.post("/threads", json=thread.model_dump(mode="json")).status_code == 201
            request = {"thread_id": thread.id, "summarizer": "openai", "use_cache": True}
            with client.stream("POST", "/stream_summary", json=request) as response:
                assert response.status_code == 200
                first = ""
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        first = line
                        break
                assert first  # a token arrived: generation is under way
            # leaving the block closed the connection mid-stream
            deadline = time.monotonic() + 10
            while not chat.disconnected.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert chat.disconnected.is_set(), "the chat endpoint kept streaming to nobody"
            assert chat.chunks_sent < total_chunks
            # nothing half-made was cached: the next request generates again (from scratch)
            chat.delay_s = 0.0
            done = client.post("/stream_summary", json=request)
            assert "event: done" in done.text and '"cached": false' in done.text
            assert len(chat.requests) == 2
