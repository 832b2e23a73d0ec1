"""Reading a tokenizer corpus and splitting it into a seeded train / holdout set of lines.

A corpus file is plain UTF-8 text (one line per training "sentence") or any format `tldrlab.data.readers`
reads, in which case each record contributes its document and its summaries as text.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.runs.atomic import sha256_file

_PLAIN_SUFFIXES = {".txt", ".text", ".md", ".rst", ""}


@dataclass
class CorpusSplit:
    """Lines of a corpus after the seeded holdout split."""

    train: list[str]
    """Lines the tokenizer is trained on."""

    holdout: list[str]
    """Lines kept aside to measure coverage, unknown rate and compression."""

    files: list[dict[str, object]] = field(default_factory=list)
    """One entry per corpus file: path, format, sha256, lines."""


def corpus_format(path: Path) -> str:
    """The format a corpus file is read as: `text` for plain-text names, else what the readers detect (from
    the file's head, so a command line checks it cheaply before a run exists)."""
    if path.suffix.lower() in _PLAIN_SUFFIXES:
        _check_utf8_head(path)
        return "text"
    try:
        # lazy: loads bs4, lxml (this module stays light without them)
        from tldrlab.data.readers import READERS, detect_format
    except ImportError:  # the readers module is optional at this layer: fall back to plain text
        return "text"
    try:
        found = detect_format(path)
    except InvalidInputError as exc:
        # The readers end with "pass a format", which a corpus has no option for: say what works here.
        reason = exc.message.split("; pass a format")[0]
        raise InvalidInputError(
            f"{reason}; a corpus file is a data set `tldrlab data inspect` reads, and a plain-text corpus "
            "file is read line by line when named .txt"
        ) from exc
    if found == "pairs" and path.suffix.lower() == ".csv":
        _check_comma_csv(path)
    if READERS[found].kind != "records":  # refused by the read inside the run before, a failed run left
        raise InvalidInputError(
            f"{path}: format {found!r} holds threads, not records: forum threads are ingested and digested "
            "(tldrlab ingest, digest); a plain-text corpus file is read line by line when named .txt"
        )
    return found


def _check_comma_csv(path: Path) -> None:
    """InvalidInputError when a corpus CSV's header is one column holding another usual delimiter (a
    semicolon CSV): a corpus is read with `,` (it has no reader options), and such a file was refused only
    once its run read it, telling to give a reader option `tokenizer train` does not have."""
    import csv

    from tldrlab.data.readers.pairs import other_delimiter  # lazy, as above

    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        try:
            header = next(csv.reader(handle), None)
        except csv.Error:
            return  # the read in the run says it, with the line
    other = other_delimiter(header, ",")
    if header is not None and other is not None:
        raise InvalidInputError(
            f"{path}: the header is one column ({header[0][:80]!r}) holding {other!r}: a corpus CSV is read "
            "with ',' (tokenizer train takes no reader options): save it comma-separated, or tab-separated "
            "as a .tsv"
        )


def _check_utf8_head(path: Path, sample_bytes: int = 1 << 20) -> None:
    """InvalidInputError when the head of a plain-text corpus file is not UTF-8 (a UTF-16 file from a Windows
    editor): told by its name alone, it was refused only once its run read it, and stayed a failed run."""
    import codecs

    with path.open("rb") as handle:
        head = handle.read(sample_bytes)
        at_end = not handle.read(1)
    try:
        # incremental, so a character cut at the end of the sample is not an error
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=at_end)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"corpus file {path} is not UTF-8 text: {exc}") from exc


def text_lines(text: str) -> list[str]:
    """The lines of `text` that hold more than spaces and tabs, split at line feeds only. str.splitlines also
    splits at vertical tabs, form feeds, \x1c-\x1e, NEL (\x85) and U+2028 / U+2029, which so never reached
    a line: a char vocabulary had no id for them, and a text holding one encoded it as <unk>. (A plain-text
    file's carriage returns are line feeds once read, as Python reads text.)"""
    return [line for line in text.split("\n") if line.strip(" \t\r")]


def _record_lines(path: Path, fmt: str) -> list[str]:
    """Lines of a structured data file through tldrlab.data.readers (documents and summaries)."""
    from tldrlab.data.readers import read_records  # lazy, as above

    lines: list[str] = []
    for record in read_records(path, fmt):
        for text in (record.document, *record.summaries):
            lines.extend(text_lines(text))
    return lines


def _text_lines(path: Path) -> list[str]:
    try:
        # -sig: a byte-order mark (Windows editors write one) is not text: it was trained into the vocabulary
        # as a character of the first line, as the data readers never take it
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"corpus file {path} is not UTF-8 text: {exc}") from exc
    return text_lines(text)


def read_corpus_lines(path: Path | str) -> tuple[str, list[str]]:
    """(format, non-empty lines) of one corpus file."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"corpus file not found: {path}")
    if path.is_dir():
        raise InvalidInputError(f"corpus path {path} is a directory; pass the files inside it")
    fmt = corpus_format(path)
    return fmt, _text_lines(path) if fmt == "text" else _record_lines(path, fmt)


def check_distinct(paths: Sequence[Path | str]) -> None:
    """A corpus file named twice (as given, or by another spelling of its path) is refused: its lines were
    read twice, so the seeded holdout held out copies of lines the tokenizer was trained on, and its stats
    measured seen text."""
    seen: dict[Path, Path | str] = {}
    for raw in paths:
        resolved = Path(raw).resolve()
        if resolved in seen:
            other = f" (also as {seen[resolved]})" if str(seen[resolved]) != str(raw) else ""
            raise InvalidInputError(f"corpus file {raw} is given twice{other}: name it once")
        seen[resolved] = raw


def load_corpus(paths: Sequence[Path | str], *, holdout: float = 0.05, seed: int = 0) -> CorpusSplit:
    """Read every corpus file and split its lines into train and holdout with a seeded shuffle."""
    if not paths:
        raise InvalidInputError("no corpus files given")
    check_distinct(paths)
    if not 0.0 <= holdout < 1.0:
        raise InvalidInputError(f"holdout must be in [0, 1); got {holdout}")
    lines: list[str] = []
    files: list[dict[str, object]] = []
    for raw in paths:
        path = Path(raw)
        fmt, file_lines = read_corpus_lines(path)
        files.append(
            {
                "path": str(path.resolve()),
                "format": fmt,
                "sha256": sha256_file(path),
                "lines": len(file_lines),
            }
        )
        lines.extend(file_lines)
    if not lines:
        raise InvalidInputError(f"the corpus has no text: {', '.join(str(p) for p in paths)}")
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    n_holdout = round(len(lines) * holdout)
    if holdout > 0 and n_holdout == 0 and len(lines) > 1:
        n_holdout = 1  # stats need at least one line
    if n_holdout >= len(lines):
        # every line held out: bpe trained on nothing and "completed", char and sentencepiece failed on an
        # empty corpus with messages that never named the holdout
        raise InvalidInputError(
            f"holdout {holdout} keeps all {len(lines)} line(s) of the corpus aside, leaving none to train "
            "on: lower the holdout or give a larger corpus"
        )
    held = set(order[:n_holdout])
    # Keep the original order inside each part so the split is stable and readable.
    train = [line for i, line in enumerate(lines) if i not in held]
    held_lines = [line for i, line in enumerate(lines) if i in held]
    return CorpusSplit(train=train, holdout=held_lines, files=files)


def batched(lines: Sequence[str], size: int = 1000) -> Iterator[list[str]]:
    """Lines in chunks (what the trainers' iterators want)."""
    for start in range(0, len(lines), size):
        yield list(lines[start : start + size])
