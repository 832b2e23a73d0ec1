"""A resumed training reads the data its run started with: the files' size and sha256 are recorded in the run
directory when the run first starts, and a resume refuses files that changed since. The checkpointed data
position (epoch, batch index) only continues the same training on the same data; an edited or replaced file
was otherwise trained on silently."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tldrlab.errors import ConflictError
from tldrlab.runs.atomic import atomic_write_json, sha256_file
from tldrlab.runs.run import Run

DATA_FILES = "data_files.json"
"""In a run directory: the size and sha256 of every data file the run read when it first started."""


def check_same_data(run: Run, files: Iterable[Path]) -> None:
    """Record `files` (size and sha256) when the run first starts; on a later start (a resume), ConflictError
    naming the files that changed, appeared or went since."""
    current = {
        str(file): {"size": file.stat().st_size, "sha256": sha256_file(file)}
        for file in files
        if file.is_file()
    }
    recorded_path = run.dir / DATA_FILES
    if not recorded_path.is_file():
        atomic_write_json(recorded_path, current)
        return
    recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    if changed := sorted(
        name for name in recorded.keys() | current.keys() if recorded.get(name) != current.get(name)
    ):
        raise ConflictError(
            f"the data changed since run {run.id} started ({', '.join(changed)}): resuming would not "
            "continue the same training; restore the data, or start a new run"
        )
