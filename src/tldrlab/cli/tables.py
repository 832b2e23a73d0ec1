"""Listings that stay readable in any terminal width, down to 80 columns.

Rich shrinks a table that is too wide by cutting cells (`train-2026112…`) or wrapping every column, which cut
the run ids every other command needs. A listing says what each column is (`tldrlab.report.Column`):

- `key` columns (ids, names) are never cut or wrapped;
- `wrap` columns (free text such as a message) wrap onto more lines;
- `optional` columns are left out, last first, when the table would not fit otherwise;
- every other column keeps its values on one line.

When even that does not fit, the other columns are spread over several tables, each repeating the key
columns, so no cell is ever cut; a table still wider than the terminal (a path longer than the line) is
written with its lines whole, for the terminal to wrap, rather than cut at the edge. Scripts use `--json`
instead of parsing tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table

from tldrlab.report import Column, Report
from tldrlab.report import Table as Listing

console = Console()
err_console = Console(stderr=True)


def _build(
    title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[str]], keep: list[int]
) -> Table:
    table = Table(
        title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False, title_justify="left"
    )
    for i in keep:
        column = columns[i]
        table.add_column(
            column.header,
            no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ignore",
            justify=column.justify,  # type: ignore[arg-type]
            min_width=_min_width(column, [row[i] for row in rows]),
        )
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def _min_width(column: Column, cells: list[str]) -> int | None:
    longest = max([len(column.header), *(len(cell) for cell in cells)])
    if column.key:
        return longest
    if column.wrap:  # wrapped text narrower than this is hard to read: split the table instead
        return min(longest, 12)
    return None


def _needed(console: Console, table: Table, *, allow_wrap: bool) -> int:
    """The width `table` needs with no cell cut (its wrapping columns wrapped, with `allow_wrap`)."""
    # measured without the console's limit (rich clamps a measurement to the width it may use)
    options = console.options.update(max_width=100_000)
    if not allow_wrap:
        return Measurement.get(console, options, table).maximum
    # rich's own minimum counts a column that never wraps by its longest word (`created`'s "2026-12-01" of
    # "2026-12-01 05:39") though it renders the whole cell: a table "fitting" 80 columns was rendered 86
    # wide and cut at the edge, `runs list`'s messages down to 7 characters ("request", "checkpo")
    needed = table._extra_width
    for column in table.columns:
        width = table._measure_column(console, options, column)
        needed += width.maximum if column.no_wrap else width.minimum
    return needed


def _fits(console: Console, table: Table, *, allow_wrap: bool) -> bool:
    return _needed(console, table, allow_wrap=allow_wrap) <= console.width


def listing_tables(
    console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None = None
) -> list[Table]:
    """The table(s) that show `rows` within the console's width (see the module docstring)."""
    keep = list(range(len(columns)))
    has_wrap = any(c.wrap for c in columns)
    table = _build(title, columns, rows, keep)
    if _fits(console, table, allow_wrap=False):
        return [table]
    optional = [i for i in keep if columns[i].optional]
    while True:
        table = _build(title, columns, rows, keep)
        if _fits(console, table, allow_wrap=has_wrap):
            return [table]
        if not optional:
            break
        keep.remove(optional.pop())
    # split the non-key columns over several tables, each with the keys
    keys = [i for i in keep if columns[i].key]
    rest = [i for i in keep if not columns[i].key]
    parts: list[list[int]] = []
    current: list[int] = []
    for i in rest:
        trial = _build(None, columns, rows, keys + current + [i])
        if current and not _fits(console, trial, allow_wrap=any(columns[j].wrap for j in [*current, i])):
            parts.append(current)
            current = [i]
        else:
            current.append(i)
    if current:
        parts.append(current)
    return [
        _build(f"{title} ({n}/{len(parts)})" if title else None, columns, rows, keys + part)
        for n, part in enumerate(parts, start=1)
    ]


def print_listing(
    console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None = None
) -> None:
    """Print `rows` as a listing that fits the console (see the module docstring)."""
    for table in listing_tables(console, columns, rows, title):
        if table.title is not None:
            # rich wraps a title at its table's width: `tldrlab eval`'s `model -> <its evaluation's
            # directory>` and `elm evaluate`'s `run <id>` above a two-column table came out in pieces of
            # 23 and 33 characters, an id or a path no longer copyable; a line of its own, whole, instead
            console.print(str(table.title), highlight=False, markup=False, soft_wrap=True)
            table.title = None
        needed = _needed(console, table, allow_wrap=any(not c.no_wrap for c in table.columns))
        if needed <= console.width:
            console.print(table)
            continue
        # a cell wider than the console on its own (a long path): rich would cut it where the line ends
        # ("SmolLM2-135M-"); its lines are written whole instead, for the terminal to wrap, so that the
        # path or id can still be copied in one piece
        lines = console.render(table, console.options.update_width(needed))
        console.print(Segments(list(lines)), crop=False, end="")


def print_report(report: Report) -> None:
    """Print a result's report: its lines as plain text, its tables as listings, its warnings on stderr."""
    for block in report.blocks:
        if isinstance(block, Listing):
            print_listing(console, block.columns, block.rows, block.title)
        else:
            console.print(block, highlight=False, markup=False, soft_wrap=True)
    for warning in report.warnings:
        err_console.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)


def json_text(data: Any, *, indent: int | None = None) -> str:
    """`data` as JSON for scripts: a NaN or infinite number (a diverged run's loss in its metrics) is null,
    as the API writes it. json.dumps wrote NaN and Infinity, which are no JSON: `jq` and strict parsers
    refused the whole line."""
    return json.dumps(_finite(data), default=str, indent=indent)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def emit(
    data: Any,
    report: Callable[[], Report | Listing],
    *,
    as_json: bool,
    lines: bool = False,
    empty: str | None = None,
) -> None:
    """What a command prints: `data` as JSON (one line per item with `lines`), else its report; `empty`
    says what to do when there is nothing to show."""
    if as_json:
        for item in data if lines else [data]:
            typer.echo(json_text(item, indent=None if lines else 2))
        return
    shown = report()
    print_report(shown if isinstance(shown, Report) else Report([shown]))
    if empty and not data:
        console.print(empty, highlight=False, markup=False)
