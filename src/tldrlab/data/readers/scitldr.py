"""`scitldr`: SciTLDR JSON lines. `source` (abstract as a list of sentences) -> `sentences` and the document
(sentences joined by spaces); `source_labels` -> `highlight_labels` (1 marks the sentence closest to the
TL;DR); `target` (TL;DRs, the author's first) -> `summaries`; `paper_id` -> id; `title` kept in provenance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tldrlab.data.readers.common import (
    ReadContext,
    fallback_id,
    get_int,
    get_str,
    get_str_list,
    iter_json_items,
    record_error,
)
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError


def read_scitldr(path: Path, ctx: ReadContext) -> Iterator[SummaryRecord]:
    for where, row in iter_json_items(path, ctx):
        try:
            sentences = get_str_list(row, "source", path, where)
            labels = _labels(row.get("source_labels"), len(sentences), path, where)
            record = SummaryRecord(
                id=get_str(row, "paper_id", path, where, required=False, is_id=True) or fallback_id(where),
                document=" ".join(sentences),
                summaries=get_str_list(row, "target", path, where, allow_str=True),
                sentences=sentences,
                highlight_labels=labels,
                source="scitldr",
                provenance={
                    "file": str(path),
                    "record": where,
                    "title": get_str(row, "title", path, where, required=False),
                },
            )
        except InvalidInputError as exc:
            ctx.invalid(exc)
            continue
        yield record


def _labels(value: object, n_sentences: int, path: Path, where: str) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise record_error(
            path, where, "source_labels", f"expected a list of 0/1, got {type(value).__name__}"
        )
    if len(value) != n_sentences:
        raise record_error(
            path, where, "source_labels", f"has {len(value)} labels for {n_sentences} source sentences"
        )
    labels = [get_int(v, path, where, f"source_labels[{i}]") for i, v in enumerate(value)]
    if any(label not in (0, 1) for label in labels):
        raise record_error(path, where, "source_labels", "labels must be 0 or 1")
    return labels
