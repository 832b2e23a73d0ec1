"""A result as people read it: lines of text and tables of cells, with no styling.

The module that produces a result also says how it reads (a run kind's `report` in `tldrlab.kinds`, a
listing's rows beside the records it lists), so every front end shows the same thing: the CLI lays the
tables out for the terminal width (`tldrlab.cli.tables`), `markdown()` serves pages and chat messages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _control_picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # U+2400 CONTROL PICTURES: ␛ for ESC, ␍ for CR
    return "\u2421" if code == 0x7F else "\ufffd"  # ␡ for DEL; C1 controls have no pictures


def visible_controls(text: str) -> str:
    """`text` with its control characters (all but tab and line feed) shown as symbols, one for one: text
    from outside (a forum post, a model's output) printed on a terminal cannot then run escape sequences
    (ESC [2J clears the screen; ESC ] 0; sets the window title; U+009B is a CSI of its own), and a
    sentence keeps its length, so the character offsets printed beside it still count what is shown."""
    return _CONTROL.sub(_control_picture, text)


@dataclass(frozen=True)
class Column:
    """One column of a table."""

    header: str
    key: bool = False
    """Identifies the row (an id): never cut, repeated in every part of a split table."""
    wrap: bool = False
    """Free text that may wrap onto more lines."""
    optional: bool = False
    """Dropped when the table does not fit (the rightmost optional column first)."""
    justify: Literal["left", "right"] = "left"
    """`left` or `right` (numbers)."""


@dataclass
class Table:
    columns: Sequence[Column]
    rows: list[list[str]]
    title: str | None = None

    def markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in cells) + " |"

        rule = "|" + "|".join("---:" if c.justify == "right" else "---" for c in self.columns) + "|"
        body = [line([c.header for c in self.columns]), rule, *(line(row) for row in self.rows)]
        return "\n".join([f"**{self.title}**", "", *body] if self.title else body)


@dataclass
class Report:
    """Blocks in order (a line of text or a table), then warnings the reader should not miss."""

    blocks: list[str | Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [b.markdown() if isinstance(b, Table) else b for b in self.blocks]
        return "\n\n".join([*parts, *(f"**warning** {w}" for w in self.warnings)])


def key_value_table(values: dict[str, object], title: str | None = None, key: str = "metric") -> Table:
    """Two columns, a name (`key`) and its value (floats with 4 decimals)."""
    rows = [[k, f"{v:.4f}" if isinstance(v, float) else str(v)] for k, v in values.items()]
    return Table([Column(key, key=True), Column("value")], rows, title)


def number_text(value: float) -> str:
    """A count or length as people read it, as the other listings print counts: thousands separated, every
    digit kept (`2,000,001`, `617,285.5`), where `:g` printed `2e+06` and dropped digits past the sixth."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def metrics_line(metrics: dict[str, object]) -> str:
    """`name=value, ...` with floats to 4 significant digits."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
