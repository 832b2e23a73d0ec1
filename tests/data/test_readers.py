"""Each reader on the real data sets in ../shared/data, checked against counts computed independently."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tldrlab.data.readers import (
    READERS,
    detect_format,
    read_records,
    read_records_report,
    read_threads,
    read_threads_report,
)
from tldrlab.errors import InvalidInputError, NotFoundError


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("scitldr", "scitldr"),
        ("debian_descriptions", "debian"),
        ("qmsum", "qmsum"),
        ("wikipedia", "wikipedia"),
        ("wikitext_valid", "wikitext"),
        ("tinyshakespeare", "text"),
        ("stackexchange_beer", "stackexchange"),
        ("stackexchange_beer/Posts.xml", "stackexchange"),
        ("scitldr/scitldr_a.dev.jsonl", "scitldr"),
    ],
)
def test_detect_format_on_every_shared_folder(shared_data: Path, folder: str, expected: str) -> None:
    assert detect_format(shared_data / folder) == expected


def test_scitldr_sentences_labels_and_targets(shared_data: Path) -> None:
    raw = _jsonl(shared_data / "scitldr" / "scitldr_a.dev.jsonl")
    records = read_records(shared_data / "scitldr", split="dev")
    assert len(records) == len(raw) == 619
    for record, row in zip(records, raw, strict=True):
        assert record.id == row["paper_id"] and record.sentences == row["source"]
        assert record.highlight_labels == row["source_labels"]
        assert record.summaries == row["target"] and record.document == " ".join(row["source"])
        assert record.provenance["title"] == row["title"]
    assert len(read_records(shared_data / "scitldr", split="train")) == 1992


def test_debian_splits_are_aliases_and_limit_stops_early(shared_data: Path) -> None:
    folder = shared_data / "debian_descriptions"
    validation = read_records(folder, split="validation")
    assert len(validation) == 654
    assert [r.id for r in read_records(folder, split="dev")] == [r.id for r in validation]
    assert [r.id for r in read_records(folder, split="val")] == [r.id for r in validation]
    first = validation[0]
    assert first.summaries == [_jsonl(folder / "debian_descriptions.validation.jsonl")[0]["summary"]]
    assert first.provenance["url"] == f"https://packages.debian.org/bookworm/{first.id}"
    train = read_records(folder, split="train", limit=50)
    assert len(train) == 50 and train[0].provenance["file"].endswith("train.jsonl")
    with pytest.raises(NotFoundError, match="no file for split 'test'"):
        read_records(folder, split="test")
    with pytest.raises(InvalidInputError, match="unknown split"):
        read_records(folder, split="holdout")


def test_every_file_name_alias_is_a_split_name(shared_data: Path, tmp_path: Path) -> None:
    # 'training' and 'valid' pick files by name, so --split training / valid must be accepted too
    folder = shared_data / "debian_descriptions"
    train_ids = [r.id for r in read_records(folder, split="train", limit=20)]
    assert [r.id for r in read_records(folder, split="training", limit=20)] == train_ids
    assert [r.id for r in read_records(folder, split="TRAINING", limit=20)] == train_ids
    validation_ids = [r.id for r in read_records(folder, split="validation", limit=20)]
    assert [r.id for r in read_records(folder, split="valid", limit=20)] == validation_ids
    single = tmp_path / "pairs.train.jsonl"
    single.write_text('{"id": "a", "document": "A text.", "summary": "A."}\n')
    assert [r.id for r in read_records(single, split="training")] == ["a"]
    with pytest.raises(InvalidInputError, match=r"unknown split 'holdout'; choose one of .*training"):
        read_records(folder, split="holdout")


def test_qmsum_one_record_per_query_with_turn_labels(shared_data: Path) -> None:
    raw = _jsonl(shared_data / "qmsum" / "qmsum.val.jsonl")
    report = read_records_report(shared_data / "qmsum", split="val")
    expected = sum(len(m["general_query_list"]) + len(m["specific_query_list"]) for m in raw)
    assert len(raw) == 35 and report.counts["meetings"] == 35 and len(report.items) == expected
    meeting = raw[0]
    by_id = {r.id: r for r in report.items}
    general = by_id[f"{meeting['meeting_id']}:general0"]
    assert general.query == meeting["general_query_list"][0]["query"] and general.highlight_labels is None
    assert general.sentences is not None and len(general.sentences) == len(meeting["meeting_transcripts"])
    turn = meeting["meeting_transcripts"][3]
    assert general.sentences[3] == f"{turn['speaker']}: {turn['content']}"
    query = meeting["specific_query_list"][1]
    specific = by_id[f"{meeting['meeting_id']}:specific1"]
    assert specific.summaries == [query["answer"]] and specific.highlight_labels is not None
    marked = {i for i, label in enumerate(specific.highlight_labels) if label}
    spans = {t for a, b in query["relevant_text_span"] for t in range(int(a), int(b) + 1)}
    assert marked == spans


def test_wikipedia_articles(shared_data: Path) -> None:
    raw = _jsonl(shared_data / "wikipedia" / "enwiki_2016_sample.jsonl")
    records = read_records(shared_data / "wikipedia")
    assert len(records) == len(raw) == 106
    assert records[0].document == raw[0]["text"] and records[0].summaries == []
    assert records[0].provenance["title"] == raw[0]["title"] and records[0].id == raw[0]["id"]


def test_text_whole_file_and_per_paragraph(shared_data: Path) -> None:
    path = shared_data / "tinyshakespeare" / "input.txt"
    text = path.read_text(encoding="utf-8")
    (whole,) = read_records(path)
    assert whole.document == text and whole.id == "input"
    parts = read_records(path, options={"per_paragraph": True})
    expected = [block.strip() for block in re.split(r"\n[ \t]*\n", text) if block.strip()]
    assert [r.document for r in parts] == expected
    for record in parts[:200]:
        start = record.provenance["start"]
        assert text[start : start + len(record.document)] == record.document
        assert text.count("\n", 0, start) + 1 == int(record.provenance["record"].split()[1])
    with pytest.raises(
        InvalidInputError, match=r"unknown text option 'per_para'; choose one of per_paragraph"
    ):
        read_records(path, options={"per_para": True})
    with pytest.raises(InvalidInputError, match="format 'scitldr' takes no options, got per_paragraph"):
        read_records(path, format="scitldr", options={"per_paragraph": True})


# untraced (`no_cover`): reading the whole beer dump is Python-heavy reader code that coverage's tracing
# made ~2.5x slower, and the other tests of tests/data and tests/cli cover the same lines (the same
# term-missing report with and without this test)
@pytest.mark.no_cover
def test_stackexchange_beer_counts_order_and_links(shared_data: Path) -> None:
    rows = ET.parse(shared_data / "stackexchange_beer" / "Posts.xml").getroot().findall("row")
    questions = {r.get("Id"): r for r in rows if r.get("PostTypeId") == "1"}
    report = read_threads_report(shared_data / "stackexchange_beer")
    threads = report.items
    assert report.counts["rows"] == len(rows) == 2354
    assert len(threads) == len(questions) == 663
    assert sum(any(p.accepted for p in t.posts) for t in threads) == 410
    assert sum(p.kind == "answer" for t in threads for p in t.posts) == 1572
    for thread in threads:
        question = questions[thread.id]
        first, *answers = thread.posts
        assert first.kind == "question" and first.url == f"https://beer.stackexchange.com/q/{thread.id}"
        assert thread.title == question.get("Title") and first.score == int(question.get("Score"))
        assert [p.number for p in thread.posts] == list(range(1, len(thread.posts) + 1))
        assert all(
            a.reply_to == thread.id and a.url == f"https://beer.stackexchange.com/a/{a.id}" for a in answers
        )
        created = [a.created for a in answers]
        assert created == sorted(created)  # creation order, accepted answer not moved
        assert [a.id for a in answers if a.accepted] == (
            [question.get("AcceptedAnswerId")] if question.get("AcceptedAnswerId") else []
        )
    assert read_threads(shared_data / "stackexchange_beer", limit=5) == threads[:5]


COMMENTS = """<?xml version="1.0" encoding="utf-8"?>
<comments>
  <row Id="900" PostId="1" Score="2" Text="Citra is a hop &amp; a fruit?"
       CreationDate="2014-01-21T21:00:00.000" UserId="42" />
  <row Id="901" PostId="4" Score="0" Text="Thanks, great answer."
       CreationDate="2014-01-22T09:00:00.000" UserDisplayName="guest" />
  <row Id="899" PostId="1" Score="0" Text="Earlier comment."
       CreationDate="2014-01-21T20:50:00.000" UserId="7" />
  <row Id="902" PostId="77777" Score="0" Text="On a post outside any thread."
       CreationDate="2014-01-22T09:00:00.000" />
</comments>
"""
USERS = """<?xml version="1.0" encoding="utf-8"?>
<users>
  <row Id="7" DisplayName="Ahmad" />
  <row Id="42" DisplayName="Hopper" />
</users>
"""


def test_stackexchange_comments_and_users_beside_posts(shared_data: Path, tmp_path: Path) -> None:
    site = tmp_path / "cooking.stackexchange.com"
    site.mkdir()
    # the real dump's first 40 rows (thread 1 whole: question 1 and its one answer, 4) are all the comments
    # need; the rest of the whole dump (663 threads in all) only cost parsing time
    head = (
        (shared_data / "stackexchange_beer" / "Posts.xml").read_text(encoding="utf-8-sig").splitlines()[:40]
    )
    (site / "Posts.xml").write_text("\n".join([*head, "</posts>"]), encoding="utf-8")
    (site / "Comments.xml").write_text(COMMENTS, encoding="utf-8")
    (site / "Users.xml").write_text(USERS, encoding="utf-8")
    report = read_threads_report(site)
    assert report.counts["comment rows"] == 4 and report.counts["comments on posts outside threads"] == 1
    thread = next(t for t in report.items if t.id == "1")
    kinds = [(p.kind, p.id, p.reply_to) for p in thread.posts]
    assert kinds == [
        ("question", "1", None),
        ("comment", "c899", "1"),
        ("comment", "c900", "1"),
        ("answer", "4", "1"),
        ("comment", "c901", "4"),
    ]
    question, _, comment, answer, thanks = thread.posts
    assert question.author == "Ahmad" and comment.author == "Hopper" and thanks.author == "guest"
    assert comment.text == "Citra is a hop & a fruit?" and comment.score == 2
    assert comment.url == "https://cooking.stackexchange.com/q/1#comment900_1"
    assert answer.accepted and answer.url == "https://cooking.stackexchange.com/a/4"
    other = read_threads(site, options={"site": "beer"}, limit=1)[0]
    assert other.url == "https://beer.stackexchange.com/q/1"

    # a dump whose site is not known (no option, a folder named otherwise; every POST /threads of Stack
    # Exchange content) linked each post to the generic https://stackexchange.com/q/<Id> and /a/<Id>, another
    # site's address for another post: its posts, comments and thread have no links, as Discourse topics read
    # without a base_url
    unknown = tmp_path / "downloads"
    site.rename(unknown)
    thread = next(t for t in read_threads(unknown) if t.id == "1")
    assert thread.url is None and [p.url for p in thread.posts] == [None] * len(thread.posts)


def _beer_head(shared_data: Path, directory: Path, rows: int = 40) -> Path:
    """`directory` holding the beer dump's first rows (thread 1 whole: question 1 and its answer 4)."""
    directory.mkdir(parents=True)
    head = (shared_data / "stackexchange_beer" / "Posts.xml").read_text(encoding="utf-8-sig").splitlines()
    (directory / "Posts.xml").write_text("\n".join([*head[:rows], "</posts>"]), encoding="utf-8")
    return directory


NO_ELEMENT = ["", "\n", '<?xml version="1.0" encoding="utf-8"?>\n']
"""Files of no XML element: 0 bytes, a blank line, the XML declaration alone."""


@pytest.mark.parametrize("empty", [*NO_ELEMENT, "<users />", "<comments>\n</comments>\n"])
def test_empty_users_and_comments_files_read_as_no_users_and_no_comments(
    empty: str, shared_data: Path, tmp_path: Path
) -> None:
    """A Users.xml or Comments.xml of no element (NO_ELEMENT) stopped the read ("file is empty", "not valid
    XML"): the posts beside it are read, with no users and no comments. (Only the root element read so
    already.)"""
    site = _beer_head(shared_data, tmp_path / "beer.stackexchange.com")
    expected = read_threads(site)
    for name in ("Users.xml", "Comments.xml"):
        (site / name).write_text(empty, encoding="utf-8")
    report = read_threads_report(site)
    assert report.items == expected and report.items and not report.skipped
    assert report.counts.get("comment rows", 0) == 0
    if empty in NO_ELEMENT:  # a Posts.xml so empty is still no dump: the read says so
        (site / "Posts.xml").write_text(empty, encoding="utf-8")
        with pytest.raises(InvalidInputError, match=r"Posts\.xml"):
            read_threads(site)


def test_a_folder_name_guesses_a_site_only_where_the_posts_link_to_it(
    shared_data: Path, tmp_path: Path
) -> None:
    """`stackexchange-data` was taken to name the site data.stackexchange.com (the Data Explorer), linking
    every post of the dump to a page of that address; a short folder name (`stackexchange_<site>`) now names
    the site only when the dump's posts link to posts of it, as the beer dump's do."""
    for name in ("stackexchange-data", "stackexchange_cooking"):
        dump = _beer_head(shared_data, tmp_path / name)
        thread = read_threads(dump, limit=1)[0]
        assert thread.url is None and {p.url for p in thread.posts} == {None}, (name, thread.url)
    whole = tmp_path / "stackexchange-beer"
    whole.mkdir()
    (whole / "Posts.xml").symlink_to(shared_data / "stackexchange_beer" / "Posts.xml")
    assert read_threads(whole, limit=1)[0].url == "https://beer.stackexchange.com/q/1"
    # a full site host names the site (the official dump archives' names), as the site option does
    site = _beer_head(shared_data, tmp_path / "cooking.stackexchange.com")
    assert read_threads(site, limit=1)[0].url == "https://cooking.stackexchange.com/q/1"
    assert (
        read_threads(site, limit=1, options={"site": "data"})[0].url == "https://data.stackexchange.com/q/1"
    )


def _topic(topic_id: int, slug: str) -> dict:
    return {
        "id": topic_id,
        "title": f"Topic {topic_id}",
        "slug": slug,
        "tags": ["brewing", {"name": "hops"}],
        "post_stream": {
            "posts": [
                {
                    "id": topic_id * 10 + 2,
                    "post_number": 2,
                    "username": "bob",
                    "cooked": "<p>Use <strong>Cascade</strong>.</p>"
                    "<aside class='quote'><div class='title'>ann:</div>"
                    "<blockquote><p>Which hop?</p></blockquote></aside>",
                    "reply_to_post_number": 1,
                    "created_at": "2024-05-01T10:05:00.000Z",
                    "actions_summary": [{"id": 2, "count": 3}],
                    "accepted_answer": True,
                },
                {
                    "id": topic_id * 10 + 1,
                    "post_number": 1,
                    "username": "ann",
                    "cooked": "<p>Which hop should I use for a pale ale?</p>",
                    "reply_to_post_number": None,
                    "created_at": "2024-05-01T10:00:00.000Z",
                    "like_count": 1,
                },
            ]
        },
    }


def test_discourse_topic_list_and_directory(tmp_path: Path) -> None:
    single = tmp_path / "t" / "5.json"
    single.parent.mkdir()
    single.write_text(json.dumps(_topic(5, "pale-ale-hops")), encoding="utf-8")
    (single.parent / "6.json").write_text(
        json.dumps([_topic(6, "six"), _topic(7, "seven")]), encoding="utf-8"
    )
    assert detect_format(single) == "discourse" and detect_format(single.parent) == "discourse"
    (thread,) = read_threads(single, options={"base_url": "https://forum.example.org/"})
    first, second = thread.posts
    assert (thread.id, thread.title, thread.tags) == ("5", "Topic 5", ["brewing", "hops"])
    assert (first.id, first.number, first.author, first.score, first.reply_to) == ("51", 1, "ann", 1, None)
    assert (second.id, second.reply_to, second.score, second.accepted) == ("52", "51", 3, True)
    assert second.text == "Use Cascade.\n\n> Which hop?"
    assert second.url == "https://forum.example.org/t/pale-ale-hops/5/2" and second.created is not None
    assert [t.id for t in read_threads(single.parent)] == ["5", "6", "7"]
    # a base_url that is not a web address failed every post's URL check: a pydantic ValidationError traceback
    for bad in ("forum.example.org", "https://"):
        with pytest.raises(InvalidInputError, match="option base_url must be the forum's http"):
            read_threads(single, options={"base_url": bad})
    assert read_threads(single.parent)[0].posts[0].url is None


def test_native_round_trip_of_the_beer_dump(shared_data: Path, tmp_path: Path) -> None:
    threads = read_threads(shared_data / "stackexchange_beer", limit=40)
    dumped = [t.model_dump(mode="json") for t in threads]
    as_list, as_lines, as_one = tmp_path / "list.json", tmp_path / "lines.jsonl", tmp_path / "one.json"
    as_list.write_text(json.dumps(dumped), encoding="utf-8")
    as_lines.write_text("".join(json.dumps(t) + "\n" for t in dumped), encoding="utf-8")
    as_one.write_text(json.dumps(dumped[0]), encoding="utf-8")
    assert read_threads(as_list) == threads and read_threads(as_lines) == threads
    assert read_threads(as_one) == threads[:1]
    assert detect_format(as_lines) == "native"


def test_native_minimal_thread_gets_numbers_and_html() -> None:
    from tldrlab.data.readers.native import native_thread

    thread = native_thread(
        {"id": "t", "posts": [{"id": "a", "text": "Hi."}, {"id": "b", "html": "<p>Yes &amp; no.</p>"}]},
        Path("x.json"),
        "item 0",
    )
    assert [(p.number, p.text) for p in thread.posts] == [(1, "Hi."), (2, "Yes & no.")]
    assert thread.source == "native"


def test_pairs_jsonl_and_csv_with_mapping(tmp_path: Path) -> None:
    lines = tmp_path / "news.jsonl"
    lines.write_text(
        json.dumps({"uid": "a1", "text": "Long story one.", "headline": ["H1", "H1b"]})
        + "\n\n"
        + json.dumps({"uid": "a2", "text": "Long story two.", "headline": "H2"})
        + "\n",
        encoding="utf-8",
    )
    records = read_records(lines, "pairs", mapping={"id": "uid", "document": "text", "summary": "headline"})
    assert [(r.id, r.document, r.summaries) for r in records] == [
        ("a1", "Long story one.", ["H1", "H1b"]),
        ("a2", "Long story two.", ["H2"]),
    ]
    assert records[1].provenance["record"] == "line 3"
    assert detect_format(lines) == "pairs"
    table = tmp_path / "news.csv"
    table.write_text('text,headline\n"A, with comma.",Short\nSecond doc.,S2\n', encoding="utf-8")
    rows = read_records(table, mapping={"document": "text", "summary": "headline"})
    assert [(r.id, r.document, r.summary) for r in rows] == [
        ("1", "A, with comma.", "Short"),
        ("2", "Second doc.", "S2"),
    ]
    assert read_records(table)[0].summary == "Short"  # default field names need no mapping
    with pytest.raises(InvalidInputError, match="unknown mapping"):
        read_records(table, mapping={"title": "x"})


def test_a_format_of_the_other_kind_says_which_commands_read_it(tmp_path: Path) -> None:
    # `tldrlab digest notes.txt` said "...; use read_records / a records command": a function, not a command
    notes = tmp_path / "notes.txt"
    notes.write_text("Plain notes, not a forum thread.\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        read_threads(notes)
    message = caught.value.message
    assert "(stackexchange, discourse, native)" in message and "tldrlab train" in message
    assert "read_records" not in message
    thread = tmp_path / "thread.json"
    thread.write_text(json.dumps({"id": "t", "posts": [{"id": "p", "text": "Hi there."}]}), encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        read_records(thread)
    assert "tldrlab ingest" in caught.value.message and "read_threads" not in caught.value.message


def test_format_kind_mismatch_and_unknown_format(shared_data: Path) -> None:
    with pytest.raises(InvalidInputError, match="holds threads"):
        read_records(shared_data / "stackexchange_beer")
    with pytest.raises(InvalidInputError, match="holds records"):
        read_threads(shared_data / "scitldr")
    with pytest.raises(InvalidInputError, match="unknown format 'rss'"):
        read_records(shared_data / "scitldr", "rss")
    with pytest.raises(NotFoundError):
        read_records(shared_data / "nope")
    assert {spec.kind for spec in READERS.values()} == {"records", "threads"}


def test_a_csv_delimiter_of_more_than_one_character_is_an_input_error(tmp_path: Path) -> None:
    # `tldrlab data inspect my.csv -o delimiter=';;'` was the csv module's TypeError traceback
    table = tmp_path / "news.csv"
    table.write_text("document;summary\nA long text about parsers.;Parsers\n", encoding="utf-8")
    assert read_records(table, options={"delimiter": ";"})[0].summary == "Parsers"
    for bad in (";;", ""):
        with pytest.raises(InvalidInputError, match="delimiter must be one character"):
            read_records(table, options={"delimiter": bad})


def test_csv_header_cells_are_read_without_surrounding_spaces(tmp_path: Path) -> None:
    # `document, summary` (a space after each comma) was "field 'summary': missing" on every row
    table = tmp_path / "news.csv"
    table.write_text("document, summary ,\nA long text about parsers., Parsers,\n", encoding="utf-8")
    tabs = tmp_path / "news.tsv"
    tabs.write_text(" document\tsummary \nA long text about parsers.\tParsers\n", encoding="utf-8")
    for file in (table, tabs):
        record = read_records(file)[0]
        assert (record.document, record.summary.strip()) == ("A long text about parsers.", "Parsers")


def test_a_csv_column_named_twice_is_refused_naming_it(tmp_path: Path) -> None:
    # a row kept only the last `summary` column's cell, silently
    table = tmp_path / "news.csv"
    for header in ("document,summary,summary", "document,summary, summary"):
        table.write_text(f"{header}\nA long text about parsers.,Parsers,Second\n", encoding="utf-8")
        with pytest.raises(InvalidInputError, match="the header names column 'summary' more than once"):
            read_records(table)


def test_a_delimiter_option_on_no_csv_file_is_an_input_error(tmp_path: Path) -> None:
    # `-o delimiter=;` on JSON lines or TSV was silently ignored: the read went on as if it were not given
    lines = tmp_path / "news.jsonl"
    lines.write_text('{"document": "A long text about parsers.", "summary": "Parsers"}\n', encoding="utf-8")
    tabs = tmp_path / "news.tsv"
    tabs.write_text("document\tsummary\nA long text about parsers.\tParsers\n", encoding="utf-8")
    for file, suffix in ((lines, ".jsonl"), (tabs, ".tsv")):
        assert read_records(file)[0].summary == "Parsers"
        with pytest.raises(
            InvalidInputError, match=rf"option delimiter applies to \.csv files only, not to \{suffix}"
        ):
            read_records(file, options={"delimiter": ";"})
    # a directory with a CSV among its files: the option applies to that one
    (tmp_path / "more.csv").write_text("document;summary\nAnother text.;Text\n", encoding="utf-8")
    assert sorted(r.summary for r in read_records(tmp_path, "pairs", options={"delimiter": ";"})) == [
        "Parsers",
        "Parsers",
        "Text",
    ]


def test_an_empty_directory_says_it_holds_no_data(tmp_path: Path) -> None:
    # an empty directory was "no data files to detect a format from; pass a format", though no format helps
    with pytest.raises(InvalidInputError, match="the directory holds no data files"):
        detect_format(tmp_path)
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01binary")
    with pytest.raises(InvalidInputError, match="pass a format"):  # here a format would help
        detect_format(tmp_path)


@pytest.mark.parametrize(
    ("fmt", "record"),
    [
        ("wikipedia", {"title": "Hops", "text": "Hops flavour beer."}),
        ("debian", {"id": "hop", "document": "A hop tool.", "summary": "hops"}),
        ("scitldr", {"paper_id": "p1", "source": ["We brew.", "It works."], "target": ["Brewing works."]}),
        (
            "qmsum",
            {
                "meeting_id": "m1",
                "meeting_transcripts": [{"speaker": "A", "content": "Hello."}],
                "general_query_list": [{"query": "What?", "answer": "A greeting."}],
            },
        ),
    ],
)
def test_a_json_list_of_records_is_read_in_every_json_lines_format(
    tmp_path: Path, fmt: str, record: dict
) -> None:
    """`.json` may hold a list of objects (the common rule): detection took such a file for these formats,
    whose readers read JSON lines only and refused it ("line 1: not valid JSON")."""
    path = tmp_path / f"{fmt}_records.json"
    path.write_text(json.dumps([record, record], indent=1), encoding="utf-8")
    assert detect_format(path) == fmt
    records = read_records(path)
    assert len(records) == 2 and records[0].document == records[1].document != ""
