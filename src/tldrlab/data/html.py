"""HTML -> plain text with a real parser (BeautifulSoup + lxml), shaped for sentence segmentation.

The output is a sequence of paragraphs separated by one blank line, because `split_sentences` always ends a
sentence at a blank line. Decisions (documented in docs/formats.md):

- paragraphs, headings, list items, table rows, `<div>`s: each its own paragraph; list items carry no bullet
  marker, so a highlighted sentence is exactly the words the author wrote;
- whitespace inside a paragraph is collapsed as a browser would; `<br>` keeps a single line break;
- `<pre>` blocks (code): `code="keep"` (default) keeps the code verbatim as one paragraph of its own (blank
  lines inside it are dropped so it stays one block and never merges with prose); `"placeholder"` writes the
  line `[code]` instead; `"drop"` removes it. Inline `<code>` always keeps its text in the sentence;
- `<blockquote>`: `quotes="keep"` (default) keeps the quoted text as its own paragraph(s), each line prefixed
  with "> " so readers (and highlighters) can tell quoted text from the author's; `"drop"` removes it.
  Discourse quote headers (`aside.quote > div.title`, "username:") are dropped;
- links keep their text, images are dropped, `<script>`/`<style>` are dropped, entities are decoded and
  non-breaking spaces become spaces.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bs4 import Tag

# bs4 (and the soupsieve it imports) is imported by the functions that parse, not here: it costs ~0.1 CPU-s,
# and every `tldrlab` command imports this module (through the data readers' registry) whether or not it
# reads HTML.

CodeMode = Literal["keep", "placeholder", "drop"]
QuoteMode = Literal["keep", "drop"]

_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "section",
        "article",
        "header",
        "footer",
        "main",
        "nav",
        "aside",
        "figure",
        "figcaption",
        "li",
        "dt",
        "dd",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "ul",
        "ol",
        "dl",
        "hr",
        "details",
        "summary",
        "center",
        "address",
        "form",
        "fieldset",
    ]
)
_DROPPED_TAGS = frozenset(
    ["script", "style", "head", "title", "noscript", "template", "img", "svg", "iframe", "button", "input"]
)
_LINE_BREAK = "\x00"  # survives whitespace collapsing; becomes "\n" at the end
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")


def html_to_text(html: str, *, code: CodeMode = "keep", quotes: QuoteMode = "keep") -> str:
    """Convert an HTML fragment to plain text: paragraphs separated by blank lines (see module docstring)."""
    if not html or not html.strip():
        return ""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    root = soup.body or soup
    return "\n\n".join(_blocks(root, code, quotes))


def _blocks(node: Tag, code: CodeMode, quotes: QuoteMode) -> list[str]:
    from bs4 import Comment, NavigableString, Tag

    blocks: list[str] = []
    inline: list[str] = []

    def flush() -> None:
        text = _collapse("".join(inline))
        inline.clear()
        if text:
            blocks.append(text)

    def walk(element: Tag) -> None:
        for child in element.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # skips CData, doctype, processing instructions
                    inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in _DROPPED_TAGS:
                continue
            if name == "br":
                inline.append(_LINE_BREAK)
            elif name == "pre":
                flush()
                block = _code_block(child.get_text(), code)
                if block:
                    blocks.append(block)
            elif name == "blockquote":
                flush()
                if quotes == "keep":
                    for quoted in _blocks(child, code, quotes):
                        blocks.append("\n".join("> " + line for line in quoted.split("\n")))
            elif name == "div" and "title" in (child.get("class") or []) and _in_discourse_quote(child):
                continue  # "username:" header of a Discourse quote
            elif name in _BLOCK_TAGS:
                flush()
                if name == "tr":
                    cells = [_collapse(cell.get_text(" ")) for cell in child.find_all(["td", "th"])]
                    inline.append(" | ".join(c for c in cells if c))
                else:
                    walk(child)
                flush()
            else:
                walk(child)

    walk(node)
    flush()
    return blocks


def _in_discourse_quote(div: Tag) -> bool:
    from bs4 import Tag

    parent = div.parent
    return isinstance(parent, Tag) and parent.name == "aside" and "quote" in (parent.get("class") or [])


def _collapse(text: str) -> str:
    """Browser-like whitespace collapsing; explicit line breaks (<br>) survive as single newlines."""
    text = _SPACES.sub(" ", text)
    lines = [line.strip() for line in text.split(_LINE_BREAK)]
    # consecutive <br>s would otherwise create blank lines, which would split a paragraph in two
    return "\n".join(line for line in lines if line).strip()


def _code_block(code_text: str, mode: CodeMode) -> str:
    if mode == "drop":
        return ""
    if mode == "placeholder":
        return "[code]"
    lines = [line.rstrip().replace("\u00a0", " ") for line in code_text.split("\n")]
    return "\n".join(line for line in lines if line.strip())
