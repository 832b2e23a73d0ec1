"""How training and evaluation split data, in one place so that a run is evaluated on what it held out.

- `detect_splits`: the configured splits, else `train` when a data-set directory names its splits (with
  `dev` when it has a validation file): a test or validation file is never trained on, the files named for
  no split are training data when no file is named for training (data.jsonl + test.jsonl);
- `test_split`: `test` when a data-set directory has a test file (the held-out records a command scores);
- `held_out_split`: what a model is scored on in a data-set directory named with no split: its test split,
  else its validation split;
- `training_files`: the files of the training split (what a tokenizer is trained on);
- `held_out_files`: a directory's validation and test files (what a recipe that splits by itself must not
  read as its own training data);
- `seeded_holdout`: records without a validation split: a seeded shuffle, the first fraction held out;
- `lm_tail`: unsplit text for a language model: the last fraction of the tokens is held out;
- `experiment_records`: an experiment's train / eval / test records, each fixed in size, held out with seed 0.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from tldrlab.data.readers import detect_format, input_files, read_records
from tldrlab.data.readers.common import SPLIT_ALIASES, data_files, split_tokens
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError, TldrlabError

T = TypeVar("T")

TRAIN_NAMES = frozenset({"train", "training"})
DEV_NAMES = frozenset({"dev", "validation", "val", "valid"})
SPLIT_NAMES = TRAIN_NAMES | DEV_NAMES | SPLIT_ALIASES["test"]


def detect_splits(
    path: str | Path, train_split: str | None = None, val_split: str | None = None
) -> tuple[str | None, str | None]:
    """(train split, validation split): the given ones; a directory whose file names hold a split trains on
    `train` (when no training split is given) and validates on `dev` when it has one (when neither is
    given). `train` is its training file(s), else, when only held-out files are named (data.jsonl +
    test.jsonl), the files whose names hold no split (`readers.common.pick_split`); a directory of held-out
    files only then has no training data, which a read of `train` says.

    A directory with train and test files but no dev file was (None, None) before: training read every
    file, the test records with the train ones, and held out a seeded fraction of that mixture; so was one
    with a test file and no file named train (data.jsonl + test.jsonl) after that.
    """
    path = Path(path)
    if train_split or not path.is_dir():
        return train_split, val_split
    names = [split_tokens(p.name) for p in _read_files(path)]
    if not any(tokens & SPLIT_NAMES for tokens in names):
        return None, val_split
    if val_split is None and any(tokens & DEV_NAMES for tokens in names):
        val_split = "dev"
    return "train", val_split


def same_split(first: str, second: str) -> bool:
    """Whether two split names select the same split (dev, validation, val and valid are one; any case)."""

    def group(name: str) -> frozenset[str]:
        return SPLIT_ALIASES.get(name.lower(), frozenset({name.lower()}))

    return group(first) == group(second)


def test_split(path: str | Path) -> str | None:
    """`test` when `path` is a data-set directory with a test file among those a read covers, else None."""
    return "test" if any(tokens & SPLIT_ALIASES["test"] for _, tokens in _named_files(path)) else None


def held_out_split(path: str | Path) -> str | None:
    """The split an evaluation of a data-set directory named with no split reads: `test` when it has a test
    file, else `dev` when it has a validation file; None (all of it) for a file or a directory whose files
    name neither. `tldrlab eval MODEL --data DIR` read every file, the training ones too, and scored them
    all."""
    names = [tokens for _, tokens in _named_files(path)]  # one listing for both questions
    if any(tokens & SPLIT_ALIASES["test"] for tokens in names):
        return "test"
    return "dev" if any(tokens & DEV_NAMES for tokens in names) else None


def held_out_files(path: str | Path) -> list[Path]:
    """The files of a data-set directory (among those a read covers) whose names make them a validation or
    test split; none for a single file (which is the data it was named as)."""
    held = DEV_NAMES | SPLIT_ALIASES["test"]
    return [file for file, tokens in _named_files(path) if tokens & held]


def _named_files(path: str | Path) -> list[tuple[Path, set[str]]]:
    """Each file a read of the data-set directory `path` covers, with the split words of its name; none for
    a single file (which is the data it was named as, whatever its name says)."""
    path = Path(path)
    return [(p, split_tokens(p.name)) for p in _read_files(path)] if path.is_dir() else []


def _read_files(directory: Path) -> list[Path]:
    """The files a read of the directory covers, among which a split is then picked. Every file under it
    counted before: a dev.jsonl in a subdirectory, a hidden file or a note named validation.txt made it
    "split", and reading its dev split then failed ('no file for split dev') where none was asked for."""
    try:
        return input_files(directory, detect_format(directory))
    except TldrlabError:  # no format to tell: its data files, as the read's own error will say
        return data_files(directory)


def training_files(
    path: str | Path, format: str | None = None, train_split: str | None = None, val_split: str | None = None
) -> list[Path]:
    """The files of the training split (what a tokenizer is trained on, so validation text stays unseen)."""
    train, _ = detect_splits(path, train_split, val_split)
    return list(input_files(Path(path), format or detect_format(path), train))


def holdout_size(total: int, fraction: float) -> int:
    """Records held out: `fraction` of them, at least one."""
    return max(1, int(total * fraction))


def seeded_holdout(records: Sequence[T], fraction: float, seed: int | None) -> tuple[list[T], list[T]]:
    """(held out, rest): the first `fraction` of the records after a shuffle seeded with `seed` (None: no
    shuffle). Training holds out exactly what evaluation later reads back with the same seed."""
    shuffled = list(records)
    if seed is not None:
        random.Random(seed).shuffle(shuffled)
    n = holdout_size(len(shuffled), fraction)
    return shuffled[:n], shuffled[n:]


def lm_tail(ids: Sequence[T], fraction: float) -> tuple[list[T], list[T]]:
    """(head, tail): a token stream cut so that the tail is the last `fraction` of it (the held-out part)."""
    cut = int(len(ids) * (1 - fraction))
    return list(ids[:cut]), list(ids[cut:])


class ExperimentSizes(Protocol):
    """What `experiment_records` reads of an experiment's config (both experiments' configs have it)."""

    data: str
    format: str | None
    eval_data: str | None
    eval_size: int
    test_size: int
    train_limit: int | None
    batch_size: int


def experiment_records(
    config: ExperimentSizes,
) -> tuple[list[SummaryRecord], list[SummaryRecord], list[SummaryRecord]]:
    """(train, eval, test): records with a document and a summary, held out with seed 0. Eval + test come
    from `eval_data` when given; else from a data-set directory's own splits (`detect_splits`: train on
    `train`; eval from `dev`, else from the train records; test from the `test` file, else from what eval is
    drawn from); else from all of `data`. A test file is never trained on: a directory of train.jsonl +
    test.jsonl used to be read whole (with `eval_data` too) and its test records were trained on."""

    def usable(path: str, limit: int | None = None, split: str | None = None) -> list[SummaryRecord]:
        if not Path(path).exists():
            raise InvalidInputError(f"data not found: {path}")
        records = [
            r
            for r in read_records(path, config.format, split=split, limit=limit)
            if r.document.strip() and r.summaries
        ]
        if not records:
            raise InvalidInputError(f"{path} has no records with both a document and a summary")
        return records

    def held(path: str, split: str | None, size: int, what: str) -> list[SummaryRecord]:
        records = usable(path, None, split)
        random.Random(0).shuffle(records)
        if len(records) < size:
            raise InvalidInputError(
                f"{path} has {len(records)} usable held-out records; {what} = {size} are needed"
            )
        return records

    data, eval_data, train_limit = config.data, config.eval_data, config.train_limit
    eval_size, test_size, batch_size = config.eval_size, config.test_size, config.batch_size
    need = eval_size + test_size
    train_split, val_split = detect_splits(data)
    if eval_data:
        train = usable(data, train_limit, train_split)
        rest = held(eval_data, None, need, "eval_size + test_size")
        return train, rest[:eval_size], rest[eval_size:need]
    test_name = test_split(data) if train_split else None
    test = held(data, test_name, test_size, "test_size")[:test_size] if test_name else None
    if val_split:
        train = usable(data, train_limit, train_split)
        if test is not None:
            return train, held(data, val_split, eval_size, "eval_size")[:eval_size], test
        dev = held(data, val_split, need, "eval_size + test_size")
        return train, dev[:eval_size], dev[eval_size:need]
    records = usable(data, None, train_split)
    random.Random(0).shuffle(records)
    cut = eval_size if test is not None else need
    if len(records) < cut + batch_size:
        wanted = "eval_size" if test is not None else "eval_size + test_size"
        raise InvalidInputError(
            f"{data} has {len(records)} usable training records: too few for {wanted} + one batch "
            f"({cut} + {batch_size})"
        )
    train = records[cut:][: train_limit or None]
    return train, records[:eval_size], test or records[eval_size:need]
