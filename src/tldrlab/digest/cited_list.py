"""Decoding a cited bullet list with a causal LM: the format is enforced per token; the list ends itself.

The output is `- text [k]` lines (more citations as `[k][j]`, at most `max_citations` per bullet). Small
chat models drift (numbered lists, prose, forgotten citations, numbers that do not exist), so
`CitedListFormat` (a transformers LogitsProcessor) keeps the model on this grammar, reading the state from
the text generated so far:

- line start: only `-` (or the end of the answer, once a bullet is complete);
- bullet text: no newline and no brackets, except that the probability the model gives to ending the line
  (newline or end of answer) is moved onto opening a citation ` [`: a bullet cannot end uncited;
- inside `[`: only digits that keep the number within 1..n_sentences (the model still picks which), then `]`;
- after `]`: another `[`, a newline, or the end of the answer.

The model's own preferences decide everything the grammar leaves open (which words, which sentence number,
when to end), so greedy and sampled decoding both work. `ListDone` (a StoppingCriteria) ends generation once
`max_bullets` bullets are complete, when a bullet repeats an earlier one (small models loop), or when the
reader went away (the `stop` flag).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from tldrlab.errors import InvalidInputError

DIGITS = re.compile(r"[0-9]+")
WORD = re.compile(r"\w+")
MIN_WORDS = 3
"""A bullet needs this many words before it may close with a citation (no `- [3]` bullets)."""
MAX_WORD_CHARS = 12
"""A bullet's text also ends after `max_words * MAX_WORD_CHARS` characters (text without word characters)."""


@dataclass(frozen=True)
class TokenClasses:
    """Vocabulary ids by the role they can play in the grammar (from each token's decoded text)."""

    dash: list[int]
    open: list[int]
    """`[` alone (with or without a leading space)."""
    open_spaced: int | None
    """The preferred token to open a citation with after text (` [`)."""
    digits: dict[int, str]
    close: list[int]
    close_open: list[int]
    """`][`: closes one citation and opens the next."""
    newline: list[int]
    """Whitespace-only tokens containing a newline."""
    spaced_text: list[int]
    """Tokens that start a bullet's text after `-`: a space, maybe more text (no newline, no bracket)."""
    forbidden_in_text: list[int]
    """Tokens containing a newline or a bracket (text never contains them)."""
    eos: list[int]


_classes_lock = threading.Lock()


def token_classes(tokenizer: Any, eos_ids: list[int]) -> TokenClasses:
    """Computed once per tokenizer (decoding a 50k vocabulary takes about a second) and kept on it."""
    with _classes_lock:
        cached: TokenClasses | None = getattr(tokenizer, "_tldrlab_cited_list_classes", None)
        if cached is not None and cached.eos == eos_ids:
            return cached
        size = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(size)])
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        dash, opens, close, close_open, newline, forbidden, spaced = [], [], [], [], [], [], []
        digits: dict[int, str] = {}
        open_spaced = None
        for i, text in enumerate(texts):
            if i in special:
                forbidden.append(i)
                continue
            if text in ("-", "- "):
                dash.append(i)
            if text.strip() == "[":
                opens.append(i)
                if text == " [":
                    open_spaced = i
            elif DIGITS.fullmatch(text):
                digits[i] = text
            elif text == "]":
                close.append(i)
            elif text == "][":
                close_open.append(i)
            if "\n" in text and not text.strip():
                newline.append(i)
            if "[" in text or "]" in text or len((text + "x").splitlines()) > 1:
                forbidden.append(i)  # brackets, or a line break of any kind (form feed, \r, \u2028...)
            elif text.startswith(" "):
                spaced.append(i)
        classes = TokenClasses(
            dash=dash,
            open=opens,
            open_spaced=open_spaced if open_spaced is not None else (opens[0] if opens else None),
            digits=digits,
            close=close,
            close_open=close_open,
            newline=newline,
            spaced_text=spaced,
            forbidden_in_text=sorted(set(forbidden) - set(opens)),
            eos=list(eos_ids),
        )
        if not (dash and opens and digits and close and newline and spaced):
            raise InvalidInputError(
                "the model's tokenizer cannot write '- text [k]' bullets (it lacks a '-', '[', digit, ']', "
                "newline or space-led token)"
            )
        tokenizer._tldrlab_cited_list_classes = classes
        return classes


class GeneratedText:
    """The text generated after the prompt, decoded once per step and shared by the processor and the
    stopping criterion."""

    def __init__(self, tokenizer: Any, prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self._length = -1
        self._text = ""

    @property
    def count(self) -> int:
        """Tokens generated so far (as of the last call)."""
        return max(0, self._length - self.prompt_length)

    def __call__(self, input_ids: Any) -> str:
        length = int(input_ids.shape[-1])
        if length != self._length:
            self._text = self.tokenizer.decode(input_ids[0, self.prompt_length :], skip_special_tokens=True)
            self._length = length
        return self._text


CITATION_MARK = re.compile(r"\[[^\]]*\]?")


def complete_bullets(text: str) -> list[str]:
    """Bullet lines that ended (a newline after them), as their lower-cased words without the citations."""
    lines = text.split("\n")[:-1]  # the last piece is still being written
    return [" ".join(WORD.findall(CITATION_MARK.sub(" ", line.lower()))) for line in lines if line.strip()]


CITED_NUMBER = re.compile(r"\[(\d+)")


class CitedListGrammar:
    """Which tokens may come next in a `- text [k]` (order `last`) or `- [k] text` (order `first`) list.

    `constrain(text, row)` takes the text generated so far and the next-token scores (1-D) and returns the
    scores with everything off-grammar at -inf. A number already cited by an earlier bullet loses
    `reuse_penalty` (small models otherwise repeat their first pick); bullet text ends after `max_words`
    words (small models otherwise copy whole sentences, and long bullets cost generation time); the answer
    may end only after `min_bullets` bullets (small models often stop after one).
    """

    def __init__(
        self,
        classes: TokenClasses,
        n_sentences: int,
        *,
        order: str = "last",
        max_citations: int = 3,
        reuse_penalty: float = 2.0,
        max_words: int = 30,
        min_bullets: int = 1,
    ) -> None:
        import torch

        self.classes = classes
        self.n_sentences = n_sentences
        self.order = order
        self.max_citations = max_citations
        self.reuse_penalty = reuse_penalty
        self.max_words = max_words
        self.min_bullets = max(1, min_bullets)
        self.digit_ids = list(classes.digits)
        self.digit_values = [classes.digits[i] for i in self.digit_ids]
        self.forbidden = torch.tensor(classes.forbidden_in_text + classes.eos, dtype=torch.long)
        self.line_enders = torch.tensor(classes.newline + classes.eos, dtype=torch.long)
        self.opener = classes.open_spaced if classes.open_spaced is not None else classes.open[0]

    def only(self, row: Any, allowed: list[int]) -> Any:
        import torch

        out = torch.full_like(row, float("-inf"))
        index = torch.tensor(allowed, dtype=torch.long)
        kept = row[index]
        if torch.isinf(kept).all():  # a sampling warper already removed them all: allow them evenly
            kept = torch.zeros_like(kept)
        out[index] = kept
        return out

    def citation_digits(self, text: str, line: str, number: str, row: Any) -> Any:
        used = {int(n) for done in text.split("\n")[:-1] for n in CITED_NUMBER.findall(done)}
        allowed, penalised = [], []
        for token, value in zip(self.digit_ids, self.digit_values, strict=True):
            if not number and value.startswith("0"):
                continue
            candidate = int(number + value)
            if 1 <= candidate <= self.n_sentences:
                allowed.append(token)
                if candidate in used:
                    penalised.append(token)
        if number:
            allowed += self.classes.close
            if line.count("[") < self.max_citations:
                allowed += self.classes.close_open
        out = self.only(row, allowed)
        if penalised and self.reuse_penalty:
            out[penalised] -= self.reuse_penalty
        return out

    def text(self, words: int, chars: int, row: Any, *, may_cite: bool, may_end: bool) -> Any:
        """Bullet text: no newline, no brackets; ending the line is allowed after MIN_WORDS words (and forced
        after `max_words`). In order `last` ending it means opening the citation instead; ending the answer
        (end of turn) means a newline while fewer than `min_bullets` bullets are complete."""
        import torch

        classes = self.classes
        enders = classes.newline + (classes.eos if may_end else [])
        if words >= self.max_words or chars >= self.max_words * MAX_WORD_CHARS:
            return self.only(row, [self.opener] if may_cite else enders)
        out = row.clone()
        out[self.forbidden] = float("-inf")
        if words >= MIN_WORDS:
            if may_cite:
                out[self.opener] = torch.logaddexp(
                    out[self.opener], torch.logsumexp(row[self.line_enders], 0)
                )
            else:
                out[enders] = row[enders]
                if not may_end and classes.eos:
                    first = classes.newline[0]
                    out[first] = torch.logaddexp(out[first], torch.logsumexp(row[classes.eos], 0))
        if torch.isinf(out).all():
            out[[self.opener] if may_cite else enders] = 0.0
        return out

    def constrain(self, text: str, row: Any) -> Any:
        classes = self.classes
        line = text.rsplit("\n", 1)[-1]
        complete = len(complete_bullets(text))
        if not line.strip():
            return self.only(row, classes.dash + (classes.eos if complete >= self.min_bullets else []))
        may_end = complete + 1 >= self.min_bullets  # once this bullet is complete
        opened, closed = line.rfind("["), line.rfind("]")
        if opened > closed:  # inside a citation: digits within range, then ]
            return self.citation_digits(text, line, line[opened + 1 :].strip(), row)
        if self.order == "first":
            if opened < 0:  # "-": the citations come first, as "- [k]"
                return self.only(row, [self.opener])
            after = line[closed + 1 :]
            if not after.strip():  # right after "]": another citation, or the text
                out = self.only(row, classes.spaced_text)
                if line.count("[") < self.max_citations:
                    out[classes.open] = row[classes.open]
                return out
            return self.text(len(WORD.findall(after)), len(after), row, may_cite=False, may_end=may_end)
        if line.rstrip().endswith("]"):  # order last, after a citation: another one, or the end
            allowed = classes.newline + (classes.eos if may_end else [])
            if line.count("[") < self.max_citations:
                allowed += classes.open
            return self.only(row, allowed)
        if line == "-":  # the text starts with a space, not with more dashes
            return self.only(row, classes.spaced_text)
        return self.text(len(WORD.findall(line)), len(line), row, may_cite=True, may_end=may_end)


def cited_list_processor(
    tokenizer: Any,
    generated: GeneratedText,
    n_sentences: int,
    eos_ids: list[int],
    *,
    order: str = "last",
    max_citations: int = 3,
    reuse_penalty: float = 2.0,
    max_words: int = 30,
    min_bullets: int = 1,
) -> Any:
    """The LogitsProcessor enforcing the cited list (see the module docstring and CitedListGrammar)."""
    import torch
    from transformers import LogitsProcessor

    grammar = CitedListGrammar(
        token_classes(tokenizer, eos_ids),
        n_sentences,
        order=order,
        max_citations=max_citations,
        reuse_penalty=reuse_penalty,
        max_words=max_words,
        min_bullets=min_bullets,
    )

    class CitedListFormat(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            # one sequence (the digest decodes greedily or by sampling, never in beams or batches)
            scores[0] = grammar.constrain(generated(input_ids), scores[0])
            return scores

    return CitedListFormat()


def list_done_criterion(generated: GeneratedText, max_bullets: int, stop: threading.Event) -> Any:
    """The StoppingCriteria ending generation at the end of the list (see the module docstring)."""
    import torch
    from transformers import StoppingCriteria

    class ListDone(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> Any:
            done = stop.is_set()
            if not done:
                bullets = complete_bullets(generated(input_ids))
                done = len(bullets) >= max_bullets or (len(bullets) > 1 and bullets[-1] in bullets[:-1])
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool)

    return ListDone()
