from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lvm_synthetic import rotating_table

from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.lvm.sequences import SPLITS, build_sequences, load_sequences
from tldrlab.lvm.store import ConceptTable


def _uneven_table() -> ConceptTable:
    """Articles of 1, 3, 6, 9 and 12 concepts (some shorter than context + 1)."""
    lengths = [1, 3, 6, 9, 12]
    rng = np.random.default_rng(1)
    ids, keys, positions = [], [], []
    for a, n in enumerate(lengths):
        for t in range(n):
            ids.append(100 * a + t)
            keys.append(f"src/a{a}")
            positions.append(t)
    vectors = rng.normal(size=(len(ids), 8)).astype(np.float32)
    return ConceptTable(np.array(ids), keys, np.array(positions), vectors, "test")


def test_no_sequence_crosses_an_article_and_windows_are_consecutive() -> None:
    table = _uneven_table()
    seqs = build_sequences(table, context=5, seed=0)
    for ctx, mask, target in zip(seqs.context_index, seqs.mask, seqs.target_index, strict=True):
        rows = ctx[mask]
        assert len(rows) >= 1
        articles = {table.article_keys[r] for r in [*rows, target]}
        assert len(articles) == 1, "a window crossed an article boundary"
        # the context is exactly the concepts right before the target, in order
        assert list(table.positions[rows]) == list(
            range(table.positions[target] - len(rows), table.positions[target])
        )
        assert not mask[: len(mask) - len(rows)].any(), "padding must be on the left"
    # every position >= 1 of every article is a target exactly once: 0 + 2 + 5 + 8 + 11
    assert len(seqs.target_index) == 26
    # short contexts are padded with -1 / False
    assert (seqs.context_index[~seqs.mask] == -1).all()


def test_min_context_skips_short_windows() -> None:
    seqs = build_sequences(_uneven_table(), context=5, min_context=5, seed=0)
    assert seqs.mask.all()
    assert len(seqs.target_index) == 1 + 4 + 7  # articles of 6, 9 and 12 concepts


def test_split_is_by_article_seeded_and_round_trips(tmp_path: Path) -> None:
    table = rotating_table(n_articles=20, length=8, dim=8)
    seqs = build_sequences(table, context=3, seed=7, val_fraction=0.2, test_fraction=0.2)
    # every example's split is its article's split: no article is in two splits
    assert (seqs.split == seqs.article_split[seqs.sequence_article]).all()
    counts = {name: int((seqs.article_split == code).sum()) for name, code in SPLITS.items()}
    assert counts == {"train": 12, "val": 4, "test": 4, "cross": 0}
    same = build_sequences(table, context=3, seed=7, val_fraction=0.2, test_fraction=0.2)
    other = build_sequences(table, context=3, seed=8, val_fraction=0.2, test_fraction=0.2)
    assert (same.article_split == seqs.article_split).all()
    assert (other.article_split != seqs.article_split).any()

    loaded = load_sequences(seqs.save(tmp_path / "seq.npz"))
    test = loaded.split_arrays("test")
    assert test.contexts.shape == (len(test), 3, 8) and loaded.meta["context"] == 3
    # materialised contexts hold the stored vectors, zeros where masked
    assert np.allclose(test.contexts[~test.mask], 0.0)
    first = np.flatnonzero(seqs.split == SPLITS["test"])[0]
    assert np.allclose(test.targets[0], table.vectors[seqs.target_index[first]])
    candidates = loaded.candidate_rows("test")
    assert set(np.unique(loaded.concept_article[candidates])) == set(
        np.flatnonzero(loaded.article_split == 2)
    )


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    table = rotating_table(n_articles=2, length=5, dim=4)
    with pytest.raises(InvalidInputError, match="at least 3 articles"):
        build_sequences(table)
    with pytest.raises(InvalidInputError, match="min_context"):
        build_sequences(rotating_table(n_articles=5), context=3, min_context=4)
    with pytest.raises(NotFoundError):
        load_sequences(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidInputError):
        load_sequences(tmp_path / "bad.npz")


def test_grouped_windows_stay_inside_one_article() -> None:
    from tldrlab.lvm.training import GroupedWindows, LVMTask

    seqs = build_sequences(_uneven_table(), context=3, seed=0, val_fraction=0.2, test_fraction=0.2)
    train = seqs.split_arrays("train")
    dataset = GroupedWindows(train, group=4)
    covered = []
    for begin, end in dataset.groups:
        assert 1 <= end - begin <= 4
        assert len(set(train.article[begin:end].tolist())) == 1, "a group mixed two articles"
        covered.extend(range(begin, end))
    assert covered == list(range(len(train)))  # every window exactly once, in order
    batch = LVMTask(train, train, "mse", 0.1, group=4).collate([dataset[0], dataset[1]])
    sizes = [end - begin for begin, end in dataset.groups[:2]]
    assert batch["contexts"].shape == (sum(sizes), 3, 8) and batch["targets"].shape == (sum(sizes), 8)


def test_sequences_out_over_the_index_or_the_store_it_reads_is_refused(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lvm sequences --out <home>/lvm/index/vectors.npz` wrote the sequences over the index's vectors (exit
    0), and every later search of the index failed; over a store named by `--db` outside the home, over the
    store it was reading."""
    from lvm_synthetic import rotating_table, store_table

    from cliutil import run_captured
    from tldrlab.lvm.index import INDEX_FILE, META_FILE, VECTORS_FILE
    from tldrlab.runs import open_registry

    table = rotating_table(n_articles=5, length=4, dim=8)
    for url in (None, f"sqlite:///{tmp_path / 'other' / 'concepts.db'}"):
        store_table(table, url)
    code, _, err = run_captured(["lvm", "index"], capsys)
    assert code == 0, err
    index = tldrlab_home / "lvm" / "index"
    before = {name: (index / name).read_bytes() for name in (INDEX_FILE, VECTORS_FILE, META_FILE)}
    other = tmp_path / "other" / "concepts.db"
    stored = other.read_bytes()
    for argv, said in [
        *(([f"--out={index / name}"], f"{index / name} is a file of the concept index in {index}")
          for name in before),
        ([f"--db=sqlite:///{other}", f"--out={other}"], f"{other} is the concept store it reads"),
    ]:  # fmt: skip
        code, _, err = run_captured(["lvm", "sequences", "--context", "2", *argv], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and f"out: {said}" in lines[0], (argv, err)
    assert {name: (index / name).read_bytes() for name in before} == before  # left as they were
    assert other.read_bytes() == stored
    assert open_registry().list(kind="lvm_sequences") == []  # refused before a run exists
    # another file beside the index is no file of it
    code, _, err = run_captured(["lvm", "sequences", "--context", "2", f"--out={index / 'seq.npz'}"], capsys)
    assert code == 0 and load_sequences(index / "seq.npz").context == 2, err
