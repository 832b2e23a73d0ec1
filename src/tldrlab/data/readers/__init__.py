"""Readers for every supported format, in one registry: `READERS[name] -> ReaderSpec`.

    records = read_records("../shared/data/scitldr", split="dev")            # format detected
    threads = read_threads("../shared/data/stackexchange_beer")
    report = read_records_report("pairs.csv", "pairs", mapping={"summary": "headline"}, skip_invalid=True)
    report.items, report.skipped                                               # what was read / skipped

`path` is a file or a data-set directory; for a directory, `split` picks the file(s) whose name holds the
split (train; dev = validation = val; test), and no split reads them all; a file has only the split its name
holds (another one is refused). Adding a format = one module with a reader function
`(path, ReadContext) -> Iterator[item]` + one entry in READERS (+ a rule in `detect_format`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from tldrlab.choices import unknown_choice
from tldrlab.data.readers.common import (
    ReadContext,
    check_file_split,
    compressed,
    data_files,
    first_json_object,
    is_utf8_text,
    pick_split,
)
from tldrlab.data.readers.debian import read_debian
from tldrlab.data.readers.discourse import read_discourse
from tldrlab.data.readers.native import read_native
from tldrlab.data.readers.pairs import DEFAULT_FIELDS, read_pairs
from tldrlab.data.readers.qmsum import read_qmsum
from tldrlab.data.readers.scitldr import read_scitldr
from tldrlab.data.readers.stackexchange import read_stackexchange
from tldrlab.data.readers.text import read_text_file
from tldrlab.data.readers.wikipedia import read_wikipedia
from tldrlab.data.readers.wikitext import read_wikitext
from tldrlab.data.records import SummaryRecord
from tldrlab.data.threads import Thread
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.report import Column, Table

JSON_SUFFIXES = (".json", ".jsonl")
"""Files named as JSON are read as JSON or refused; never taken for plain text."""

TEXT_SUFFIXES = (".txt", ".md")
"""Files named as plain text: the `text` format's, which a directory holding other data files is not."""

ReaderKind = Literal["records", "threads"]
Item = TypeVar("Item", SummaryRecord, Thread)


@dataclass(frozen=True)
class ReaderSpec:
    """One supported format."""

    kind: ReaderKind
    """`records` (SummaryRecord: summarization data) or `threads` (Thread: forum threads)."""

    read: Callable[[Path, ReadContext], Iterator[Any]]
    """Reads one file (a Stack Exchange reader gets Posts.xml) and yields items."""

    description: str
    """One line for `tldrlab data formats` and docs/formats.md."""

    suffixes: tuple[str, ...] = (".jsonl", ".json")
    """File suffixes read from a directory."""

    options: Mapping[str, str] = field(default_factory=dict)
    """Reader-specific options: name -> what it does."""

    option_suffixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Options that apply only to files of some suffixes: option -> those suffixes. A read with no such file
    is refused rather than the option silently ignored."""

    companions: tuple[str, ...] = ()
    """Files beside a read file that the reader reads with it when present (Comments.xml beside Posts.xml):
    part of what a registered data set is."""

    check_head: Callable[[Path], None] | None = None
    """A cheap check that a file is of this format, for a reader whose first item needs the whole file (a
    Stack Exchange thread is made of rows from all over Posts.xml); None: reading its first item is the
    check (`check_first_record`). InvalidInputError when the file is not of the format."""


def _xml_head(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.read(4096).decode("utf-8-sig", errors="replace")


def _check_posts_xml(file: Path) -> None:
    """A Stack Exchange Posts.xml has its <posts> element at its head (as `detect_format` tells it)."""
    if file.suffix.lower() != ".xml" or "<posts" not in _xml_head(file):
        raise InvalidInputError(f"{file}: not a Stack Exchange Posts.xml (no <posts> element)")


READERS: dict[str, ReaderSpec] = {
    "pairs": ReaderSpec(
        "records",
        read_pairs,
        "generic document -> summary pairs (JSON lines, JSON or CSV/TSV); fields named by a mapping",
        suffixes=(".jsonl", ".json", ".csv", ".tsv"),
        options={"delimiter": "CSV delimiter (default ','); .csv files only"},
        option_suffixes={"delimiter": (".csv",)},
    ),
    "scitldr": ReaderSpec(
        "records", read_scitldr, "SciTLDR: abstract sentences + highlight labels -> TL;DRs"
    ),
    "debian": ReaderSpec("records", read_debian, "Debian package descriptions: id, document, summary"),
    "qmsum": ReaderSpec("records", read_qmsum, "QMSum meetings: one record per query, turns as sentences"),
    "wikipedia": ReaderSpec("records", read_wikipedia, "article JSON lines (title, text); no summaries"),
    "wikitext": ReaderSpec(
        "records",
        read_wikitext,
        "WikiText token files (` = Title = ` articles): detokenised articles, headings as paragraphs",
        suffixes=(".tokens",),
    ),
    "text": ReaderSpec(
        "records",
        read_text_file,
        "plain text: one record per file, or one per blank-line-separated document",
        suffixes=TEXT_SUFFIXES,
        options={"per_paragraph": "true: one record per blank-line-separated document"},
    ),
    "stackexchange": ReaderSpec(
        "threads",
        read_stackexchange,
        "Stack Exchange data dump: Posts.xml (+ Comments.xml, Users.xml beside it)",
        suffixes=(".xml",),
        options={"site": "site for post URLs: 'beer' or 'beer.stackexchange.com' (guessed from the path)"},
        companions=("Comments.xml", "Users.xml"),
        check_head=_check_posts_xml,
    ),
    "discourse": ReaderSpec(
        "threads",
        read_discourse,
        "Discourse topic JSON (/t/{id}.json): one topic, a list, or a directory of them",
        options={"base_url": "forum address for post URLs, e.g. https://meta.discourse.org"},
    ),
    "native": ReaderSpec("threads", read_native, "tldrlab thread JSON: one thread, a list, or JSON lines"),
}


@dataclass
class ReadReport(Generic[Item]):
    """What a read produced: the items, the files read, and every skipped record with its reason."""

    items: list[Item]
    format: str
    files: list[Path]
    skipped: list[str] = field(default_factory=list)
    """One message per malformed record left out (only with skip_invalid=True)."""

    counts: dict[str, int] = field(default_factory=dict)
    """Reader tallies (for example Stack Exchange XML rows by kind)."""


def read_records_report(
    path: Path | str,
    format: str | None = None,
    *,
    split: str | None = None,
    mapping: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> ReadReport[SummaryRecord]:
    """Read summarization records and report what was skipped (see the module docstring)."""
    return _read("records", path, format, split, mapping, skip_invalid, limit, options)


def read_threads_report(
    path: Path | str,
    format: str | None = None,
    *,
    split: str | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> ReadReport[Thread]:
    """Read forum threads and report what was skipped."""
    return _read("threads", path, format, split, None, skip_invalid, limit, options)


def read_records(
    path: Path | str,
    format: str | None = None,
    *,
    split: str | None = None,
    mapping: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[SummaryRecord]:
    """Summarization records from a file or data-set directory (format detected when not given)."""
    return read_records_report(
        path, format, split=split, mapping=mapping, skip_invalid=skip_invalid, limit=limit, options=options
    ).items


def read_threads(
    path: Path | str,
    format: str | None = None,
    *,
    skip_invalid: bool = False,
    limit: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[Thread]:
    """Forum threads from a file or directory (format detected when not given)."""
    return read_threads_report(path, format, skip_invalid=skip_invalid, limit=limit, options=options).items


def _read(
    kind: ReaderKind,
    path: Path | str,
    format: str | None,
    split: str | None,
    mapping: Mapping[str, str] | None,
    skip_invalid: bool,
    limit: int | None,
    options: Mapping[str, Any] | None,
) -> ReadReport[Any]:
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or directory")
    name = mapped_format(path, format, mapping)
    spec = reader_spec(name)
    refuse_other_kind(path, name, kind)
    if unknown := sorted(set(options or {}) - set(spec.options)):
        if not spec.options:
            raise InvalidInputError(f"format {name!r} takes no options, got {', '.join(unknown)}")
        raise InvalidInputError(unknown_choice(f"{name} option", unknown[0], spec.options))
    if limit is not None and limit < 0:
        raise InvalidInputError(f"limit must be >= 0, got {limit}")
    ctx = ReadContext(skip_invalid=skip_invalid, mapping=dict(mapping or {}), options=dict(options or {}))
    files = input_files(path, name, split)
    _check_option_suffixes(path, name, spec, files, options or {})
    items = list(islice(_chain(spec, files, ctx), limit))
    return ReadReport(
        items=items, format=name, files=files, skipped=ctx.skipped, counts=dict(Counter(ctx.counts))
    )


def mapped_format(path: Path, format: str | None, mapping: Mapping[str, str] | None) -> str:
    """The format of a read given a field `mapping`: the one named, else `pairs` when there is a mapping (the
    one format that maps fields, and what detection asks for when a file's fields need one), else the
    detected one. A mapping was ignored by every other format, and without a format it was ignored too:
    detection, which never looked at it, refused the file and said to give a mapping."""
    if not mapping:
        return format or detect_format(path)
    if format is not None and format != "pairs":
        raise InvalidInputError(f"format {format!r} takes no field mapping (--map): only pairs maps fields")
    return "pairs"


def _check_option_suffixes(
    path: Path, name: str, spec: ReaderSpec, files: list[Path], options: Mapping[str, Any]
) -> None:
    """An option for some files only (pairs' delimiter: CSV) on a read of none of them did nothing: a .jsonl
    or .tsv read with `-o delimiter=;` went on as if it had not been given."""
    for option, suffixes in spec.option_suffixes.items():
        if option in options and not any(f.suffix.lower() in suffixes for f in files):
            read = ", ".join(sorted({f.suffix.lower() or f.name for f in files}))
            raise InvalidInputError(
                f"{path}: {name} option {option} applies to {', '.join(suffixes)} files only, not to {read}: "
                "leave it out"
            )


def _chain(spec: ReaderSpec, files: list[Path], ctx: ReadContext) -> Iterator[Any]:
    for file in files:
        yield from spec.read(file, ctx)


def reader_spec(name: str) -> ReaderSpec:
    if name not in READERS:
        raise InvalidInputError(unknown_choice("format", name, READERS))
    return READERS[name]


def input_files(path: Path, format: str, split: str | None = None) -> list[Path]:
    """The files a read of `path` covers: the file itself (when it is `split`), or a directory's data files
    for `split`."""
    if not path.exists():  # with a format named, nothing looked before: "No such file" as an os_error
        # (exit 1), or for stackexchange "no Posts.xml in this directory" of a directory that is not there
        raise NotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        if split is not None:
            check_file_split(path, split)
        return [path]
    if format == "stackexchange":
        posts = path / "Posts.xml"
        if not posts.is_file():
            raise NotFoundError(f"{path}: no Posts.xml in this directory")
        if split is not None:  # a dump is one file, as when it is named: the split was ignored, all read
            check_file_split(posts, split)
        return [posts]
    files = data_files(path, READERS[format].suffixes)
    if not files and format == "text":  # plain text under any name (wiki.test.raw, corpus.tokens)
        files = [p for p in data_files(path, None) if is_utf8_text(p)]
    if not files:
        raise NotFoundError(
            f"{path}: no {format} data files ({', '.join(READERS[format].suffixes)}) here{_below(path)}"
        )
    return pick_split(files, split, path)


def _below(directory: Path) -> str:
    """What to do when a directory's data lies in its subdirectories (train/, dev/), which are not read: the
    bare 'holds no data files' read as if the data were gone."""
    subdirectories = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirectories:
        return ""
    shown = ", ".join(subdirectories[:5]) + (", ..." if len(subdirectories) > 5 else "")
    return (
        f" (only its own files are read, not those of its subdirectories {shown}: name a subdirectory, or "
        "put the split files side by side, as train.jsonl and dev.jsonl)"
    )


def refuse_other_kind(path: Path, name: str, kind: ReaderKind) -> None:
    """InvalidInputError when format `name` holds another kind than `kind` (threads given to train on)."""
    spec = reader_spec(name)
    if spec.kind != kind:
        wanted = ", ".join(n for n, s in READERS.items() if s.kind == kind)
        use = (
            "forum threads are ingested and digested (tldrlab ingest, digest)"
            if spec.kind == "threads"
            else "records are for training and evaluation (tldrlab train, eval, tokenizer train)"
        )
        raise InvalidInputError(f"{path}: format {name!r} holds {spec.kind}, not {kind} ({wanted}); {use}")


def split_files(
    path: Path | str,
    format: str | None = None,
    split: str | None = None,
    *,
    kind: ReaderKind | None = None,
    skip_invalid: bool = False,
) -> list[Path]:
    """`input_files` for a path as a read gets it (format detected when None): what a command line checks
    before it creates a run, so that data without the split it names, or an empty data file (no format has
    a record in one: a read refuses it), is refused with no failed run left; with `kind`, data of the other
    kind too (a forum dump given to train on, records given to ingest); with a format named, a first file
    that format cannot read (`skip_invalid`: as the run will read it, past malformed records)."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or directory")
    name = format or detect_format(path)
    reader_spec(name)  # an unknown format is its clear error, not a KeyError
    if kind is not None:
        refuse_other_kind(path, name, kind)
    files = input_files(path, name, split)
    for file in files:
        if file.stat().st_size == 0:
            raise InvalidInputError(f"{file}: file is empty", file=str(file))
    if format is not None:  # a detected format looked at the first record already
        check_first_record(files[0], name, skip_invalid=skip_invalid)
    return files


def check_first_record(file: Path, name: str, *, skip_invalid: bool = False) -> None:
    """InvalidInputError when format `name`'s reader cannot read the first record of `file`: a format named
    that the file does not hold (`train --format scitldr input.txt`) was refused by the run's read, which
    stayed behind failed. Reads one record, or runs the reader's own `check_head` where it has one."""
    if (check_head := READERS[name].check_head) is not None:
        check_head(file)
        return
    try:
        next(READERS[name].read(file, ReadContext(skip_invalid=skip_invalid)), None)
    except InvalidInputError as exc:
        raise InvalidInputError(
            f"{exc.message} (read as format {name!r}{_detected_hint(file, name)})", file=str(file)
        ) from None


def _detected_hint(file: Path, named: str) -> str:
    """`; it looks like 'text'` when detection tells another format, else nothing."""
    try:
        detected = detect_format(file)
    except (InvalidInputError, NotFoundError):
        return ""
    return f"; it looks like {detected!r}" if detected != named else ""


def detect_format(path: Path | str) -> str:
    """Guess the format of a file or data-set directory from its name and first record.

    Rules, in order: a directory with Posts.xml -> stackexchange (else its first data file decides, a *.txt /
    *.md one only when no other does; with no file of a known suffix, UTF-8 files of any name -> text);
    *.xml with <posts> -> stackexchange; *.txt / *.md -> text; *.tokens -> wikitext; *.csv / *.tsv -> pairs;
    JSON: `post_stream` -> discourse, `posts` -> native, `source` + `target` -> scitldr, `meeting_transcripts`
    -> qmsum, `document` + `summary` in a file named *debian* -> debian, a document-like + summary-like field
    -> pairs, `title` + `text` -> wikipedia. Any other file (not *.json / *.jsonl) that is UTF-8 and not
    one of those JSON formats -> text.
    """
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "Posts.xml").is_file():
            return "stackexchange"
        files = data_files(path)
        if not files and any(is_utf8_text(p) for p in data_files(path, None)):
            return "text"
        if not data_files(path, None):  # "pass a format" would not help: there is nothing to read
            raise InvalidInputError(f"{path}: the directory holds no data files{_below(path)}")
        if not files:
            packed = [p for p in data_files(path, None) if compressed(p)]
            if packed:  # "pass a format" would not help: no reader reads them
                raise InvalidInputError(
                    f"{path}: its data files are compressed ({', '.join(p.name for p in packed[:3])}): "
                    "tldrlab reads uncompressed data, so decompress them first"
                )
            raise InvalidInputError(f"{path}: no data files to detect a format from; pass a format")
        # a plain-text file decides only when no other data file does: a LICENSE.txt or NOTICE.md (capitals
        # sort first) beside train.jsonl made the directory `text`, whose reader reads .txt and .md only, so
        # the licence was read as the whole data set and the data files were left out without a word
        for file in (f for f in files if f.suffix.lower() not in TEXT_SUFFIXES):
            with contextlib.suppress(InvalidInputError):
                return detect_format(file)
        return detect_format(files[0])
    suffix = path.suffix.lower()
    if suffix == ".xml":
        if "<posts" in _xml_head(path):
            return "stackexchange"
        raise InvalidInputError(f"{path}: XML without <posts>: only Stack Exchange Posts.xml is supported")
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix == ".tokens":
        return "wikitext"
    if suffix in (".csv", ".tsv"):
        return "pairs"
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{path}: file is empty", file=str(path))
    if advice := compressed(path):
        raise InvalidInputError(f"{path}: {advice}", file=str(path))
    obj = first_json_object(path)
    if suffix not in JSON_SUFFIXES:  # not named as JSON: a known JSON format if it is one, else plain text
        if obj is not None:
            with contextlib.suppress(InvalidInputError):  # JSON-looking text of no known format
                return _detect_json(obj, path)
        if is_utf8_text(path):
            return "text"
        raise InvalidInputError(
            f"{path}: not UTF-8 text and not a known format (JSON, JSON lines, CSV/TSV, Posts.xml)",
            file=str(path),
        )
    if obj is None:
        raise InvalidInputError(f"{path}: cannot detect the format (no JSON object found); pass a format")
    return _detect_json(obj, path)


def _detect_json(obj: dict[str, Any], path: Path) -> str:
    keys = set(obj)
    if "post_stream" in keys:
        return "discourse"
    if isinstance(obj.get("posts"), list):
        return "native"
    if {"source", "target"} <= keys and isinstance(obj.get("source"), list):
        return "scitldr"
    if "meeting_transcripts" in keys:
        return "qmsum"
    if {"id", "document", "summary"} <= keys and "debian" in path.name.lower():
        return "debian"
    if keys & set(DEFAULT_FIELDS["document"]) and keys & set(DEFAULT_FIELDS["summary"]):
        return "pairs"
    if {"title", "text"} <= keys:
        return "wikipedia"
    raise InvalidInputError(
        f"{path}: cannot detect the format from fields {sorted(keys)[:12]}; pass a format "
        f"({', '.join(READERS)}) or a field mapping for pairs"
    )


__all__ = [
    "READERS",
    "ReadContext",
    "ReadReport",
    "ReaderSpec",
    "detect_format",
    "input_files",
    "mapped_format",
    "read_records",
    "read_records_report",
    "read_threads",
    "read_threads_report",
    "reader_spec",
    "split_files",
]


def formats_table() -> Table:
    """The formats as a listing: name, what they hold, description and reader options."""
    columns = [Column("format", key=True), Column("kind"), Column("description", wrap=True)]
    rows = [
        [name, spec.kind, spec.description, "\n".join(f"{k}: {v}" for k, v in spec.options.items())]
        for name, spec in READERS.items()
    ]
    return Table([*columns, Column("options", wrap=True)], rows)
