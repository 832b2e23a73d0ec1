"""Read a GGUF file's metadata once per load instead of three times (transformers' GGUF path).

`from_pretrained(..., gguf_file=...)` parses the file's metadata with `gguf.GGUFReader` anew for the config,
for the weights and again for the tokenizer, and while mapping the weights it rebuilds gguf's tensor-name
map once per tensor. For the bundled SmolLM2 (a 49,152-token vocabulary and merges in the metadata, 272
tensors) those repeats were over half of converting it: 21.8 CPU seconds with them, 10.0 without (the
first digest or `models import` of a fresh home waits for that conversion).

Inside `gguf_parsed_once()` both are built once: readers are kept per (path, mode) and the name map per
(architecture, blocks). transformers imports both from `gguf` when it loads, so it finds them there; what
it reads is the same (a reader only maps the file; the name map is a pure function of its arguments).

The reader made there also reads its mapping as a plain ndarray, not a `np.memmap`: every slice of a memmap
runs Python code (its `__getitem__` and `__array_finalize__`), and parsing SmolLM2's metadata takes ~250,000
small slices, each string of the vocabulary and merges its own. The same bytes of the same mapping, read
through a plain view: the reader 2.3-2.8 -> 0.7-0.9 CPU-s, transformers' pass over its fields 0.46 -> 0.23
(it makes three).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tldrlab.errors import InvalidInputError

_lock = threading.Lock()
_depth = 0
_originals: dict[str, Any] = {}


@contextmanager
def gguf_parsed_once(gguf_file: bool = True) -> Iterator[None]:
    """While inside (nested or from several threads), GGUF metadata is parsed once per file; nothing
    changes when `gguf_file` is false (the model being loaded is not a GGUF file)."""
    global _depth
    if not gguf_file:
        yield
        return
    import gguf

    with _lock:
        if _depth == 0:
            readers: dict[tuple[str, str], Any] = {}
            real_reader = gguf.GGUFReader
            _originals.update(GGUFReader=real_reader, get_tensor_name_map=gguf.get_tensor_name_map)
            # a stand-in for the class (a wrapper around it) is called as it is
            plain_reader = _plain_view_reader(real_reader) if isinstance(real_reader, type) else real_reader

            def reader(path: str | os.PathLike[str], mode: str = "r") -> Any:
                key = (os.fspath(path), mode)
                with _lock:
                    if key not in readers:
                        readers[key] = plain_reader(path, mode)
                    return readers[key]

            gguf.GGUFReader = reader  # type: ignore[misc,assignment]
            gguf.get_tensor_name_map = functools.cache(gguf.get_tensor_name_map)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gguf.GGUFReader = _originals.pop("GGUFReader")  # type: ignore[misc]
                gguf.get_tensor_name_map = _originals.pop("get_tensor_name_map")


def check_gguf_file(path: Path) -> None:
    """InvalidInputError naming `path` unless gguf's reader reads it whole: its header and every tensor's data
    (a tensor cut short does not take its shape). A truncated file (a download or copy cut short) failed
    inside gguf's reader with "unpack_from requires a buffer of at least ..." or "cannot reshape array of size
    440 into shape (32,32)", as a corrupt checkpoint. Inside `gguf_parsed_once` the header parsed here is the
    one the load then reads."""
    import gguf

    try:
        size = path.stat().st_size
        gguf.GGUFReader(path)
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the GGUF file ({exc.strerror or exc})") from exc
    except Exception as exc:  # numpy and struct errors of a header cut short or not GGUF at all
        if "magic" in str(exc).lower():
            raise InvalidInputError(
                f"{path}: not a GGUF file (it does not start with the GGUF magic)"
            ) from exc
        raise InvalidInputError(
            f"{path}: truncated or corrupt GGUF file ({size:,} bytes): copy or download it again"
        ) from exc


@functools.cache
def _plain_view_reader(reader: type) -> Any:
    """`reader` (gguf's GGUFReader) keeping its memory map as a plain ndarray view of it (the module
    docstring says why): what it maps and every value it reads are the same."""
    import numpy as np

    class PlainViewReader(reader):  # type: ignore[valid-type,misc]
        @property
        def data(self) -> Any:
            return self._plain_data

        @data.setter
        def data(self, mapped: Any) -> None:  # GGUFReader.__init__ opens the np.memmap; the view keeps it
            self._plain_data = mapped.view(np.ndarray)

    return PlainViewReader
