"""`qmsum`: QMSum meetings, one JSON object per line -> one record per query.

For each meeting line: the general queries, then the specific ones, each a record with
id `<meeting_id>:general<i>` / `<meeting_id>:specific<i>` (i = index within its list), `query`, the answer as
the summary, `sentences` = the transcript turns as "Speaker: text", document = those turns joined by newlines,
and, for specific queries, `highlight_labels` marking the turns inside `relevant_text_span` (inclusive
[start, end] turn ranges). General queries have no spans, so their labels are None.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tldrlab.data.readers.common import (
    ReadContext,
    get_int,
    iter_json_items,
    record_error,
    require_str,
    type_name,
)
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError

QUERY_LISTS = (("general", "general_query_list"), ("specific", "specific_query_list"))


def read_qmsum(path: Path, ctx: ReadContext) -> Iterator[SummaryRecord]:
    for where, row in iter_json_items(path, ctx):
        try:
            records = _meeting_records(row, path, where)
        except InvalidInputError as exc:
            ctx.invalid(exc)
            continue
        ctx.counts["meetings"] += 1
        yield from records


def _meeting_records(row: dict[str, Any], path: Path, where: str) -> list[SummaryRecord]:
    meeting_id = require_str(row, "meeting_id", path, where, is_id=True)
    turns = _turns(row.get("meeting_transcripts"), path, where)
    document = "\n".join(turns)
    records = []
    for kind, list_name in QUERY_LISTS:
        queries = row.get(list_name, [])
        if not isinstance(queries, list):
            raise record_error(path, where, list_name, f"expected a list, got {type_name(queries)}")
        for i, query in enumerate(queries):
            field = f"{list_name}[{i}]"
            if not isinstance(query, dict):
                raise record_error(path, where, field, f"expected an object, got {type_name(query)}")
            labels = None
            if kind == "specific":
                labels = _span_labels(query.get("relevant_text_span"), len(turns), path, where, field)
            records.append(
                SummaryRecord(
                    id=f"{meeting_id}:{kind}{i}",
                    document=document,
                    summaries=[require_str(query, "answer", path, f"{where}: {field}")],
                    sentences=turns,
                    highlight_labels=labels,
                    query=require_str(query, "query", path, f"{where}: {field}"),
                    source="qmsum",
                    provenance={
                        "file": str(path),
                        "record": where,
                        "meeting_id": meeting_id,
                        "domain": row.get("domain"),
                        "query_kind": kind,
                        "query_index": i,
                    },
                )
            )
    return records


def _turns(value: object, path: Path, where: str) -> list[str]:
    if not isinstance(value, list):
        raise record_error(path, where, "meeting_transcripts", f"expected a list, got {type_name(value)}")
    turns = []
    for i, turn in enumerate(value):
        field = f"meeting_transcripts[{i}]"
        if not isinstance(turn, dict):
            raise record_error(path, where, field, f"expected an object, got {type_name(turn)}")
        speaker = require_str(turn, "speaker", path, f"{where}: {field}")
        content = require_str(turn, "content", path, f"{where}: {field}")
        turns.append(f"{speaker}: {content}")
    return turns


def _span_labels(value: object, n_turns: int, path: Path, where: str, field: str) -> list[int]:
    name = f"{field}.relevant_text_span"
    if not isinstance(value, list):
        raise record_error(
            path, where, name, f"expected a list of [start, end] ranges, got {type_name(value)}"
        )
    labels = [0] * n_turns
    for j, span in enumerate(value):
        if not isinstance(span, list) or len(span) != 2:
            raise record_error(path, where, f"{name}[{j}]", f"expected [start, end], got {span!r}")
        start = get_int(span[0], path, where, f"{name}[{j}][0]")
        end = get_int(span[1], path, where, f"{name}[{j}][1]")
        if not 0 <= start <= end < n_turns:
            raise record_error(
                path, where, f"{name}[{j}]", f"turn range {start}-{end} outside 0-{n_turns - 1}"
            )
        for turn in range(start, end + 1):
            labels[turn] = 1
    return labels
