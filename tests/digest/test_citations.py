"""Citations of generated bullets: parsing edge cases, the support check (real MiniLM), and the decoding
grammar that keeps a causal LM on `- text [k]` lines (on a real tokenizer built in the test)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from digest_helpers import tiny_chat_lm

from tldrlab.digest.cited_list import CitedListGrammar, complete_bullets, token_classes
from tldrlab.digest.highlights import Highlight
from tldrlab.digest.summarizers.base import bullet_key, parse_bullet_citations, parse_citations
from tldrlab.digest.summarizers.local import candidate_bullets
from tldrlab.digest.summarizers.support import CitedBullet, check_support, overlap, recite_unsupported
from tldrlab.embed.base import Embedder


@pytest.mark.parametrize(
    ("text", "cited", "invalid", "clean"),
    [
        ("Serve ales warm [2]", [1], [], "Serve ales warm"),
        ("Ales warm [2][5].", [1, 4], [], "Ales warm."),
        ("Ales warm [2, 5] and cold [5]", [1, 4], [], "Ales warm and cold"),
        ("Ales [2; 3]", [1, 2], [], "Ales"),
        ("Ales [2 and 4]", [1, 3], [], "Ales"),
        ("Ales [2-4]", [1, 2, 3], [], "Ales"),
        ("Ales [4–2]", [1, 2, 3], [], "Ales"),  # en dash, written backwards
        ("Ales [9]", [], [9], "Ales"),  # out of range
        ("Ales [0] [3]", [2], [0], "Ales"),
        ("Ales [4-999]", [3, 4, 5], [7], "Ales"),  # a range past the end names one invalid number, not 993
        ("Ales [2][2] [2]", [1], [], "Ales"),  # repeated
        ("No citation at all", [], [], "No citation at all"),
        ("Not a citation [a] or [] here", [], [], "Not a citation [a] or [] here"),
    ],
)
def test_citation_parsing_edge_cases(text: str, cited: list[int], invalid: list[int], clean: str) -> None:
    parsed = parse_bullet_citations(text, 6)
    assert (parsed.cited, parsed.invalid, parsed.text) == (cited, invalid, clean)
    assert parsed.has_citations == bool(cited or invalid)
    assert parse_citations(text, 6) == (clean, cited)


def test_candidate_bullets_merge_repeats_and_cap() -> None:
    # repeats (case, whitespace, punctuation) merge into the first, citing what each cited, before the cap
    text = (
        "- Ales warm [1]\n- ales  WARM [2]\n- Lagers cold [9]\n- Ales, warm! [1]\n- Glass [3]\n- Extra [4]\n"
        "- Cut [1"
    )
    found = candidate_bullets(text, 5, max_bullets=3)
    assert [(c.text, c.cited, c.invalid) for c in found] == [
        ("Ales warm", [0, 1], []),
        ("Lagers cold", [], [9]),
        ("Glass", [2], []),
    ]
    assert [c.text for c in candidate_bullets(text, 5, max_bullets=10)][-1] == "Cut"  # "[1" cut off


def test_bullets_that_differ_by_a_symbol_inside_a_word_are_not_merged() -> None:
    # the key was the letters and digits only: "C++" and "C" were one bullet, and the second was dropped
    text = "- Use C++ for speed [1]\n- Use C for speed [2]\n- Use C# for speed [3]\n- use c++, for speed! [4]"
    found = candidate_bullets(text, 5, max_bullets=5)
    assert [(c.text, c.cited) for c in found] == [
        ("Use C++ for speed", [0, 3]),
        ("Use C for speed", [1]),
        ("Use C# for speed", [2]),
    ]
    assert bullet_key("Costs rose 5%.") != bullet_key("Costs rose 5.")
    assert bullet_key('"Serve" (ales) warm...') == bullet_key("serve ales warm")


def highlights_of(texts: list[str]) -> list[Highlight]:
    return [
        Highlight(
            id=f"p{i}:0",
            rank=i,
            score=1.0,
            text=t,
            thread_id="t",
            post_id=f"p{i}",
            post_number=i,
            sentence_index=0,
            start=0,
            end=len(t),
        )
        for i, t in enumerate(texts, start=1)
    ]


SENTENCES = [
    "Serve ales warmer than lagers, around 10 to 13 degrees Celsius.",
    "A tulip glass keeps the aroma in.",
    "My cat sleeps on the keyboard every afternoon.",
]


def test_support_keeps_supporting_citations_and_drops_or_marks_the_rest(embedder: Embedder) -> None:
    highlights = highlights_of(SENTENCES)
    bullets = [
        CitedBullet("Ales are served warmer than lagers", [0, 2]),  # [3] does not support it
        CitedBullet("Ales are served warmer than lagers", [2]),  # only an unrelated sentence
        CitedBullet("Use a tulip glass to keep the aroma", [1]),
    ]
    kept = check_support(bullets, highlights, embedder=embedder, threshold=0.5)
    assert [(b.text, b.citations) for b in kept] == [
        ("Ales are served warmer than lagers", ["p1:0"]),
        ("Use a tulip glass to keep the aroma", ["p2:0"]),
    ]
    assert all(b.supported and b.support is not None and b.support >= 0.5 for b in kept)
    marked = check_support(bullets, highlights, embedder=embedder, threshold=0.5, mark=True)
    assert [b.supported for b in marked] == [True, False, True]
    assert marked[1].citations == ["p3:0"] and marked[1].support is not None and marked[1].support < 0.5
    by_overlap = check_support(bullets, highlights, measure="overlap", threshold=0.5)
    assert [b.citations for b in by_overlap] == [["p1:0"], ["p2:0"]]


def test_a_bullet_under_a_wrong_number_is_re_cited_to_the_sentence_it_restates(embedder: Embedder) -> None:
    """The bundled model wrote sentence 8's words under [7]; the bullet was dropped although the sentence it
    rests on was among the key sentences. Re-citing keeps it, citing the sentence that supports it."""
    highlights = highlights_of(SENTENCES)
    bullets = [
        CitedBullet("Use a tulip glass to keep the aroma", [2]),  # restates [2], cites [3]
        CitedBullet("Ales are served warmer than lagers", [0]),  # cited right: untouched
        CitedBullet("Quantum chromodynamics binds quarks", [1]),  # no key sentence supports it
    ]
    for measure in ("cosine", "overlap"):
        recited, count = recite_unsupported(
            bullets, highlights, measure=measure, threshold=0.5, embedder=embedder
        )
        assert count == 1 and [b.cited for b in recited] == [[1], [0], [1]]
        kept = check_support(recited, highlights, measure=measure, threshold=0.5, embedder=embedder)
        assert [(b.text, b.citations) for b in kept] == [
            ("Use a tulip glass to keep the aroma", ["p2:0"]),
            ("Ales are served warmer than lagers", ["p1:0"]),
        ]
    assert recite_unsupported(bullets[1:2], highlights, threshold=0.5, embedder=embedder) == (bullets[1:2], 0)
    # one supporting citation is enough: a bullet citing [1][3] is not re-cited (check_support drops [3])
    both = [CitedBullet("Ales are served warmer than lagers", [0, 2])]
    assert recite_unsupported(both, highlights, threshold=0.5, embedder=embedder) == (both, 0)


# Test fixtures, written by hand for these tests (not measured data): a bullet and the sentence it cites.
# MiniLM scores every pair 0.83-0.99, above the 0.77 default, so cosine alone keeps each bullet.
CONTRADICTING = [
    ("This tap water is safe to drink.", "This tap water is not safe to drink."),
    (
        "Unpasteurised beer is safe to drink after its best-before date.",
        "Unpasteurised beer isn't safe to drink after its best-before date.",
    ),
    ("Lagers should never be stored warm.", "Lagers should be stored warm."),
    ("Bottle-conditioned beers contain live yeast.", "Bottle-conditioned beers contain no live yeast."),
    ("Hefeweizen is brewed without wheat.", "Hefeweizen is brewed with wheat."),
    ("Guinness is hardly bitter.", "Guinness is bitter."),
    ("Stouts are not served cold.", "Stouts are served cold."),
    ("The brewery filters its lager.", "The brewery doesn't filter its lager."),
    ("Non-alcoholic beer contains alcohol.", "Non-alcoholic beer contains no alcohol."),
    # denied by other words than "not": "rarely", "few", an antonym, "un-" (all kept before)
    ("Stouts are rarely served cold.", "Stouts are served cold."),
    ("Few breweries filter their lager.", "Most breweries filter their lager."),
    ("This tap water is unsafe to drink.", "This tap water is safe to drink."),
    ("Porters are low in alcohol.", "Porters are high in alcohol."),
    ("Lagers are best served cold.", "Lagers are best served warm."),
    ("The brewery sells its lager unfiltered.", "The brewery sells its lager filtered."),
]
AGREEING = [
    ("These beers have no gluten.", "These beers contain no gluten at all."),  # both say "no"
    ("Gluten-free beers contain no gluten.", "Gluten-free beers are made without any gluten."),
    ("Most porters have no roastiness.", "Most porters have little to no roastiness."),
    ("Most porters have little roast character.", "Most porters have little to no roastiness."),
    ("This tap water is not safe to drink.", "This tap water isn't safe to drink."),
    ("Lagers should never be stored warm.", "Lagers should not be stored warm."),
    ("Serve ales warmer than lagers.", "Serve ales warmer than lagers, not ice cold."),  # "not" elsewhere
    ("Bottled beer can taste better than draught.", "Bottled beer can taste better than draught, not worse."),
    ("A few breweries filter their lager.", "Some breweries filter their lager."),  # "a few" denies nothing
    ("This tap water is unsafe.", "This tap water is not safe."),
    ("Stouts are seldom served cold.", "Stouts are rarely served cold."),
    ("Lagers should not be warm.", "Lagers should be cold."),  # both deny "warm"
    ("Stouts are high in alcohol.", "Stouts are high in alcohol and low in bitterness."),  # "high" both ways
    ("Unless it is aged, the beer tastes less bitter.", "The beer tastes less bitter unless it is aged."),
    ("I am not sure this beer is a stout.", "This beer is a stout."),  # "not sure" doubts, denies nothing
]


def test_a_citation_that_contradicts_its_bullet_does_not_support_it(embedder: Embedder) -> None:
    """Cosine is high for two sentences on one topic that disagree: "X is safe to drink" citing "X is not
    safe to drink" was kept as supported. A citation that disagrees with its bullet in negation is now
    refused, by either measure; agreeing pairs, those where both say "no" included, stay supported."""
    pairs = CONTRADICTING + AGREEING
    highlights = highlights_of([sentence for _, sentence in pairs])
    bullets = [CitedBullet(bullet, [i]) for i, (bullet, _) in enumerate(pairs)]
    expected = [False] * len(CONTRADICTING) + [True] * len(AGREEING)
    marked = check_support(bullets, highlights, embedder=embedder, mark=True)  # default measure, threshold
    assert [b.supported for b in marked] == expected
    kept = check_support(bullets, highlights, embedder=embedder)
    assert [b.text for b in kept] == [bullet for bullet, _ in AGREEING]
    # the similarity alone keeps every one of them: the negation check is what refuses the contradictions
    blind = check_support(bullets, highlights, embedder=embedder, mark=True, polarity=False)
    assert all(b.supported for b in blind)
    # content-word overlap is blind to negation too ("not" and "no" are stop words): the same check applies
    by_overlap = check_support(bullets, highlights, measure="overlap", threshold=0.5, mark=True)
    assert [b.supported for b in by_overlap] == expected
    overlap_alone = check_support(
        bullets, highlights, measure="overlap", threshold=0.5, mark=True, polarity=False
    )
    assert all(b.supported for b in overlap_alone)


def test_a_bullet_is_not_re_cited_to_a_sentence_that_contradicts_it(embedder: Embedder) -> None:
    # test fixtures: the only similar key sentence denies the bullet; re-citing must not pick it
    highlights = highlights_of(["This tap water is not safe to drink.", SENTENCES[2]])
    bullets = [CitedBullet("This tap water is safe to drink.", [1])]
    assert recite_unsupported(bullets, highlights, embedder=embedder) == (bullets, 0)
    assert check_support(bullets, highlights, embedder=embedder) == []
    # with a key sentence that agrees, the bullet is re-cited to that one, not to the first that scores high
    highlights = highlights_of(
        ["This tap water is not safe to drink.", SENTENCES[2], "Our tap water is safe to drink."]
    )
    recited = recite_unsupported(bullets, highlights, embedder=embedder)
    assert recited == ([CitedBullet(bullets[0].text, [2])], 1)


def test_the_local_summarizer_applies_the_check_unless_told_not_to(embedder: Embedder) -> None:
    from digest_helpers import sample_thread

    from tldrlab.digest.summarizers import SummaryContext
    from tldrlab.digest.summarizers.local import LocalSummarizer

    # test fixtures: the model's answer (no model runs: its text is given) and a key sentence that denies it
    context = SummaryContext(
        thread=sample_thread(), highlights=highlights_of([CONTRADICTING[0][1]]), embedder=embedder
    )
    text = f"- {CONTRADICTING[0][0]} [1]\n"
    *_, bullets = LocalSummarizer(model_path="unused").cited_bullets(text, context)
    assert bullets == []
    *_, bullets = LocalSummarizer(model_path="unused", support_polarity=False).cited_bullets(text, context)
    assert isinstance(bullets, list) and [b.text for b in bullets] == [CONTRADICTING[0][0]]


def test_overlap_counts_content_words() -> None:
    assert overlap("ales warmer lagers", SENTENCES[0]) == 1.0
    assert overlap("the and of", "anything") == 1.0  # nothing to check
    assert math.isclose(overlap("ales warmer cats", SENTENCES[0]), 2 / 3)


@pytest.fixture(scope="module")
def grammar_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_chat_lm(tmp_path_factory.mktemp("chat")))


def allowed(grammar: CitedListGrammar, tokenizer: Any, text: str) -> set[str]:
    row = grammar.constrain(text, torch.zeros(len(tokenizer)))
    return {tokenizer.decode([i]) for i in torch.nonzero(torch.isfinite(row)).flatten().tolist()}


def test_grammar_cite_last(grammar_tokenizer: Any) -> None:
    tok = grammar_tokenizer
    eos = [tok.eos_token_id]
    grammar = CitedListGrammar(token_classes(tok, eos), n_sentences=12, max_words=6)
    assert allowed(grammar, tok, "") == {"-"}  # a list starts with a bullet
    text_state = allowed(grammar, tok, "- Serve")
    assert " [" in text_state and "\n" not in text_state and "]" not in text_state
    assert not any("\n" in t or "]" in t for t in text_state)
    assert allowed(grammar, tok, "- Serve ales warm [") == {str(d) for d in range(1, 10)}
    assert allowed(grammar, tok, "- Serve ales warm [1") == {"0", "1", "2", "]", "]["}  # 10..12 or close
    assert allowed(grammar, tok, "- Serve ales warm [2") == {"]", "]["}  # 20+ does not exist
    end = tok.decode(eos)
    assert allowed(grammar, tok, "- Serve ales warm [2]") == {"\n", end, " [", "["}  # more, or the end
    assert allowed(grammar, tok, "- Serve ales warm [2]\n") == {
        "-",
        end,
    }  # next bullet or the end of the list
    # three citations at most: then only the end of the bullet
    assert allowed(grammar, tok, "- Ales [1][2][3]") == {"\n", end}
    # after max_words words the bullet must close with a citation
    assert allowed(grammar, tok, "- one two three four five six") == {" ["}


def test_grammar_moves_the_end_of_a_bullet_onto_a_citation(grammar_tokenizer: Any) -> None:
    tok = grammar_tokenizer
    classes = token_classes(tok, [tok.eos_token_id])
    grammar = CitedListGrammar(classes, n_sentences=3)
    row = torch.full((len(tok),), -10.0)
    row[classes.newline[0]] = 5.0  # the model wants to end the line
    out = grammar.constrain("- Serve ales warm", row)
    assert int(torch.argmax(out)) == classes.open_spaced  # ... so it opens a citation instead
    short = grammar.constrain("- Ales", row)  # too short to end: neither
    assert torch.isinf(short[classes.newline[0]]) and short[classes.open_spaced] == -10.0


def test_grammar_cite_first_and_reuse_penalty(grammar_tokenizer: Any) -> None:
    tok = grammar_tokenizer
    eos = tok.decode([tok.eos_token_id])
    grammar = CitedListGrammar(token_classes(tok, [tok.eos_token_id]), n_sentences=3, order="first")
    assert allowed(grammar, tok, "- Ales warm [1]\n-") == {" ["}
    after = allowed(grammar, tok, "- [2]")
    assert {" [", "[", " ales", " lagers"} <= after  # another citation, or the text
    assert "\n" not in after and eos not in after and "]" not in after  # a bullet needs text after it
    assert "\n" in allowed(grammar, tok, "- [2] Serve ales warm")
    row = grammar.constrain("- [1] Ales warm\n- [", torch.zeros(len(tok)))
    one, two = tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("2")
    assert row[one] == -grammar.reuse_penalty and row[two] == 0.0


def test_complete_bullets_ignore_citations_and_the_open_line() -> None:
    assert complete_bullets("- Ales warm [1]\n- Ales WARM! [2]\n- Lag") == ["ales warm", "ales warm"]


def test_token_classes_are_cached_on_the_tokenizer(grammar_tokenizer: Any) -> None:
    first = token_classes(grammar_tokenizer, [grammar_tokenizer.eos_token_id])
    assert token_classes(grammar_tokenizer, [grammar_tokenizer.eos_token_id]) is first
    assert first.digits and first.open_spaced is not None and first.eos == [grammar_tokenizer.eos_token_id]


def test_the_prompt_numbers_key_sentences_in_thread_order() -> None:
    from tldrlab.digest.summarizers.local import prompt_order

    ranked = highlights_of(SENTENCES)
    ranked[0] = ranked[0].model_copy(update={"post_number": 3, "sentence_index": 1})
    ranked[2] = ranked[2].model_copy(update={"post_number": 1})
    assert [h.text for h in prompt_order(ranked, "thread")] == [SENTENCES[2], SENTENCES[1], SENTENCES[0]]
    assert prompt_order(ranked, "rank") == ranked


def test_grammar_min_bullets_keeps_the_answer_going(grammar_tokenizer: Any) -> None:
    tok = grammar_tokenizer
    classes = token_classes(tok, [tok.eos_token_id])
    end = tok.decode([tok.eos_token_id])
    last = CitedListGrammar(classes, n_sentences=3, min_bullets=2)
    assert allowed(last, tok, "- Ales warm [1]\n") == {"-"}  # one bullet: not yet the end
    assert allowed(last, tok, "- Ales warm [1]") == {"\n", " [", "["}
    assert allowed(last, tok, "- Ales warm [1]\n- Lagers cold [2]") == {"\n", " [", "[", end}
    first = CitedListGrammar(classes, n_sentences=3, order="first", min_bullets=2)
    row = torch.full((len(tok),), -10.0)
    row[tok.eos_token_id] = 5.0  # the model wants to end the answer after its first bullet
    out = first.constrain("- [1] Serve ales warm", row)
    assert torch.isinf(out[tok.eos_token_id]) and int(torch.argmax(out)) == classes.newline[0]
    out = first.constrain("- [1] Serve ales warm\n- [2] Lagers are cold", row)
    assert int(torch.argmax(out)) == tok.eos_token_id  # the second bullet may end it
