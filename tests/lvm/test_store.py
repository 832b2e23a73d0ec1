from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tldrlab.errors import DimensionMismatchError, NotFoundError
from tldrlab.lvm.store import ConceptIn, ConceptStore, default_store_url, open_concept_store


def _concepts(texts: list[str]) -> list[ConceptIn]:
    out, offset = [], 0
    for i, text in enumerate(texts):
        out.append(ConceptIn(position=i, start=offset, end=offset + len(text), text=text))
        offset += len(text) + 1
    return out


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _exercise(store: ConceptStore) -> None:
    vec_b = _unit(3, 8, 1)
    store.replace_article(
        source="wiki",
        article_id="b",
        concepts=_concepts(["B0.", "B1.", "B2."]),
        vectors=vec_b,
        embedder="minilm",
        chunking="sentence",
        title="Bee",
        url="https://x/b",
        domain="insects",
    )
    vec_a = _unit(2, 8, 2)
    store.replace_article(
        source="wiki",
        article_id="a",
        concepts=_concepts(["A0.", "A1."]),
        vectors=vec_a,
        embedder="minilm",
        chunking="sentence",
        title="Ant",
    )
    assert store.count() == 5 and store.count("wiki") == 5 and store.sources() == {"wiki": 5}
    table = store.load("wiki")
    assert table.article_keys == ["wiki/a", "wiki/a", "wiki/b", "wiki/b", "wiki/b"]
    assert list(table.positions) == [0, 1, 0, 1, 2]
    assert np.allclose(table.vectors, np.concatenate([vec_a, vec_b]), atol=1e-6)
    got = store.get([int(i) for i in table.ids])
    assert [got[int(i)].text for i in table.ids] == ["A0.", "A1.", "B0.", "B1.", "B2."]
    assert got[int(table.ids[2])].domain == "insects" and got[int(table.ids[3])].start == 4
    infos = {a.article_id: a for a in store.articles("wiki")}
    assert infos["b"].title == "Bee" and infos["b"].n_concepts == 3 and infos["a"].url is None

    # re-ingesting an article replaces its concepts (no duplicates, new texts)
    store.replace_article(
        source="wiki",
        article_id="b",
        concepts=_concepts(["New B0."]),
        vectors=_unit(1, 8, 3),
        embedder="minilm",
        chunking="semantic",
    )
    concepts, vectors = store.article_concepts("wiki", "b")
    assert [c.text for c in concepts] == ["New B0."] and vectors.shape == (1, 8)
    assert store.count() == 3

    # a vector of another dimension is refused and nothing stored is lost
    with pytest.raises(DimensionMismatchError):
        store.replace_article(
            source="wiki",
            article_id="c",
            concepts=_concepts(["C0."]),
            vectors=_unit(1, 4, 4),
            embedder="other",
            chunking="sentence",
        )
    assert store.count() == 3
    with pytest.raises(NotFoundError):
        store.load("nope")
    with pytest.raises(NotFoundError):
        store.article_concepts("wiki", "zzz")


def test_sqlite_store(tldrlab_home: Path) -> None:
    url = default_store_url()
    assert url.startswith("sqlite:///") and str(tldrlab_home) in url
    store = open_concept_store()
    try:
        _exercise(store)
    finally:
        store.close()
    # the data survives reopening
    again = open_concept_store(url)
    assert again.count() == 3
    again.close()


def test_postgres_pgvector_store(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tldrlab.config import get_settings

    monkeypatch.setenv("TLDRLAB_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    assert default_store_url() == postgres_url  # a postgres database URL puts concepts there
    store = open_concept_store()
    try:
        assert store.is_postgres
        _exercise(store)
        row = store.db.query_one("SELECT pg_typeof(vector)::text AS t FROM lvm_concepts LIMIT 1")
        assert row is not None and row["t"] == "vector"
    finally:
        store.close()
