"""Run archives: a whole run directory in one file, with a manifest of every file's sha256 checked on import.

    exported = export_run("train-2026...", Path("run.tar.gz"))   # `tldrlab runs export RUN`
    record = import_run(Path("run.tar.gz"))                       # `tldrlab runs import ARCHIVE`
    upload_run(record)      # pack, put into the file store, verify, record the file id (manifest + registry)
    restore_run(record)     # a cleaned run's directory back from its archive in the store, verified

An archive is a gzip'd tar whose first member is `tldrlab-archive.json` (the index: the run's registry row,
and every file under the run directory with its size, sha256, mode and mtime, every directory and symbolic
link), followed by the directory's contents under `run/`. Import reads the index first, extracts into a
temporary directory next to the runs (refusing absolute paths, `..`, links leading out of the run, devices),
checks that every file has its recorded size and sha256 and that nothing is missing or added, and only then
renames the directory into place and registers the run: a damaged archive leaves nothing behind.

`tldrlab runs export` also packs the run's evaluations (its finished children of the derived kinds,
`registry.derived_children`; their files under the run's `evaluations/` are the run's own): each is an
archive of its own, a member `evaluations/<id>.tar.gz` listed in the index (`evaluations`: id, member,
sha256, size; archive version 2). Import checks them all first (sha256, each one's row naming the run as
its parent, no other run here holding one of their ids, no directory that no run records where one of them
or the run goes) and restores them with the run under their ids, so
`runs list --parent RUN` and `GET /runs/{id}/eval` find them; one already here with the run is left as it
is. An upload to the file store packs the run alone (retention cleans a run, not its evaluations).

A run is archived when it is finished (a running run's files are still changing); the run directory's lock
file is not archived. `upload_run` records the archive's file id (its sha256) in the registry
(`archive_sha256`, `archive_size`, `archived_at`: set only once the store has the file intact) and in the
manifest (`archive`), so retention may clean the directory and `restore_run` (which model references, and
so evaluate / generate / score / the summarize endpoint, call when a run's directory is gone) bring it back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO, Any

from tldrlab.config import Settings, get_settings
from tldrlab.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    WriteRefusedError,
    refused_write,
)
from tldrlab.report import Report
from tldrlab.runs.atomic import atomic_write_json, current_umask
from tldrlab.runs.filestore import CHUNK, DirectoryFileStore, HttpFileStore, StoredFile, open_file_store
from tldrlab.runs.ownership import LOCK_FILE
from tldrlab.runs.registry import (
    KindNames,
    RunRecord,
    RunRegistry,
    RunStatus,
    derived_children,
    open_registry,
)
from tldrlab.runs.run import MANIFEST, read_manifest

INDEX = "tldrlab-archive.json"
FORMAT = "tldrlab-run-archive"
VERSION = 2
"""The newest archive version this code reads; version 2 archives pack the run's evaluations, and an archive
without them is still written as version 1 (older tldrlab reads it)."""
ROOT = "run"
NESTED = "evaluations"
"""Top-level folder of the archive holding the run's evaluations, one archive each."""
SKIPPED = frozenset({LOCK_FILE})
"""Files of a run directory that are not archived (the executor's lock)."""
LIFECYCLE_FIELDS = (
    "run_dir",
    "archive_sha256",
    "archive_size",
    "archived_at",
    "cleaned_at",
    "cleanup_marked_at",
)
"""Registry columns that describe where a run lives, not what it is: not archived."""


@dataclass(frozen=True)
class ExportedArchive:
    """An archive written by `export_run`."""

    path: Path
    run_id: str
    sha256: str
    """sha256 of the archive file (its id in a file store)."""
    size: int
    files: int
    """Regular files inside."""
    bytes: int
    """Their total size."""
    evaluations: tuple[str, ...] = ()
    """The run's evaluations packed with it."""

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path), "evaluations": list(self.evaluations)}

    def report(self) -> Report:
        with_them = f" with its {_count(len(self.evaluations), 'evaluation')}" if self.evaluations else ""
        return Report(
            [
                f"{self.path}: run {self.run_id}{with_them}, {self.files} files, {self.bytes:,} bytes "
                f"({self.size:,} packed), sha256 {self.sha256}"
            ]
        )


@dataclass(frozen=True)
class ImportedRun:
    """What `import_archive` restored: the run, and the evaluations restored with it."""

    record: RunRecord
    evaluations: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), "evaluations": list(self.evaluations)}

    def report(self) -> Report:
        record = self.record
        with_them = f" with its {_count(len(self.evaluations), 'evaluation')}" if self.evaluations else ""
        return Report(
            [
                f"imported run {record.id} ({record.kind}, {record.status.value}){with_them} into "
                f"{record.run_dir}"
            ]
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _walk(run_dir: Path) -> Iterator[Path]:
    """Every entry below `run_dir` (directories before their contents), sorted, lock file left out."""
    for root, dirs, files in os.walk(run_dir, followlinks=False):
        dirs.sort()
        base = Path(root)
        for name in dirs:
            yield base / name
        for name in sorted(files):
            if base == run_dir and name in SKIPPED:
                continue
            yield base / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _portable_target(run_dir: Path, link: Path) -> str | None:
    """The link's target as the archive keeps it: relative when it is an absolute path inside the run, None
    (left out) when it leads out of the run. wandb links an offline run's logs/debug-core.log by absolute path
    to the wandb/cache of the run it started in (a final evaluation's to its training run's): kept as they
    are, every such archive was refused on import as leaving the run."""
    target = os.readlink(link)
    within = link.parent.relative_to(run_dir)
    if os.path.isabs(target):
        for base in (run_dir.absolute(), run_dir.resolve()):
            if Path(target).is_relative_to(base):
                return os.path.relpath(target, base / within)
        return None
    landing = posixpath.normpath(posixpath.join(within.as_posix(), target))
    return None if landing == ".." or landing.startswith("../") else target


def directory_index(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Files (size, sha256, mode, mtime), directories (mode) and symbolic links (target) under `run_dir`."""
    files, dirs, links = [], [], []
    for path in _walk(run_dir):
        rel = path.relative_to(run_dir).as_posix()
        info = path.lstat()
        if path.is_symlink():
            if (target := _portable_target(run_dir, path)) is not None:
                links.append({"path": rel, "target": target})
        elif path.is_dir():
            dirs.append({"path": rel, "mode": info.st_mode & 0o7777})
        elif path.is_file():
            files.append(
                {
                    "path": rel,
                    "size": info.st_size,
                    "sha256": _sha256(path),
                    "mode": info.st_mode & 0o7777,
                    "mtime": info.st_mtime,
                }
            )
    return {"files": files, "dirs": dirs, "links": links}


class _HashingReader:
    """A file object hashing what tarfile reads from it (a file changed since it was indexed is caught)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _record_fields(record: RunRecord) -> dict[str, Any]:
    data = record.to_dict()
    for name in LIFECYCLE_FIELDS:
        data.pop(name, None)
    return data


def export_run(
    run: str | RunRecord,
    dest: Path | None = None,
    *,
    with_evaluations: KindNames | None = None,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
) -> ExportedArchive:
    """Write a finished run's directory into one archive: `dest` (a file, or a directory, existing or named
    without an extension, that gets `<run id>.tar.gz`), default `./<run id>.tar.gz`. `with_evaluations`: the
    kind mapping (`tldrlab.kinds.kind_names_by_recorded_name()`) telling the run's evaluations, packed with it
    (ConflictError while one is unfinished; one whose directory retention cleaned is left out); None packs
    the run alone."""
    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    record = registry.find(run) if isinstance(run, str) else run
    if not record.status.finished:
        raise ConflictError(f"run {record.id} is {record.status.value}: only finished runs are archived")
    run_dir = Path(record.run_dir)
    if not run_dir.is_dir():
        raise NotFoundError(
            f"run {record.id} has no directory here"
            + (" (it was cleaned: `tldrlab runs restore` brings it back)" if record.cleaned_at else "")
        )
    dest = Path(dest) if dest is not None else Path.cwd() / f"{record.id}.tar.gz"
    if dest.is_dir() or not dest.suffix:
        dest = dest / f"{record.id}.tar.gz"
    check_archive_destination(dest, settings)
    children: list[RunRecord] = []
    if with_evaluations is not None:
        children = derived_children(record, registry.list(parent_id=record.id, limit=None), with_evaluations)
        for child in children:
            if not child.status.finished:
                raise ConflictError(
                    f"run {record.id}'s {child.kind} run {child.id} is {child.status.value}: export the run "
                    "once it ended (or cancel it)"
                )
        children = [c for c in children if Path(c.run_dir).is_dir()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as folder:
            nested = [
                export_run(child, Path(folder) / f"{child.id}.tar.gz", settings=settings, registry=registry)
                for child in children
            ]
            return _write_archive(record, run_dir, dest, nested)
    except (OSError, WriteRefusedError) as exc:
        refused = refused_write(exc)
        if refused is None:
            raise
        # The gzip stream's "OSError: [Errno 28] No space left on device" (27: File too large) named no file,
        # a read-only disk's named a hidden temporary one, and an evaluation's archive is written under a
        # temporary name too: the error names the archive the user asked for.
        raise refused.writing(f"writing {dest}", ", or give --out a place on another disk") from exc


def check_archive_destination(dest: Path, settings: Settings) -> None:
    """An archive is written neither into the runs directory (into the run it packs, it changed the run and
    was packed into its next archive) nor over a file that is not an archive: `runs export RUN --out
    ~/.tldrlab/tldrlab.db` replaced the run registry with the archive, and every later command failed.
    InvalidInputError before anything is written; an archive at `dest` (an earlier export) is replaced."""
    target = dest.resolve()
    runs_dir = settings.runs_dir.resolve()
    if target.is_relative_to(runs_dir):
        raise InvalidInputError(
            f"{dest} is inside the runs directory {runs_dir}: write the archive somewhere else"
        )
    if target.is_file():
        try:
            read_index(target)
        except InvalidInputError:
            raise InvalidInputError(
                f"{dest} is already there and is not a tldrlab run archive: give another file or directory "
                "(it was left as it was)"
            ) from None


def _write_archive(
    record: RunRecord, run_dir: Path, dest: Path, nested: list[ExportedArchive]
) -> ExportedArchive:
    """The archive of `record` at `dest`, holding the archives `nested` (its evaluations) as members."""
    index: dict[str, Any] = {
        "format": FORMAT,
        "version": 2 if nested else 1,
        "created_at": time.time(),
        "tldrlab": _version(),
        "run": _record_fields(record),
        **directory_index(run_dir),
    }
    if nested:
        index[NESTED] = [
            {"id": n.run_id, "member": f"{NESTED}/{n.run_id}.tar.gz", "sha256": n.sha256, "size": n.size}
            for n in nested
        ]
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with tarfile.open(partial, "w:gz", compresslevel=3, format=tarfile.PAX_FORMAT) as tar:
            body = json.dumps(index, indent=1, sort_keys=True).encode("utf-8")
            info = tarfile.TarInfo(INDEX)
            info.size, info.mtime, info.mode = len(body), int(time.time()), 0o644
            tar.addfile(info, _BytesReader(body))
            for entry in index["dirs"]:
                tar.add(run_dir / entry["path"], arcname=f"{ROOT}/{entry['path']}", recursive=False)
            for entry in index["links"]:
                member = tar.gettarinfo(str(run_dir / entry["path"]), arcname=f"{ROOT}/{entry['path']}")
                member.linkname = entry["target"]  # made relative where it was absolute inside the run
                tar.addfile(member)
            for entry in index["files"]:
                path = run_dir / entry["path"]
                member = tar.gettarinfo(str(path), arcname=f"{ROOT}/{entry['path']}")
                with path.open("rb") as handle:
                    reader = _HashingReader(handle)
                    tar.addfile(member, reader)  # type: ignore[arg-type]
                if member.size != entry["size"] or reader.digest.hexdigest() != entry["sha256"]:
                    raise ConflictError(f"{entry['path']} of run {record.id} changed while it was archived")
            for inner in nested:
                tar.add(inner.path, arcname=f"{NESTED}/{inner.run_id}.tar.gz", recursive=False)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return ExportedArchive(
        path=dest,
        run_id=record.id,
        sha256=_sha256(dest),
        size=dest.stat().st_size,
        files=len(index["files"]),
        bytes=sum(int(f["size"]) for f in index["files"]),
        evaluations=tuple(n.run_id for n in nested),
    )


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk = self.data[self.offset : end]
        self.offset += len(chunk)
        return chunk


def _version() -> str | None:
    try:
        return metadata.version("tldrlab")
    except metadata.PackageNotFoundError:
        return None


def read_index(archive: Path) -> dict[str, Any]:
    """The index of an archive (its first member); InvalidInputError when it is not a tldrlab run archive."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            first = tar.next()
            if first is None or first.name != INDEX or not first.isfile():
                raise InvalidInputError(f"{archive} is not a tldrlab run archive (no {INDEX} first)")
            handle = tar.extractfile(first)
            assert handle is not None
            index = json.loads(handle.read(first.size))
    except tarfile.ReadError as exc:
        # tarfile's own message for a file no compression opens lists every method it tried, one line each
        problem = "not a tar archive (plain, gzip, bzip2 or xz)" if "\n" in str(exc) else str(exc)
        raise InvalidInputError(f"{archive} is not a readable tldrlab run archive: {problem}") from exc
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise InvalidInputError(f"{archive} is not a readable tldrlab run archive: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("run"), dict):
        raise InvalidInputError(f"{archive} is not a tldrlab run archive")
    if int(index.get("version", 0)) > VERSION:
        raise InvalidInputError(
            f"{archive} was written by a newer tldrlab (archive version {index['version']})"
        )
    return index


def _relative(name: str) -> str:
    """The run-relative path of an archive member, refusing anything that could land outside the run."""
    path = PurePosixPath(name)
    parts = path.parts
    if (
        "\x00" in name
        or path.is_absolute()
        or len(parts) < 2
        or parts[0] != ROOT
        or any(p in ("..", ".", "") for p in parts)
        or "\\" in name
    ):
        raise InvalidInputError(f"archive member {name!r} is not a plain path inside the run: refused")
    return PurePosixPath(*parts[1:]).as_posix()


def _safe_link(rel: str, target: str) -> None:
    if os.path.isabs(target):
        raise InvalidInputError(f"symbolic link {rel} -> {target} leaves the run: refused")
    resolved = PurePosixPath(rel).parent
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not resolved.parts:
                raise InvalidInputError(f"symbolic link {rel} -> {target} leaves the run: refused")
            resolved = resolved.parent
        elif part != ".":
            resolved = resolved / part


def _extract_verified(archive: Path, index: dict[str, Any], into: Path) -> None:
    """Extract the run's members into `into`, checking each file against the index (and that none is missing
    or extra); InvalidInputError naming the first problem."""
    expected = {str(f["path"]): f for f in index.get("files", [])}
    links = {str(x["path"]): str(x["target"]) for x in index.get("links", [])}
    dirs = {str(d["path"]): d for d in index.get("dirs", [])}
    nested = {str(e["member"]) for e in index.get(NESTED, [])}  # checked by `_nested_entries`
    seen: set[str] = set()
    root = into.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.name == INDEX or (member.name in nested and member.isfile()):
                    continue
                rel = _relative(member.name)
                target = into / rel
                _inside_staging(target, root, rel)
                if member.isdir():
                    if rel not in dirs:
                        raise InvalidInputError(f"archive holds a directory {rel} its index does not list")
                    target.mkdir(parents=True, exist_ok=True)
                elif member.issym():
                    if links.get(rel) != member.linkname:
                        raise InvalidInputError(f"archive holds a link {rel} its index does not list")
                    _safe_link(rel, member.linkname)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(member.linkname, target)
                elif member.isfile():
                    entry = expected.get(rel)
                    if entry is None:
                        raise InvalidInputError(f"archive holds a file {rel} its index does not list")
                    source = tar.extractfile(member)
                    assert source is not None
                    target.parent.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha256()
                    size = 0
                    with target.open("wb") as writer:
                        while chunk := source.read(CHUNK):
                            digest.update(chunk)
                            size += len(chunk)
                            writer.write(chunk)
                    if size != int(entry["size"]) or digest.hexdigest() != entry["sha256"]:
                        raise InvalidInputError(
                            f"{rel} in the archive does not match its recorded sha256: the archive is damaged"
                        )
                    os.chmod(target, int(entry.get("mode", 0o644)) & 0o777)
                    mtime = float(entry.get("mtime", member.mtime))
                    os.utime(target, (mtime, mtime))
                    seen.add(rel)
                else:
                    raise InvalidInputError(
                        f"archive member {member.name!r} is not a file, directory or link"
                    )
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInputError(f"{archive} is damaged or truncated: {exc}") from exc
    for rel in links:  # links to links: what they finally point at must be inside the run too
        if (into / rel).is_symlink() and not (into / rel).resolve().is_relative_to(root):
            raise InvalidInputError(f"symbolic link {rel} leads out of the run: refused")
    missing = sorted(set(expected) - seen)
    if missing:
        raise InvalidInputError(
            f"the archive lacks {len(missing)} file(s) its index lists, e.g. {missing[0]}"
        )
    for rel in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        os.chmod(into / rel, int(dirs[rel].get("mode", 0o755)) & 0o7777)


def _inside_staging(target: Path, root: Path, rel: str) -> None:
    """Refuse a member whose directory, links followed, is not inside the extraction directory (a chain of
    links that each look harmless can still lead out)."""
    parent = target.parent
    while not parent.exists() and parent != root:
        parent = parent.parent
    if not parent.resolve().is_relative_to(root):
        raise InvalidInputError(f"archive member {rel} would be written outside the run: refused")


@contextlib.contextmanager
def _restore_lock(settings: Settings, run_id: str) -> Iterator[None]:
    """One restore of a run at a time (two evaluations of a cleaned run may start together)."""
    folder = settings.runs_dir / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{run_id}.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _place(archive: Path, index: dict[str, Any], target: Path) -> None:
    """Extract and verify next to `target`, then rename into place (nothing left behind on failure)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".import-{target.name}-", dir=target.parent))
    try:
        _extract_verified(archive, index, staging)
        if target.exists():
            raise ConflictError(f"{target.name} already exists in the runs directory")
        # mkdtemp made it 0700; what is inside keeps the modes the archive recorded
        os.chmod(staging, 0o777 & ~current_umask())
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def import_run(
    archive: Path,
    *,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
) -> RunRecord:
    """Restore the run an archive holds, with the evaluations it packs (`import_archive`)."""
    return import_archive(archive, settings=settings, registry=registry).record


def import_archive(
    archive: Path,
    *,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
) -> ImportedRun:
    """Restore the run an archive holds into the runs directory and the registry, with the evaluations it
    packs (see the module docstring).

    ConflictError when that run is already here, or when a run here holds the id of one of its evaluations
    without being its evaluation; a cleaned run (registry row kept, directory gone) gets its directory back.
    Nothing is left behind when the archive or one of its evaluations' is damaged."""
    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    archive = Path(archive)
    if archive.is_dir():  # "no archive at DIR" misled: it is there, as a directory
        raise InvalidInputError(f"{archive} is a directory: give the archive file in it (RUN_ID.tar.gz)")
    if not archive.is_file():
        raise NotFoundError(f"no archive at {archive}")
    index = read_index(archive)
    row = dict(index["run"])
    run_id = str(row.get("id") or "")
    if not _usable_id(run_id):
        raise InvalidInputError(f"{archive}: the archived run has no usable id")
    entries = _nested_entries(archive, index, run_id)
    missing: list[dict[str, Any]] = []
    for entry in entries:  # the ids of its evaluations are theirs here too, or nothing is imported
        try:
            here = registry.get(entry["id"])
        except NotFoundError:
            missing.append(entry)
            continue
        if here.parent_id != run_id:
            raise ConflictError(
                f"{archive}: run {entry['id']}, an evaluation of {run_id} in the archive, is another run "
                f"here ({here.kind}"
                + (f", of run {here.parent_id})" if here.parent_id else ")")
                + ": nothing imported"
            )
        if not Path(here.run_dir).exists():
            missing.append(entry)  # a cleaned evaluation: its directory comes back
    _refuse_unrecorded_directories(archive, run_id, [e["id"] for e in missing], settings, registry)
    staging = settings.home / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as folder:
        inner = _extract_nested(archive, missing, run_id, Path(folder))
        # what each import changed, to undo on a later failure: a new row goes with its directory; a cleaned
        # row's restored directory goes and the row is marked cleaned again, as it was
        done = [_import_one(archive, index, row, run_id, settings, registry)]
        try:
            for child_id, path in inner:
                child_index = read_index(path)
                done.append(
                    _import_one(path, child_index, dict(child_index["run"]), child_id, settings, registry)
                )
        except BaseException:
            for record, before in reversed(done):
                _undo(registry, record, before)
            raise
    return ImportedRun(record=registry.get(run_id), evaluations=tuple(record.id for record, _ in done[1:]))


def _refuse_unrecorded_directories(
    archive: Path, run_id: str, evaluation_ids: list[str], settings: Settings, registry: RunRegistry
) -> None:
    """ConflictError, before anything is written, when the runs directory already holds a directory where
    the import would put a run no registry row records (one put there by hand or copied from another
    machine): found only when that run's placement failed, the import had restored the run, extracted
    the archive and taken both back, and said only that the directory "already exists". Such a directory
    is never the import's to replace or remove."""
    for placed in (run_id, *evaluation_ids):
        try:
            registry.get(placed)
            continue  # recorded: a cleaned run's directory comes back where its row says
        except NotFoundError:
            pass
        path = settings.runs_dir / placed
        if os.path.lexists(path):
            what = f"run {run_id}" if placed == run_id else f"evaluation {placed} of run {run_id}"
            raise ConflictError(
                f"{archive}: nothing imported: {path} is already in the runs directory but no run here "
                f"records it (the archive's {what} goes there): move it away, then import again"
            )


def _usable_id(run_id: str) -> bool:
    return bool(run_id) and "/" not in run_id and not run_id.startswith(".") and "\x00" not in run_id


def _nested_entries(archive: Path, index: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
    """The index's evaluations, each an id, its member name, sha256 and size (InvalidInputError otherwise)."""
    entries = index.get(NESTED, [])
    if not isinstance(entries, list):
        raise InvalidInputError(f"{archive}: the archive's {NESTED} are not a list")
    checked = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidInputError(f"{archive}: an entry of the archive's {NESTED} is not an object")
        child_id, sha256, size = entry.get("id"), entry.get("sha256"), entry.get("size")
        if (
            not isinstance(child_id, str)
            or not _usable_id(child_id)
            or child_id == run_id
            or entry.get("member") != f"{NESTED}/{child_id}.tar.gz"
            or not isinstance(sha256, str)
            or not isinstance(size, int)
        ):
            raise InvalidInputError(f"{archive}: the archive's evaluation entry {entry!r} is not usable")
        checked.append({"id": child_id, "member": entry["member"], "sha256": sha256, "size": size})
    if len({e["id"] for e in checked}) != len(checked):
        raise InvalidInputError(f"{archive}: the archive lists an evaluation twice")
    return checked


def _extract_nested(
    archive: Path, entries: list[dict[str, Any]], run_id: str, into: Path
) -> list[tuple[str, Path]]:
    """The archives of `entries` extracted into `into`, each checked against its size and sha256 and its
    index against the entry (its run's id, its parent `run_id`); InvalidInputError naming the first
    problem."""
    wanted = {e["member"]: e for e in entries}
    found: dict[str, Path] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                entry = wanted.get(member.name)
                if entry is None or not member.isfile():
                    continue
                source = tar.extractfile(member)
                assert source is not None
                target = into / f"{entry['id']}.tar.gz"
                digest, size = hashlib.sha256(), 0
                with target.open("wb") as writer:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        writer.write(chunk)
                if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                    raise InvalidInputError(
                        f"{member.name} in the archive does not match its recorded sha256: the archive is "
                        "damaged"
                    )
                found[entry["id"]] = target
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInputError(f"{archive} is damaged or truncated: {exc}") from exc
    lacking = [e["member"] for e in entries if e["id"] not in found]
    if lacking:
        raise InvalidInputError(f"the archive lacks {lacking[0]}, which its index lists")
    for entry in entries:
        inner = read_index(found[entry["id"]])
        if inner["run"].get("id") != entry["id"] or inner["run"].get("parent_id") != run_id:
            raise InvalidInputError(f"{entry['member']} in the archive is not an evaluation of run {run_id}")
        if inner.get(NESTED):
            raise InvalidInputError(f"{entry['member']} in the archive packs runs of its own: refused")
    return [(e["id"], found[e["id"]]) for e in entries]


def _import_one(
    archive: Path,
    index: dict[str, Any],
    row: dict[str, Any],
    run_id: str,
    settings: Settings,
    registry: RunRegistry,
) -> tuple[RunRecord, RunRecord | None]:
    """Place and register the archive's run (the run alone); the registry's row before (None: it is new)."""
    try:
        existing: RunRecord | None = registry.get(run_id)
    except NotFoundError:
        existing = None
    with _restore_lock(settings, run_id):
        if existing is not None:
            if Path(existing.run_dir).exists():
                raise ConflictError(f"run {run_id} is already here ({existing.status.value})")
            _place(archive, index, Path(existing.run_dir))
            registry.update(run_id, cleaned_at=None, cleanup_marked_at=None)
            _rewrite_archive_note(registry.get(run_id))
            return registry.get(run_id), existing
        target = settings.runs_dir / run_id
        _place(archive, index, target)
        record = _record_from(row, target)
        try:
            registry.insert_whole(record)
        except Exception:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return registry.get(run_id), None


def _undo(registry: RunRegistry, record: RunRecord, before: RunRecord | None) -> None:
    """Undo one run's import: a new run is forgotten; a cleaned run's restored directory goes and its row
    is marked cleaned again (its archive in the file store still restores it)."""
    if before is None:
        _forget(registry, record.id)
        return
    shutil.rmtree(record.run_dir, ignore_errors=True)
    registry.update(record.id, cleaned_at=before.cleaned_at, cleanup_marked_at=before.cleanup_marked_at)


def _forget(registry: RunRegistry, run_id: str) -> None:
    """Undo an import: the run's directory and row go (an import that failed further on leaves nothing)."""
    try:
        record = registry.get(run_id)
    except NotFoundError:
        return
    shutil.rmtree(record.run_dir, ignore_errors=True)
    registry.delete(run_id)


def _record_from(row: dict[str, Any], run_dir: Path) -> RunRecord:
    fields = {k: v for k, v in row.items() if k in RunRecord.__dataclass_fields__}
    try:
        fields["status"] = RunStatus(fields["status"])
        return RunRecord(**{**fields, "run_dir": str(run_dir)})
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"the archive's run record is incomplete: {exc}") from exc


def _rewrite_archive_note(record: RunRecord) -> None:
    """The manifest's note of the run's archive (set after the archive was made, so not inside it)."""
    if not record.archive_sha256:
        return
    path = Path(record.run_dir) / MANIFEST
    try:
        manifest = read_manifest(record.run_dir)
    except (OSError, ValueError):
        return
    manifest["archive"] = archive_note(record)
    atomic_write_json(path, manifest)
    if record.archived_at is not None:  # the same bytes and time whether written at upload or at restore
        os.utime(path, (record.archived_at, record.archived_at))


def archive_note(record: RunRecord) -> dict[str, Any]:
    return {"sha256": record.archive_sha256, "size": record.archive_size, "uploaded_at": record.archived_at}


FileStoreLike = DirectoryFileStore | HttpFileStore


def upload_run(
    run: str | RunRecord,
    *,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
    store: FileStoreLike | None = None,
) -> StoredFile:
    """Pack a finished run, put the archive into the file store, check the store has it intact, and record
    its file id in the registry and the manifest. Uploading an unchanged run again stores nothing new."""
    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    store = store or open_file_store(settings)
    record = registry.find(run) if isinstance(run, str) else run
    staging = settings.home / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as folder:
        exported = export_run(
            record, Path(folder) / f"{record.id}.tar.gz", settings=settings, registry=registry
        )
        stored = store.put(exported.path)
    if stored.sha256 != exported.sha256 or not store.verify(stored.sha256):
        raise ConflictError(f"the file store did not keep run {record.id}'s archive intact")
    registry.update(
        record.id, archive_sha256=stored.sha256, archive_size=stored.size, archived_at=time.time()
    )
    _rewrite_archive_note(registry.get(record.id))
    return stored


def restore_run(
    run: str | RunRecord,
    *,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
    store: FileStoreLike | None = None,
) -> RunRecord:
    """Bring a cleaned run's directory back from its archive in the file store (sha256 checked, then every
    file); a run whose directory is here is returned as it is."""
    settings = settings or get_settings()
    registry = registry or open_registry(settings)
    record = registry.find(run) if isinstance(run, str) else run
    if Path(record.run_dir).is_dir():
        return record
    if not record.archive_sha256:
        raise NotFoundError(f"run {record.id} has no directory here and no archive in the file store")
    store = store or open_file_store(settings)
    staging = settings.home / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as folder:
        archive = store.fetch(record.archive_sha256, Path(folder) / f"{record.id}.tar.gz")
        try:
            return import_run(archive, settings=settings, registry=registry)
        except ConflictError:  # restored meanwhile by another process
            return registry.get(record.id)


def directory_gone(record: RunRecord) -> str:
    """Why a run has no files here, and what brings them back."""
    where = Path(record.run_dir)
    if where.is_dir():
        return f"its directory {where} holds none"
    gone = "retention cleaned its directory" if record.cleaned_at else f"its directory {where} is gone"
    if record.archive_sha256:
        return f"{gone}; `tldrlab runs restore {record.id}` brings it back from the file store"
    return f"{gone}, and it has no archive in the file store to restore it from"


def ensure_local(record: RunRecord, settings: Settings | None = None) -> RunRecord:
    """`record` with its directory here: restored from the file store first when it was cleaned."""
    if record.cleaned_at is None or Path(record.run_dir).is_dir():
        return record
    return restore_run(record, settings=settings)
