"""`debian`: Debian package descriptions, JSON lines with `id` (package), `document` (long description) and
`summary` (the maintainer's one-line synopsis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tldrlab.data.readers.common import ReadContext, iter_json_items, require_str
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError


def read_debian(path: Path, ctx: ReadContext) -> Iterator[SummaryRecord]:
    for where, row in iter_json_items(path, ctx):
        try:
            package = require_str(row, "id", path, where, is_id=True)
            record = SummaryRecord(
                id=package,
                document=require_str(row, "document", path, where),
                summaries=[require_str(row, "summary", path, where)],
                source="debian",
                provenance={
                    "file": str(path),
                    "record": where,
                    "url": f"https://packages.debian.org/bookworm/{package}",
                },
            )
        except InvalidInputError as exc:
            ctx.invalid(exc)
            continue
        yield record
