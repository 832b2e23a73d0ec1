from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tldrlab.errors import DimensionMismatchError, NotFoundError
from tldrlab.lvm.index import build_index, load_index


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize(("threshold", "kind"), [(10_000, "flat_ip"), (100, "ivf_flat_ip")])
def test_index_round_trip(tmp_path: Path, threshold: int, kind: str) -> None:
    vectors = _vectors(800)
    ids = np.arange(1000, 1800, dtype=np.int64)
    index = build_index(vectors, ids, ivf_threshold=threshold, nprobe=64, extra_meta={"embedder": "x"})
    assert index.kind == kind and len(index) == 800
    queries = vectors[:50] + 0.01 * _vectors(50, seed=1)
    scores, found = index.search(queries, k=5)
    # each query's own vector is its nearest concept (IVF with nprobe = all lists is exact too)
    assert (found[:, 0] == ids[:50]).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()

    loaded = load_index(index.save(tmp_path / kind))
    assert loaded.kind == kind and loaded.meta["embedder"] == "x"
    assert (loaded.ids == ids).all() and np.allclose(loaded.vectors, vectors)
    scores2, found2 = loaded.search(queries, k=5)
    assert (found2 == found).all() and np.allclose(scores2, scores)
    if kind == "ivf_flat_ip":
        assert loaded.meta["nlist"] >= 2 and loaded.index.nprobe == loaded.meta["nprobe"]


def test_search_excludes_given_ids() -> None:
    vectors = _vectors(100)
    ids = np.arange(100, dtype=np.int64)
    index = build_index(vectors, ids)
    _, plain = index.search(vectors[:3], k=3)
    _, excluded = index.search(vectors[:3], k=3, exclude=[{0}, {1, int(plain[1, 1])}, set()])
    assert excluded[0, 0] != 0 and 0 not in excluded[0]
    assert not {1, int(plain[1, 1])} & set(excluded[1].tolist())
    assert (excluded[2] == plain[2]).all()
    assert (excluded >= 0).all()  # k results remain after filtering


def test_index_errors(tmp_path: Path) -> None:
    index = build_index(_vectors(20), np.arange(20))
    with pytest.raises(DimensionMismatchError):
        index.search(_vectors(1, dim=8), k=1)
    with pytest.raises(NotFoundError, match="lvm index"):
        load_index(tmp_path / "nothing")


def test_index_out_over_the_store_it_reads_is_refused(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lvm index --out` was checked against nothing it reads: over a store named by `--db` (outside the
    home) it was a FileExistsError traceback and a failed run; a directory holding a store named like a file
    of the index had the store replaced by the index's vectors (exit 0); `--out <store>-wal` made a
    directory where SQLite keeps the store's journal; any other file was the same traceback."""
    from lvm_synthetic import rotating_table, store_table

    from cliutil import run_captured
    from tldrlab.runs import open_registry

    table = rotating_table(n_articles=5, length=4, dim=8)
    folder = tmp_path / "other"
    for name in ("concepts.db", "vectors.npz"):
        store_table(table, f"sqlite:///{folder / name}")
    (folder / "notes.txt").write_text("not an index", encoding="utf-8")
    stored = {path.name: path.read_bytes() for path in folder.iterdir()}
    store, named_like_vectors = folder / "concepts.db", folder / "vectors.npz"
    for db, out, said in [
        (store, store, f"{store} is the concept store it reads"),
        (store, Path(f"{store}-wal"), f"{store}-wal is the concept store it reads"),
        (named_like_vectors, folder, f"{named_like_vectors}, the concept store it reads, would be replaced"),
        (store, folder / "notes.txt", f"{folder / 'notes.txt'} is a file: give a directory for the index"),
    ]:
        code, _, err = run_captured(["lvm", "index", f"--db=sqlite:///{db}", f"--out={out}"], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and f"out: {said}" in lines[0], (out, err)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == stored  # left as they were
    assert open_registry().list(kind="lvm_index") == []  # refused before a run exists
    # an index beside the store, in a directory of its own, is no file of it
    code, _, err = run_captured(
        ["lvm", "index", f"--db=sqlite:///{store}", f"--out={folder / 'index'}"], capsys
    )
    assert code == 0 and len(load_index(folder / "index")) == 20, err
