from __future__ import annotations

from tldrlab.data.html import html_to_text
from tldrlab.data.sentences import split_sentences

POST = """<p>Porter &amp; stout are <em>close</em>&nbsp;relatives.<br>A second line.</p>
<ul><li>Roasted barley</li><li>Black <a href="https://example.org/malt">patent malt</a></li></ul>
<blockquote><p>Stouts were "stout porters".</p><p>So says the book.</p></blockquote>
<pre><code>mash = 65  # C. Not a sentence.

boil = 60</code></pre>
<p>Use <code>og()</code> to compute it.</p>
<aside class="quote"><div class="title"><img src="a.png"> alice:</div>
<blockquote><p>Quoted reply.</p></blockquote></aside>
<table><tr><th>style</th><th>abv</th></tr><tr><td>porter</td><td>5%</td></tr></table>
<script>alert(1)</script><!-- a comment -->"""


def test_blocks_become_paragraphs_and_inline_markup_keeps_its_text() -> None:
    text = html_to_text(POST)
    paragraphs = text.split("\n\n")
    assert paragraphs == [
        "Porter & stout are close relatives.\nA second line.",
        "Roasted barley",
        "Black patent malt",
        '> Stouts were "stout porters".',
        "> So says the book.",
        "mash = 65  # C. Not a sentence.\nboil = 60",
        "Use og() to compute it.",
        "> Quoted reply.",
        "style | abv",
        "porter | 5%",
    ]
    assert "alert" not in text and "comment" not in text and "alice" not in text


def test_code_and_quote_modes() -> None:
    text = html_to_text(POST, code="placeholder", quotes="drop")
    assert "[code]" in text.split("\n\n") and "mash" not in text
    assert "Stouts were" not in text and "Quoted reply" not in text
    assert "mash" not in html_to_text(POST, code="drop") and "[code]" not in html_to_text(POST, code="drop")


def test_sentences_never_cross_a_block_boundary() -> None:
    text = html_to_text("<ul><li>First item without a period</li><li>Second item</li></ul><p>Then prose.</p>")
    assert [s.text for s in split_sentences(text)] == [
        "First item without a period",
        "Second item",
        "Then prose.",
    ]


def test_empty_and_plain_inputs() -> None:
    assert html_to_text("") == "" and html_to_text("   \n") == ""
    assert html_to_text("just text, no tags &lt;b&gt;") == "just text, no tags <b>"
    assert html_to_text("<p>a<br><br><br>b</p>") == "a\nb"
