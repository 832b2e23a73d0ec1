"""What every reader shares: the read context (skip-invalid bookkeeping), precise errors, field getters,
JSON / JSON-lines iteration with line numbers, and picking files of a data-set directory by split.

Errors always name the file, the record (line number, item index or row id) and the field, e.g.
`data.jsonl: line 12: field 'summary': expected a string, got int`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tldrlab.choices import unknown_choice
from tldrlab.errors import InvalidInputError, NotFoundError

_SPLIT_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"train", "training"}),
    frozenset({"dev", "validation", "val", "valid"}),
    frozenset({"test"}),
)
SPLIT_ALIASES: dict[str, frozenset[str]] = {name: group for group in _SPLIT_GROUPS for name in sorted(group)}
"""Every split name -> the file-name tokens that select it: one table for both, so every token the file-name
rule knows (training, valid) is also a name `--split` accepts (dev, validation, val, valid: one split)."""

_SPLIT_TOKENS: frozenset[str] = frozenset().union(*_SPLIT_GROUPS)
_HELD_OUT_TOKENS = SPLIT_ALIASES["dev"] | SPLIT_ALIASES["test"]

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt", ".xml", ".md", ".tokens")


@dataclass
class ReadContext:
    """State shared by one read: options, and what was skipped or counted along the way."""

    skip_invalid: bool = False
    """Record malformed records in `skipped` and go on, instead of raising."""

    mapping: dict[str, str] = field(default_factory=dict)
    """Field mapping for the `pairs` reader (record field -> source field)."""

    options: dict[str, Any] = field(default_factory=dict)
    """Reader-specific options (see each ReaderSpec.options)."""

    skipped: list[str] = field(default_factory=list)
    """One message per skipped record (file, record, field, problem)."""

    counts: Counter[str] = field(default_factory=Counter)
    """Reader-specific tallies worth reporting (for example raw XML rows by type)."""

    def invalid(self, error: InvalidInputError) -> None:
        """A record is malformed: raise, or remember it and continue when skipping invalid records."""
        if not self.skip_invalid:
            raise error
        self.skipped.append(error.message)


def record_error(path: Path, where: str, field_name: str | None, problem: str) -> InvalidInputError:
    """An InvalidInputError naming the file, the record and the field."""
    location = f"{path}: {where}"
    if field_name:
        location += f": field '{field_name}'"
    return InvalidInputError(f"{location}: {problem}", file=str(path), record=where, field=field_name)


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def get_str(
    obj: dict[str, Any], name: str, path: Path, where: str, *, required: bool = True, is_id: bool = False
) -> str | None:
    """A string field; for ids (`is_id`) integers are accepted too and turned into strings."""
    if name not in obj or obj[name] is None:
        if required:
            raise record_error(path, where, name, "missing")
        return None
    value = obj[name]
    if not (isinstance(value, str) or (is_id and isinstance(value, int) and not isinstance(value, bool))):
        raise record_error(path, where, name, f"expected a string, got {type_name(value)}")
    return str(value)


def require_str(obj: dict[str, Any], name: str, path: Path, where: str, *, is_id: bool = False) -> str:
    value = get_str(obj, name, path, where, is_id=is_id)
    assert value is not None
    return value


def get_str_list(
    obj: dict[str, Any], name: str, path: Path, where: str, *, allow_str: bool = False
) -> list[str]:
    """A list of strings (or, with `allow_str`, one string standing for a list of one)."""
    if name not in obj or obj[name] is None:
        raise record_error(path, where, name, "missing")
    value = obj[name]
    if allow_str and isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise record_error(path, where, name, f"expected a list of strings, got {type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise record_error(path, where, f"{name}[{i}]", f"expected a string, got {type_name(item)}")
    return list(value)


def fallback_id(where: str) -> str:
    """An id for a record without one: its line, row or item number ("line 12" -> "12")."""
    match = re.search(r"\d+", where)
    return match.group(0) if match else "1"


def get_int(value: Any, path: Path, where: str, name: str) -> int:
    """An integer given as a number or a numeric string (QMSum spans, XML attributes)."""
    if isinstance(value, bool):
        raise record_error(path, where, name, "expected an integer, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise record_error(path, where, name, f"expected an integer, got {value!r}")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
"""A JSON escape of a UTF-16 surrogate: the only way a lone one (which no UTF-8 text, store or tokenizer can
hold) gets into a parsed string, so text without it needs no closer look."""

LONE_SURROGATE = "not valid Unicode (a lone surrogate escape such as \\ud800)"


def holds_lone_surrogate(raw: str, value: Any) -> bool:
    """Whether `value`, parsed from the JSON text `raw`, holds a lone surrogate (a pair is one character)."""
    if not _SURROGATE_ESCAPE.search(raw):
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def iter_json_lines(path: Path, ctx: ReadContext) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ("line N", object) for each non-blank line; bad lines go through `ctx.invalid`.

    An empty file is an error even when skipping invalid records: there is nothing to skip, the input is
    simply not what was asked for.
    """
    seen_any = False
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"line {number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                ctx.invalid(record_error(path, where, None, f"not valid UTF-8 ({exc.reason})"))
                seen_any = True
                continue
            if not line.strip():
                continue
            seen_any = True
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                ctx.invalid(
                    record_error(path, where, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
                )
                continue
            if not isinstance(obj, dict):
                ctx.invalid(record_error(path, where, None, f"expected a JSON object, got {type_name(obj)}"))
                continue
            if holds_lone_surrogate(line, obj):
                ctx.invalid(record_error(path, where, None, LONE_SURROGATE))
                continue
            yield where, obj
    if not seen_any:
        raise InvalidInputError(f"{path}: file is empty", file=str(path))


def iter_json_items(path: Path, ctx: ReadContext) -> Iterator[tuple[str, dict[str, Any]]]:
    """Objects of a JSON file holding one object or a list of them, or of a JSON-lines file.

    Yields (where, object) with `where` = "item N" for lists (0-based, as in the file) or "line N".
    """
    if path.suffix == ".jsonl":
        yield from iter_json_lines(path, ctx)
        return
    text = read_text(path)
    if not text.strip():
        raise InvalidInputError(f"{path}: file is empty", file=str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several objects, one per line: JSON lines with a .json name
            yield from iter_json_lines(path, ctx)
            return
        raise record_error(
            path, f"line {exc.lineno}", None, f"not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if isinstance(data, dict):
        if holds_lone_surrogate(text, data):
            ctx.invalid(record_error(path, "the top-level object", None, LONE_SURROGATE))
            return
        yield "the top-level object", data
    elif isinstance(data, list):
        for i, item in enumerate(data):
            if isinstance(item, dict) and holds_lone_surrogate(text, item):
                ctx.invalid(record_error(path, f"item {i}", None, LONE_SURROGATE))
            elif isinstance(item, dict):
                yield f"item {i}", item
            else:
                ctx.invalid(
                    record_error(path, f"item {i}", None, f"expected a JSON object, got {type_name(item)}")
                )
    else:
        raise record_error(
            path, "the top level", None, f"expected an object or a list, got {type_name(data)}"
        )


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid UTF-8 at byte {exc.start}", file=str(path)) from None


# The longest first record format detection reads whole; a longer first line is not detected as JSON lines
# (pass a format), so detection never reads a huge file whole.
FIRST_RECORD_MAX_BYTES = 64 << 20


def _first_nonblank_line(path: Path, max_bytes: int) -> str:
    """The file's first line that is not blank, stripped (at most `max_bytes` of it)."""
    with path.open("rb") as handle:
        read = 0
        while read < max_bytes:
            raw = handle.readline(max_bytes - read)
            if not raw:
                break
            read += len(raw)
            line = raw.decode("utf-8-sig", errors="replace").strip()
            if line:
                return line
    return ""


def first_json_object(path: Path) -> dict[str, Any] | None:
    """The first object of a JSON / JSON-lines file, for format detection (None when there is none)."""
    with path.open("rb") as handle:
        head = handle.read(1 << 20).decode("utf-8-sig", errors="replace")
    stripped = head.lstrip()
    if not stripped:
        return None
    if stripped[0] == "{":
        # A JSON-lines file's first record may be far longer than the prefix (one whole book as a document):
        # read that first line whole, up to a bound, rather than give up on a record cut in the middle.
        first_line = _first_nonblank_line(path, FIRST_RECORD_MAX_BYTES)
        for candidate in (first_line, stripped):
            try:
                obj = json.loads(candidate)
            except json.JSONDecodeError:
                continue
            return obj if isinstance(obj, dict) else None
    try:
        data = json.loads(read_text(path))
    except (json.JSONDecodeError, InvalidInputError):
        return None
    if isinstance(data, list):
        data = next((item for item in data if isinstance(item, dict)), None)
    return data if isinstance(data, dict) else None


def split_tokens(name: str) -> set[str]:
    return set(re.split(r"[._\-\s]+", name.lower()))


def data_files(directory: Path, suffixes: tuple[str, ...] | None = DATA_SUFFIXES) -> list[Path]:
    """Data files of a directory (no README, no hidden files), sorted by name; `suffixes=None`: any name."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and (suffixes is None or p.suffix.lower() in suffixes)
        and not p.name.startswith(".")
        and not p.name.lower().startswith("readme")
    )


_COMPRESSED = {
    b"\x1f\x8b": ("gzip", "gunzip"),
    b"BZh": ("bzip2", "bunzip2"),
    b"\xfd7zXZ\x00": ("xz", "unxz"),
    b"\x28\xb5\x2f\xfd": ("zstd", "unzstd"),
    b"PK\x03\x04": ("zip", "unzip"),
}


def compressed(path: Path) -> str | None:
    """What to do when the file is compressed (told by its first bytes), else None: the readers read
    uncompressed files, and a compressed one was 'not UTF-8 text and not a known format', which did not say
    why."""
    with path.open("rb") as handle:
        head = handle.read(8)
    for magic, (kind, tool) in _COMPRESSED.items():
        if head.startswith(magic):
            return (
                f"a {kind}-compressed file: tldrlab reads uncompressed data, so decompress it first ({tool})"
            )
    return None


def is_utf8_text(path: Path, sample_bytes: int = 1 << 20) -> bool:
    """Whether the file's first `sample_bytes` are UTF-8 text (no NUL bytes, no invalid sequences)."""
    import codecs

    with path.open("rb") as handle:
        head = handle.read(sample_bytes)
        at_end = not handle.read(1)
    if b"\x00" in head:
        return False
    try:
        # incremental, so a multi-byte character cut at the end of the sample is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head, final=at_end)
    except UnicodeDecodeError:
        return False
    return True


def pick_split(files: list[Path], split: str | None, directory: Path) -> list[Path]:
    """The files of `directory` belonging to `split` (all of them when split is None). The training split of
    a directory that names its held-out files but no training file (data.jsonl + test.jsonl, summaries.csv
    + dev.csv + test.csv) is the files whose names hold no split: it had none, so training read every file,
    the test and validation ones too."""
    if split is None:
        return files
    key = _split_key(split)
    exact = [p for p in files if key in split_tokens(p.name)]
    chosen = exact or [p for p in files if split_tokens(p.name) & SPLIT_ALIASES[key]]
    if not chosen and SPLIT_ALIASES[key] == SPLIT_ALIASES["train"]:
        chosen = unnamed_training_files(files)
    if not chosen:
        names = ", ".join(p.name for p in files) or "none"
        why = _held_out_only(files)
        raise NotFoundError(f"{directory}: no file for split {split!r} (files: {names}){why}")
    return chosen


def unnamed_training_files(files: list[Path]) -> list[Path]:
    """The training files of a directory whose names hold a held-out split (dev, test) and none a training
    one: the files whose names hold no split; none when no name holds a split (such a directory has no
    splits: it is read whole, without one)."""
    tokens = [split_tokens(p.name) for p in files]
    if not any(t & _HELD_OUT_TOKENS for t in tokens):
        return []
    return [p for p, t in zip(files, tokens, strict=True) if not t & _SPLIT_TOKENS]


def _held_out_only(files: list[Path]) -> str:
    """Why a directory of held-out files only has no training split, and what to do."""
    if not files or not all(split_tokens(p.name) & _HELD_OUT_TOKENS for p in files):
        return ""
    return (
        ": every file here is a test or validation split, which is never trained on; add a training file "
        "(train.jsonl, or any name that names no split), or give a file itself as the data"
    )


def check_file_split(path: Path, split: str) -> None:
    """A single file holds `split` only when its name says so, as in a directory (dev.jsonl,
    pairs.train.csv); InvalidInputError otherwise, naming what the file is. Reading the whole file instead
    would mix every other record in (for a training run's data, the records it trained on)."""
    tokens = split_tokens(path.name)
    if tokens & SPLIT_ALIASES[_split_key(split)]:
        return
    named = next((name for name in ("train", "validation", "test") if tokens & SPLIT_ALIASES[name]), None)
    has = f"its name makes it the {named!r} split" if named else "it has no splits"
    raise InvalidInputError(
        f"{path}: no {split!r} split in this single file ({has}); read it without a split, or use a "
        "data-set directory with a file per split"
    )


def _split_key(split: str) -> str:
    key = split.lower()
    if key not in SPLIT_ALIASES:
        raise InvalidInputError(unknown_choice("split", split, SPLIT_ALIASES))
    return key
