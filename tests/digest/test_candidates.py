"""Which sentences may be highlights and bullets: the question, boilerplate lines and quoted text (real
beer.stackexchange.com threads from the bundled samples, the real MiniLM embedder, the real store)."""

from __future__ import annotations

from tldrlab.data.readers import read_threads
from tldrlab.data.threads import Post, Thread
from tldrlab.digest.candidates import is_boilerplate, is_bullet_worthy, is_title_like
from tldrlab.digest.highlights import HighlightOptions, thread_highlights
from tldrlab.digest.ingest import ingest_threads
from tldrlab.digest.pipeline import DigestOptions, make_digest
from tldrlab.embed.base import Embedder
from tldrlab.samples import sample_path
from tldrlab.store.base import SentenceStore


def sample_threads() -> dict[str, Thread]:
    threads = read_threads(sample_path("beer_threads")) + read_threads(sample_path("beer_thread"))
    return {t.id: t for t in threads}


def test_boilerplate_lines_from_real_posts() -> None:
    for line in [
        "(Source: BeerSci: What Is The Difference Between A Lager And An Ale?)",
        "Source: http://www.homebrew-zone.com",
        "Source: Twenty Things Worth Knowing About Beer.",
        "(From @Grohlier's comment)",
        "http://www.brewersassociation.org/pages/government-affairs/growler-laws",
        "Hope this helps!",
        "Thanks!",
        "EDIT:",
        "*",
    ]:
        assert is_boilerplate(line), line
    for line in [
        "Ales and lagers are brewed with different types of yeast.",
        "From my experience, lagers keep longer.",
        "Sources differ on this, but most say ale yeasts ferment warmer.",
        "See http://example.org for the recipe, then cool the wort to 20 degrees.",
    ]:
        assert not is_boilerplate(line), line
    assert is_title_like("Beer Experiments: Temperature Regulation Part 2")
    assert not is_title_like("Most porters have little to no roastiness.")
    assert not is_bullet_worthy("Is there a difference and what is it?", "answer", True)
    assert not is_bullet_worthy("Porters and stouts seem very similar.", "question", True)
    assert is_bullet_worthy("Porters and stouts seem very similar.", "post", False)
    assert not is_bullet_worthy("Check out my results here:", "answer", True)


def test_extractive_tldr_carries_answers_not_the_question_or_boilerplate(
    store: SentenceStore, embedder: Embedder
) -> None:
    threads = sample_threads()
    ingest_threads(list(threads.values()), store, embedder)
    for thread in threads.values():
        digest = make_digest(store, thread.id, DigestOptions(use_cache=False), embedder=embedder)
        assert len(digest.bullets) == 5, thread.title
        kinds = {p.id: p.kind for p in thread.posts}
        for bullet in digest.bullets:
            post_id = bullet.citations[0].split(":")[0]
            # "What's the difference between a porter and a stout?" led with the question's first sentence
            assert kinds[post_id] == "answer", (thread.title, bullet.text)
            # "(Source: BeerSci: ...)" of answer 398 and the link text of answer 635 were bullets
            assert not is_boilerplate(bullet.text) and not is_title_like(bullet.text), bullet.text
        for highlight in digest.highlights:
            assert not is_boilerplate(highlight.text), highlight.text


def quoting_thread() -> Thread:
    """The reported case: an answer quotes the question and another answer's sentence with "> "."""
    question = "Is a Mindstorm considered AI? I mean the Lego robot kit that follows a line with its sensors."
    return Thread(
        id="t-quote",
        title="Is a Mindstorm considered AI?",
        posts=[
            Post(id="q", number=1, kind="question", text=question),
            Post(
                id="a1",
                number=2,
                kind="answer",
                score=3,
                text=(
                    "A Mindstorm robot runs a program its owner wrote, so on its own it is not AI. "
                    "It becomes AI when the program learns from the sensors instead of following fixed rules."
                ),
            ),
            Post(
                id="a2",
                number=3,
                kind="answer",
                score=1,
                text=(
                    "> Is a Mindstorm considered AI?\n\n"
                    "> It becomes AI when the program learns from the sensors "
                    "instead of following fixed rules.\n\n"
                    "I agree with that: a line follower with fixed rules is control engineering, not AI. "
                    "Learning from data is what people call AI today."
                ),
            ),
        ],
    )


def test_quoted_text_is_never_a_highlight_and_its_original_is_credited(
    store: SentenceStore, embedder: Embedder
) -> None:
    thread = quoting_thread()
    ingest_threads([thread], store, embedder)
    everything = thread_highlights(
        store, thread.id, HighlightOptions(k=20, max_per_post=None), embedder=embedder
    )
    texts = [h.text for h in everything]
    assert not any(t.startswith(">") for t in texts), texts
    learns = [h for h in everything if h.text.startswith("It becomes AI when the program learns")]
    assert [h.post_id for h in learns] == ["a1"]  # the original post, once
    # the question itself is still a highlight (a reader looks for it), but no bullet restates it
    assert any(h.post_id == "q" for h in everything)
    digest = make_digest(store, thread.id, DigestOptions(use_cache=False, max_bullets=3), embedder=embedder)
    assert digest.bullets and all(not b.text.endswith("?") for b in digest.bullets)
    assert all(b.citations[0].split(":")[0] != "q" for b in digest.bullets)
    # outside_quotes only lets through quotes of text that is not in the thread: these are both in it
    lenient = thread_highlights(
        store,
        thread.id,
        HighlightOptions(k=20, max_per_post=None, outside_quotes=True),
        embedder=embedder,
    )
    assert not any(h.text.startswith(">") for h in lenient)


def test_every_sentence_of_a_quoted_line_is_quoted_text() -> None:
    """The second sentence of a "> " line does not start with ">" itself: it is quoted all the same."""
    from tldrlab.digest.candidates import highlight_candidates, quoted_mask
    from tldrlab.digest.ingest import post_sentence_records

    reply = Post(
        id="a1",
        number=2,
        text="> Lagers want cold storage. Ales like it warmer.\nI disagree with both claims.",
    )
    thread = Thread(
        id="t", title="Storage", posts=[Post(id="q1", number=1, text="How do I store beer?"), reply]
    )
    records = [r for post in thread.posts for r in post_sentence_records(thread, post)]
    assert [r.text for r in records][2] == "Ales like it warmer."
    assert quoted_mask(records, thread).tolist() == [False, True, True, False]
    assert highlight_candidates(records, thread).tolist() == [True, False, False, True]


def test_a_quoted_line_after_a_lone_carriage_return_or_another_line_break_is_quoted_text() -> None:
    """Lines were told apart by "\\n" alone: after a lone CR (old Mac text, some clients), U+2028 or NEL the
    "> " line was no quote, and its words became highlights credited to the post quoting them."""
    from tldrlab.digest.candidates import highlight_candidates
    from tldrlab.digest.ingest import post_sentence_records

    for line_break in ("\n", "\r\n", "\r", "\u2028", "\x85"):
        quote = f"> Lagers want cold storage. Ales like it warmer.{line_break}"
        text = f"I read this advice.{line_break}{quote}Not in my cellar."
        thread = Thread(id="t", title="Storage", posts=[Post(id="a1", number=1, text=text)])
        records = post_sentence_records(thread, thread.posts[0])
        assert [r.text for r in records][1:3] == ["> Lagers want cold storage.", "Ales like it warmer."]
        assert highlight_candidates(records, thread).tolist() == [True, False, False, True], repr(line_break)


NON_LATIN = [
    "Пиво лучше подавать слегка охлаждённым.",  # Russian
    "כוס טוליפ שומרת על הקצף.",  # Hebrew
    "يجب تقديم البيرة باردة قليلا.",  # Arabic
    "啤酒应该冷着喝。",  # Chinese
    "Η μπύρα σερβίρεται κρύα.",  # Greek
    "ビールは冷やして飲むのがいい。",  # Japanese
]


def test_sentences_in_any_script_are_words_not_boilerplate() -> None:
    # a "word" was [A-Za-z]+ or digits, so every sentence in Cyrillic, Hebrew, Arabic, Greek, Chinese or
    # Japanese had "no word at all" and was boilerplate: a forum thread in those scripts had no highlights and
    # no TL;DR ("the thread has no sentences to summarize")
    for line in NON_LATIN:
        assert not is_boilerplate(line), line
        assert is_bullet_worthy(line, "answer", True), line
    assert is_boilerplate("* * *") and is_boilerplate("→ …")
    assert is_title_like("Эксперименты С Пивом: Температура Брожения Часть 2")  # as its English twin
    assert not is_title_like("Большинство портеров почти не жжёные")


def test_questions_and_lead_ins_of_other_scripts_are_no_bullets(
    store: SentenceStore, embedder: Embedder
) -> None:
    # only "?" and ":" were known: an Arabic question ("؟"), a Chinese one ("？") or a Chinese lead-in ("：")
    # in an answer became a bullet of the TL;DR, as an English one does not
    for line in ("هل تفضل البيرة باردة؟", "为什么要冷着喝？", "做法如下：", "Why cold?", "As follows:"):
        assert not is_bullet_worthy(line, "answer", True), line
    thread = Thread(
        id="ar-1",
        title="كيف أقدم البيرة؟",
        posts=[
            Post(id="q", number=1, kind="question", text="كيف أقدم البيرة؟ باردة أم دافئة؟"),
            Post(id="a", number=2, kind="answer", text="هل تريد البيرة باردة؟ قدم اللاغر باردا جدا."),
            Post(id="b", number=3, kind="answer", text="الإيل أفضل بدرجة حرارة القبو."),
        ],
    )
    ingest_threads([thread], store, embedder)
    options = DigestOptions(summarizer="extractive", use_cache=False, k=5)  # every sentence a highlight
    digest = make_digest(store, "ar-1", options, embedder=embedder)
    assert len(digest.highlights) == 5
    assert [b.text for b in digest.bullets] == ["قدم اللاغر باردا جدا.", "الإيل أفضل بدرجة حرارة القبو."]


def test_a_thread_in_another_script_gets_highlights_and_bullets(
    store: SentenceStore, embedder: Embedder
) -> None:
    thread = Thread(
        id="ru-1",
        title="Какое пиво пить холодным?",
        posts=[
            Post(id="q", number=1, kind="question", text="Какое пиво лучше пить холодным? Лагер или эль?"),
            Post(
                id="a",
                number=2,
                kind="answer",
                text="Лагер подают холодным. Эль лучше пить чуть теплее. Стаут можно пить почти комнатным.",
            ),
        ],
    )
    ingest_threads([thread], store, embedder)
    digest = make_digest(
        store, "ru-1", DigestOptions(summarizer="extractive", use_cache=False), embedder=embedder
    )
    assert digest.highlights and digest.bullets, digest
    assert {b.text for b in digest.bullets} <= {
        "Лагер подают холодным.",
        "Эль лучше пить чуть теплее.",
        "Стаут можно пить почти комнатным.",
    }
