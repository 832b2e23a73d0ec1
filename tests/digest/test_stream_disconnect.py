"""The SSE stream on a real uvicorn server: the two-stage default with a tiny chat LM, and a client that goes
away mid-stream stops generation (a fake chat endpoint that notices when nobody reads its tokens any more; a
local model whose forward passes stop)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from digest_helpers import FakeChat, fake_openai_server, sample_thread, tiny_chat_lm

from netutil import serve_app
from tldrlab.config import get_settings
from tldrlab.digest.local_model import load_local_model
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


def sse_names(text: str) -> list[str]:
    return [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]


def configure_digest_model(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", str(directory))
    get_settings.cache_clear()


def test_two_stage_sse_on_a_real_server(monkeypatch: pytest.MonkeyPatch, tiny_chat_dir: Path) -> None:
    configure_digest_model(monkeypatch, tiny_chat_dir)
    with serve_app(create_app()) as url, httpx.Client(base_url=url, timeout=60) as client:
        thread = sample_thread()
        assert client.post("/threads", json=thread.model_dump(mode="json")).status_code == 201
        request = {
            "thread_id": thread.id,
            "max_bullets": 2,
            "params": {"unsupported": "mark", "max_words": 5},
        }
        response = client.post("/stream_summary", json=request)
    names = sse_names(response.text)
    assert names[0] == "draft" and names[-2:] == ["digest", "done"] and names.count("token") >= 3
    assert set(names) <= {"draft", "token", "notice", "digest", "done"}
    blocks = {b.split("\n")[0][len("event: ") :]: b for b in response.text.split("\n\n") if b}
    draft = json.loads(blocks["draft"].split("data: ", 1)[1])
    digest = json.loads(blocks["digest"].split("data: ", 1)[1])
    assert draft["bullets"] == digest["draft"] and draft["highlights"] == digest["highlights"]
    assert digest["summarizer"] == "two_stage" and 1 <= len(digest["bullets"]) <= 2
    ids = {h["id"] for h in digest["highlights"]}
    assert all(b["citations"] and set(b["citations"]) <= ids for b in digest["bullets"])


@pytest.mark.slow
def test_client_disconnect_stops_local_generation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model_dir = tiny_chat_lm(tmp_path / "lm")
    configure_digest_model(monkeypatch, model_dir)
    loaded = load_local_model(str(model_dir))
    loaded.model.generation_config.suppress_tokens = [loaded.tokenizer.eos_token_id]  # never ends by itself
    steps: list[float] = []
    loaded.model.register_forward_hook(lambda *_: steps.append(time.monotonic()))
    params = {"max_new_tokens": 1000, "max_words": 200, "unsupported": "mark"}
    with serve_app(create_app()) as url, httpx.Client(base_url=url, timeout=60) as client:
        thread = sample_thread()
        assert client.post("/threads", json=thread.model_dump(mode="json")).status_code == 201
        request = {"thread_id": thread.id, "summarizer": "local", "params": params, "max_bullets": 20}
        with client.stream("POST", "/stream_summary", json=request) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line == "event: token":
                    break  # a token arrived: generation is under way; leaving closes the connection
        closed = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not steps or time.monotonic() - steps[-1] < 1.0):
            time.sleep(0.1)
        assert steps and time.monotonic() - steps[-1] >= 1.0, "generation went on for nobody"
        # 20 bullets need at least 8 tokens each ("-", three words, " [", a digit, "]", a newline)
        assert len(steps) < 100 and steps[-1] - closed < 2.0
