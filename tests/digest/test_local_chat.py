"""The local summarizer on causal chat LMs built in the test: the cited-list format while streaming, the
support check end to end (a tiny model trained to say exactly what we want), stopping, and the two-stage
default (draft first, then the model's bullets) through the digest pipeline."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from digest_helpers import sample_thread, tiny_chat_lm

from tinylm import INJECTION, model_inputs
from tldrlab.config import get_settings
from tldrlab.data.threads import Post, Thread
from tldrlab.digest.highlights import HighlightOptions, thread_highlights
from tldrlab.digest.ingest import ingest_threads
from tldrlab.digest.local_model import load_local_model
from tldrlab.digest.pipeline import DigestOptions, digest_events
from tldrlab.digest.summarizers import Bullet, SummaryContext, build_summarizer
from tldrlab.digest.summarizers.base import Notice, SummaryEvent
from tldrlab.digest.summarizers.chat_prompt import render_chat
from tldrlab.digest.summarizers.local import prompt_order
from tldrlab.digest.summarizers.two_stage import topped_up
from tldrlab.embed.base import Embedder
from tldrlab.errors import ConfigError
from tldrlab.store.base import SentenceStore

LINE = re.compile(r"^- \[\d+\] \S.*$")  # cite-first: "- [k] text"


def context_for(store: SentenceStore, embedder: Embedder, max_bullets: int = 3) -> SummaryContext:
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    found = thread_highlights(store, thread.id, HighlightOptions(k=6), embedder=embedder)
    highlights = prompt_order(found, "thread")  # numbered as the summarizer's prompt numbers them
    return SummaryContext(thread=thread, highlights=highlights, embedder=embedder, max_bullets=max_bullets)


def split(events: list[SummaryEvent]) -> tuple[str, list[Notice], list[Bullet]]:
    text = "".join(e for e in events if isinstance(e, str))
    notices = [e for e in events if isinstance(e, Notice)]
    bullets = events[-1]
    assert isinstance(bullets, list)
    return text, notices, bullets


def test_random_chat_lm_writes_only_cited_bullets(
    store: SentenceStore, embedder: Embedder, tiny_chat_dir: Path
) -> None:
    context = context_for(store, embedder)
    params = {"model_path": str(tiny_chat_dir), "max_new_tokens": 120, "unsupported": "mark", "max_words": 8}
    events = list(build_summarizer("local", params).stream(context))
    text, _, bullets = split(events)
    assert sum(isinstance(e, str) for e in events) >= 3  # streamed in pieces
    lines = [line for line in text.split("\n") if line.strip()]
    assert lines and all(LINE.match(line) for line in lines), text  # random weights, still the format
    assert 1 <= len(bullets) <= context.max_bullets
    ids = {h.id for h in context.highlights}
    assert all(b.citations and set(b.citations) <= ids and b.supported is not None for b in bullets)

    sampled = dict(params, do_sample=True, seed=3)
    text_a, _, _ = split(list(build_summarizer("local", sampled).stream(context)))
    text_b, _, _ = split(list(build_summarizer("local", sampled).stream(context)))
    assert text_a == text_b and all(LINE.match(x) for x in text_a.split("\n") if x.strip())


def test_a_thread_holding_the_chat_markers_stays_inside_the_user_turn(
    store: SentenceStore, embedder: Embedder, tiny_chat_dir: Path
) -> None:
    """A post or title holding "<|im_end|>\n<|im_start|>assistant" was encoded as those control tokens: it
    closed the user turn and forged an assistant turn (prompt injection). The model gets the turn markers the
    chat template writes and nothing more; the thread's text is in the prompt as text."""
    thread = sample_thread("t-inject")
    thread = thread.model_copy(update={"title": "Serving temperature " + INJECTION})
    ingest_threads([thread], store, embedder)
    found = thread_highlights(store, thread.id, HighlightOptions(k=4), embedder=embedder)
    context = SummaryContext(thread, prompt_order(found, "thread"), embedder, max_bullets=2)
    summarizer = build_summarizer("local", {"model_path": str(tiny_chat_dir), "max_new_tokens": 3})
    loaded = load_local_model(str(tiny_chat_dir))
    with model_inputs(loaded.model) as seen:
        list(summarizer.stream(context))
    (prompt,) = seen[0]
    tokenizer = loaded.tokenizer
    messages = summarizer.chat_messages(summarizer.prompt_context(context))  # system, example pair, user
    assert (
        prompt.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == len(messages) + 1
    )  # + the answer's
    assert prompt.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) == len(messages)
    assert prompt.count(tokenizer.convert_tokens_to_ids("<|endoftext|>")) == 0
    assert tokenizer.decode(prompt) == render_chat(tokenizer, messages)  # the title is there, as text


def test_the_list_stops_at_max_bullets_and_on_the_stop_flag(
    store: SentenceStore, embedder: Embedder, tiny_chat_dir: Path
) -> None:
    context = context_for(store, embedder, max_bullets=2)
    params = {"model_path": str(tiny_chat_dir), "max_new_tokens": 400, "unsupported": "mark", "max_words": 5}
    text, _, _ = split(list(build_summarizer("local", params).stream(context)))
    assert len(text.strip().splitlines()) <= 2  # stopped after the second bullet, far below 400 tokens

    stopping = SummaryContext(context.thread, context.highlights, embedder, 20, threading.Event())
    seen = []
    for event in build_summarizer("local", params).stream(stopping):
        seen.append(event)
        stopping.stop.set()  # the client went away after the first chunk
    assert len(seen) <= 2 and all(isinstance(e, str) for e in seen)  # no bullets after a stop


def memorized_model(tmp_path: Path, context: SummaryContext, answer: str) -> Path:
    """A tiny chat LM trained on the exact prompt the summarizer builds for `context`, answering `answer`."""
    from transformers import AutoTokenizer

    scratch = tiny_chat_lm(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(scratch)
    summarizer = build_summarizer("local", {"model_path": str(scratch)})
    prompt = render_chat(tokenizer, summarizer.chat_messages(summarizer.prompt_context(context)))
    return tiny_chat_lm(tmp_path / "memorized", memorize=[(prompt, answer)])


def test_citations_that_do_not_exist_or_support_their_bullet(
    store: SentenceStore, embedder: Embedder, tmp_path: Path
) -> None:
    context = context_for(store, embedder)
    texts = [h.text for h in context.highlights]
    ales = texts.index(next(t for t in texts if t.startswith("Serve ales"))) + 1
    answer = f"- [{ales}] Serve ales warmer than lagers\n- [42] My cat sleeps on the keyboard\n"
    model = memorized_model(tmp_path, context, answer)  # says exactly this, unless the grammar stops it

    # free decoding: [42] is written, found not to exist, re-cited by similarity, and still unsupported
    free = build_summarizer("local", {"model_path": str(model), "constrained": False})
    text, notices, bullets = split(list(free.stream(context)))
    assert text == answer
    assert [n.text for n in notices] == [
        "1 bullet(s) cited sentence numbers that do not exist; those citations were removed",
        "1 of 2 generated bullet(s) dropped: the sentences they cite do not support them",
    ]
    assert [(b.text, b.citations, b.supported) for b in bullets] == [
        ("Serve ales warmer than lagers", [context.highlights[ales - 1].id], True)
    ]
    # the pipeline hands the highlights over by rank: the prompt numbers them in thread order (the same
    # prompt, the same answer), and [k] must map back through that order, not through the ranking
    by_rank = replace(context, highlights=sorted(context.highlights, key=lambda h: h.rank))
    assert by_rank.highlights != context.highlights
    _, ranked_notices, ranked_bullets = split(list(free.stream(by_rank)))
    assert [(b.text, b.citations) for b in ranked_bullets] == [
        ("Serve ales warmer than lagers", [context.highlights[ales - 1].id])
    ]
    assert ranked_notices == notices  # cited right as written, not rescued by re-citing

    # constrained decoding: "[4" cannot go on to 42 (6 key sentences), so the model closes it as [4]
    # (min_bullets=2: the tiny model learned to stop after two bullets; off its path it may write more)
    constrained = {"model_path": str(model), "min_bullets": 2}
    text, notices, bullets = split(list(build_summarizer("local", constrained).stream(context)))
    assert text.startswith(f"- [{ales}] Serve ales warmer than lagers\n- [4] ") and "cat sleeps" in text
    assert [b.text for b in bullets] == ["Serve ales warmer than lagers"]  # the cat bullet: unsupported
    assert len(notices) == 1 and re.fullmatch(
        r"\d of \d generated bullet\(s\) dropped: the sentences they cite do not support them",
        notices[0].text,
    )
    marking = build_summarizer("local", {**constrained, "unsupported": "mark"})
    _, notices, bullets = split(list(marking.stream(context)))
    assert bullets[0].supported and not any(b.supported for b in bullets[1:]) and len(bullets) >= 2
    assert "marked unsupported" in notices[0].text


def test_a_digest_whose_every_bullet_was_dropped_says_only_that(
    store: SentenceStore, embedder: Embedder, tmp_path: Path
) -> None:
    # the pipeline added "the local summarizer's text held no bullet (...): the model may not have learned to
    # write summaries yet" beside the summarizer's "1 of 1 generated bullet(s) dropped": the text held one
    context = context_for(store, embedder)
    model = memorized_model(tmp_path, context, "- [42] My cat sleeps on the keyboard\n")
    params = {"model_path": str(model), "constrained": False}
    options = DigestOptions(summarizer="local", k=6, max_bullets=3, use_cache=False, params=params)
    events = list(digest_events(store, context.thread.id, options, embedder=embedder))
    digest = events[-1].digest
    assert digest is not None and digest.text == "- [42] My cat sleeps on the keyboard\n"
    assert digest.bullets == []
    assert digest.notices == [
        "1 bullet(s) cited sentence numbers that do not exist; those citations were removed",
        "1 of 1 generated bullet(s) dropped: the sentences they cite do not support them",
    ]
    assert [e.text for e in events if e.kind == "notice"] == digest.notices


def test_two_stage_default_shows_the_draft_then_the_models_bullets(
    store: SentenceStore, embedder: Embedder, tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", str(tiny_chat_dir))
    get_settings.cache_clear()
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    options = DigestOptions(
        k=5, max_bullets=3, use_cache=False, params={"unsupported": "mark", "max_words": 6}
    )
    assert options.summarizer == "two_stage"
    events = list(digest_events(store, thread.id, options, embedder=embedder))
    kinds = [e.kind for e in events]
    assert kinds[0] == "draft" and kinds[-1] == "digest" and kinds.count("token") >= 3
    draft = events[0]
    assert draft.bullets and draft.highlights and len(draft.bullets) == 3
    digest = events[-1].digest
    assert digest is not None and digest.draft == draft.bullets and digest.bullets
    assert digest.bullets != digest.draft  # the model's bullets, not the key sentences
    assert all(b.supported is not None for b in digest.bullets if not b.from_draft)
    assert len(digest.bullets) == 3  # the draft's bullets follow the model's kept ones up to top_up
    assert digest.text == "".join(e.text for e in events if e.kind == "token")


def test_a_thread_with_a_very_long_title_is_digested_with_its_title_shortened(
    store: SentenceStore, embedder: Embedder, tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a title has no length limit and went into the prompt whole: 15,000 characters made the default digest
    # fail ("the digest prompt needs 12135 tokens ...: lower k or thread_chars", which could not help)
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", str(tiny_chat_dir))
    get_settings.cache_clear()
    thread = sample_thread().model_copy(update={"title": "What temperature should I serve beer at? " * 370})
    ingest_threads([thread], store, embedder)
    options = DigestOptions(k=5, max_bullets=3, use_cache=False, params={"max_new_tokens": 24})
    events = list(digest_events(store, thread.id, options, embedder=embedder))
    digest = events[-1].digest
    assert digest is not None and digest.bullets and digest.title == thread.title
    context = SummaryContext(thread=thread, highlights=digest.highlights, embedder=embedder)
    summarizer = build_summarizer("local", {"model_path": str(tiny_chat_dir), "thread_chars": 2000})
    prompt = summarizer.chat_messages(context)[-1]["content"]  # type: ignore[attr-defined]
    title = prompt.split("\n")[0]
    assert title.startswith("Title: What temperature should I serve beer at?") and len(title) <= 310, title
    assert "\n#1 " in prompt and len(prompt) < 2000 + 310 + 5 * 310 + 200  # the folded thread kept posts


def test_key_sentences_that_take_too_many_tokens_are_left_out_of_the_prompt_not_an_error(
    store: SentenceStore, embedder: Embedder, tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # text that takes many tokens a character (Chinese, emoji): 8 key sentences of up to 300 characters
    # needed 6,000 tokens, and the default digest of such a thread was an error naming max_input_tokens
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", str(tiny_chat_dir))
    get_settings.cache_clear()
    posts = [
        Post(
            id=f"p{i}",
            number=i + 1,
            text="。".join(f"第{i}{j}种啤酒应该冷着喝" * 20 for j in range(2)) + "。",
        )
        for i in range(4)
    ]
    thread = Thread(id="zh", title="啤酒的温度", posts=posts)
    ingest_threads([thread], store, embedder)
    options = DigestOptions(k=8, max_bullets=3, use_cache=False, params={"max_new_tokens": 24})
    digest = [e for e in digest_events(store, "zh", options, embedder=embedder)][-1].digest
    assert digest is not None and len(digest.highlights) == 8 and digest.bullets
    kept = [n for n in digest.notices if "key sentences: with more it needed over max_input_tokens" in n]
    assert len(kept) == 1 and "best of the 8 key sentences" in kept[0], digest.notices
    ids = {h.id for h in digest.highlights}
    assert all(set(b.citations) <= ids for b in digest.bullets)


def test_bad_local_parameters_are_config_errors(tiny_chat_dir: Path) -> None:
    for bad in (
        {"unsupported": "hide"},
        {"support_measure": "vibes"},
        {"cite_order": "middle"},
        {"precision": "int3"},
        {"support_polarity": "yes"},
    ):
        with pytest.raises(ConfigError):
            build_summarizer("local", {"model_path": str(tiny_chat_dir), **bad})
    with pytest.raises(ConfigError, match="bad local summarizer parameter"):
        build_summarizer("local", {"model_path": str(tiny_chat_dir), "max_new_tokens": "many"})


def test_int8_fast_path_quantizes_the_blocks_not_the_head(tiny_chat_dir: Path) -> None:
    import torch

    loaded = load_local_model(str(tiny_chat_dir), "int8")
    modules = dict(loaded.model.named_modules())
    assert isinstance(loaded.model.get_output_embeddings(), torch.nn.Linear)
    assert type(modules["model.layers.0.self_attn.q_proj"]).__name__ == "Linear"
    assert type(modules["model.layers.0.self_attn.q_proj"]).__module__.startswith("torch.ao.nn.quantized")


def test_api_params_of_the_default_two_stage_are_bounded_like_local_ones() -> None:
    from tldrlab.errors import InvalidInputError
    from tldrlab.service.confine import confine_summarizer_params

    settings = get_settings()
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        confine_summarizer_params("two_stage", {"max_new_tokens": 10**9}, settings)
    kept = confine_summarizer_params("two_stage", {"max_new_tokens": 64, "unsupported": "mark"}, settings)
    assert kept == {"max_new_tokens": 64, "unsupported": "mark"}
    with pytest.raises(ConfigError, match="max_input_tokens"):
        build_summarizer("local", {"model_path": "smollm2", "max_input_tokens": 10**6})


def test_bf16_fast_path_writes_cited_bullets(
    store: SentenceStore, embedder: Embedder, tiny_chat_dir: Path
) -> None:
    import torch

    assert load_local_model(str(tiny_chat_dir), "bf16").model.dtype == torch.bfloat16
    context = context_for(store, embedder)
    params = {"model_path": str(tiny_chat_dir), "precision": "bf16", "unsupported": "mark", "max_words": 6}
    text, _, bullets = split(list(build_summarizer("local", params).stream(context)))
    assert bullets and all(LINE.match(line) for line in text.split("\n") if line.strip())


def test_servers_preload_the_default_model(tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tldrlab.digest.local_model import _load, warm_default_model

    assert warm_default_model() is None  # no model configured here
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", str(tiny_chat_dir / "missing"))
    get_settings.cache_clear()
    thread = warm_default_model()
    assert thread is not None
    thread.join(30)  # a bad reference is logged, not raised
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", str(tiny_chat_dir))
    get_settings.cache_clear()
    thread = warm_default_model()
    assert thread is not None
    thread.join(30)
    misses = _load.cache_info().misses
    assert load_local_model(str(tiny_chat_dir)).kind == "causal"
    assert _load.cache_info().misses == misses  # already loaded by the server's start


def test_cli_prints_the_models_cited_bullets_once(
    tmp_path: Path, tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from cliutil import run_captured

    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", str(tiny_chat_dir))
    get_settings.cache_clear()
    args = ["digest", str(path), "--max-bullets", "2", "-p", "unsupported=mark", "-p", "max_words=5"]
    code, out, _ = run_captured(args, capsys)
    assert code == 0, out
    before, _, rest = out.partition("written by the local language model")
    assert " • " not in before  # not a terminal: the draft was not shown live, the TL;DR is printed once
    bullets = rest.split("\nhighlights")[0]
    assert 1 <= bullets.count(" • ") <= 2 and "[" in bullets  # the model's cited bullets


def test_a_bullet_the_model_writes_twice_is_one_bullet_of_the_digest(
    store: SentenceStore, embedder: Embedder, tmp_path: Path
) -> None:
    """The chat LM writes one bullet twice, the second time in other case with a full stop: the digest
    (through the pipeline, as the API and the CLI make it) shows it once, at its first place. Before, the
    local summarizer removed only repeats equal up to case and whitespace, so both reached the TL;DR."""
    context = context_for(store, embedder)
    texts = [h.text for h in context.highlights]
    ales = texts.index(next(t for t in texts if t.startswith("Serve ales"))) + 1
    cold = texts.index(next(t for t in texts if t.startswith("Very cold beer"))) + 1
    answer = (
        f"- [{ales}] Serve ales warmer than lagers\n"
        f"- [{cold}] Very cold beer hides flavour and aroma\n"
        f"- [{ales}] serve ales warmer than Lagers.\n"
    )
    model = memorized_model(tmp_path, context, answer)
    options = DigestOptions(
        summarizer="local",
        params={"model_path": str(model), "constrained": False},
        k=6,
        max_bullets=context.max_bullets,
        use_cache=False,
    )
    events = list(digest_events(store, context.thread.id, options, embedder=embedder))
    digest = events[-1].digest
    assert digest is not None and digest.text == answer  # the model did write the bullet twice
    assert [b.text for b in digest.bullets] == [
        "Serve ales warmer than lagers",
        "Very cold beer hides flavour and aroma",
    ]
    assert digest.bullets[0].citations == [context.highlights[ales - 1].id]


def test_two_stage_tops_a_short_answer_up_with_the_drafts_best_other_key_sentences(
    store: SentenceStore, embedder: Embedder, tmp_path: Path
) -> None:
    # before: the model's one kept bullet was the whole TL;DR (the demo thread's digest had one bullet, a
    # copied sentence, while its draft had shown five key sentences)
    context = context_for(store, embedder)
    texts = [h.text for h in context.highlights]
    ales = texts.index(next(t for t in texts if t.startswith("Serve ales"))) + 1
    model = memorized_model(tmp_path, context, f"- [{ales}] Serve ales warmer than lagers\n")
    params: dict[str, Any] = {"model_path": str(model), "constrained": False}
    options = DigestOptions(k=6, max_bullets=3, use_cache=False, params=params)
    events = list(digest_events(store, context.thread.id, options, embedder=embedder))
    digest = events[-1].digest
    assert digest is not None
    ales_id = context.highlights[ales - 1].id
    assert [(b.text, b.citations, b.from_draft) for b in digest.bullets[:1]] == [
        ("Serve ales warmer than lagers", [ales_id], False)
    ]
    added = digest.bullets[1:]
    # the draft's bullets on the best ranked highlights but the one the model cited, in the draft's order
    ranks = {h.id: h.rank for h in context.highlights}
    others = [b for b in digest.draft if ales_id not in b.citations]
    best = sorted(others, key=lambda b: min(ranks[c] for c in b.citations))[:2]
    assert [b.citations for b in added] == [b.citations for b in others if b in best]
    assert [(b.text, b.from_draft) for b in added] == [(b.text, True) for b in others if b in best]
    assert "the local stage kept 1 bullet(s): 2 key sentence(s) of the extractive draft follow, quoted" in (
        digest.notices
    )

    alone = DigestOptions(k=6, max_bullets=3, use_cache=False, params={**params, "top_up": 0})
    digest = list(digest_events(store, context.thread.id, alone, embedder=embedder))[-1].digest
    assert digest is not None and [b.text for b in digest.bullets] == ["Serve ales warmer than lagers"]


def test_topped_up_adds_only_what_is_missing_and_not_what_is_cited() -> None:
    def bullet(text: str, *cites: str) -> Bullet:
        return Bullet(text=text, citations=list(cites))

    draft = [bullet("a", "p:0"), bullet("b", "p:1"), bullet("c", "p:2"), bullet("d", "p:3")]
    ranks = {"p:0": 4, "p:1": 1, "p:2": 3, "p:3": 2}
    final = [bullet("model", "p:1")]
    assert [b.text for b in topped_up(final, draft, 3, ranks)] == ["c", "d"]  # p:1 cited; best 2, draft order
    assert all(b.from_draft for b in topped_up(final, draft, 3, ranks))
    assert [b.text for b in topped_up(final, draft, 3)] == ["a", "c"]  # without ranks: the draft's first
    assert topped_up([*final, bullet("m2", "p:9"), bullet("m3", "p:8")], draft, 3, ranks) == []
    assert topped_up(final, draft, 0, ranks) == []
    assert [b.text for b in topped_up(final, draft, 10, ranks)] == ["a", "c", "d"]  # all the draft has


@pytest.mark.parametrize("bad", [True, -1, 21, 2.5, "many", None])
def test_a_bad_top_up_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="top_up"):
        build_summarizer("two_stage", {"top_up": bad})
