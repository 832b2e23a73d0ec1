"""The digest page with a language model configured (headless Chromium, real uvicorn): the key sentences
show at once, then the model's bullets, whose citation links jump to the sentence they cite.

The model is a tiny chat LM trained in the test to answer this thread's exact prompt with one bullet, so the
page shows a known, supported, cited bullet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from digest_helpers import tiny_chat_lm

from netutil import serve_app
from tldrlab.config import get_settings
from tldrlab.data.threads import Thread
from tldrlab.digest.highlights import Highlight
from tldrlab.digest.summarizers import SummaryContext
from tldrlab.digest.summarizers.chat_prompt import chat_messages, render_chat
from tldrlab.digest.summarizers.local import prompt_order
from tldrlab.service.app import create_app

THREAD = {
    "id": "cans-1",
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
            "text": "Pour it into a glass and you will not taste the difference.",
        },
    ],
}
BULLETS = {  # what the tiny model is trained to answer: key sentence -> its bullet
    "Cans keep light out completely": "Cans keep light out, so the hops stay fresh",
    "Bottles let some light in": "Bottles let some light in",
    "Pour it into a glass": "In a glass you will not taste the difference",
}
BULLET = BULLETS["Cans keep light out completely"]


@pytest.mark.slow
def test_page_shows_the_models_cited_bullets(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer

    with serve_app(create_app()) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.post("/threads", json=THREAD).status_code == 201
            found = client.get(f"/threads/{THREAD['id']}/highlights", params={"k": 8}).json()["highlights"]
        # numbered as the summarizer's prompt numbers them: in thread order
        highlights = prompt_order([Highlight.model_validate(h) for h in found], "thread")
        numbers = {
            start: next(i for i, h in enumerate(highlights, start=1) if h.text.startswith(start))
            for start in BULLETS
        }
        number = numbers["Cans keep light out completely"]
        context = SummaryContext(thread=Thread.model_validate(THREAD), highlights=highlights, max_bullets=5)
        tokenizer = AutoTokenizer.from_pretrained(tiny_chat_lm(tmp_path / "tok"))
        answer = "".join(f"- [{numbers[start]}] {bullet}\n" for start, bullet in BULLETS.items())
        model = tiny_chat_lm(
            tmp_path / "lm", memorize=[(render_chat(tokenizer, chat_messages(context)), answer)]
        )
        monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", str(model))  # the default digest's model, read per request
        get_settings.cache_clear()

        page = browser.new_page(viewport={"width": 1280, "height": 420})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(url + "/")
            page.wait_for_selector(f"#thread-select option[value='{THREAD['id']}']", state="attached")
            assert page.eval_on_selector("#summarizer-select", "s => s.value") == "two_stage"
            page.select_option("#thread-select", THREAD["id"])
            page.click("#digest-button")
            page.wait_for_selector("body[data-digest-done='1']", timeout=60_000)
            # the draft (key sentences) came first and stays one click away
            assert page.locator("#draft-bullets li").count() == 3  # the answers' sentences
            assert page.locator("#draft").get_attribute("hidden") is None
            # the model's bullets, cited, with links to the sentences they cite
            bullets = page.locator("#bullets li")
            assert bullets.count() == 3 and bullets.first.inner_text().startswith(BULLET)
            assert page.locator("#notices li").count() == 0
            citation = bullets.first.locator("a.cite")
            target = citation.get_attribute("data-hid")
            assert target == highlights[number - 1].id
            shown = [h["id"] for h in found].index(target) + 1  # the page numbers highlights by rank
            assert citation.inner_text() == f"[{shown}]"
            page.evaluate("window.scrollTo(0, 0)")
            citation.click()
            selector = f"mark.hl[data-hid='{target}']"
            page.wait_for_function(
                "(sel) => document.querySelector(sel).classList.contains('flash')", arg=selector, timeout=5000
            )
            assert page.locator(selector).inner_text() == highlights[number - 1].text
            # a key sentence the digest added after a model's short answer (`from_draft`) reads as a quote
            page.evaluate(
                """([kept, quoted, hid]) => fillBullets(document.getElementById("bullets"),
                    [{text: kept, citations: [hid]}, {text: quoted, citations: [hid], from_draft: true}],
                    [{id: hid}])""",
                [BULLET, "Cans keep light out.", target],
            )
            assert bullets.nth(0).get_attribute("class") is None
            assert bullets.nth(1).get_attribute("class") == "from-draft"
            assert bullets.nth(1).inner_text() == "\u201cCans keep light out.\u201d[1]"
            assert not errors, errors
        finally:
            page.close()
