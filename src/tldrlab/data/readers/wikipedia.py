"""`wikipedia`: article JSON lines with `title` and `text` (markup already stripped) -> one record per
article with no reference summary; `id` (or the title) is the id; url and revision kept in provenance. A line
with an `id` may leave the title out (as `POST /lvm/ingest` articles do); one with neither is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tldrlab.data.readers.common import ReadContext, get_str, iter_json_items, require_str
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError


def read_wikipedia(path: Path, ctx: ReadContext) -> Iterator[SummaryRecord]:
    for where, row in iter_json_items(path, ctx):
        try:
            record_id = get_str(row, "id", path, where, required=False, is_id=True)
            # the title is required only where it has to stand for the missing id
            title = get_str(row, "title", path, where, required=record_id is None)
            record = SummaryRecord(
                id=record_id or require_str(row, "title", path, where),
                document=require_str(row, "text", path, where),
                summaries=[],
                source="wikipedia",
                provenance={
                    "file": str(path),
                    "record": where,
                    "title": title,
                    "url": get_str(row, "url", path, where, required=False),
                    "revision_id": get_str(row, "revision_id", path, where, required=False, is_id=True),
                },
            )
        except InvalidInputError as exc:
            ctx.invalid(exc)
            continue
        yield record
