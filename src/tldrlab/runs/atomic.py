"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory.

A reader therefore sees either the old complete file or the new complete file, never half of one, even if the
writer is killed mid-write.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tldrlab.errors import InvalidInputError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """This process's umask, read without changing it: from /proc/self/status (Linux 4.7+), else by the
    set-and-restore `os.umask` offers, under a lock and through 0o077, so a file another thread creates in
    that instant is made more private, never more open."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def honour_umask(path: Path | str) -> None:
    """Give `path` (and, for a directory, everything under it) the mode a plain `open()` / `mkdir` would
    have given it: 0666 / 0777 less the umask. Temporary files (`tempfile.mkstemp`, and safetensors'
    writer) are created 0600 and temporary directories (`mkdtemp`) 0700, and a rename keeps that mode: a
    home shared by an API and workers running as different users (group-readable with umask 002 / 022)
    then had files only their writer could read."""
    mask = current_umask()
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)


def _writable(path: Path | str) -> Path:
    """`path`, its parent directories made; InvalidInputError when it cannot be a file."""
    path = Path(path)
    # Output paths come from users too (--plot, --output): a directory there, or a file where a parent
    # directory should be, was an IsADirectoryError / NotADirectoryError traceback from the rename.
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory: give a file path to write to")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        message = f"cannot write {path}: a file stands where a directory of it should be"
        raise InvalidInputError(message) from None
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    path = _writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 and the rename keeps it: give the file the mode a plain open() would have
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_with(path: Path | str, write: Callable[[Path], None]) -> None:
    """Atomically write `path` with a library that writes files by name (safetensors): `write(temporary)`
    writes the whole file at a temporary path beside `path`, which then gets the mode a plain open() would
    have given it (the library's own may be 0600), is synced and renamed over `path`."""
    path = _writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: Path | str, rows: Iterable[Any]) -> None:
    """One JSON object per line (non-ASCII kept as is), written atomically."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - some filesystems refuse to open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_jsonl(path: Path | str, obj: Any) -> None:
    """Append one JSON line and flush it. Readers skip a torn last line (see `read_jsonl`).

    If a previous writer was killed mid-line, the torn line is closed with a newline first, so the new line
    stays whole (and the torn one is skipped by readers) instead of being glued onto the fragment.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(obj, default=str) + "\n"
    with path.open("a+b") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write(line.encode("utf-8"))
        handle.flush()


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read JSON lines written by `append_jsonl`; a final line without newline (torn write) is ignored, and so
    is a line that is not a JSON object (`42`, `[...]`: not written here; every reader took each row for a
    dict, `runs logs` with an AttributeError traceback)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if i == len(lines) - 1:  # no trailing newline: the writer was interrupted mid-line
            break
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a torn line closed by a later append (see append_jsonl)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def sha256_file(path: Path | str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
