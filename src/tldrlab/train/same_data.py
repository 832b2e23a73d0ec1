"""A resumed training reads the data its run started with: the files' size and sha256 are recorded in the run
directory when the run first starts, and a resume refuses files that changed since. The checkpointed data
position (epoch, batch index) only continues the same training on the same data; an edited or replaced file
was otherwise trained on silently.

Two places check: the recipe's setup (`check_same_data`, which also records the files at the first start),
and, before a command line's `--resume` changes anything of the run, `check_unchanged` (through the kind's
`data_files`, `tldrlab.launch.check_resume_data`): refused there, the run stays exactly as it was and
resumes once the data is back.

Only the files the run reads count: a data-set directory's training and validation files, not its test
files (every file of the directory was recorded and compared before, so a resume was refused when only
test.jsonl changed). A run recorded so keeps its test files in `data_files.json`; they are not compared
(`RunFiles` gets the recorded files, and picks those the run reads)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tldrlab.data.readers import detect_format, input_files
from tldrlab.data.readers.common import pick_split
from tldrlab.data.splits import detect_splits
from tldrlab.errors import ConflictError
from tldrlab.runs.atomic import atomic_write_json, sha256_file
from tldrlab.runs.run import Run
from tldrlab.train.config import TrainJobConfig

DATA_FILES = "data_files.json"
"""In a run directory: the size and sha256 of every data file the run read when it first started."""

RunFiles = Callable[[Sequence[Path]], Iterable[Path]]
"""(the files recorded at the run's first start; none then) -> the files the run reads: those here now, and
recorded ones that went where the run would read them were they here (so a training file that went is told,
a test file the run never read is not)."""


def _fingerprints(files: Iterable[Path]) -> dict[str, dict[str, object]]:
    return {
        str(file): {"size": file.stat().st_size, "sha256": sha256_file(file)}
        for file in files
        if file.is_file()
    }


def check_unchanged(run_dir: Path, run_id: str, files: RunFiles) -> None:
    """ConflictError naming the files the run reads that changed, appeared or went since it first started
    (recorded files it does not read are not compared); nothing when it never recorded its files (it never
    started). Writes nothing."""
    recorded_path = Path(run_dir) / DATA_FILES
    if not recorded_path.is_file():
        return
    recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    read = [str(file) for file in files([Path(name) for name in recorded])]
    current = _fingerprints(Path(name) for name in read)
    if changed := sorted(name for name in set(read) if recorded.get(name) != current.get(name)):
        raise ConflictError(
            f"the data changed since run {run_id} started ({', '.join(changed)}): resuming would not "
            "continue the same training; restore the data, or start a new run"
        )


def check_same_data(run: Run, files: RunFiles) -> None:
    """Record the files the run reads (size and sha256) when it first starts; on a later start (a resume),
    ConflictError naming those that changed, appeared or went since."""
    if (run.dir / DATA_FILES).is_file():
        check_unchanged(run.dir, run.id, files)
    else:
        atomic_write_json(run.dir / DATA_FILES, _fingerprints(files([])))


def train_data_files(job: TrainJobConfig, recorded: Sequence[Path] = ()) -> list[Path]:
    """The files a `train` run reads its examples from (`RunFiles`): of a data-set directory, those of its
    training and validation splits (`splits.detect_splits`; a test file is never read), else every file the
    path holds; with `recorded`, also those of them that went where the run would read them. None while the
    path is missing: the reader says so."""
    path = Path(job.data.path)
    if not path.exists():
        return []
    here = input_files(path, job.data.format or detect_format(path))
    if not path.is_dir():
        return here
    candidates = here + [file for file in recorded if file not in here and not file.exists()]
    train, val = detect_splits(path, job.data.train_split, job.data.val_split)
    if train is None:  # no splits: the directory is read whole
        return candidates
    read = pick_split(candidates, train, path) + (pick_split(candidates, val, path) if val else [])
    return list(dict.fromkeys(read))
