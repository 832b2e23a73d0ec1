"""`wikitext`: WikiText-103 token files (`wiki.valid.tokens`) -> one record per article, detokenised.

The format: an article starts at a line ` = Title = `; section headings are ` = = Section = = ` (deeper
levels add `=`); every token is separated by spaces, numbers are joined by `@-@`, `@,@` and `@.@`, and rare
words are `<unk>`. The reader gives each article back as plain text in the shape of the `wikipedia` reader's
articles: paragraphs separated by blank lines, each section heading a paragraph of its own (a section
boundary), without the title line (the title goes to provenance). `<unk>` is kept: the word is unknown.

Detokenising undoes the tokenizer's spacing: joiners are closed up (` @-@ ` -> `-`), no space before
`, . ; : ? ! ) ] %` or a clitic (`'s`; `n't` is `n 't` in WikiText), none after `( [` or inside a numeric
range's en dash (`1950 – 51`), and straight double quotes are paired (no space inside a pair).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tldrlab.data.readers.common import ReadContext, read_text
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError

_TITLE = re.compile(r"^ ?= (?!=)(?P<title>.*?) (?<!=)= ?$")
_HEADING = re.compile(r"^ ?(?P<level>(?:= ){2,})(?P<heading>.*?) (?:= ?)+$")
_JOINER = re.compile(r" ?@([-,.])@ ?")  # also at a line's end (a list item cut short)
_CLITIC = re.compile(r"(?<=\S) '(s|t|ll|ve|d|m|re|S|T|LL|VE|D|M|RE)\b")
_SPACE_BEFORE = re.compile(r" (?=[,.;:?!)\]%])")
_SPACE_AFTER = re.compile(r"(?<=[(\[]) ")
_RANGE = re.compile(r"(?<=\d) – (?=\d)")


def detokenize(text: str) -> str:
    """One line of WikiText tokens -> ordinary text (see the module docstring)."""
    text = " ".join(text.split())
    text = _JOINER.sub(r"\1", text)
    text = _RANGE.sub("–", text)
    text = _CLITIC.sub(r"'\1", text)
    text = _pair_quotes(text)
    text = _SPACE_BEFORE.sub("", text)
    return _SPACE_AFTER.sub("", text)


def _pair_quotes(text: str) -> str:
    """Straight double quotes alternate opening / closing: `say " a b " .` -> `say "a b" .`."""
    out: list[str] = []
    opening, pending = True, ""
    for token in text.split(" "):
        if token != '"':
            out.append(pending + token)
            pending = ""
        elif opening:
            pending = '"'  # glued to the next word
        elif out:
            out[-1] += '"'
        else:
            out.append('"')
        if token == '"':
            opening = not opening
    if pending:
        out.append(pending)
    return " ".join(out)


def split_articles(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(title, line number of the title, the article's lines) for each ` = Title = ` article."""
    title: str | None = None
    start = 0
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _TITLE.match(line)
        if match:
            if title is not None:
                yield title, start, lines
            title, start, lines = match["title"], number, []
        elif title is not None:
            lines.append(line)
    if title is not None:
        yield title, start, lines


def article_text(lines: list[str]) -> str:
    """The article's paragraphs and section headings, detokenised, separated by blank lines."""
    paragraphs = []
    for line in lines:
        if not line.strip():
            continue
        heading = _HEADING.match(line)
        paragraphs.append(detokenize(heading["heading"] if heading else line))
    return "\n\n".join(p for p in paragraphs if p)


def read_wikitext(path: Path, ctx: ReadContext) -> Iterator[SummaryRecord]:
    text = read_text(path)
    if not text.strip():  # read as 0 records, exit 0, where every other format refuses a file of no text
        raise InvalidInputError(f"{path}: file is empty", file=str(path))
    articles = list(split_articles(text))
    # text outside every article was dropped without a word: a .tokens file of no ` = Title = ` line (plain
    # tokens, another corpus's format) read as 0 records, and `data inspect` said so with exit 0
    outside = text.splitlines()[: articles[0][1] - 1] if articles else text.splitlines()
    before = [line for line in outside if line.strip()]
    if not articles and before:
        raise InvalidInputError(
            f"{path}: no ` = Title = ` line, so no WikiText article: read it as plain text (format text)",
            file=str(path),
        )
    if before:
        ctx.counts["lines before the first title (not read)"] += len(before)
    for raw_title, line, lines in articles:
        text = article_text(lines)
        if not text:
            ctx.counts["empty_articles"] += 1
            continue
        title = detokenize(raw_title)
        ctx.counts["articles"] += 1
        yield SummaryRecord(
            id=title,
            document=text,
            source="wikitext",
            provenance={"file": str(path), "record": f"line {line}", "title": title},
        )
