"""The dataset registry: data sets the service may read, one row each in the home database.

A data set is a file kept under `<home>/datasets/<id>/`, recorded with its sha256, size, format and (when
known) record count. API clients bring data with `POST /datasets` (`source` "upload") and name it in run
configs as `dataset:<id>`. The machine's own user registers a file or data-set directory where it is with
`tldrlab data register PATH` (`register_dataset`, `source` "register"): its reader format, the sha256 of
every data file and of the whole, records per file, and its provenance (where it came from, licence, who
registered it on which host, when) are recorded once; registering the same bytes again finds the same id,
records the provenance given then where the row has none, and refuses (ConflictError) a name, format or
provenance value that differs from the row's: one data set, never a silently dropped or rewritten licence.
Paths inside the home are stored relative to it, so a home moved or mounted elsewhere keeps working; they
never leave the server.

Runs name the data sets they read in their manifest (`datasets`: id, name, sha256, and the config field):
`dataset_refs(config)` finds them by `dataset:<id>` or by path, so a run given the registered path directly
is traced to the same id.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import platform
import re
import shlex
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field

from tldrlab.choices import OneOf
from tldrlab.config import Settings, expand_user, get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import ConflictError, InvalidInputError, NotFoundError
from tldrlab.pathmarks import InputPath
from tldrlab.report import Column, Report, Table
from tldrlab.runs.atomic import sha256_file
from tldrlab.runs.db import Database, connect, migrate
from tldrlab.targets import load_target

DATASETS_SUBDIR = "datasets"
REF_PREFIX = "dataset:"
"""How a run config names a registered data set: `dataset:<id>`."""

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS datasets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            format TEXT,
            records BIGINT,
            source TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            extra TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS datasets_sha256 ON datasets (sha256)",
    ]
]


def new_dataset_id() -> str:
    return f"ds-{time.strftime('%Y%m%d', time.gmtime())}-{uuid.uuid4().hex[:10]}"


@dataclass
class DatasetRecord:
    """One registered data set."""

    id: str
    name: str
    """The file name it was uploaded or registered under."""
    path: str
    """Where it is, relative to the home (`datasets/<id>/<name>`)."""
    sha256: str
    size_bytes: int
    source: str
    """How it got here: `upload` (POST /datasets), or another registration path."""
    created_at: float
    format: str | None = None
    """Reader format (tldrlab.data.readers) when detected."""
    records: int | None = None
    """Number of records when counted."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else a source records (free-form JSON)."""

    def location(self, settings: Settings | None = None) -> Path:
        return (settings or get_settings()).home / self.path

    def public(self) -> dict[str, Any]:
        """What API clients see: everything but the server path."""
        data = asdict(self)
        data.pop("path")
        return data

    def report(self, *, new: bool = True) -> Report:
        """One line: its id, what it holds and how runs name it (`new`: registered just now)."""
        state = "registered" if new else "already registered as"
        line = (
            f"{state} {self.id}: {self.name} ({self.format}, {self.records or 0:,} records, "
            f"{self.size_bytes:,} bytes, sha256 {self.sha256[:16]}...); name it dataset:{self.id}"
        )
        # registering counts what reads; the rest was left out without a word, and training, which skips
        # nothing, then failed on a data set registered as fine
        warnings = []
        if skipped := sum(int(f.get("skipped") or 0) for f in self.extra.get("files") or []):
            where = shlex.quote((self.extra.get("provenance") or {}).get("registered_from") or "PATH")
            warnings.append(
                f"{skipped:,} malformed record(s) not counted, which a run reading it refuses: tldrlab data "
                f"inspect {where} --skip-invalid names them"
            )
        return Report([line], warnings=warnings)


class DatasetRegistry:
    """CRUD over the `datasets` table. Create it with `open_datasets()`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db, "datasets", MIGRATIONS)

    def insert(self, record: DatasetRecord) -> None:
        self.db.execute(
            "INSERT INTO datasets (id, name, path, sha256, size_bytes, format, records, source, created_at, "
            "extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.name,
                record.path,
                record.sha256,
                record.size_bytes,
                record.format,
                record.records,
                record.source,
                record.created_at,
                json.dumps(record.extra),
            ),
        )

    def get(self, dataset_id: str) -> DatasetRecord:
        if "\x00" in dataset_id:  # no id holds NUL; PostgreSQL cannot even compare one (a DataError)
            raise NotFoundError(f"no dataset with id {dataset_id!r}")
        row = self.db.query_one("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
        if row is None:
            raise NotFoundError(f"no dataset with id {dataset_id!r}")
        return _record(row)

    def list(
        self, limit: int | None = 100, offset: int = 0, *, source: str | None = None
    ) -> list[DatasetRecord]:
        """Newest first. `limit=None`: every one (what a lookup over all data sets needs: a cap missed the
        ones registered before that many newer ones). `source`: only those that got here that way."""
        where, params = ("WHERE source = ?", [source]) if source is not None else ("", [])
        sql = f"SELECT * FROM datasets {where} ORDER BY created_at DESC"
        if limit is None:  # SQLite takes no OFFSET without a LIMIT: the rows are skipped here
            return [_record(r) for r in self.db.query(sql, params)[offset:]]
        return [_record(r) for r in self.db.query(f"{sql} LIMIT ? OFFSET ?", (*params, limit, offset))]

    def find_sha256(self, sha256: str) -> DatasetRecord | None:
        """The first data set registered with these bytes, if any."""
        row = self.db.query_one("SELECT * FROM datasets WHERE sha256 = ? ORDER BY created_at", (sha256,))
        return None if row is None else _record(row)

    def move(self, record: DatasetRecord, path: str) -> DatasetRecord:
        """The data set now found at `path` (its bytes moved there)."""
        self.db.execute("UPDATE datasets SET path = ? WHERE id = ?", (path, record.id))
        return replace(record, path=path)

    def replace_extra(self, record: DatasetRecord, extra: dict[str, Any]) -> bool:
        """Set a data set's `extra` if it still holds what `record` read (compare-and-set: two registrations
        of the same bytes at once must not overwrite each other's provenance); whether it did."""
        changed = self.db.execute(
            "UPDATE datasets SET extra = ? WHERE id = ? AND extra = ?",
            (json.dumps(extra), record.id, json.dumps(record.extra)),
        )
        return changed == 1

    def delete(self, dataset_id: str) -> None:
        self.db.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))


def _record(row: dict[str, Any]) -> DatasetRecord:
    return DatasetRecord(
        id=row["id"],
        name=row["name"],
        path=row["path"],
        sha256=row["sha256"],
        size_bytes=int(row["size_bytes"]),
        format=row["format"],
        records=None if row["records"] is None else int(row["records"]),
        source=row["source"],
        created_at=float(row["created_at"]),
        extra=json.loads(row["extra"]) if row["extra"] else {},
    )


def datasets_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).home / DATASETS_SUBDIR


def open_datasets(settings: Settings | None = None) -> DatasetRegistry:
    settings = settings or get_settings()
    settings.ensure_home()
    return DatasetRegistry(connect(settings.resolved_database_url))


def _stored_path(path: Path, settings: Settings) -> str:
    resolved = path.resolve()
    home = settings.home.resolve()
    return str(resolved.relative_to(home)) if resolved.is_relative_to(home) else str(resolved)


def reader_formats() -> dict[str, Any]:
    """The reader registry (format name -> spec), imported when first read: it loads bs4 and lxml, which
    `import tldrlab.runs` must not."""
    formats: dict[str, Any] = load_target("tldrlab.data.readers:READERS")
    return formats


def _no_control_characters(value: str | None) -> str | None:
    # a database's text (PostgreSQL's JSON) cannot hold U+0000, and none of these prints in a listing (tabs
    # and line breaks do: a note may have lines)
    controls = [c for c in value or "" if (c < " " and c not in "\t\n\r") or "\x7f" <= c <= "\x9f"]
    if found := sorted(set(controls)):
        shown = ", ".join(f"U+{ord(c):04X}" for c in found)
        raise ValueError(f"must not contain control characters ({shown})")
    if value and not value.strip():  # "" is min_length's; " " was recorded as a licence
        raise ValueError("is blank: give a value or leave it out")
    return value


ProvenanceText = Annotated[str | None, AfterValidator(_no_control_characters)]

NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._-]+")
"""Characters a data set's name does not hold: an upload's file name has them replaced (`safe_file_name`),
a name given to `tldrlab data register` is refused with them."""

MAX_NAME_LENGTH = 100


def safe_file_name(name: str) -> str:
    """A plain file name (no directories, no leading dots) keeping the extension that tells the format: what
    an uploaded data set is stored and named as."""
    cleaned = NOT_IN_A_NAME.sub("_", Path(name.replace("\\", "/")).name).lstrip("._")[-MAX_NAME_LENGTH:]
    return cleaned or "data"


def _plain_name(name: str | None) -> str | None:
    # `data register --name a/b` was recorded as given, a name no upload can have (the API makes a plain file
    # name of every name it is given) and one that reads as a path where runs name data sets by path or id
    if name is not None and safe_file_name(name) != name:
        plain = NOT_IN_A_NAME.sub("_", name).strip("._")[:MAX_NAME_LENGTH] or "data"
        raise ValueError(
            f"{name!r} is not a plain name: use letters, digits, '.', '_' and '-' (no path separator, not "
            f"starting with '.' or '_', at most {MAX_NAME_LENGTH} characters), as an uploaded data set's "
            f"name is; e.g. {plain!r}"
        )
    return name


class DatasetProvenance(ConfigModel):
    """Where a data set came from, recorded with it (`extra.provenance`): given to `tldrlab data register`
    as options and to `POST /datasets` as query parameters, validated by this one class for both."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    source_url: ProvenanceText = Field(None, min_length=1, max_length=2000)
    """Where it came from (provenance)."""
    license: ProvenanceText = Field(None, min_length=1, max_length=200)
    """Its licence (provenance)."""
    note: ProvenanceText = Field(None, min_length=1, max_length=2000)
    """Anything else worth keeping with it."""


class RegisterTarget(ConfigModel):
    """What `tldrlab data register` registers (its provenance is `DatasetProvenance`)."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    path: Annotated[str, InputPath()]
    """A data file or a data-set directory (registered where it is)."""
    name: Annotated[str | None, AfterValidator(_plain_name)] = Field(
        None, min_length=1, max_length=MAX_NAME_LENGTH
    )
    """A name for it (default: the file or directory name): letters, digits, '.', '_' and '-', as an uploaded
    data set's name is."""
    format: Annotated[str | None, OneOf("format", reader_formats)] = None
    """Format name (detected when omitted)."""


class RegisterOptions(DatasetProvenance, RegisterTarget):
    """What `register_dataset` records (`tldrlab data register`): the target, then its provenance."""


def register_dataset(
    path: Path | str,
    *,
    name: str | None = None,
    format: str | None = None,
    source_url: str | None = None,
    license: str | None = None,
    note: str | None = None,
    settings: Settings | None = None,
) -> tuple[DatasetRecord, bool]:
    """Record a data file or data-set directory where it is (see the module docstring); returns (the record,
    whether it is new). The same bytes registered again return the existing record, with the provenance given
    now recorded where it had none; ConflictError when a name, format or provenance given differs from what
    it holds (`_existing_with`)."""
    # lazy: loads bs4, lxml (kept off `tldrlab --help`)
    from tldrlab.data.readers import (
        READERS,
        detect_format,
        input_files,
        read_records_report,
        read_threads_report,
    )

    settings = settings or get_settings()
    path = expand_user(path)
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or directory")
    for text in (str(path.resolve()), name or path.name):
        if not _utf8(text):  # the registry's text cannot hold it: the insert raised, a traceback
            raise InvalidInputError(
                f"{text!r}: not valid UTF-8 (a name of other bytes), which the registry cannot record: "
                "rename it (a file inside a registered directory may keep such a name)"
            )
    found = format or detect_format(path)
    if found not in READERS:
        raise InvalidInputError(f"unknown format {found!r}; known: {', '.join(sorted(READERS))}")
    spec = READERS[found]
    files = input_files(path, found)
    companions = _companions(files, spec.companions)
    read = read_records_report if spec.kind == "records" else read_threads_report
    digest, hashes = _digest(path, [*files, *companions])
    entries: list[dict[str, Any]] = []
    first_skipped: str | None = None
    hashed = list(hashes.items())  # the data files', then their companions'
    for file, (rel, sha256) in zip(files, hashed[: len(files)], strict=True):
        report = read(file, found, skip_invalid=True)
        first_skipped = first_skipped or next(iter(report.skipped), None)
        entries.append(
            {
                "path": rel,
                "size": file.stat().st_size,
                "sha256": sha256,
                "records": len(report.items),
                "skipped": len(report.skipped),
            }
        )
    for file, (rel, sha256) in zip(companions, hashed[len(files) :], strict=True):
        entries.append(
            {"path": rel, "size": file.stat().st_size, "sha256": sha256, "records": 0, "skipped": 0}
        )
    registry = open_datasets(settings)
    existing = registry.find_sha256(digest)
    if existing is not None:
        if existing.source == "register" and dataset_changes(existing, settings) is not None:
            # its bytes are no longer where it was registered (moved away, or edited there) but here: the
            # id follows them, where it kept naming the old path and 'register it where it is now' could
            # never mend it
            existing = registry.move(existing, _stored_path(path, settings))
        given = {"source_url": source_url, "license": license, "note": note}
        return _existing_with(registry, existing, name=name, format=format, provenance=given), False
    if not sum(int(e["records"]) for e in entries):
        # a data set of nothing no run can read; and registered, its id held these bytes for good (a wrong
        # --format was then 'already registered ... with format' on every try with the right one)
        skipped = sum(int(e["skipped"]) for e in entries)
        if skipped:
            raise InvalidInputError(
                f"{path}: none of its {skipped:,} record(s) reads as format {found!r} (first: "
                f"{first_skipped}); nothing registered: is the format right? (tldrlab data inspect PATH "
                "detects it)"
            )
        raise InvalidInputError(f"{path}: holds no {spec.kind}; nothing registered")
    record = DatasetRecord(
        id=new_dataset_id(),
        name=name or path.name,
        path=_stored_path(path, settings),
        sha256=digest,
        size_bytes=sum(int(e["size"]) for e in entries),
        source="register",
        created_at=time.time(),
        format=found,
        records=sum(int(e["records"]) for e in entries),
        extra={
            "kind": spec.kind,
            "files": entries,
            # the digest covers the files read with the data files (a record without this key was
            # registered before they were, and is checked as it was registered)
            "companions": list(spec.companions),
            "provenance": {
                "registered_from": str(path.resolve()),
                "host": platform.node(),
                "user": _user(),
                "source_url": source_url,
                "license": license,
                "note": note,
            },
        },
    )
    registry.insert(record)
    return record, True


def _companions(files: list[Path], names: tuple[str, ...]) -> list[Path]:
    """The files beside `files` a reader reads with them (`ReaderSpec.companions`) that are there."""
    found = [file.parent / name for file in files for name in names if (file.parent / name).is_file()]
    return [file for file in dict.fromkeys(found) if file not in files]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _digest(path: Path, files: list[Path]) -> tuple[str, dict[str, str]]:
    """(the sha256 of the whole, each file's sha256 by its path relative to the data set): a file's own
    sha256, a directory's over its data files' names and hashes (the names say the splits)."""
    base = path if path.is_dir() else path.parent
    hashes = {file.relative_to(base).as_posix(): _file_sha256(file) for file in files}
    if path.is_file() and len(files) == 1:
        return next(iter(hashes.values())), hashes
    whole = hashlib.sha256()
    for rel, sha256 in hashes.items():
        # a file name of bytes that are not UTF-8 (surrogate-escaped by Python) is hashed as those bytes: a
        # plain encode raised, a traceback
        whole.update(f"{rel}\0{sha256}\n".encode("utf-8", "surrogateescape"))
    return whole.hexdigest(), hashes


_HASHED: dict[tuple[str, int, int], str] = {}
"""sha256 by (file, size, mtime): a run's checks and its manifest look at the same data set more than once,
and a data set of gigabytes takes seconds to hash."""


def _file_sha256(file: Path) -> str:
    stat = file.stat()
    if stat.st_size < 8 << 20:  # cheap to hash again; and a file rewritten at the same size within the
        return sha256_file(file)  # clock's tick keeps its mtime, which a memo of a small file would miss
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        if len(_HASHED) >= 4096:  # a long-lived worker: forget the old ones rather than grow
            _HASHED.clear()
        _HASHED[key] = sha256_file(file)
    return _HASHED[key]


def dataset_changes(record: DatasetRecord, settings: Settings | None = None) -> str | None:
    """What differs between the bytes at the data set's path and those it was registered with (None: they
    are the same). A data set id stands for its bytes: a run that named it, or the path, but read other bytes
    recorded the registered sha256 in its manifest as what it read."""
    # lazy: loads bs4, lxml (kept off `tldrlab --help`)
    from tldrlab.data.readers import READERS, input_files

    location = record.location(settings)
    if not location.exists():
        return "its path is gone"
    files: list[Path] = [location] if location.is_file() else []
    if location.is_dir() and record.format:
        with contextlib.suppress(NotFoundError, InvalidInputError):  # none left: every file is gone
            files = input_files(location, record.format)
    if "companions" in record.extra and record.format in READERS:
        files += _companions(files, READERS[record.format].companions)
    digest, hashes = _digest(location, files) if files else ("", {})
    if digest == record.sha256:
        return None
    held = {str(f["path"]): str(f["sha256"]) for f in record.extra.get("files") or [] if "path" in f}
    if not held or location.is_file():
        return f"its bytes differ (sha256 {digest[:12]}..., registered {record.sha256[:12]}...)"
    what = [f"{rel} changed" for rel in held if rel in hashes and hashes[rel] != held[rel]]
    what += [f"{rel} is gone" for rel in held if rel not in hashes]
    what += [f"{rel} is new" for rel in hashes if rel not in held]
    more = f" and {len(what) - 5} more" if len(what) > 5 else ""
    return ", ".join(what[:5]) + more


def unchanged_location(record: DatasetRecord, settings: Settings | None = None) -> Path:
    """The data set's path, when it still holds the bytes registered; ConflictError saying what changed
    otherwise (register it again to name the new bytes); NotFoundError naming the data set when its path is
    gone (moved or deleted: a run said only 'data not found: <path>', a path the user never typed)."""
    location = record.location(settings)
    if not location.exists():
        raise NotFoundError(
            f"data set {record.id} ({record.name}) is no longer at {location}, where it was registered: "
            "moved or deleted since; register it where it is now",
            dataset_id=record.id,
        )
    if changes := dataset_changes(record, settings):
        raise ConflictError(
            f"data set {record.id} ({record.name}) changed since it was registered: {changes}; register it "
            f"again (tldrlab data register) to name its bytes now",
            dataset_id=record.id,
        )
    return location


def _existing_with(
    registry: DatasetRegistry,
    existing: DatasetRecord,
    *,
    name: str | None,
    format: str | None,
    provenance: dict[str, str | None],
) -> DatasetRecord:
    """`existing` (the data set these bytes already are) with the provenance given now filled in where it has
    none. The same bytes are one data set, so a given value that differs from a stored one is refused
    (ConflictError) rather than dropped or overwritten: which of two licences (or names) is right is for the
    user to settle, and a later register must not silently lose or rewrite what an earlier one recorded."""
    for _ in range(5):  # another registration may change the record between reading and writing it
        stored: dict[str, Any] = existing.extra.get("provenance") or {}
        clashes = [
            f"{what} {held!r} (given {value!r})"
            for what, held, value in (
                ("name", existing.name, name),
                ("format", existing.format, format),
                *((what, stored.get(what), value) for what, value in provenance.items()),
            )
            if value is not None and held is not None and held != value
        ]
        if clashes:
            raise ConflictError(
                f"these bytes are already registered as {existing.id} with {'; '.join(clashes)}: name it "
                f"dataset:{existing.id}, or register it again without the options that differ",
                dataset_id=existing.id,
            )
        missing = {
            what: value
            for what, value in provenance.items()
            if value is not None and stored.get(what) is None
        }
        if not missing:
            return existing
        extra = {**existing.extra, "provenance": {**stored, **missing}}
        if registry.replace_extra(existing, extra):
            return replace(existing, extra=extra)
        existing = registry.get(existing.id)
    raise ConflictError(f"data set {existing.id} keeps changing under this registration: try again")


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _strings(value: Any, loc: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield ".".join(loc), value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*loc, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*loc, str(i)))


def dataset_refs(config: dict[str, Any], settings: Settings | None = None) -> list[dict[str, Any]]:
    """The registered data sets a run config names (`dataset:<id>`, the data set's path, or a file inside a
    registered directory): id, name, sha256 and the config field, once per (id, field)."""
    settings = settings or get_settings()
    strings = [
        (where, text) for where, text in _strings(config) if text.startswith(REF_PREFIX) or "/" in text
    ]
    if not strings:
        return []
    registry = open_datasets(settings)
    records = registry.list(limit=None)  # a path may lie in any of them, however old
    by_id = {r.id: r for r in records}
    locations = [(r.location(settings).resolve(), r) for r in records]
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    unchanged: dict[str, bool] = {}

    def holds_its_bytes(record: DatasetRecord) -> bool:
        # a data set changed on disk is not what the run reads: its registered sha256 would be a lie (the
        # path's bytes now may be another, newer registration of it)
        if record.id not in unchanged:
            unchanged[record.id] = dataset_changes(record, settings) is None
        return unchanged[record.id]

    for where, text in strings:
        named = text[len(REF_PREFIX) :] if text.startswith(REF_PREFIX) else None
        candidates = [by_id[named]] if named in by_id else []
        if not candidates and text.startswith("/"):
            try:
                target = Path(text).resolve()
            except (OSError, ValueError):
                continue
            candidates = [r for loc, r in locations if target == loc or target.is_relative_to(loc)]
        record = next((r for r in candidates if holds_its_bytes(r)), None)
        if record is not None and (record.id, where) not in seen:
            seen.add((record.id, where))
            found.append({"id": record.id, "name": record.name, "sha256": record.sha256, "field": where})
    return found


def resolve_dataset_ref(value: str, settings: Settings | None = None) -> str:
    """`dataset:<id>` -> the registered data set's path (anything else unchanged)."""
    if not value.startswith(REF_PREFIX):
        return value
    record = open_datasets(settings).get(value[len(REF_PREFIX) :])
    return str(unchanged_location(record, settings))


def datasets_table(records: list[DatasetRecord]) -> Table:
    headers = ("id", "name", "format", "records", "source", "sha256")
    rows = [[r.id, r.name, r.format or "-", f"{r.records or 0:,}", r.source, r.sha256[:12]] for r in records]
    return Table(
        [Column(h, key=h == "id", justify="right" if h == "records" else "left") for h in headers], rows
    )
