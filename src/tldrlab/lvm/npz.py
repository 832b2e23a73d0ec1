"""The one reader of the NPZ files the LVM kinds are given (sequences, an index's vectors): every way such a
file can be wrong is one `tldrlab.errors` refusal naming the file and what is wrong with it.

A file a user names may be empty, cut short (a copy or download that stopped), not an NPZ at all, an NPZ of
another kind (an index's `vectors.npz` given as sequences), or hold an array of another shape or dtype. numpy
meets each with its own exception (EOFError, zipfile.BadZipFile, a ValueError about pickles, a KeyError),
or not at all until an array of the wrong shape breaks the computation that reads it. Here the archive is
opened, its member list and every array's header (shape, dtype: read without reading the data, so a check at
submit stays cheap) are checked against the expected layout, and only then are the arrays asked for read.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tldrlab.errors import InvalidInputError, NotFoundError

READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
"""What numpy and zipfile raise for a damaged archive or member (a CRC mismatch, a short member, a bad
header)."""


@dataclass(frozen=True)
class ArraySpec:
    """The layout of one array of an NPZ: its dimensions, named so that arrays sharing a name must agree
    (`("n", "N")` and `("n",)`: as many targets as contexts), and the dtype kinds it may have."""

    dims: tuple[str, ...]
    kinds: str
    """numpy dtype kinds allowed (`f` float, `i` / `u` integers, `b` bool, `U` / `S` strings)."""
    what: str
    """How the kinds read in a message (`float`, `integer`, `bool`, `string`)."""
    required: bool = True


FLOAT = ("f", "float")
INTEGER = ("iu", "integer")
BOOL = ("b", "bool")
STRING = ("US", "string")


def spec(dims: str, kinds: tuple[str, str], *, required: bool = True) -> ArraySpec:
    """`spec("n N", INTEGER)`: an (n, N) integer array."""
    return ArraySpec(tuple(dims.split()), kinds[0], kinds[1], required)


def _header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an NPZ member from its .npy header, without reading its data."""
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    return tuple(shape), dtype


def _layout(wanted: ArraySpec) -> str:
    """`(n, N) integer`; `a single string` for a 0-d array."""
    return f"({', '.join(wanted.dims)}) {wanted.what}" if wanted.dims else f"a single {wanted.what}"


def read_npz(
    path: Path | str,
    layout: Mapping[str, ArraySpec],
    *,
    what: str,
    missing_hint: str = "",
    read: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays `read` (default: every array of `layout` the file holds) of the NPZ `path`, once the file is
    an NPZ holding every required array of `layout` with its dimensions and dtype.

    NotFoundError when there is no such file (`missing_hint` ends its message); InvalidInputError (the file
    and what is wrong with it, `what` naming the kind of file) for a directory, an empty, truncated or damaged
    file, a file of another format, a missing array or one of another shape or dtype."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no {what} file {path}{missing_hint}")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory, not a {what} file (an NPZ)")
    try:
        size = path.stat().st_size
        # the end of a zip holds its directory: a file cut short, or another format, has none
        is_zip = size > 0 and zipfile.is_zipfile(path)
    except OSError as exc:
        raise InvalidInputError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise InvalidInputError(f"the {what} file {path} is empty")
    if not is_zip:
        raise InvalidInputError(
            f"{path} is not a {what} file: not an NPZ archive (cut short, or a file of another format)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist()}
            missing = [name for name, wanted in layout.items() if wanted.required and name not in members]
            if missing:
                holds = ", ".join(sorted(members)) or "no arrays"
                lacks = f"it lacks the arrays {', '.join(missing)} (it holds {holds})"
                raise InvalidInputError(f"{path} is not a {what} file: {lacks}")
            sizes: dict[str, int] = {}
            for name, wanted in layout.items():
                if name not in members:
                    continue
                shape, dtype = _header(archive, members[name])
                agrees = len(shape) == len(wanted.dims) and dtype.kind in wanted.kinds
                for dim, length in zip(wanted.dims, shape, strict=False):
                    agrees = agrees and sizes.setdefault(dim, length) == length
                if not agrees:
                    raise InvalidInputError(
                        f"{path} is not a {what} file: its array {name} is {shape} {dtype}, where a {what} "
                        f"file holds {_layout(wanted)}"
                        + (f" ({', '.join(f'{d}={n}' for d, n in sizes.items())})" if sizes else "")
                    )
    except InvalidInputError:
        raise
    except READ_ERRORS as exc:
        raise InvalidInputError(f"{path} is not a readable {what} file: a damaged NPZ ({exc})") from exc
    names = [name for name in (layout if read is None else read) if name in members]
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in names}
    except READ_ERRORS as exc:
        raise InvalidInputError(f"{path} is not a readable {what} file: a damaged NPZ ({exc})") from exc
