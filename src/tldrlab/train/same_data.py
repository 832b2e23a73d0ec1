"""A resumed training reads the data its run started with: the files' size and sha256 are recorded in the run
directory when the run first starts, and a resume refuses files that changed since. The checkpointed data
position (epoch, batch index) only continues the same training on the same data; an edited or replaced file
was otherwise trained on silently.

Two places check: the recipe's setup (`check_same_data`, which also records the files at the first start),
and, before a command line's `--resume` changes anything of the run, `check_unchanged` (through the kind's
`data_files`, `tldrlab.launch.check_resume_data`): refused there, the run stays exactly as it was and
resumes once the data is back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tldrlab.data.readers import detect_format, input_files
from tldrlab.errors import ConflictError
from tldrlab.runs.atomic import atomic_write_json, sha256_file
from tldrlab.runs.run import Run
from tldrlab.train.config import TrainJobConfig

DATA_FILES = "data_files.json"
"""In a run directory: the size and sha256 of every data file the run read when it first started."""


def _fingerprints(files: Iterable[Path]) -> dict[str, dict[str, object]]:
    return {
        str(file): {"size": file.stat().st_size, "sha256": sha256_file(file)}
        for file in files
        if file.is_file()
    }


def check_unchanged(run_dir: Path, run_id: str, files: Iterable[Path]) -> None:
    """ConflictError naming the files that changed, appeared or went since the run first started; nothing
    when it never recorded its files (it never started). Writes nothing."""
    recorded_path = Path(run_dir) / DATA_FILES
    if not recorded_path.is_file():
        return
    recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    current = _fingerprints(files)
    if changed := sorted(
        name for name in recorded.keys() | current.keys() if recorded.get(name) != current.get(name)
    ):
        raise ConflictError(
            f"the data changed since run {run_id} started ({', '.join(changed)}): resuming would not "
            "continue the same training; restore the data, or start a new run"
        )


def check_same_data(run: Run, files: Iterable[Path]) -> None:
    """Record `files` (size and sha256) when the run first starts; on a later start (a resume), ConflictError
    naming the files that changed, appeared or went since."""
    files = list(files)
    if (run.dir / DATA_FILES).is_file():
        check_unchanged(run.dir, run.id, files)
    else:
        atomic_write_json(run.dir / DATA_FILES, _fingerprints(files))


def train_data_files(job: TrainJobConfig) -> list[Path]:
    """The files a `train` run reads its examples from (none while its path is missing: the reader says
    so)."""
    path = Path(job.data.path)
    return input_files(path, job.data.format or detect_format(path)) if path.exists() else []
