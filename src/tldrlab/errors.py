"""Typed errors with stable codes.

Every error a user can cause or meet is a `TldrlabError` subclass carrying a stable `code` (for scripts and
API clients), a CLI exit code and an HTTP status. The CLI prints `message` and exits with `exit_code`; the API
answers `{code, message, request_id}` with `http_status`. Nothing else should reach a user as a traceback.
"""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import ValidationError


class TldrlabError(Exception):
    """Base of all tldrlab errors."""

    code: ClassVar[str] = "internal_error"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    """Whether a job failing with this error may succeed if simply tried again (transient)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (an error of an `experiment --jobs` seed's process, sent back to the parent) and rebuilt
        # without calling __init__ again: Exception's default called `cls(*args)`, and a class whose __init__
        # takes more (InvalidConfigError's keyword-only `errors`) could not be rebuilt, which broke the
        # process pool and turned the refusal into an unexpected error
        return (_rebuild_error, (type(self), self.args), self.__dict__)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def placed(self, field: str | tuple[str | int, ...]) -> Self:
        """This refusal, marked as one of the config's `field` (a path's parts, or one name): its class and
        words stay (the command line's exit code and line), and it gains the one `errors` entry an API answer
        lists, `{"loc": [...], "msg": message}`. A kind's check raises its refusals so where it knows the
        field: the API's submit (`launch.submit_run`) answers them as a 422 at that field, where it could only
        place them at `loc` [] (the config as a whole)."""
        path = (field,) if isinstance(field, str) else field
        self.details["errors"] = [{"loc": [str(part) for part in path], "msg": self.message}]
        return self


def _rebuild_error(cls: type[TldrlabError], args: tuple[Any, ...]) -> TldrlabError:
    """A pickled TldrlabError, its `args` as they were (its message, details and the rest are its state)."""
    return cls.__new__(cls, *args)


class InvalidInputError(TldrlabError):
    """The user's input (a file, a config, a request) is malformed. A refusal of one field says where it is
    with `at` / `at_fields` (the API lists it in `errors`, whatever the status: a 403 `path_not_allowed` as a
    422 `invalid_config`)."""

    code = "invalid_input"
    exit_code = 2
    http_status = 400

    @classmethod
    def at(cls, field: str | tuple[str | int, ...], message: str) -> Self:
        """The refusal of the config's `field` (a path's parts, list indexes among them, or one name), worded
        `field: message` (the path dotted: `corpus.0`), with its one `errors` entry (what the API answers and
        the command line prints)."""
        path = (field,) if isinstance(field, str) else field
        return cls.at_fields([(path, message)])

    @classmethod
    def at_fields(cls, problems: Iterable[tuple[tuple[str | int, ...], str]]) -> Self:
        """The refusal of several fields of the config, each (its path's parts, message), worded as `at` words
        one and joined by "; " as `validation_problems` joins them, with an `errors` entry each. A list index
        is a string in `loc`, as `kinds.config_errors` gives pydantic's."""
        errors = [{"loc": [str(part) for part in path], "msg": message} for path, message in problems]
        return cls(_joined(errors, (), "(config)"), errors=errors)


class ConfigError(InvalidInputError):
    """A configuration value is missing or not allowed."""

    code = "invalid_config"


class InvalidConfigError(ConfigError):
    """A run config does not validate against its kind's config class (answered at submit, before a run
    exists); `details["errors"]` lists each problem as `{"loc": [...field path...], "msg": ...}` (the API
    answers them as `errors` with the 422, for a client to point at the field). `errors` is required: an
    answer naming no field left clients nothing to highlight, so a refusal says where it is (`at`,
    `at_fields`) or that it is of the config as a whole (`unplaced`)."""

    http_status = 422

    def __init__(self, message: str, *, errors: list[dict[str, Any]], **details: Any) -> None:
        super().__init__(message, errors=errors, **details)

    @classmethod
    def unplaced(cls, message: str) -> InvalidConfigError:
        """The refusal of the config as a whole, by a check that names no one field of it (the server's
        concept store holding nothing): `message` as it is, its `errors` entry at `loc` [] as pydantic places
        a model validator's error, rather than a field guessed from the words."""
        return cls(message, errors=[{"loc": [], "msg": message}])


class InvalidRequestError(InvalidInputError):
    """A request body that does not validate against its route's schema: a 422, as the API answers a body its
    route's declared model refuses (a route that reads its body itself raises this)."""

    http_status = 422


class PathNotAllowedError(InvalidInputError):
    """A config names a place the caller may not read or write (API runs are confined to the data roots,
    uploaded data sets and run directories)."""

    code = "path_not_allowed"
    http_status = 403


class UnknownKindError(InvalidInputError):
    """A run kind that is not registered (the message lists the known ones)."""

    code = "unknown_kind"
    http_status = 422


class NotFoundError(TldrlabError):
    """A run, thread, artifact or file does not exist."""

    code = "not_found"
    exit_code = 3
    http_status = 404


class AmbiguousRunIdError(NotFoundError):
    """A run id prefix matches several runs: none is chosen. A NotFoundError (exit 3, 404) so callers that
    only ask "is there such a run" still see no run; a caller that turns a miss into its own "no X named ..."
    message must let this through, or the user never learns that a longer prefix would do."""

    code = "ambiguous_run_id"


class ConflictError(TldrlabError):
    """The request conflicts with the current state (for example cancelling a finished run)."""

    code = "conflict"
    exit_code = 4
    http_status = 409


class RunOwnedError(ConflictError):
    """Another live process is executing this run (it holds the run directory's lock)."""

    code = "run_owned"


class PayloadTooLargeError(InvalidInputError):
    code = "payload_too_large"
    http_status = 413


class UnauthorizedError(TldrlabError):
    code = "unauthorized"
    exit_code = 5
    http_status = 401


class DependencyMissingError(TldrlabError):
    """An optional dependency needed for this feature is not installed."""

    code = "dependency_missing"
    exit_code = 6
    http_status = 501


class ServiceUnavailableError(TldrlabError):
    """A backing service (database, Redis, model endpoint) cannot be reached right now."""

    code = "service_unavailable"
    exit_code = 7
    http_status = 503
    retryable = True


class CheckpointError(TldrlabError):
    """A checkpoint is missing, truncated or corrupt."""

    code = "checkpoint_corrupt"
    exit_code = 8
    http_status = 500


class RunCancelledError(TldrlabError):
    """Raised inside a run when cancellation was requested; the run ends as `cancelled`."""

    code = "cancelled"
    exit_code = 130
    http_status = 409


class DimensionMismatchError(InvalidInputError):
    """A vector's dimension differs from the store's."""

    code = "dimension_mismatch"


class RunPreemptedError(TldrlabError):
    """The worker was asked to stop (SIGTERM): the run checkpointed and should be requeued, not failed."""

    code = "preempted"
    exit_code = 75
    http_status = 503
    retryable = True


class WriteRefusedError(TldrlabError):
    """The system refused a write for a reason the user can see and fix (a full disk, a file-size limit, a
    read-only file system), not a bug: one line saying what and where, the traceback in a run's log only. A
    run keeps the checkpoints it wrote before: fix the cause, then resume it. `refused_write` tells which of
    these an exception is."""

    code = "write_refused"
    exit_code = 9
    http_status = 507
    what: ClassVar[str] = "write refused"
    """The cause, as the message opens with it."""
    fix: ClassVar[str] = "make the place writable"
    """What the user does about it, as the message goes on."""

    @classmethod
    def writing(cls, where: str, then: str = "") -> WriteRefusedError:
        """This error worded `{what} {where}: {fix}{then}`."""
        return cls(f"{cls.what} {where}: {cls.fix}{then}")

    @classmethod
    def for_clients(cls) -> str:
        """What an API client is told of it: the cause, never the server's paths (the log has those)."""
        return f"the server could not store it: {cls.what}; try again once its operator fixed that"


class DiskFullError(WriteRefusedError):
    """A write failed because the disk (or the user's quota) is full."""

    code = "disk_full"
    what = "no space left on device"
    fix = "free some space"


class FileTooLargeError(WriteRefusedError):
    """A file outgrew what this process may write (EFBIG): its file-size limit (`ulimit -f`, RLIMIT_FSIZE)
    or the file system's largest file (FAT32 holds 4 GB at most). Not a full disk: freeing space does not
    help."""

    code = "file_too_large"
    what = "file too large"

    @classmethod
    def writing(cls, where: str, then: str = "") -> WriteRefusedError:
        # Which of the two it was is the file-size limit when there is one (the system gives both the same
        # errno): the user then knows whether to raise the limit or move the file.
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            what = f"file too large for this process's file-size limit ({limit} bytes, `ulimit -f`)"
            fix = "raise the limit (`ulimit -f unlimited`)"
        else:
            what = "file too large for the file system"
            fix = "use a file system that holds larger files (FAT32 holds 4 GB at most)"
        return cls(f"{what} {where}: {fix}{then}")


class ReadOnlyFileSystemError(WriteRefusedError):
    """A write to a file system mounted read-only (EROFS): a remounted disk after I/O errors, a read-only
    volume in a container."""

    code = "read_only_file_system"
    what = "read-only file system"
    fix = "make it writable (remount it read-write)"


_REFUSED: dict[int, type[WriteRefusedError]] = {
    errno.ENOSPC: DiskFullError,
    errno.EDQUOT: DiskFullError,
    errno.EFBIG: FileTooLargeError,
    errno.EROFS: ReadOnlyFileSystemError,
}
# a library's own error quoting the system's words: "No space left on device", "File too large", ...
_REFUSED_TEXTS = tuple((os.strerror(number), kind) for number, kind in _REFUSED.items())


@contextmanager
def refused_at(field: str | tuple[str | int, ...]) -> Iterator[None]:
    """A kind's check of what the config's `field` names (a path's parts, or one name): the refusals raised
    inside (InvalidInputError, NotFoundError: a file that is not there, not data, not prepared) are placed
    at that field (`TldrlabError.placed`) unless they place themselves. The functions a check calls read
    paths, not configs, so they cannot say which field they were given."""
    try:
        yield
    except (InvalidInputError, NotFoundError) as exc:
        if not exc.details.get("errors"):
            exc.placed(field)
        raise


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the errors it was raised from or while handling, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


POSTGRES_DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE disk_full: the server could not extend one of the database's files ("could not extend
file ...: No space left on device"), its data directory's disk or its tablespace's being full. The server
undoes the transaction it was in, so the database keeps everything committed before it."""


def refused_write(exc: BaseException) -> type[WriteRefusedError] | None:
    """Which WriteRefusedError `exc`, or an error it was raised from or while handling, is: an OSError's
    errno (ENOSPC, EDQUOT, EFBIG, EROFS), SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's
    disk_full (53100), or a library's own error quoting the system's words (safetensors: "I/O error: File too
    large (os error 27)"); None for anything else. Permission errors are not among them: PermissionError
    carries the path it was refused, which the CLI shows in one line already."""
    for current in error_chain(exc):
        if isinstance(current, WriteRefusedError):
            return type(current)
        if isinstance(current, OSError) and current.errno in _REFUSED:
            return _REFUSED[current.errno]
        if (
            getattr(current, "sqlite_errorcode", None) == 13
            or getattr(current, "sqlstate", None) == POSTGRES_DISK_FULL
        ):
            return DiskFullError  # 13: SQLITE_FULL
        text = str(current)
        for words, kind in _REFUSED_TEXTS:
            if words in text:
                return kind
    return None


def refused_file(exc: BaseException) -> Path | None:
    """The file that a refused write in `exc`'s chain names (`refused_write`), or None where the system's
    error names none (a gzip stream's, a library's own)."""
    for current in error_chain(exc):
        if isinstance(current, OSError) and current.errno in _REFUSED and current.filename is not None:
            return Path(os.fsdecode(current.filename))
    return None


def yaml_problem(exc: Exception) -> str:
    """A YAML parse error in one line: what is wrong and where. PyYAML's own text spans several lines (the
    source line quoted, a caret under it), which broke the one-line message of a CLI error."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem or mark is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return f"{context}: {problem} ({where})" if context else f"{problem} ({where})"


# pydantic puts these before the text of a validator's own ValueError / assert; the text is the message
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def error_message(error: Mapping[str, Any]) -> str:
    """One pydantic error's message as its validator wrote it (without pydantic's "Value error, ")."""
    message = str(error["msg"])
    for prefix in _PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def validation_problems(
    exc: ValidationError, *, prefix: tuple[str | int, ...] = (), whole: str = "(config)"
) -> str:
    """Every error of `exc` as `field.path: message`, joined by "; " (`whole` names the object itself, e.g.
    `body` for a request body)."""
    return _joined(exc.errors(), prefix, whole)


def listed_problems(exc: InvalidConfigError, *, prefix: tuple[str | int, ...] = ()) -> str:
    """The problems an InvalidConfigError lists (`details["errors"]`) worded as `validation_problems` words
    them, each field under `prefix`: for a caller that validated a config by its kind's rule and words the
    refusal its own way (a sweep's trials, `sweep.config`). Its message when it lists none."""
    return _joined(exc.details.get("errors") or [], prefix, "(config)") or exc.message


def _joined(errors: Iterable[Mapping[str, Any]], prefix: tuple[str | int, ...], whole: str) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in (*prefix, *e['loc'])) or whole}: {error_message(e)}" for e in errors
    )
