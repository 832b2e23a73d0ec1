"""Every kind of malformed input: an error naming file, record and field; --skip-invalid keeps the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tldrlab.data.readers import read_records, read_records_report, read_threads, read_threads_report
from tldrlab.errors import InvalidInputError

GOOD = {"id": "pkg", "document": "A package.", "summary": "a package"}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "x", "document": "D", "summary": ', r"line 2: not valid JSON"),
        (json.dumps({"id": "x", "document": "D"}), r"line 2: field 'summary': missing"),
        (
            json.dumps({"id": "x", "document": "D", "summary": 3}),
            r"line 2: field 'summary': expected a string, got int",
        ),
        (json.dumps(["not", "an", "object"]), r"line 2: expected a JSON object, got list"),
    ],
)
def test_bad_json_lines_name_file_line_and_field(tmp_path: Path, bad_line: str, message: str) -> None:
    path = _write_lines(
        tmp_path / "debian.jsonl", [json.dumps(GOOD), bad_line, json.dumps({**GOOD, "id": "p2"})]
    )
    with pytest.raises(InvalidInputError, match=message) as info:
        read_records(path, "debian")
    assert str(path) in info.value.message
    report = read_records_report(path, "debian", skip_invalid=True)
    assert [r.id for r in report.items] == ["pkg", "p2"]  # valid records are all kept
    assert len(report.skipped) == 1 and "line 2" in report.skipped[0]


def test_wrong_types_inside_nested_fields(tmp_path: Path) -> None:
    scitldr = _write_lines(
        tmp_path / "s.jsonl",
        [json.dumps({"source": ["One.", "Two."], "source_labels": [0], "target": ["T"], "paper_id": "p"})],
    )
    with pytest.raises(InvalidInputError, match=r"line 1: field 'source_labels': has 1 labels for 2"):
        read_records(scitldr, "scitldr")
    scitldr.write_text(json.dumps({"source": ["One.", 2], "target": "T"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"field 'source\[1\]': expected a string, got int"):
        read_records(scitldr, "scitldr")
    meeting = {
        "meeting_id": "M1",
        "meeting_transcripts": [{"speaker": "A", "content": "Hi ."}],
        "general_query_list": [],
        "specific_query_list": [{"query": "Q", "answer": "A", "relevant_text_span": [["0", "5"]]}],
    }
    qmsum = _write_lines(tmp_path / "q.jsonl", [json.dumps(meeting)])
    with pytest.raises(
        InvalidInputError, match=r"specific_query_list\[0\]\.relevant_text_span\[0\]': turn range 0-5"
    ):
        read_records(qmsum, "qmsum")
    native = tmp_path / "threads.json"
    native.write_text(
        json.dumps([{"id": "t1", "posts": [{"id": "p", "text": "ok"}, {"id": "q", "score": 1}]}])
    )
    with pytest.raises(InvalidInputError, match=r"item 0: field 'posts\[1\]\.text': field required"):
        read_threads(native)
    native.write_text(json.dumps({"id": "t1", "posts": [{"id": "p", "text": "a"}, {"id": "p", "text": "b"}]}))
    with pytest.raises(InvalidInputError, match=r"posts\[1\]\.id': duplicate post id 'p'"):
        read_threads(native)


@pytest.mark.parametrize(
    "name",
    ["empty.jsonl", "empty.json", "empty.csv", "empty.txt", "Posts.xml", "empty.tokens", "blank.tokens"],
)
def test_empty_files_are_refused_even_when_skipping(tmp_path: Path, name: str) -> None:
    # a WikiText file of no text read as 0 records, exit 0, where every other format refuses it
    path = tmp_path / name
    path.write_text("\n \n" if name in ("empty.jsonl", "blank.tokens") else "", encoding="utf-8")
    formats = {"empty.jsonl": "debian", "empty.json": "native", "empty.csv": "pairs", "empty.txt": "text"}
    fmt = formats.get(name, "wikitext" if name.endswith(".tokens") else None)
    with pytest.raises(InvalidInputError, match="file is empty"):
        if name == "Posts.xml":
            read_threads(path, "stackexchange", skip_invalid=True)
        elif fmt == "native":
            read_threads(path, fmt, skip_invalid=True)
        else:
            read_records(path, fmt, skip_invalid=True)


def test_bad_xml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "Posts.xml"
    path.write_text('<?xml version="1.0"?>\n<posts>\n  <row Id="1" PostTypeId="1" Body="x"\n</posts>\n')
    with pytest.raises(InvalidInputError, match=r"Posts.xml: line \d+: not valid XML"):
        read_threads(path, "stackexchange")


def test_bad_stackexchange_rows_are_skippable(tmp_path: Path) -> None:
    path = tmp_path / "Posts.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<posts>\n'
        '  <row Id="1" PostTypeId="1" Title="Q" Body="&lt;p&gt;Why?&lt;/p&gt;" Score="1" />\n'
        '  <row Id="2" PostTypeId="2" Body="no parent" Score="0" />\n'
        '  <row Id="3" PostTypeId="2" ParentId="99" Body="orphan" Score="0" />\n'
        '  <row Id="4" PostTypeId="two" Body="bad type" />\n'
        '  <row Id="5" PostTypeId="2" ParentId="1" Body="&lt;p&gt;Because.&lt;/p&gt;" Score="x" />\n'
        '  <row Id="6" PostTypeId="2" ParentId="1" Body="&lt;p&gt;Good.&lt;/p&gt;" Score="2" />\n'
        "</posts>\n"
    )
    with pytest.raises(InvalidInputError, match=r"line 4 \(row Id=2\): field 'ParentId'"):
        read_threads(path, "stackexchange")
    report = read_threads_report(path, "stackexchange", skip_invalid=True)
    assert [m.split(": ", 2)[1] for m in report.skipped] == [
        "line 4 (row Id=2)",
        "line 6 (row Id=4)",
        "line 7 (row Id=5)",
        "line 5 (row Id=3)",
    ]
    (thread,) = report.items  # the bad answer is left out alone; its thread keeps the good one
    assert [(p.id, p.score) for p in thread.posts] == [("1", 1), ("6", 2)]


def test_bad_csv_rows_and_missing_mapped_field(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("text,headline\nDoc one.,H1\nDoc two.,H2,extra\nDoc three.,H3\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"p.csv: row 2: 1 more cell"):
        read_records(path)
    assert [r.summary for r in read_records(path, skip_invalid=True)] == ["H1", "H3"]
    with pytest.raises(InvalidInputError, match=r"row 1: field 'title': missing"):
        read_records(path, mapping={"document": "title"}, skip_invalid=False, limit=1)


def test_csv_rows_are_counted_as_rows_when_cells_hold_line_breaks(tmp_path: Path) -> None:
    """A quoted cell over three lines: the rows after it were numbered by their lines ('row 4' for the second
    row, ids '3' and '4' for rows 1 and 2), so an error sent the user to the wrong row."""
    path = tmp_path / "p.csv"
    rows = ['"line a\nline b\nline c",s1', '"doc two",s2', '"doc three",s3,extra']
    path.write_text("document,summary\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"p.csv: row 3 \(line 6\): 1 more cell"):
        read_records(path)
    report = read_records_report(path, skip_invalid=True)
    assert [(r.id, r.provenance["record"]) for r in report.items] == [("1", "row 1"), ("2", "row 2 (line 5)")]
    assert report.items[0].document == "line a\nline b\nline c"


def test_a_csv_of_another_delimiter_is_named_for_it(tmp_path: Path) -> None:
    """A semicolon CSV (or a tab-separated file named .csv) read with ',' is one column: every row was
    "field 'document': missing", which said nothing of the delimiter."""
    semicolons, tabs = tmp_path / "semi.csv", tmp_path / "tabs.csv"
    semicolons.write_text("document;summary\nA doc;a sum\n", encoding="utf-8")
    tabs.write_text("document\tsummary\nA doc\ta sum\n", encoding="utf-8")
    with pytest.raises(
        InvalidInputError, match=r"semi.csv: the header is one column .* is ';' the delimiter"
    ):
        read_records(semicolons)
    with pytest.raises(InvalidInputError, match=r"is '\\t' the delimiter\? give the reader option delimiter"):
        read_records(tabs, skip_invalid=True)
    assert [r.summary for r in read_records(semicolons, options={"delimiter": ";"})] == ["a sum"]


def test_a_csv_cell_longer_than_the_csv_modules_limit_is_read(tmp_path: Path) -> None:
    """A valid CSV whose document is 200,000 characters (a long article) was refused: 'not valid CSV (field
    larger than field limit (131072))', the csv module's default."""
    import csv

    path = tmp_path / "long.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerows([["document", "summary"], ["word " * 40_000, "long"], ["short", "s"]])
    records = read_records(path)
    assert [len(r.document) for r in records] == [200_000, 5]


def test_a_form_feed_or_line_separator_in_a_csv_cell_does_not_cut_its_row(tmp_path: Path) -> None:
    """A document holding a form feed (text from a PDF) or U+2028: the CSV was split into lines at it as at a
    line break, so its row was cut in two: 'field summary: missing' for the first half, and with
    --skip-invalid the second half read as the document."""
    path = tmp_path / "pages.csv"
    rows = ["page one\x0cpage two,s1", "a\u2028b,s2", '"quoted,\u2028sep\x85",s3']
    path.write_text("document,summary\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    records = read_records(path)
    assert [(r.id, r.document) for r in records] == [
        ("1", "page one\x0cpage two"),
        ("2", "a\u2028b"),
        ("3", "quoted,\u2028sep\x85"),
    ]


def test_discourse_missing_post_stream_and_bad_date(tmp_path: Path) -> None:
    path = tmp_path / "topics.json"
    topic = {
        "id": 1,
        "title": "t",
        "post_stream": {"posts": [{"id": 10, "post_number": 1, "cooked": "<p>x</p>"}]},
    }
    bad_date = json.loads(json.dumps(topic))
    bad_date["post_stream"]["posts"][0]["created_at"] = "yesterday"
    path.write_text(json.dumps([topic, {"id": 2, "title": "no stream"}, bad_date]), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"item 1: field 'post_stream.posts': missing"):
        read_threads(path, "discourse")
    report = read_threads_report(path, "discourse", skip_invalid=True)
    assert [t.id for t in report.items] == ["1"]
    assert "item 2: post_stream.posts[0]: field 'created_at': not a date" in report.skipped[1]


def test_invalid_utf8_and_truncated_json_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "\xff\xfe"}\n')
    with pytest.raises(InvalidInputError, match="line 2: not valid UTF-8"):
        read_records(path, "debian")
    assert len(read_records(path, "debian", skip_invalid=True)) == 1
    whole = tmp_path / "t.json"
    whole.write_text('{"id": "t", "posts": [\n  {"id": "p", "text": "x"},\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"t.json: line 3: not valid JSON"):
        read_threads(whole, "native")


MEETING = {"meeting_id": "M", "meeting_transcripts": [{"speaker": "A", "content": "Hi ."}]}


@pytest.mark.parametrize(
    ("fmt", "row", "message"),
    [
        (
            "scitldr",
            {"source": "One.", "target": ["T"]},
            r"field 'source': expected a list of strings, got str",
        ),
        (
            "scitldr",
            {"source": ["One."], "source_labels": 1, "target": ["T"]},
            r"'source_labels': expected a list",
        ),
        ("scitldr", {"source": ["One."], "source_labels": [2], "target": ["T"]}, r"labels must be 0 or 1"),
        (
            "scitldr",
            {"source": ["One."], "source_labels": [True], "target": ["T"]},
            r"expected an integer, got bool",
        ),
        ("scitldr", {"source": ["One."]}, r"field 'target': missing"),
        ("wikipedia", {"title": "T"}, r"field 'text': missing"),
        ("wikipedia", {"title": "T", "text": "x", "id": 1.5}, r"field 'id': expected a string, got float"),
        ("wikipedia", {"text": "x"}, r"field 'title': missing"),  # no id either: the title must stand in
        ("wikipedia", {"id": "a", "text": "x", "title": 3}, r"field 'title': expected a string, got int"),
        ("qmsum", {"meeting_id": "M", "meeting_transcripts": "x"}, r"'meeting_transcripts': expected a list"),
        (
            "qmsum",
            {"meeting_id": "M", "meeting_transcripts": ["x"]},
            r"'meeting_transcripts\[0\]': expected an obj",
        ),
        ("qmsum", {**MEETING, "general_query_list": {}}, r"'general_query_list': expected a list, got dict"),
        ("qmsum", {**MEETING, "general_query_list": ["q"]}, r"'general_query_list\[0\]': expected an object"),
        (
            "qmsum",
            {**MEETING, "general_query_list": [{"query": "q"}]},
            r"general_query_list\[0\]: field 'answer'",
        ),
        (
            "qmsum",
            {**MEETING, "specific_query_list": [{"query": "q", "answer": "a", "relevant_text_span": "0-1"}]},
            r"relevant_text_span': expected a list of \[start, end\] ranges",
        ),
        (
            "qmsum",
            {
                **MEETING,
                "specific_query_list": [{"query": "q", "answer": "a", "relevant_text_span": [["0"]]}],
            },
            r"relevant_text_span\[0\]': expected \[start, end\]",
        ),
        (
            "qmsum",
            {
                **MEETING,
                "specific_query_list": [{"query": "q", "answer": "a", "relevant_text_span": [["a", "1"]]}],
            },
            r"relevant_text_span\[0\]\[0\]': expected an integer, got 'a'",
        ),
        ("pairs", {"text": "doc"}, r"field 'summary': missing"),
        ("pairs", {"document": "doc", "summary": [1]}, r"field 'summary\[0\]': expected a string, got int"),
        (
            "pairs",
            {"document": "doc", "summary": {"a": 1}},
            r"field 'summary': expected a list of strings, got dict",
        ),
    ],
)
def test_malformed_records_of_every_format(tmp_path: Path, fmt: str, row: dict, message: str) -> None:
    path = _write_lines(tmp_path / "data.jsonl", [json.dumps(row)])
    with pytest.raises(InvalidInputError, match=message) as info:
        read_records(path, fmt)
    assert info.value.message.startswith(f"{path}: line 1")
    assert read_records_report(path, fmt, skip_invalid=True).skipped == [info.value.message]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.xml", "<notes/>", "XML without <posts>"),
        ("odd.json", '"just a string"', "cannot detect the format"),
        ("odd.jsonl", json.dumps({"foo": 1}), r"cannot detect the format from fields \['foo'\]"),
        ("blank.json", "", "file is empty"),
    ],
)
def test_undetectable_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    from tldrlab.data.readers import detect_format

    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInputError, match=message):
        detect_format(path)


def test_directories_without_data(tmp_path: Path) -> None:
    from tldrlab.data.readers import detect_format
    from tldrlab.errors import NotFoundError

    (tmp_path / "README.md").write_text("about", encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="no data files"):
        detect_format(empty)
    with pytest.raises(NotFoundError, match=r"no Posts\.xml"):
        read_threads(empty, "stackexchange")
    with pytest.raises(NotFoundError, match="no debian data files"):
        read_records(empty, "debian")
    with pytest.raises(InvalidInputError, match="limit must be >= 0"):
        read_records(tmp_path / "README.md", "text", limit=-1)


def test_native_and_discourse_structure_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    for content, fmt, message in [
        ({"id": "t", "posts": "none"}, "native", r"field 'posts': expected a list of posts, got str"),
        ({"id": "t", "posts": ["p"]}, "native", r"field 'posts\[0\]': expected an object, got str"),
        ({"id": 1, "posts": []}, "native", r"field 'id': input should be a valid string"),
        ([{"id": "t", "posts": []}, 3], "native", r"item 1: expected a JSON object, got int"),
        (5, "native", r"expected an object or a list, got int"),
        (
            {"id": 1, "post_stream": {"posts": [7]}},
            "discourse",
            r"'post_stream.posts\[0\]': expected an object",
        ),
        (
            {"id": 1, "post_stream": {"posts": [{"id": 2, "post_number": 1, "cooked": 3}]}},
            "discourse",
            r"field 'cooked': expected HTML text, got int",
        ),
    ]:
        path.write_text(json.dumps(content), encoding="utf-8")
        with pytest.raises(InvalidInputError, match=message):
            read_threads(path, fmt)


def test_lone_surrogate_escapes_are_refused_as_the_record_they_are_in(tmp_path: Path) -> None:
    # JSON allows "\ud800" but no UTF-8 text holds it: `tldrlab ingest` of such a thread file failed with a
    # UnicodeEncodeError traceback when the store hashed the post (a pairs file, when the tokenizer read it)
    beer = r'{"id": "p3", "document": "Beer \ud83c\udf7a here.", "summary": "a pair"}'  # a valid pair: kept
    lone = r'{"id": "x", "document": "Half \ud800 a character.", "summary": "s"}'
    path = _write_lines(tmp_path / "debian.jsonl", [json.dumps(GOOD), lone, beer])
    with pytest.raises(InvalidInputError, match=r"line 2: not valid Unicode \(a lone surrogate") as info:
        read_records(path, "debian")
    assert str(path) in info.value.message
    report = read_records_report(path, "debian", skip_invalid=True)
    assert [r.id for r in report.items] == ["pkg", "p3"] and "\U0001f37a" in report.items[1].document
    threads = tmp_path / "threads.json"
    good = {"id": "t1", "posts": [{"id": "1", "text": "Fine."}]}
    bad = r'{"id": "t2", "posts": [{"id": "1", "text": "\udfff"}]}'
    threads.write_text(f"[{json.dumps(good)}, {bad}]", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"item 1: not valid Unicode"):
        read_threads(threads, "native")
    assert [t.id for t in read_threads_report(threads, "native", skip_invalid=True).items] == ["t1"]
    one = tmp_path / "thread.json"
    one.write_text(r'{"id": "t", "title": "\ud800", "posts": []}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"the top-level object: not valid Unicode"):
        read_threads(one, "native")


def test_a_thread_file_with_a_nul_character_is_refused_naming_the_field(tmp_path: Path) -> None:
    # PostgreSQL's text cannot hold U+0000: `tldrlab ingest` stored such a post (SQLite) or failed half-way
    path = tmp_path / "thread.json"
    path.write_text(
        json.dumps({"id": "t", "posts": [{"id": "1", "text": "Bad\u0000 text."}]}), encoding="utf-8"
    )
    with pytest.raises(InvalidInputError, match=r"field 'posts\[0\]\.text': must not contain NUL .*U\+0000"):
        read_threads(path, "native")


def test_a_post_number_no_store_can_hold_is_refused_as_its_record(tmp_path: Path) -> None:
    # a discourse post_number past the stores' 32-bit INTEGER: a pydantic traceback from the reader (before
    # the thread model bounded it: an OverflowError in the store, half-way through writing the thread)
    big = {"id": 2, "post_stream": {"posts": [{"id": 9, "post_number": 2**40, "cooked": "<p>Hi.</p>"}]}}
    fine = {"id": 1, "post_stream": {"posts": [{"id": 8, "post_number": 1, "cooked": "<p>Hi.</p>"}]}}
    path = tmp_path / "topics.json"
    path.write_text(json.dumps([fine, big]), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"posts\[0\]: field 'post_number': .*less than"):
        read_threads(path, "discourse")
    assert [t.id for t in read_threads_report(path, "discourse", skip_invalid=True).items] == ["1"]
    native = tmp_path / "native.json"
    native.write_text(json.dumps({"id": "t", "posts": [{"id": "1", "number": 2**31, "text": "Hi."}]}))
    with pytest.raises(InvalidInputError, match=r"field 'posts\[0\]\.number': input should be less"):
        read_threads(native, "native")


def test_a_post_id_given_twice_is_a_malformed_record_in_every_thread_format(tmp_path: Path) -> None:
    # the Discourse and Stack Exchange readers let a thread hold one post id twice (native ones refused it):
    # the ingest run then failed half-way, threads before it written, with the store's "post '2' of thread
    # '77' is written twice", and a repeated question row silently replaced the first
    topic = {
        "id": 77,
        "title": "Hops",
        "slug": "hops",
        "post_stream": {
            "posts": [
                {"id": 1, "post_number": 1, "cooked": "<p>Which hops?</p>"},
                {"id": 2, "post_number": 2, "cooked": "<p>Cascade.</p>"},
                {"id": 2, "post_number": 3, "cooked": "<p>Citra.</p>"},
            ]
        },
    }
    discourse = tmp_path / "topic.json"
    discourse.write_text(json.dumps(topic), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"post_stream.posts\[2\]: field 'id': duplicate post id '2'"):
        read_threads(discourse, "discourse")
    assert read_threads_report(discourse, "discourse", skip_invalid=True).items == []
    topic["post_stream"]["posts"][2].update(id=3, post_number=2)  # type: ignore[index]
    discourse.write_text(json.dumps(topic), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"field 'post_number': post number 2 appears twice"):
        read_threads(discourse, "discourse")

    posts = tmp_path / "Posts.xml"
    posts.write_text(
        '<?xml version="1.0"?>\n<posts>\n'
        '  <row Id="1" PostTypeId="1" Title="Q" Body="&lt;p&gt;Chill a stout?&lt;/p&gt;" Score="1" />\n'
        '  <row Id="2" PostTypeId="2" ParentId="1" Body="&lt;p&gt;No.&lt;/p&gt;" Score="2" />\n'
        '  <row Id="2" PostTypeId="2" ParentId="1" Body="&lt;p&gt;Yes.&lt;/p&gt;" Score="0" />\n'
        '  <row Id="1" PostTypeId="1" Title="Q again" Body="&lt;p&gt;Again?&lt;/p&gt;" Score="1" />\n'
        "</posts>\n"
    )
    with pytest.raises(InvalidInputError, match=r"line 5 \(row Id=2\): field 'Id': duplicate post Id 2"):
        read_threads(posts, "stackexchange")
    report = read_threads_report(posts, "stackexchange", skip_invalid=True)
    (thread,) = report.items
    assert thread.title == "Q" and [p.text for p in thread.posts] == ["Chill a stout?", "No."]
    assert [m.split(": ", 2)[1] for m in report.skipped] == ["line 5 (row Id=2)", "line 6 (row Id=1)"]


def test_a_discourse_like_count_or_tag_of_another_type_is_its_topics_error(tmp_path: Path) -> None:
    """A like count that is no number (`"count": null`) or a tag that is a number was a TypeError or
    AttributeError traceback, which --skip-invalid did not skip either."""
    post = {"id": 10, "post_number": 1, "cooked": "<p>Hi.</p>"}
    fine = {"id": 1, "post_stream": {"posts": [{**post, "actions_summary": [{"id": 2, "count": "7"}]}]}}
    no_count = {"id": 2, "post_stream": {"posts": [{**post, "actions_summary": [{"id": 2, "count": None}]}]}}
    number_tag = {"id": 3, "tags": ["beer", 5], "post_stream": {"posts": [post]}}
    path = tmp_path / "topics.json"
    path.write_text(json.dumps([fine, no_count, number_tag]), encoding="utf-8")
    with pytest.raises(
        InvalidInputError, match=r"field 'actions_summary.count': expected an integer, got None"
    ):
        read_threads(path, "discourse")
    report = read_threads_report(path, "discourse", skip_invalid=True)
    assert [(t.id, t.posts[0].score) for t in report.items] == [("1", 7)]
    assert "item 2: field 'tags[1]': expected a tag name or an object, got int" in report.skipped[1]


def test_a_stack_exchange_comment_id_given_twice_is_a_malformed_row(tmp_path: Path) -> None:
    """Two Comments.xml rows of one Id on one thread gave it two posts `c5`: its ingest then failed half-way
    in the store ("written twice"), as repeated post rows did before they were refused."""
    (tmp_path / "Posts.xml").write_text(
        '<?xml version="1.0"?>\n<posts>\n'
        '  <row Id="1" PostTypeId="1" Title="Q" Body="&lt;p&gt;Chill a stout?&lt;/p&gt;" Score="1" />\n'
        "</posts>\n",
        encoding="utf-8",
    )
    (tmp_path / "Comments.xml").write_text(
        '<?xml version="1.0"?>\n<comments>\n'
        '  <row Id="5" PostId="1" Score="0" Text="Good question." />\n'
        '  <row Id="5" PostId="1" Score="0" Text="Same id." />\n'
        "</comments>\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInputError, match=r"line 4 \(row Id=5\): field 'Id': duplicate comment Id 5"):
        read_threads(tmp_path, "stackexchange")
    report = read_threads_report(tmp_path, "stackexchange", skip_invalid=True)
    (thread,) = report.items
    assert [(p.id, p.text) for p in thread.posts] == [("1", "Chill a stout?"), ("c5", "Good question.")]
