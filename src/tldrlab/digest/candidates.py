"""Which sentences may be highlights, and which highlights may be TL;DR bullets.

A highlight is a sentence worth reading; a bullet must also carry an answer. Never highlights:
- boilerplate lines: link-only lines (a bare URL), attribution lines ("(Source: ...)", "Source: http://...",
  "(From @user's comment)"), sign-offs ("Thanks!", "Hope this helps", "EDIT:") and lines without a word
  ("*", "...");
- quoted text (lines starting with ">", as `data/html.py` writes `<blockquote>`s): the words are someone
  else's. When the quote reproduces a sentence of another post of the thread, that original sentence is the
  one that can be highlighted, so the thread's author is credited and the sentence is not shown twice.

Never bullets, though they may be highlights: sentences of the question when the thread has answers (the
TL;DR answers the question rather than restating it), questions (ending in "?", or in another script's "؟"
or "？"), lead-ins ending in ":" ("Check out my results here:"), which announce content that follows rather
than carry it, and title-like fragments: a few capitalised words without sentence punctuation, such as a
link's text standing on its line ("Beer Experiments: Temperature Regulation Part 2"). Those stay possible
highlights because in list answers ("Chimay Cinq Cents Tripel") they are the answer, but alone they make an
empty bullet.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

import numpy as np

from tldrlab.data.threads import Thread
from tldrlab.store.base import SentenceRecord

URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
ATTRIBUTION = re.compile(
    r"^\(?\s*(?:sources?|via|credits?|references?|refs?|citations?|from|h/t|hat tip|image|photo|picture)\b"
    r"[^\n]*$",
    re.IGNORECASE,
)
ATTRIBUTION_WITH_COLON = re.compile(
    r"^\(?\s*(?:sources?|via|credits?|references?|refs?|citations?|image|photo|picture|link|see)\s*:",
    re.IGNORECASE,
)
SIGN_OFF = re.compile(
    r"^(?:thanks?(?: you)?(?: (?:all|everyone|in advance|again|so much))*|thx|ty|cheers|regards|best regards|"
    r"hope (?:this|that|it) helps?|hth|good luck|enjoy|edit|update|edited|updated)\W*$",
    re.IGNORECASE,
)
WORD = re.compile(r"[^\W\d_][\w'’-]*|\d+")
"""A word: a letter of any script (Cyrillic, Hebrew, Arabic, CJK, ...) and what follows it, or a number. It
was [A-Za-z] only, so every sentence in another script had "no word at all" and was boilerplate."""


def is_link_only(text: str) -> bool:
    """Nothing but URLs and punctuation."""
    return bool(URL.search(text)) and not WORD.search(URL.sub(" ", text))


def is_attribution(text: str) -> bool:
    """A line naming where something came from: "(Source: X)", "Source: http://...", "(From @a's comment)"."""
    stripped = text.strip()
    if ATTRIBUTION_WITH_COLON.match(stripped):
        return True
    # "(From @Grohlier's comment)": only a short line wholly in parentheses ("From my experience, ..." stays)
    wrapped = stripped.startswith("(") and stripped.endswith(")")
    return wrapped and bool(ATTRIBUTION.match(stripped)) and len(WORD.findall(stripped)) <= 12


def is_title_like(text: str) -> bool:
    """A capitalised fragment without sentence punctuation: a link text or a heading standing on its line."""
    stripped = text.strip()
    if not stripped or stripped[-1] in ".!?\"'”)":
        return False
    words = [w for w in WORD.findall(stripped) if w[0].isalpha()]
    if len(words) < 3 or len(words) > 12:
        return False
    capitalised = sum(w[0].isupper() for w in words)
    return capitalised / len(words) >= 0.75


def is_boilerplate(text: str) -> bool:
    """Link-only, attribution, sign-off, or no word at all ("*", "..."): never a highlight."""
    stripped = " ".join(text.split()).lstrip("> ").strip()
    if not stripped or not WORD.search(stripped):
        return True
    return is_link_only(stripped) or is_attribution(stripped) or bool(SIGN_OFF.match(stripped))


def normalised(text: str) -> str:
    return " ".join(w.lower() for w in WORD.findall(text))


LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
"""Where a line ends: a lone CR too (old Mac text, some clients) and the other breaks of `str.splitlines`,
which sentence segmentation also ends a line at. Lines were told apart by "\n" alone, so a "> " line after
a lone CR was no quote and its words became highlights credited to the post quoting them."""


def line_starts(text: str) -> list[int]:
    """The offset of every line's first character, in order."""
    return [0, *(match.end() for match in LINE_BREAK.finditer(text))]


def is_quoted_in(post_text: str, start: int, starts: list[int] | None = None) -> bool:
    """Whether the line holding offset `start` of a post is quoted (starts with ">"); `starts`: the post's
    `line_starts`, when the caller asks about many offsets of one post."""
    starts = line_starts(post_text) if starts is None else starts
    line_start = starts[bisect.bisect_right(starts, start) - 1]
    return post_text[line_start : start + 1].lstrip().startswith(">")


def quoted_mask(sentences: Sequence[SentenceRecord], thread: Thread | None) -> np.ndarray:
    """True for sentences that are quoted text (their line starts with ">")."""
    texts = {p.id: p.text for p in thread.posts} if thread is not None else {}
    starts: dict[str, list[int]] = {}  # per post, once: a long post has many sentences
    out = np.zeros(len(sentences), dtype=bool)
    for i, sentence in enumerate(sentences):
        post_text = texts.get(sentence.post_id)
        if post_text is not None and 0 <= sentence.start < len(post_text):
            if sentence.post_id not in starts:
                starts[sentence.post_id] = line_starts(post_text)
            out[i] = is_quoted_in(post_text, sentence.start, starts[sentence.post_id])
        else:
            out[i] = sentence.text.lstrip().startswith(">")
    return out


def quoted_originals(sentences: Sequence[SentenceRecord], quoted: np.ndarray) -> dict[int, int]:
    """For each quoted sentence that reproduces a sentence of another post, the index of that original."""
    originals: dict[str, int] = {}
    for i, sentence in enumerate(sentences):
        key = normalised(sentence.text)
        if not quoted[i] and key and key not in originals:
            originals[key] = i
    found: dict[int, int] = {}
    for i in (int(x) for x in np.flatnonzero(quoted)):
        original = originals.get(normalised(sentences[i].text))
        if original is not None and sentences[original].post_id != sentences[i].post_id:
            found[i] = original
    return found


def highlight_candidates(
    sentences: Sequence[SentenceRecord], thread: Thread | None, *, outside_quotes: bool = False
) -> np.ndarray:
    """True for sentences that may be highlights: neither boilerplate nor quoted text.

    `outside_quotes=True` lets quoted text that reproduces no sentence of the thread (a quote from an outside
    source, often the substance of an answer) be highlighted as part of the post quoting it; text quoted from
    another post of the thread is never a highlight either way (its original is).
    """
    boiler = np.array([is_boilerplate(s.text) for s in sentences], dtype=bool)
    quoted = quoted_mask(sentences, thread)
    if outside_quotes:
        quoted = np.zeros_like(quoted)
        quoted[list(quoted_originals(sentences, quoted_mask(sentences, thread)))] = True
    return ~(boiler | quoted)


QUESTION_MARKS = ("?", "\u061f", "\uff1f", "\u055e", "\u1367", "\u2e2e")
"""A question ends in one: "?", Arabic's "؟", the full-width "？" of Chinese and Japanese, Armenian's "՞",
Ethiopic's "፧" and the reversed "⸮". Only "?" was known, so a question in Arabic or Chinese was a bullet
(the segmenter ends sentences at them: `data.sentences`)."""
LEAD_IN_MARKS = (":", "\uff1a")
"""A lead-in ends in one: ":" or the full-width "：" of Chinese and Japanese."""


def is_bullet_worthy(text: str, post_kind: str, thread_has_answers: bool) -> bool:
    """Whether a highlight may be a TL;DR bullet: it carries an answer, not the question or a lead-in."""
    stripped = " ".join(text.split())
    if thread_has_answers and post_kind == "question":
        return False
    if stripped.endswith(QUESTION_MARKS) or stripped.endswith(LEAD_IN_MARKS):
        return False
    return not (is_boilerplate(stripped) or is_title_like(stripped))
