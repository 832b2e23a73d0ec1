"""Every sentence of every post of the beer dump maps back to its exact text, in order, losing nothing.

The whole-dump test runs without coverage tracing (`no_cover`): it spends its time in pysbd's regular
expressions, which tracing made twice as slow (14 CPU-s instead of 7), and the tests of tests/data cover the
same lines of the readers and of `split_sentences` without it.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tldrlab.data.readers import read_threads
from tldrlab.data.sentences import WINDOW_CHARS, split_sentences


def _non_space(text: str) -> str:
    return re.sub(r"\s", "", text)


@pytest.mark.slow
@pytest.mark.no_cover
def test_offsets_over_all_beer_posts(shared_data: Path) -> None:
    threads = read_threads(shared_data / "stackexchange_beer")
    posts = [post for thread in threads for post in thread.posts]
    assert len(posts) == 663 + 1572
    total = 0
    for post in posts:
        sentences = split_sentences(post.text)
        assert [s.index for s in sentences] == list(range(len(sentences)))
        for sentence in sentences:
            assert post.text[sentence.start : sentence.end] == sentence.text, post.url
            assert sentence.text == sentence.text.strip() and sentence.text
        assert all(a.end <= b.start for a, b in pairwise(sentences)), post.url
        # nothing is lost: the sentences hold every non-space character of the post
        assert _non_space("".join(s.text for s in sentences)) == _non_space(post.text), post.url
        total += len(sentences)
    assert total > 10 * len(threads)


def test_offsets_with_irregular_whitespace() -> None:
    text = "  First  sentence here.   Second one!\n\n\nThird\tone?  \n\n Fourth, no end"
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "First  sentence here.",
        "Second one!",
        "Third\tone?",
        "Fourth, no end",
    ]
    assert all(text[s.start : s.end] == s.text for s in sentences)
    assert split_sentences("") == [] and split_sentences(" \n\n ") == []


def test_punctuation_after_the_last_sentence_stays_with_it() -> None:
    # pysbd drops marks after a paragraph's last sentence: "Really.!!" came back as "Really." and the "?!"
    # of "Hi there! ?!" was in no sentence, so the sentences no longer covered the text
    cases = {
        "It works. Really.!!": ["It works.", "Really.!!"],
        "Hi there! ?!": ["Hi there! ?!"],
        "Is it cold? ??  ": ["Is it cold?", "??"],  # pysbd keeps this one, as a sentence of its own
        "Pour it.?!\n\nThen wait....!!\n\nDone.": ["Pour it.?!", "Then wait....!!", "Done."],
        "Stouts are dark. Porters too. --": ["Stouts are dark.", "Porters too.", "--"],
    }
    for text, expected in cases.items():
        sentences = split_sentences(text)
        assert [s.text for s in sentences] == expected, text
        assert all(text[s.start : s.end] == s.text for s in sentences), text
        assert [s.index for s in sentences] == list(range(len(expected)))
        assert _non_space("".join(s.text for s in sentences)) == _non_space(text), text
    # at the end of a paragraph longer than a window too (its last window's last sentence)
    long = "Ales are served warm. " * (WINDOW_CHARS // 10) + "Lagers are cold.!!"
    last = split_sentences(long)[-1]
    assert last.text == "Lagers are cold.!!" and last.end == len(long)


def test_a_link_is_never_cut_into_two_sentences() -> None:
    # pysbd ends a sentence at the "?" of a query string: the first part was "See the video at
    # http://www.youtube.com/watch?" (half a link, in a highlight) and the rest a sentence of its own
    text = (
        "See the video at http://www.youtube.com/watch?v=e1FH076U4Lk&t=2m28s for the pour. It foams.\n"
        "Rules: www.ecfr.gov/cgi-bin/text-idx?SID=1aff&node=27:1.0.1 apply. Visit www.foo.com. Then ask?"
    )
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "See the video at http://www.youtube.com/watch?v=e1FH076U4Lk&t=2m28s for the pour.",
        "It foams.",
        "Rules: www.ecfr.gov/cgi-bin/text-idx?SID=1aff&node=27:1.0.1 apply.",
        "Visit www.foo.com.",
        "Then ask?",
    ]
    assert all(text[s.start : s.end] == s.text for s in sentences)
    assert [s.index for s in sentences] == list(range(5))
    # links joined up to a window's length at most, as a run without an end of a sentence is cut
    links = "http://a.example/search?q=stout " * 600
    pieces = split_sentences(links)
    assert len(pieces) > 1 and all(len(s.text) <= WINDOW_CHARS for s in pieces)
    assert _non_space("".join(s.text for s in pieces)) == _non_space(links)


def test_sentences_end_at_the_full_stops_and_question_marks_of_other_scripts() -> None:
    # the English segmenter ended no sentence at Arabic's question mark (؟), Urdu's full stop (۔) or the
    # Devanagari danda (।): a question and its answer were one "sentence", so the question could be a bullet
    # and a citation pointed at both
    cases = {
        "هل البيرة باردة؟ نعم، باردة جدا. شكرا!": ["هل البيرة باردة؟", "نعم، باردة جدا.", "شكرا!"],
        "بیئر ٹھنڈی پیش کریں۔ سٹاؤٹ تھوڑا گرم۔": ["بیئر ٹھنڈی پیش کریں۔", "سٹاؤٹ تھوڑا گرم۔"],
        "बीयर ठंडी परोसें। स्टाउट थोड़ा गर्म॥ ठीक है?": ["बीयर ठंडी परोसें।", "स्टाउट थोड़ा गर्म॥", "ठीक है?"],
        "Պիվոն սառը մատուցեք։ Լավ է։": ["Պիվոն սառը մատուցեք։", "Լավ է։"],
    }
    for text, expected in cases.items():
        sentences = split_sentences(text)
        assert [s.text for s in sentences] == expected, [s.text for s in sentences]
        assert all(text[s.start : s.end] == s.text for s in sentences)
        assert [s.index for s in sentences] == list(range(len(expected)))
    # a mark inside a word or a run without a space after it is no sentence end
    assert [s.text for s in split_sentences("Version ۔x is out. Good.")] == ["Version ۔x is out.", "Good."]


def test_the_segmenters_spans_are_pysbds_own() -> None:
    """The segmenter finds pysbd's character spans without compiling a pattern per sentence: on repeated
    sentences, sentences inside others, other whitespace and text pysbd rewrites, the spans are the ones
    pysbd's own Segmenter returns."""
    import pysbd

    from tldrlab.data.sentences import _segmenter_class

    texts = [
        "Hi. Hi. Hi.",
        "Hi.  Hi.\n\nHi.\u3000Hi.\u2003 ok!\x1cok!",
        "It is. It is good. It is.   It is good.",
        "Dr. Smith went home. e.g. this one. I.V. drip? Yes...  No!",
        "a.b.c. d\u00a0e. f\tg.\n",
        "   ",
        "One.",
        "Cheers mate!! See you. :) Cheers mate!!",
    ]
    theirs = pysbd.Segmenter(language="en", clean=False, char_span=True)
    ours = _segmenter_class()(language="en", clean=False, char_span=True)
    for text in texts:
        expected = [(s.sent, s.start, s.end) for s in theirs.segment(text)]
        assert [(s.sent, s.start, s.end) for s in ours.segment(text)] == expected, text


def test_repeated_lines_are_found_in_one_pass_with_pysbds_spans() -> None:
    """Each sentence was searched for from the start of its window, so every repeat of a line ("+1", a log
    line) walked past all the earlier ones: 2,000 short lines took 2 million steps, 20 s for 100 KB of
    "x\\n" (hours for a 20 MB post). A sentence seen before resumes where its last search stopped; the
    spans stay pysbd's own."""
    import pysbd

    from tldrlab.data.sentences import _char_spans, _segmenter_class

    class CountingText(str):
        """A text that counts the searches made in it."""

        searches = 0

        def find(self, *args: Any) -> int:
            CountingText.searches += 1
            return super().find(*args)

    lines = ["+1", "Same here.", "+1", "+1", "Same here.", "x"] * 400
    text = CountingText("\n".join(lines))
    spans = _char_spans(lines, text, lambda sent, start, end: (sent, start, end))
    assert [sent.strip() for sent, _, _ in spans] == lines and spans[-1][2] == len(text)
    assert CountingText.searches <= 2 * len(lines)  # one search a line, and one to find each line first
    repeated = "Same here.\n+1\n" * 30 + "Hi. Hi. Hi.\n" * 30
    theirs = pysbd.Segmenter(language="en", clean=False, char_span=True).segment(repeated)
    ours = _segmenter_class()(language="en", clean=False, char_span=True).segment(repeated)
    assert [(s.sent, s.start, s.end) for s in ours] == [(s.sent, s.start, s.end) for s in theirs]


def test_a_long_paragraph_is_split_as_pysbd_splits_it_a_window_at_a_time(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pysbd's time grows with the square of a paragraph's length (one 100 KB paragraph took 22 s; a request
    body may hold 20 MB): it now sees at most WINDOW_CHARS at a time, and the sentences are the ones it
    finds in the whole paragraph."""
    from tldrlab.data import sentences as module

    threads = read_threads(shared_data / "stackexchange_beer", limit=40)
    paragraphs = [p for t in threads for post in t.posts for p in re.split(r"\n\s*\n", post.text)]
    text = " ".join(" ".join(p.split()) for p in paragraphs)[:30_000]
    assert len(text) > 6 * module.WINDOW_CHARS
    whole = module._segmenter_class()(language="en", clean=False, char_span=True).segment(text)
    expected = [span.sent.strip() for span in whole if span.sent.strip()]

    seen: list[int] = []
    segmenter = module._segmenter("en")
    real = segmenter.segment
    monkeypatch.setattr(segmenter, "segment", lambda t: seen.append(len(t)) or real(t))
    found = split_sentences(text)
    assert max(seen) <= module.WINDOW_CHARS and len(seen) > 6
    assert [s.text for s in found] == expected
    assert all(text[s.start : s.end] == s.text for s in found)

    # a run without an end of a sentence longer than a window is cut at a space, losing nothing
    words = "lager " * 2000
    pieces = split_sentences(words)
    assert len(pieces) > 1 and all(len(s.text) <= module.WINDOW_CHARS for s in pieces)
    assert _non_space("".join(s.text for s in pieces)) == _non_space(words)
    assert all(words[s.start : s.end] == s.text for s in pieces)
    spaced = "Ales are served warm." + " " * (3 * module.WINDOW_CHARS) + "Lagers are served cold."
    assert [s.text for s in split_sentences(spaced)] == ["Ales are served warm.", "Lagers are served cold."]
