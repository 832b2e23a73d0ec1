"""`text`: a plain UTF-8 text file -> one record (id = file name without suffix), or, with the option
`per_paragraph=true`, one record per blank-line-separated document (id = `<stem>:<n>`, 1-based).
No summaries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tldrlab.data.readers.common import ReadContext, read_text
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError


def read_text_file(path: Path, ctx: ReadContext) -> Iterator[SummaryRecord]:
    text = read_text(path)
    if not text.strip():
        raise InvalidInputError(f"{path}: file is empty", file=str(path))
    if not _flag(ctx.options.get("per_paragraph", False), "per_paragraph"):
        yield SummaryRecord(id=path.stem, document=text, source="text", provenance={"file": str(path)})
        return
    line = 1
    position = 0
    blocks = re.finditer(r"\S(?:.*?\S)?(?=\n[ \t]*\n|\s*\Z)", text, flags=re.DOTALL)
    for number, match in enumerate(blocks, start=1):
        line += text.count("\n", position, match.start())
        position = match.start()
        yield SummaryRecord(
            id=f"{path.stem}:{number}",
            document=match.group(0),
            source="text",
            provenance={"file": str(path), "record": f"line {line}", "start": match.start()},
        )


def _flag(value: object, name: str) -> bool:
    """A yes/no option as a command line gives it (a string) or a config does (a bool); anything else is
    refused, where a typo (`per_paragraph=ture`) read the file as one record without a word."""
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInputError(f"option {name} is true or false, not {value!r}")
