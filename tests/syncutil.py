"""Which fsync and rename calls a write makes, in order: durability checked without cutting the power."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """The real os.fsync and os.replace, each call noted in order ("fsync", path) / ("replace", target):
    durability cannot be observed without cutting the power, so the order of the calls is what is checked."""
    calls: list[tuple[str, Path]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(source: str | Path, target: str | Path) -> None:
        calls.append(("replace", Path(target).resolve()))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls
