"""`pairs`: generic document -> summary pairs in JSON lines, JSON or CSV/TSV, with a field mapping.

`mapping` names the source fields: {"document": "text", "summary": "headline", "id": "uid", "query": "q"}.
Without a mapping the first present of DEFAULT_FIELDS is used. A summary may be a string or a list of
strings (several references); a missing id becomes the line or row number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tldrlab.data.readers.common import (
    ReadContext,
    fallback_id,
    get_str,
    get_str_list,
    iter_json_items,
    read_text,
    record_error,
)
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError

DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "document": ("document", "text", "article", "source", "input", "content", "body"),
    "summary": ("summary", "summaries", "target", "headline", "tldr", "highlights", "abstract", "output"),
    "id": ("id", "uid", "doc_id", "name"),
    "query": ("query", "question"),
}
"""Record field -> source field names tried in order when the mapping does not name one."""


CSV_FIELD_LIMIT = 1 << 30
"""The longest CSV cell read (characters). The csv module's own limit, 131,072, refused a valid file whose
document is a long article or a book chapter ('field larger than field limit')."""


def read_pairs(path: Path, ctx: ReadContext, *, source: str = "pairs") -> Iterator[SummaryRecord]:
    unknown = set(ctx.mapping) - set(DEFAULT_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"unknown mapping key(s) {sorted(unknown)}; the pairs reader maps {sorted(DEFAULT_FIELDS)}"
        )
    rows = _csv_rows(path, ctx) if path.suffix.lower() in (".csv", ".tsv") else iter_json_items(path, ctx)
    for where, row in rows:
        try:
            yield pair_record(row, path, where, ctx.mapping, source=source)
        except InvalidInputError as exc:
            ctx.invalid(exc)


def pair_record(
    row: dict[str, Any], path: Path, where: str, mapping: dict[str, str], *, source: str
) -> SummaryRecord:
    fields = {name: _field(row, name, mapping) for name in DEFAULT_FIELDS}
    document_field = fields["document"] or mapping.get("document") or DEFAULT_FIELDS["document"][0]
    summary_field = fields["summary"] or mapping.get("summary") or DEFAULT_FIELDS["summary"][0]
    document = get_str(row, document_field, path, where)
    summaries = get_str_list(row, summary_field, path, where, allow_str=True)
    record_id = get_str(row, fields["id"], path, where, is_id=True) if fields["id"] else None
    query = get_str(row, fields["query"], path, where, required=False) if fields["query"] else None
    return SummaryRecord(
        id=record_id or fallback_id(where),
        document=document or "",
        summaries=summaries,
        query=query,
        source=source,
        provenance={"file": str(path), "record": where},
    )


def _field(row: dict[str, Any], name: str, mapping: dict[str, str]) -> str | None:
    """The source field for a record field: the mapped one (even if absent: then it is reported missing)."""
    if name in mapping:
        return mapping[name]
    return next((candidate for candidate in DEFAULT_FIELDS[name] if candidate in row), None)


def _csv_rows(path: Path, ctx: ReadContext) -> Iterator[tuple[str, dict[str, Any]]]:
    text = read_text(path)
    if not text.strip():
        raise InvalidInputError(f"{path}: file is empty", file=str(path))
    delimiter = "\t" if path.suffix.lower() == ".tsv" else str(ctx.options.get("delimiter", ","))
    if len(delimiter) != 1:  # the csv module's TypeError otherwise: a traceback
        raise InvalidInputError(f"{path}: option delimiter must be one character, got {delimiter!r}")
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    # lines as a file gives them (\n, \r\n, \r): str.splitlines also breaks at a form feed, U+2028 and
    # U+0085, which cut a row holding one in two (its document lost, or taken from its second half)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    _check_delimiter(path, reader, delimiter)
    _tidy_header(path, reader)
    try:
        for number, row in enumerate(reader, start=1):  # data rows counted from 1, the header is row 0
            # a quoted cell may hold line breaks, so a row's number is not its line's: say the line where
            # it starts when they differ (the row number was the line's before, and so was the fallback id)
            breaks = sum(v.count("\n") for v in (*row.values(), *(row.get(None) or [])) if isinstance(v, str))
            start = reader.line_num - breaks
            where = f"row {number}" if start == number + 1 else f"row {number} (line {start})"
            if None in row:  # more cells than header columns
                ctx.invalid(record_error(path, where, None, f"{len(row[None])} more cell(s) than columns"))
                continue
            yield where, {k: v for k, v in row.items() if v is not None}
    except csv.Error as exc:
        raise record_error(path, f"line {reader.line_num}", None, f"not valid CSV ({exc})") from None


_OTHER_DELIMITERS = (";", "\t", "|")


def _tidy_header(path: Path, reader: csv.DictReader[str]) -> None:
    """Header cells without surrounding spaces (`document, summary`: its `" summary"` was 'field summary:
    missing' on every row); a column named twice is refused (a row kept the last one's cell only)."""
    try:
        header = reader.fieldnames
    except csv.Error:
        return  # the rows' read says it, with the line
    if header is None:
        return
    names = [name.strip() for name in header]
    # unnamed columns (a spreadsheet's trailing separators) are no field anyone reads
    repeated = next((name for i, name in enumerate(names) if name and name in names[:i]), None)
    if repeated is not None:
        raise InvalidInputError(
            f"{path}: the header names column {repeated!r} more than once: rename or remove the others",
            file=str(path),
        )
    reader.fieldnames = names


def other_delimiter(header: Sequence[str] | None, delimiter: str) -> str | None:
    """The usual delimiter a CSV header read with `delimiter` as one column holds (`;` of a semicolon CSV
    read with `,`), or None."""
    if header is None or len(header) != 1:
        return None
    return next((d for d in _OTHER_DELIMITERS if d != delimiter and d in header[0]), None)


def _check_delimiter(path: Path, reader: csv.DictReader[str], delimiter: str) -> None:
    """Pairs need two columns: a header read as one column that holds another usual delimiter is a file
    written with that one (a semicolon CSV), which was 'field document: missing' on every row."""
    try:
        header = reader.fieldnames
    except csv.Error:
        return  # the rows' read says it, with the line
    other = other_delimiter(header, delimiter)
    if header is not None and other is not None:
        raise InvalidInputError(
            f"{path}: the header is one column ({header[0][:80]!r}) holding {other!r}: is {other!r} the "
            f"delimiter? give the reader option delimiter={other!r} (tldrlab data inspect -o delimiter=...)",
            file=str(path),
        )
