"""Cross-corpus evaluation: another source's articles are the `cross` split, never trained or tuned on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lvm_synthetic import rotating_table

from tldrlab.errors import InvalidInputError
from tldrlab.lvm.evaluation import evaluate_methods
from tldrlab.lvm.sequences import (
    SPLITS,
    SequencesConfig,
    build_sequences,
    load_sequences,
    sequences_from_store,
    shared_titles,
)
from tldrlab.lvm.store import ConceptIn, ConceptTable, open_concept_store


def _two_corpora() -> ConceptTable:
    """20 articles of source `synthetic` and 6 of source `other` (another rotation speed)."""
    own = rotating_table(n_articles=20, length=10, dim=8, seed=0)
    other = rotating_table(n_articles=6, length=10, dim=8, step=0.9, seed=1)
    return ConceptTable(
        ids=np.concatenate([own.ids, other.ids + 10_000]),
        article_keys=own.article_keys + [k.replace("synthetic/", "other/") for k in other.article_keys],
        positions=np.concatenate([own.positions, other.positions]),
        vectors=np.concatenate([own.vectors, other.vectors]),
        embedder="synthetic",
    )


def test_cross_source_is_the_test_corpus_and_no_test_article_is_trained_on() -> None:
    table = _two_corpora()
    seqs = build_sequences(table, context=3, seed=5, cross_source="other")
    name_of = {code: name for name, code in SPLITS.items()}
    split_articles = {
        name_of[code]: {str(a) for a in seqs.articles[seqs.article_split == code]} for code in SPLITS.values()
    }
    assert split_articles["cross"] == {f"other/article-{a:03d}" for a in range(6)}
    for name in ("train", "val", "test"):
        assert split_articles[name] and all(a.startswith("synthetic/") for a in split_articles[name])
    # no article (and so no window) of the cross corpus is in train / val / test, and vice versa
    assert not split_articles["cross"] & (split_articles["train"] | split_articles["val"])
    train, cross = seqs.split_arrays("train"), seqs.split_arrays("cross")
    assert not set(train.target_ids) & set(cross.target_ids)
    assert not set(train.context_ids.ravel()) - {-1} & set(cross.context_ids.ravel())
    assert set(seqs.concept_ids[seqs.candidate_rows("cross")]) == set(table.ids[table.ids >= 10_000])
    # the training corpus is split exactly as it would be alone (the same seed gives the same articles)
    alone = build_sequences(rotating_table(n_articles=20, length=10, dim=8, seed=0), context=3, seed=5)
    assert [str(a) for a in alone.articles[alone.article_split == SPLITS["test"]]] == sorted(
        split_articles["test"]
    )
    assert seqs.split_names() == ["train", "val", "test", "cross"]
    # with a cross corpus the in-corpus test may be left out entirely
    no_test = build_sequences(table, context=3, seed=5, test_fraction=0.0, cross_source="other")
    assert no_test.split_names() == ["train", "val", "cross"]
    with pytest.raises(InvalidInputError, match="no article of the cross source"):
        build_sequences(table, context=3, cross_source="missing")


def test_baselines_are_tuned_on_validation_whatever_split_is_scored() -> None:
    seqs = build_sequences(_two_corpora(), context=3, seed=5, cross_source="other")
    scored = {split: evaluate_methods(seqs, {}, split=split) for split in ("test", "cross")}
    settings = {split: {r.name: r.info for r in results} for split, results in scored.items()}
    assert (
        settings["test"] == settings["cross"]
    )  # decay r and ridge alpha come from val, not the scored split
    cross = {r.name: r.metrics for r in scored["cross"]}
    test = {r.name: r.metrics for r in scored["test"]}
    # the cross corpus turns faster than anything seen in training: the ridge fitted on train is worse there
    assert cross["ridge"]["cosine"] < test["ridge"]["cosine"]


def test_titles_match_up_to_case_spacing_and_unknown_words() -> None:
    assert shared_titles(["Anarchism", "Apollo 11"], ["anarchism", "Apollo  11", "Apollo 8"]) == [
        ("Anarchism", "anarchism"),
        ("Apollo 11", "Apollo  11"),
    ]
    assert shared_titles(["Mycena galericulata"], ["Mycena <unk>"]) == [
        ("Mycena galericulata", "Mycena <unk>")
    ]
    assert shared_titles(["Mycena"], ["Mycena <unk>"]) == []


def test_no_wikitext_valid_article_is_in_the_wikipedia_sample(shared_data: Path) -> None:
    from tldrlab.data.readers import read_records

    wikipedia = [r.provenance["title"] for r in read_records(shared_data / "wikipedia")]
    wikitext = [r.provenance["title"] for r in read_records(shared_data / "wikitext_valid")]
    assert len(wikipedia) == 106 and len(wikitext) == 60
    assert shared_titles(wikipedia, wikitext) == []


def _store_articles(url: str, source: str, titles: list[str], seed: int) -> None:
    store = open_concept_store(url)
    rng = np.random.default_rng(seed)
    try:
        for i, title in enumerate(titles):
            vectors = rng.normal(size=(4, 8)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            concepts = [ConceptIn(p, 3 * p, 3 * p + 2, f"{title} {p}.") for p in range(4)]
            store.replace_article(
                source=source,
                article_id=f"{source}:{i}",
                concepts=concepts,
                vectors=vectors,
                embedder="test",
                chunking="sentence",
                title=title,
            )
    finally:
        store.close()


def test_sequences_from_store_refuses_a_test_corpus_that_repeats_a_training_title(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'concepts.db'}"
    _store_articles(url, "wiki", ["Bees", "Ants", "Wasps", "Moths", "Flies"], seed=0)
    _store_articles(url, "unseen", ["Volcanoes", "Glaciers"], seed=1)
    config = SequencesConfig(context=2, test_source="unseen", store_url=url, out=str(tmp_path / "s.npz"))
    built = sequences_from_store(config)
    loaded = load_sequences(tmp_path / "s.npz")
    assert loaded.meta["test_source"] == "unseen" and loaded.meta["articles"]["cross"] == 2
    assert built.meta["cross_near_duplicates"] == {"cosine": 0.95, "concepts": 0, "of": 8}

    _store_articles(url, "leaky", ["Glaciers", "ants"], seed=2)
    leaky = config.model_copy(update={"test_source": "leaky", "source": "wiki"})
    with pytest.raises(InvalidInputError, match=r"share a title.*'Ants' ~ 'ants'"):
        sequences_from_store(leaky)
    with pytest.raises(InvalidInputError, match="also the training source"):
        sequences_from_store(config.model_copy(update={"source": "unseen"}))
