"""A file store addressed by sha256: where run archives go so that run directories can be cleaned.

    store = open_file_store()                  # the `file_store` setting: a directory, or a tldrlab server
    stored = store.put(Path("run.tar.gz"))     # StoredFile(sha256, size): the sha256 is the file's id
    store.fetch(stored.sha256, Path("copy"))   # a copy, its sha256 checked before it is kept

Two backends behind one interface:

- `DirectoryFileStore` (the default, `<home>/files`; or any directory, e.g. a mounted volume): a file lives at
  `<root>/<first 2 hex>/<sha256>`. It is written to `<root>/.incoming/` while its sha256 is computed, then
  renamed into place, so a reader never sees half a file and a file's name always is its content's hash.
- `HttpFileStore` (`file_store = "http://host:8000"`): the same operations over a tldrlab server's
  `POST /files` and `GET /files/{sha256}` (with the `api_key` setting), so several machines share one store.
  The server hashes what it receives and refuses a body whose sha256 is not the one announced.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from tldrlab.config import Settings, get_settings
from tldrlab.errors import InvalidInputError, NotFoundError, PayloadTooLargeError, ServiceUnavailableError

CHUNK = 1 << 20
INCOMING = ".incoming"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredFile:
    """A file in the store: its id (the sha256 of its bytes) and size."""

    sha256: str
    size: int


def check_sha256(value: str) -> str:
    """`value` if it is a sha256 in lower-case hex (a file id); InvalidInputError otherwise."""
    if not _SHA256.fullmatch(value):
        raise InvalidInputError("a file id is a sha256: 64 lower-case hexadecimal characters")
    return value


class FileStore(Protocol):
    """What every file store does."""

    name: str

    def put(self, path: Path) -> StoredFile:
        """Store a copy of the file at `path`; returns its id and size (storing the same bytes twice is one
        file)."""
        ...

    def size(self, sha256: str) -> int | None:
        """The stored file's size, or None when the store does not have it."""
        ...

    def fetch(self, sha256: str, dest: Path) -> Path:
        """Copy the file to `dest`, its sha256 checked before it is kept (a corrupt copy is deleted:
        InvalidInputError); NotFoundError when the store does not have it."""
        ...

    def verify(self, sha256: str) -> bool:
        """Whether the store has the file intact."""
        ...


def _hash_copy(source: IO[bytes], target: IO[bytes], limit: int | None = None) -> StoredFile:
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if limit is not None and size > limit:
            raise PayloadTooLargeError(f"file over {limit} bytes (TLDRLAB_MAX_FILE_BYTES)")
        digest.update(chunk)
        target.write(chunk)
    return StoredFile(digest.hexdigest(), size)


class IncomingFile:
    """A file being written into a directory store (hashed on the way); `commit` names it by its sha256."""

    def __init__(self, store: DirectoryFileStore, limit: int | None = None) -> None:
        self.store = store
        self.limit = limit
        folder = store.root / INCOMING
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / uuid.uuid4().hex
        self._handle: IO[bytes] | None = self.path.open("wb")
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        assert self._handle is not None
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise PayloadTooLargeError(f"file over {self.limit} bytes (TLDRLAB_MAX_FILE_BYTES)")
        self._digest.update(chunk)
        self._handle.write(chunk)

    def commit(self, expected_sha256: str | None = None) -> tuple[StoredFile, bool]:
        """(the stored file, whether it is new); InvalidInputError (and nothing kept) when the bytes do not
        have the expected sha256."""
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        sha256 = self._digest.hexdigest()
        if expected_sha256 is not None and sha256 != expected_sha256:
            self.abort()
            raise InvalidInputError(
                f"the body's sha256 is {sha256}, not the {expected_sha256} announced: nothing stored"
            )
        target = self.store.path_for(sha256)
        # a stored copy counts only if it is intact: a same-size copy may have rotten bytes (read back and
        # hashed, so storing the file again heals it instead of keeping the damaged copy)
        if target.is_file() and target.stat().st_size == self.size and self.store.verify(sha256):
            self.path.unlink(missing_ok=True)
            return StoredFile(sha256, self.size), False
        # new, or a stored copy that is truncated or damaged: these bytes replace it
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        return StoredFile(sha256, self.size), True

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.path.unlink(missing_ok=True)


class DirectoryFileStore:
    """Files under a directory, each named by its sha256 (see the module docstring)."""

    name = "directory"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def incoming(self, limit: int | None = None) -> IncomingFile:
        return IncomingFile(self, limit)

    def put(self, path: Path) -> StoredFile:
        incoming = self.incoming()
        try:
            with Path(path).open("rb") as source:
                while chunk := source.read(CHUNK):
                    incoming.write(chunk)
            stored, _ = incoming.commit()
        except BaseException:
            incoming.abort()
            raise
        return stored

    def size(self, sha256: str) -> int | None:
        path = self.path_for(sha256)
        return path.stat().st_size if path.is_file() else None

    def open(self, sha256: str) -> Path:
        """The stored file's path (for serving it); NotFoundError when absent."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise NotFoundError(f"no file {sha256} in the file store")
        return path

    def fetch(self, sha256: str, dest: Path) -> Path:
        source = self.open(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with source.open("rb") as reader, partial.open("wb") as writer:
                stored = _hash_copy(reader, writer)
            _check_fetched(stored, sha256)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
        return dest

    def verify(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        if not path.is_file():
            return False
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == sha256

    def delete(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        if not path.is_file():
            return False
        path.unlink()
        return True

    def files(self) -> Iterator[StoredFile]:
        """Every stored file."""
        for folder in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for path in sorted(folder.iterdir()):
                if _SHA256.fullmatch(path.name):
                    yield StoredFile(path.name, path.stat().st_size)


def _check_fetched(stored: StoredFile, sha256: str) -> None:
    if stored.sha256 != sha256:
        raise InvalidInputError(
            f"the file store returned bytes with sha256 {stored.sha256} for file {sha256}: corrupt, not used"
        )


class HttpFileStore:
    """The file store of another tldrlab server (`POST /files`, `GET /files/{sha256}`)."""

    name = "http"

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"X-Api-Key": api_key} if api_key else {}
        self.timeout_s = timeout_s

    def _request(self, method: str, url: str, **kwargs: object) -> object:
        import httpx

        try:
            with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout_s) as client:
                return client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"the file store at {self.base_url} is unreachable: {exc}") from exc

    def put(self, path: Path) -> StoredFile:
        import httpx

        digest = hashlib.sha256()
        with Path(path).open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        expected = digest.hexdigest()

        def body() -> Iterator[bytes]:
            with Path(path).open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        response = self._request(
            "POST",
            "/files",
            params={"sha256": expected},
            content=body(),
            headers={"content-type": "application/octet-stream"},
        )
        assert isinstance(response, httpx.Response)
        _raise_for(response, self.base_url)
        data = response.json()
        if data.get("sha256") != expected:
            raise InvalidInputError(f"the file store at {self.base_url} stored {data.get('sha256')}")
        return StoredFile(expected, int(data["size_bytes"]))

    def size(self, sha256: str) -> int | None:
        import httpx

        check_sha256(sha256)
        response = self._request("HEAD", f"/files/{sha256}")
        assert isinstance(response, httpx.Response)
        if response.status_code == 404:
            return None
        _raise_for(response, self.base_url)
        return int(response.headers.get("content-length", "0"))

    def fetch(self, sha256: str, dest: Path) -> Path:
        import httpx

        check_sha256(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with (
                httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout_s) as client,
                client.stream("GET", f"/files/{sha256}") as response,
            ):
                if response.status_code == 404:
                    raise NotFoundError(f"no file {sha256} in the file store at {self.base_url}")
                if response.status_code >= 400:
                    response.read()
                _raise_for(response, self.base_url)
                with partial.open("wb") as writer:
                    for chunk in response.iter_bytes(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        writer.write(chunk)
            _check_fetched(StoredFile(digest.hexdigest(), size), sha256)
            os.replace(partial, dest)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"the file store at {self.base_url} is unreachable: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        return dest

    def verify(self, sha256: str) -> bool:
        # The server hashed the bytes when it stored them, but they can rot on its disk without changing
        # size: download them and hash them as they stream (never held whole), like the directory store.
        import httpx

        check_sha256(sha256)
        digest = hashlib.sha256()
        try:
            with (
                httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout_s) as client,
                client.stream("GET", f"/files/{sha256}") as response,
            ):
                if response.status_code == 404:
                    return False
                if response.status_code >= 400:
                    response.read()
                _raise_for(response, self.base_url)
                for chunk in response.iter_bytes(CHUNK):
                    digest.update(chunk)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"the file store at {self.base_url} is unreachable: {exc}") from exc
        return digest.hexdigest() == sha256


def _raise_for(response: object, base_url: str) -> None:
    import httpx

    assert isinstance(response, httpx.Response)
    if response.status_code < 400:
        return
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    if response.status_code == 404:
        raise NotFoundError(f"file store at {base_url}: {message}")
    if response.status_code == 413:
        raise PayloadTooLargeError(f"file store at {base_url}: {message}")
    if response.status_code < 500:
        raise InvalidInputError(
            f"file store at {base_url} refused the request ({response.status_code}): {message}"
        )
    raise ServiceUnavailableError(f"file store at {base_url} failed ({response.status_code}): {message}")


def open_file_store(settings: Settings | None = None) -> DirectoryFileStore | HttpFileStore:
    """The store the `file_store` setting names (a directory by default: `<home>/files`)."""
    settings = settings or get_settings()
    url = settings.file_store or ""
    if url.startswith(("http://", "https://")):
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        return HttpFileStore(url, key)
    return DirectoryFileStore(settings.files_dir)
