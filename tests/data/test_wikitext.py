"""The WikiText reader: articles split at ` = Title = `, detokenised, headings kept as section paragraphs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tldrlab.data.readers import read_records, read_records_report
from tldrlab.data.readers.wikitext import detokenize
from tldrlab.errors import InvalidInputError

LINES = [
    "",
    "= Bees =",
    "",
    "Bees are flying insects , closely related to wasps and ants . A colony holds 20 @,@ 000 @-@ 80 @,@ 000 "
    "bees .",
    "",
    "= = Life cycle = =",
    "",
    "The queen 's eggs hatch after 3 @.@ 5 days ( in summer ) ; workers live for 5 – 6 weeks .",
    "",
    "= = = Drones = = =",
    "",
    'Drones don \'t sting . Beekeepers call them " lazy " , but they mate with queens .',
    "",
    "= Volcano =",
    "",
    "A volcano is a rupture in the crust of a planet .",
]
SAMPLE = "\n".join(f" {line} " for line in LINES) + "\n"  # WikiText pads every line with spaces


def test_articles_sections_and_detokenisation(tmp_path: Path) -> None:
    path = tmp_path / "wiki.valid.tokens"
    path.write_text(SAMPLE, encoding="utf-8")
    records = read_records(path)  # *.tokens is detected as wikitext
    assert [r.id for r in records] == ["Bees", "Volcano"]
    assert records[0].source == "wikitext" and records[0].provenance["title"] == "Bees"
    assert records[0].document.split("\n\n") == [
        "Bees are flying insects, closely related to wasps and ants. A colony holds 20,000-80,000 bees.",
        "Life cycle",  # a section heading is a paragraph of its own: a section boundary
        "The queen's eggs hatch after 3.5 days (in summer); workers live for 5–6 weeks.",
        "Drones",
        'Drones don\'t sting. Beekeepers call them "lazy", but they mate with queens.',
    ]
    assert records[1].document == "A volcano is a rupture in the crust of a planet."


def test_detokenize_quotes_and_unknown_words() -> None:
    assert detokenize('He said " I know " and " you know " .') == 'He said "I know" and "you know".'
    assert detokenize("<unk> Gauthier 's [ sic ] 50 %") == "<unk> Gauthier's [sic] 50%"


def test_shared_wikitext_valid_reads_60_clean_articles(shared_data: Path) -> None:
    raw = (shared_data / "wikitext_valid" / "wiki.valid.tokens").read_text(encoding="utf-8")
    titles = re.findall(r"^ = ([^=].*?) = $", raw, flags=re.MULTILINE)  # counted independently of the reader
    records = read_records(shared_data / "wikitext_valid")
    assert len(records) == len(titles) == 60
    text = "\n".join(r.document for r in records)
    for token in ("@-@", "@,@", "@.@", " ,", " .", " 's", "= ="):
        assert token not in text, f"{token!r} left in the detokenised text"


def test_text_outside_every_article_is_not_dropped_without_a_word(tmp_path: Path) -> None:
    """A .tokens file without a ` = Title = ` line read as 0 records (`data inspect` exit 0, training 'no
    records'); lines before the first title were left out uncounted."""
    plain = tmp_path / "corpus.tokens"
    plain.write_text("just some tokens @-@ here\nand more\n", encoding="utf-8")
    refused = r"no ` = Title = ` line, so no WikiText article: read it as plain text"
    with pytest.raises(InvalidInputError, match=refused):
        read_records(plain)
    assert read_records(plain, "text")[0].document.startswith("just some tokens")
    preamble = tmp_path / "pre.tokens"
    preamble.write_text("a stray line\n\n = A = \n text \n", encoding="utf-8")
    report = read_records_report(preamble)
    assert [r.id for r in report.items] == ["A"]
    assert report.counts["lines before the first title (not read)"] == 1
