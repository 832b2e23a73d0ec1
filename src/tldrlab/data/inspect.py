"""What is in a data file or directory: counts and length statistics (`tldrlab data inspect`).

Records: how many, words per document and per summary (mean, median, p95, max), summaries per record, how
many carry highlight labels and queries. Threads: threads, posts, posts per thread, questions, answers,
comments, threads with an accepted answer, words per post. A directory without a split is inspected file by
file (each split separately) plus a total.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field

from tldrlab.configmodel import ConfigModel
from tldrlab.data.formats import ReaderFormat
from tldrlab.data.readers import (
    ReadReport,
    input_files,
    mapped_format,
    read_records_report,
    read_threads_report,
    reader_spec,
)
from tldrlab.data.records import SummaryRecord
from tldrlab.data.threads import Thread
from tldrlab.pathmarks import InputPath
from tldrlab.report import Column, Report, Table, number_text


def length_stats(values: Sequence[int]) -> dict[str, float]:
    """count, mean, median, p95 and max of a list of lengths (zeros when empty)."""
    if not values:
        return {"count": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    array = np.asarray(values, dtype=np.float64)
    return {
        "count": len(values),
        "mean": round(float(array.mean()), 2),
        "median": float(np.median(array)),
        "p95": round(float(np.percentile(array, 95)), 2),
        "max": float(array.max()),
    }


def words(text: str) -> int:
    return len(text.split())


def record_stats(records: Sequence[SummaryRecord]) -> dict[str, Any]:
    return {
        "records": len(records),
        "with_summary": sum(1 for r in records if r.summaries),
        "with_highlight_labels": sum(1 for r in records if r.highlight_labels is not None),
        "with_query": sum(1 for r in records if r.query),
        "summaries_per_record": length_stats([len(r.summaries) for r in records]),
        "document_words": length_stats([words(r.document) for r in records]),
        "summary_words": length_stats([words(s) for r in records for s in r.summaries]),
    }


def thread_stats(threads: Sequence[Thread]) -> dict[str, Any]:
    posts = [p for t in threads for p in t.posts]
    return {
        "threads": len(threads),
        "posts": len(posts),
        "questions": sum(1 for p in posts if p.kind == "question"),
        "answers": sum(1 for p in posts if p.kind == "answer"),
        "comments": sum(1 for p in posts if p.kind == "comment"),
        "threads_with_accepted_answer": sum(1 for t in threads if any(p.accepted for p in t.posts)),
        "posts_per_thread": length_stats([len(t.posts) for t in threads]),
        "post_words": length_stats([words(p.text) for p in posts]),
    }


def _report_stats(report: ReadReport[Any], kind: str) -> dict[str, Any]:
    stats = record_stats(report.items) if kind == "records" else thread_stats(report.items)
    return {
        "files": [str(f) for f in report.files],
        **stats,
        "skipped": len(report.skipped),
        "skipped_examples": report.skipped[:5],
        **({"reader_counts": report.counts} if report.counts else {}),
    }


class InspectOptions(ConfigModel):
    """What `inspect_path` reads and how (`tldrlab data inspect`)."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    path: Annotated[str, InputPath()]
    """A data file or a data-set directory."""
    format: ReaderFormat = None
    """Format name (detected when omitted; see `tldrlab data formats`)."""
    split: str | None = None
    """For a directory: train, dev (= validation = val) or test."""
    skip_invalid: bool = False
    """Leave malformed records out (and report how many) instead of stopping."""
    mapping: dict[str, str] = Field(default_factory=dict)
    """pairs field mapping, KEY=VALUE, repeatable: --map document=text --map summary=headline (a mapping
    reads the data as pairs; another format named is refused)."""
    options: dict[str, str] = Field(default_factory=dict)
    """Reader options, KEY=VALUE, repeatable (see `tldrlab data formats`)."""


def inspect_path(
    path: Path | str,
    format: str | None = None,
    *,
    split: str | None = None,
    skip_invalid: bool = False,
    mapping: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Statistics of a file or directory: {path, format, kind, total, splits: {name: stats}}."""
    path = Path(path)
    name = mapped_format(path, format, mapping)
    kind = reader_spec(name).kind
    files = input_files(path, name, split)
    groups: dict[str, list[Path]] = {}
    if path.is_dir() and split is None and kind == "records" and len(files) > 1:
        groups = {f.name: [f] for f in files}
    result: dict[str, Any] = {"path": str(path), "format": name, "kind": kind}

    def read(target: Path, split_name: str | None) -> ReadReport[Any]:
        if kind == "records":
            return read_records_report(
                target, name, split=split_name, mapping=mapping, skip_invalid=skip_invalid, options=options
            )
        return read_threads_report(target, name, split=split_name, skip_invalid=skip_invalid, options=options)

    if groups:
        reports = {label: read(group[0], None) for label, group in groups.items()}
        result["splits"] = {label: _report_stats(report, kind) for label, report in reports.items()}
        merged = ReadReport(
            items=[item for report in reports.values() for item in report.items],
            format=name,
            files=files,
            skipped=[message for report in reports.values() for message in report.skipped],
            counts=dict(sum((Counter(report.counts) for report in reports.values()), Counter())),
        )
        result["total"] = _report_stats(merged, kind)
    else:
        result["total"] = _report_stats(read(path, split), kind)
    return result


def stats_report(stats: dict[str, Any]) -> Report:
    """`inspect_path`'s statistics as they read: per split (or in total) the counts and the length tables."""
    report = Report([f"{stats['path']}  format: {stats['format']} ({stats['kind']})"])
    sections = dict(stats.get("splits", {}))
    sections["total" if sections else stats["format"]] = stats["total"]
    for label, section in sections.items():
        counts = Table([Column(label, key=True), Column("", justify="right")], [])
        lengths = Table(
            [Column("lengths", key=True), *(Column(h, justify="right") for h in LENGTH_COLUMNS)], []
        )
        for key, value in section.items():
            if isinstance(value, dict) and "median" in value:
                lengths.rows.append([key, *(number_text(value[k]) for k in LENGTH_COLUMNS)])
            elif isinstance(value, int):
                counts.rows.append([key.replace("_", " "), f"{value:,}"])
        counts.rows += [[key, f"{value:,}"] for key, value in section.get("reader_counts", {}).items()]
        report.blocks += [counts, lengths]
        report.blocks += [f"  skipped: {message}" for message in section.get("skipped_examples", [])]
    return report


LENGTH_COLUMNS = ("count", "mean", "median", "p95", "max")
